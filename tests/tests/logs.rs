//! The agent's log (`[log]`): JSON lines a log pipeline can read, decision
//! lines carrying their fields, and a SIGHUP that switches the format and
//! the level without restarting the agent.

use std::fs;
use std::io::Write as _;

use nix::sys::signal::Signal;
use pgwarden_tests::*;

/// Writes the node's configuration with `log` as its `[log]` section.
fn write_config_with_log(node: &mut Node, log: &str) {
    node.write_config(&[(node.name.clone(), node.api_port)]);
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(&node.config)
        .expect("open the configuration");
    write!(file, "\n[log]\n{log}\n").expect("append [log]");
}

/// The complete lines of the agent's log (a line still being written is
/// left for the next look).
fn lines(node: &Node) -> Vec<String> {
    let text = node.log_text();
    let complete = text.rfind('\n').map(|end| &text[..end]).unwrap_or("");
    complete
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// A JSON log line with every key a pipeline relies on, or why not.
fn json_line(line: &str) -> Result<serde_json::Value, String> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line}"))?;
    let ts = v["timestamp"].as_str().unwrap_or_default();
    let rfc3339_utc = ts.len() >= 20
        && ts.ends_with('Z')
        && ts.as_bytes()[4] == b'-'
        && ts.as_bytes()[10] == b'T'
        && ts.as_bytes()[13] == b':';
    if !rfc3339_utc {
        return Err(format!("timestamp is not RFC 3339 UTC: {line}"));
    }
    if !["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&v["level"].as_str().unwrap_or("")) {
        return Err(format!("no level: {line}"));
    }
    for key in ["message", "target", "member"] {
        if !v[key].is_string() {
            return Err(format!("no {key}: {line}"));
        }
    }
    Ok(v)
}

#[test]
fn given_json_logs_then_every_line_parses_and_a_sighup_switches_to_text_at_debug_in_the_same_agent()
{
    if !require_root("logs") {
        return;
    }
    let root = TestDir::new();
    let mut node = Node::new(root.path(), "pg1");
    write_config_with_log(&mut node, "format = \"json\"");
    // The harness sets PGWARDEN_LOG=info, which wins over log.level; empty
    // is unset, so that log.level applies.
    node.start_with_env(&[("PGWARDEN_LOG", "")]);
    node.wait_primary();
    let pid = node.agent_pid().expect("the agent's pid");

    // Every line is JSON; a decision line names member, action and reason,
    // and the term once this member holds the lease.
    let decisions = wait_for(SLOW, "decision lines with a term", || {
        let decisions: Vec<serde_json::Value> = lines(&node)
            .iter()
            .filter_map(|l| json_line(l).ok())
            .filter(|v| v.get("action").is_some())
            .collect();
        decisions
            .iter()
            .any(|d| d["term"].as_u64().is_some_and(|t| t >= 1))
            .then_some(decisions)
    });
    let before = lines(&node);
    for line in &before {
        let v = json_line(line).unwrap_or_else(|e| panic!("{e}\nlog:\n{}", node.log_text()));
        assert_eq!(v["member"], "pg1", "{line}");
        assert_ne!(v["level"], "DEBUG", "level info: {line}");
    }
    for d in &decisions {
        assert_eq!(d["member"], "pg1", "{d}");
        assert!(d["action"].as_str().is_some_and(|a| !a.is_empty()), "{d}");
        assert!(d["reason"].as_str().is_some_and(|r| !r.is_empty()), "{d}");
        assert_eq!(d["target"], "pgwarden::ha::runner", "{d}");
    }
    assert!(
        decisions.iter().any(|d| d["action"] == "bootstrap"),
        "an empty directory is bootstrapped: {decisions:?}"
    );

    // SIGHUP with text at debug: the same agent goes on in text, and debug
    // lines appear.
    write_config_with_log(&mut node, "format = \"text\"\nlevel = \"debug\"");
    node.signal_agent(Signal::SIGHUP);
    let after = wait_for(SLOW, "text lines at debug after the reload", || {
        let all = lines(&node);
        let switch = all.iter().position(|l| json_line(l).is_err())?;
        let after = all[switch..].to_vec();
        let reloaded = after
            .iter()
            .any(|l| l.contains("reload: applied log.format, log.level"));
        let debug = after.iter().any(|l| l.contains(" DEBUG "));
        (reloaded && debug).then_some(after)
    });
    for line in &after {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_err(),
            "a JSON line after the switch to text: {line}\nlog:\n{}",
            node.log_text()
        );
    }
    assert!(
        after
            .iter()
            .any(|l| l.contains(" INFO ") && l.contains("log: format text, level \"debug\"")),
        "the log says what changed: {after:?}"
    );
    assert_eq!(node.agent_pid(), Some(pid));
    assert!(process_alive(pid), "the agent restarted");
    node.wait_primary();
}
