//! Operator actions on real agents and real PostgreSQL: switchover
//! (under the writer), failover, restart, reinitialize, pause; the token
//! and malformed bodies on every mutating endpoint.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pgwarden_tests::writer::{Writer, WriterTarget};
use pgwarden_tests::*;

const DATA: [&str; 3] = ["pg1", "pg2", "pg3"];

fn cluster(root: &TestDir) -> Cluster {
    Cluster::new(root.path(), &DATA, |_| false, "5s", "500ms")
}

fn node<'a>(c: &'a Cluster, name: &str) -> &'a Node {
    c.nodes.iter().find(|n| n.name == name).expect("node")
}

/// A standby of `primary`, the first by name.
fn a_standby(primary: &str) -> &'static str {
    DATA.iter()
        .copied()
        .find(|n| *n != primary)
        .expect("standby")
}

fn timeline(node: &Node) -> Option<u64> {
    node.status()?["timeline"].as_u64()
}

/// `date`'s RFC 3339 time `secs` from now, with an explicit offset.
fn in_secs(secs: u64) -> String {
    let out = std::process::Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("+{secs} seconds"),
            "+%Y-%m-%dT%H:%M:%S+00:00",
        ])
        .output()
        .expect("date");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

#[test]
fn given_a_switchover_under_the_writer_then_no_acknowledged_write_is_lost_and_the_old_primary_streams_without_a_rewind(
) {
    if !require_root("switchover") {
        return;
    }
    let root = TestDir::new();
    let mut c = cluster(&root);
    c.start_all();
    let old = c.wait_streaming(&DATA);
    let target = a_standby(&old);
    node(&c, &old)
        .psql("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100)")
        .unwrap();
    let writer = Writer::start(c.nodes.iter().map(WriterTarget::of).collect());
    writer.wait_routed_accept(&old, Instant::now(), SLOW);
    let asked = Instant::now();
    let answer = node(&c, &old).operate(
        "POST",
        "/switchover",
        &format!(r#"{{"leader": "{old}", "candidate": "{target}"}}"#),
    );
    eprintln!("switchover answered in {:?}: {answer:?}", asked.elapsed());
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["leader"], target);
    writer.wait_routed_accept(target, asked, SLOW);
    let now_primary = c.wait_streaming(&DATA);
    assert_eq!(now_primary, target);
    let report = writer.stop();
    eprintln!("{}", report.summary());
    assert!(report.overlaps().is_empty(), "{:?}", report.overlaps());
    let last_old = report
        .last_accept(&old)
        .expect("the old primary took writes");
    let first_new = report
        .first_accept_after(target, asked)
        .expect("the new primary took writes");
    eprintln!(
        "write-unavailable window: {:?} (last write on {old} to first on {target})",
        first_new.saturating_duration_since(last_old)
    );
    let missing = report.missing_on(node(&c, target).pg_port);
    assert!(
        missing.is_empty(),
        "acknowledged writes lost in the switchover: {missing:?}"
    );
    let old_node = node(&c, &old);
    wait_for(SLOW, "the old primary streaming from the new one", || {
        let d = old_node.status()?;
        (d["role"] == "replica"
            && d["wal_receiver"]["status"] == "streaming"
            && d["wal_receiver"]["sender_port"].as_u64()
                == Some(u64::from(node(&c, target).pg_port)))
        .then_some(())
    });
    assert!(
        !old_node.log_text().contains("pg_rewind"),
        "the old primary rewound:\n{}",
        old_node.log_text()
    );
    assert_eq!(timeline(node(&c, target)), Some(2));
}

#[test]
fn given_switchovers_that_cannot_be_done_then_each_is_refused_with_its_reason_and_nothing_moves() {
    if !require_root("switchover refusals") {
        return;
    }
    let root = TestDir::new();
    let mut c = cluster(&root);
    // pg3 may never be primary
    for n in &c.nodes {
        let text = std::fs::read_to_string(&n.config).unwrap().replace(
            "name = \"pg3\", api_url",
            "name = \"pg3\", nofailover = true, api_url",
        );
        std::fs::write(&n.config, text).unwrap();
    }
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    let other = DATA
        .iter()
        .copied()
        .find(|n| *n != primary && *n != "pg3")
        .unwrap();
    let p = node(&c, &primary);
    let cases = [
        (
            format!(r#"{{"leader": "{primary}", "candidate": "pg9"}}"#),
            412,
            "pg9 is not a member",
        ),
        (
            format!(r#"{{"leader": "{primary}", "candidate": "{primary}"}}"#),
            412,
            "is the primary already",
        ),
        (
            format!(r#"{{"leader": "{other}", "candidate": "{other}"}}"#),
            503,
            "names",
        ),
    ];
    let mut cases: Vec<(String, u16, &str)> = cases.into_iter().collect();
    if primary != "pg3" {
        cases.push((
            format!(r#"{{"leader": "{primary}", "candidate": "pg3"}}"#),
            412,
            "nofailover",
        ));
    }
    for (body, code, needle) in &cases {
        let a = p.operate("POST", "/switchover", body);
        assert_eq!(a.status, *code, "{body}: {a:?}");
        assert!(
            a.json()["error"].as_str().unwrap().contains(needle),
            "{body}: {a:?}"
        );
    }
    // sent to a standby: 503, it is not the leader
    let a = node(&c, other).operate(
        "POST",
        "/switchover",
        &format!(r#"{{"leader": "{primary}"}}"#),
    );
    assert_eq!(a.status, 503, "{a:?}");
    // a candidate whose agent is down is not a streaming replica it can see
    c.node(other).kill_agent();
    let p = node(&c, &primary);
    wait_for(SLOW, "the primary noticing", || {
        let a = p.operate(
            "POST",
            "/switchover",
            &format!(r#"{{"leader": "{primary}", "candidate": "{other}"}}"#),
        );
        (a.status == 412).then_some(())
    });
    let rest: Vec<&str> = DATA.iter().copied().filter(|n| *n != other).collect();
    assert_eq!(c.wait_streaming(&rest), primary);
    assert_eq!(timeline(node(&c, &primary)), Some(1), "nothing moved");
}

#[test]
fn given_two_switchovers_at_once_then_one_is_done_and_the_other_is_a_409() {
    if !require_root("concurrent switchovers") {
        return;
    }
    let root = TestDir::new();
    let mut c = cluster(&root);
    c.start_all();
    let old = c.wait_streaming(&DATA);
    let port = node(&c, &old).api_port;
    let body = format!(r#"{{"leader": "{old}"}}"#);
    let send = |delay: Duration| {
        let req = operator_request("POST", "/switchover", &body, Some(API_TOKEN));
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            http_raw_waiting(port, req.as_bytes(), Duration::from_secs(200))
                .unwrap_or_else(|e| panic!("a switchover: {e}"))
        })
    };
    // the second arrives while the first is under way (a switchover takes
    // a checkpoint, a stop and a promotion: far more than 100 ms); which
    // one the agent takes first is its business
    let (a, b) = (send(Duration::ZERO), send(Duration::from_millis(100)));
    let mut answers = [a.join().unwrap(), b.join().unwrap()];
    answers.sort_by_key(|a| a.status);
    assert_eq!(
        [answers[0].status, answers[1].status],
        [200, 409],
        "{answers:?}"
    );
    assert!(answers[1].json()["error"]
        .as_str()
        .unwrap()
        .contains("in progress"));
    let new = c.wait_streaming(&DATA);
    assert_ne!(new, old);
}

#[test]
fn given_a_scheduled_switchover_then_it_runs_at_its_time_and_a_cancelled_one_does_not() {
    if !require_root("scheduled switchover") {
        return;
    }
    let root = TestDir::new();
    let mut c = cluster(&root);
    c.start_all();
    let first = c.wait_streaming(&DATA);
    let p = node(&c, &first);
    // cancelled: nothing happens at its time
    let a = p.operate(
        "POST",
        "/switchover",
        &format!(
            r#"{{"leader": "{first}", "scheduled_at": "{}"}}"#,
            in_secs(4)
        ),
    );
    assert_eq!(a.status, 202, "{a:?}");
    let again = p.operate(
        "POST",
        "/switchover",
        &format!(
            r#"{{"leader": "{first}", "scheduled_at": "{}"}}"#,
            in_secs(60)
        ),
    );
    assert_eq!(again.status, 409, "one at a time: {again:?}");
    let cancel = p.operate("DELETE", "/switchover", "");
    assert_eq!(cancel.status, 200, "{cancel:?}");
    assert_eq!(p.operate("DELETE", "/switchover", "").status, 404);
    holds_for(
        Duration::from_secs(8),
        "the cancelled switchover not happening",
        || match p.status() {
            Some(d) if d["role"] == "primary" && d["state"] == "running" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    // scheduled: it happens at its time, not before
    let asked = Instant::now();
    let a = p.operate(
        "POST",
        "/switchover",
        &format!(
            r#"{{"leader": "{first}", "scheduled_at": "{}"}}"#,
            in_secs(6)
        ),
    );
    assert_eq!(a.status, 202, "{a:?}");
    assert!(a.json()["scheduled_at"].as_str().unwrap().ends_with('Z'));
    let moved = wait_for(SLOW, "the scheduled switchover", || {
        DATA.iter()
            .find(|n| {
                **n != first
                    && node(&c, n)
                        .status()
                        .is_some_and(|d| d["role"] == "primary" && d["state"] == "running")
            })
            .map(|n| n.to_string())
    });
    assert!(
        asked.elapsed() >= Duration::from_secs(4),
        "it ran before its time: {:?}",
        asked.elapsed()
    );
    assert_eq!(c.wait_streaming(&DATA), moved);
}

#[test]
fn given_the_primary_node_down_then_a_failover_promotes_the_named_member_and_with_a_healthy_primary_it_is_refused(
) {
    if !require_root("failover") {
        return;
    }
    let root = TestDir::new();
    let mut c = cluster(&root);
    c.start_all();
    let old = c.wait_streaming(&DATA);
    let named = DATA.iter().copied().rfind(|n| *n != old).unwrap();
    let a = node(&c, named).operate(
        "POST",
        "/failover",
        &format!(r#"{{"candidate": "{named}"}}"#),
    );
    assert_eq!(a.status, 412, "{a:?}");
    assert!(
        a.json()["error"].as_str().unwrap().contains("switchover"),
        "{a:?}"
    );
    // the primary's node dies
    let pm = node(&c, &old).postmaster_pid();
    c.node(&old).kill_agent();
    if let Some(pm) = pm {
        let _ = kill(Pid::from_raw(pm), Signal::SIGKILL);
    }
    let wrong = node(&c, named).operate("POST", "/failover", r#"{"candidate": "pg9"}"#);
    assert_eq!(wrong.status, 503, "sent to the wrong member: {wrong:?}");
    let a = node(&c, named).operate(
        "POST",
        "/failover",
        &format!(r#"{{"candidate": "{named}", "force": true}}"#),
    );
    assert!(
        a.status == 200
            || node(&c, named)
                .status()
                .is_some_and(|d| d["role"] == "primary"),
        "{a:?}"
    );
    let rest: Vec<&str> = DATA.iter().copied().filter(|n| *n != old).collect();
    assert_eq!(c.wait_streaming(&rest), named);
}

#[test]
fn given_a_pending_parameter_then_a_restart_of_the_primary_applies_it_without_a_failover() {
    if !require_root("restart") {
        return;
    }
    let root = TestDir::new();
    let mut c = cluster(&root);
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    let p = node(&c, &primary);
    let a = p.operate("POST", "/restart", r#"{"restart_pending": true}"#);
    assert_eq!(a.status, 412, "nothing pending yet: {a:?}");
    let n = c.node(&primary);
    let text = std::fs::read_to_string(&n.config)
        .unwrap()
        .replace("parameters = { ", "parameters = { max_connections = 60, ");
    std::fs::write(&n.config, text).unwrap();
    n.signal_agent(Signal::SIGHUP);
    let p = node(&c, &primary);
    p.wait_status(SLOW, "pending_restart", |d| {
        d["postgres"]["pending_restart"] == true
    });
    let a = p.operate(
        "POST",
        "/restart",
        r#"{"restart_pending": true, "role": "primary"}"#,
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(p.psql("SHOW max_connections").unwrap(), "60");
    assert_eq!(c.wait_streaming(&DATA), primary, "no failover");
    assert_eq!(timeline(node(&c, &primary)), Some(1));
    let a = node(&c, &primary).operate("POST", "/restart", r#"{"role": "replica"}"#);
    assert_eq!(a.status, 412, "{a:?}");
}

#[test]
fn given_a_standby_reinitialized_then_its_old_directory_is_renamed_aside_and_it_streams_again() {
    if !require_root("reinitialize") {
        return;
    }
    let root = TestDir::new();
    let mut c = cluster(&root);
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    let a = node(&c, &primary).operate("POST", "/reinitialize", "");
    assert_eq!(a.status, 412, "never the primary: {a:?}");
    let standby = a_standby(&primary);
    let a = node(&c, standby).operate("POST", "/reinitialize", "{}");
    assert_eq!(a.status, 200, "{a:?}");
    let s = node(&c, standby);
    let aside: Vec<_> = std::fs::read_dir(s.data_dir.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("data.reinit-"))
        .collect();
    assert_eq!(aside.len(), 1, "the old directory, renamed aside");
    assert!(aside[0].path().join("PG_VERSION").exists());
    assert_eq!(c.wait_streaming(&DATA), primary);
}

#[test]
fn given_the_cluster_paused_then_a_dead_postgres_is_neither_restarted_nor_replaced_until_resume() {
    if !require_root("pause") {
        return;
    }
    let root = TestDir::new();
    let mut c = cluster(&root);
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    let standby = a_standby(&primary);
    // paused on a standby: every member learns it
    let a = node(&c, standby).operate("POST", "/pause", "");
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json()["paused"], true);
    for n in &c.nodes {
        n.wait_status(SLOW, "paused", |d| {
            d["agent"]["paused"] == true && d["pause"] == true
        });
    }
    let pm = node(&c, &primary).postmaster_pid().unwrap();
    kill(Pid::from_raw(pm), Signal::SIGKILL).unwrap();
    holds_for(Duration::from_secs(10), "no restart, no failover", || {
        let restarted = node(&c, &primary)
            .postmaster_pid()
            .filter(|p| *p != pm && process_alive(*p));
        if let Some(now) = restarted {
            return Err(format!("PostgreSQL restarted (pid {now})"));
        }
        for n in DATA.iter().filter(|n| **n != primary) {
            if node(&c, n).status().is_some_and(|d| d["role"] == "primary") {
                return Err(format!("{n} was promoted"));
            }
        }
        Ok(())
    });
    for n in &c.nodes {
        let d = n.status().unwrap();
        assert_eq!(d["agent"]["paused"], true, "{}: {d}", n.name);
    }
    let d = node(&c, &primary).status().unwrap();
    assert_eq!(d["state"], "paused", "{d}");
    // resume (Patroni's way): the primary's agent starts it again
    let a = node(&c, &primary).operate("PATCH", "/config", r#"{"pause": false}"#);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(c.wait_streaming(&DATA), primary);
}

/// A one-member cluster for the token and body checks.
fn single(root: &TestDir) -> Node {
    let mut n = Node::single(root.path(), "pg1");
    n.start();
    n.wait_primary();
    n
}

#[test]
fn given_no_wrong_or_unconfigured_token_then_401_401_403_and_nothing_changes() {
    if !require_root("tokens") {
        return;
    }
    let root = TestDir::new();
    let mut n = single(&root);
    for token in [None, Some("wrong"), Some("")] {
        let a = n.operate_with("POST", "/pause", "", token);
        assert_eq!(a.status, 401, "{token:?}: {a:?}");
        assert!(a.json()["error"]
            .as_str()
            .unwrap()
            .contains("api.token_file"));
    }
    assert_eq!(
        n.status().unwrap()["agent"]["paused"],
        false,
        "nothing changed"
    );
    // without api.token_file, nobody may act
    n.kill_agent();
    let text = std::fs::read_to_string(&n.config).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("token_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&n.config, without).unwrap();
    n.start();
    n.wait_primary();
    let a = n.operate("POST", "/pause", "");
    assert_eq!(a.status, 403, "{a:?}");
    assert!(a.json()["error"]
        .as_str()
        .unwrap()
        .contains("no api.token_file"));
    assert_eq!(
        n.status().unwrap()["agent"]["paused"],
        false,
        "nothing changed"
    );
}

#[test]
fn given_malformed_bodies_on_every_mutating_endpoint_then_each_is_a_4xx_naming_the_problem_and_the_agent_stays_healthy(
) {
    if !require_root("malformed bodies") {
        return;
    }
    let root = TestDir::new();
    let n = single(&root);
    let big = format!(r#"{{"leader": "{}"}}"#, "x".repeat(100_000));
    let cases: &[(&str, &str, &str)] = &[
        ("POST", "/switchover", "{leader"),
        ("POST", "/switchover", "[]"),
        ("POST", "/switchover", r#"{"candidate": "pg1"}"#),
        ("POST", "/switchover", r#"{"leader": 7}"#),
        ("POST", "/switchover", r#"{"leader": "pg1", "extra": 1}"#),
        (
            "POST",
            "/switchover",
            r#"{"leader": "pg1", "scheduled_at": "soon"}"#,
        ),
        ("POST", "/switchover", &big),
        ("DELETE", "/switchover", r#"{"x": 1}"#),
        ("POST", "/failover", "{}"),
        ("POST", "/failover", r#"{"candidate": ""}"#),
        (
            "POST",
            "/failover",
            r#"{"candidate": "pg1", "force": "yes"}"#,
        ),
        ("POST", "/restart", r#"{"role": "boss"}"#),
        ("POST", "/restart", r#"{"postgres_version": "x"}"#),
        ("POST", "/restart", r#"{"schedule": "2026-12-01T02:00:00"}"#),
        ("POST", "/restart", "\"restart\""),
        ("DELETE", "/restart", "nonsense"),
        ("POST", "/reload", r#"{"now": true}"#),
        ("POST", "/reinitialize", r#"{"force": 1}"#),
        ("POST", "/pause", "null"),
        ("POST", "/resume", r#"{"pause": true}"#),
        ("PATCH", "/config", r#"{"ttl": 30}"#),
        ("PATCH", "/config", r#"{"pause": "yes"}"#),
        ("PUT", "/switchover", "{}"),
    ];
    for (method, path, body) in cases {
        let a = n.operate(method, path, body);
        assert!(
            (400..500).contains(&a.status),
            "{method} {path} {:.60}: {a:?}",
            body
        );
        let doc = a.json();
        assert!(
            doc["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{method} {path}: {doc}"
        );
    }
    let d = n.wait_primary();
    assert_eq!(d["agent"]["paused"], false);
    assert_eq!(n.api("GET", "/health").unwrap().status, 200);
}

/// The CLI as an operator runs it, against real agents.
fn cli(node: &Node, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(pgwarden_bin())
        .args(args)
        .arg("--config")
        .arg(&node.config)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run pgwarden");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// When a member's agent logged its restart of PostgreSQL: the line's
/// RFC 3339 UTC timestamp, which sorts as text.
fn restart_logged_at(node: &Node) -> String {
    let log = node.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("restarting PostgreSQL (an operator's request)"))
        .unwrap_or_else(|| panic!("{} did not restart:\n{log}", node.name));
    line.split_whitespace()
        .next()
        .filter(|t| t.ends_with('Z'))
        .unwrap_or_else(|| panic!("no timestamp in {line:?}"))
        .to_string()
}

#[test]
fn given_the_cli_then_switchover_restart_all_pause_and_resume_work_and_refusals_exit_3() {
    if !require_root("the CLI") {
        return;
    }
    let root = TestDir::new();
    let mut c = cluster(&root);
    c.start_all();
    let old = c.wait_streaming(&DATA);
    let any = node(&c, "pg1");
    let (code, text) = cli(any, &["switchover"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("switched over"), "{text}");
    let new = c.wait_streaming(&DATA);
    assert_ne!(new, old, "{text}");
    assert!(
        text.contains(&format!("leader: {new}")),
        "the table after: {text}"
    );
    let (code, text) = cli(any, &["switchover", "--candidate", &new]);
    assert_eq!(code, 3, "the leader is no candidate: {text}");
    // restart --all: the standbys first, the primary last, no failover
    let (code, text) = cli(any, &["restart", "--all"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(c.wait_streaming(&DATA), new, "no failover: {text}");
    let primary_at = restart_logged_at(node(&c, &new));
    for n in DATA.iter().filter(|n| **n != new) {
        assert!(
            restart_logged_at(node(&c, n)) < primary_at,
            "{n} restarted after the primary:\n{text}"
        );
    }
    let (code, text) = cli(any, &["pause", "--wait"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("every member reports paused"), "{text}");
    let (code, text) = cli(any, &["switchover"]);
    assert_eq!(code, 3, "paused: {text}");
    assert!(text.contains("paused"), "{text}");
    let (code, text) = cli(any, &["resume", "--wait"]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = cli(any, &["reinit", "pg9"]);
    assert_eq!(code, 2, "{text}");
}
