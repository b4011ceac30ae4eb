//! `GET /metrics` on a real two-member cluster: each scrape passes
//! `promtool check metrics`, and its values agree with the same member's
//! `/status` (role, timeline, server version, WAL positions, the lease);
//! OpenMetrics when the scraper asks for it; API requests counted by route
//! template, never by raw path.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use pgwarden_tests::*;

const DATA: [&str; 2] = ["pg1", "pg2"];

/// One scrape: the `Content-Type` and the body.
struct Scrape {
    content_type: String,
    body: String,
}

impl Scrape {
    /// `name{scope="main-like",name="<member>"<extra>}`'s value, where
    /// `extra` are further labels (`,outcome="acquired"`), if present.
    fn value(&self, name: &str, member: &str, extra: &str) -> Option<f64> {
        let wanted = format!("name=\"{member}\"{extra}}}");
        self.body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .find(|(key, _)| {
                key.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with("{scope=") && rest.ends_with(&wanted))
            })
            .and_then(|(_, v)| v.parse().ok())
    }

    fn must(&self, name: &str, member: &str) -> f64 {
        self.value(name, member, "")
            .unwrap_or_else(|| panic!("{member}: no {name} in the scrape:\n{}", self.body))
    }
}

/// `GET /metrics` with an optional `Accept` header, headers kept (the
/// harness's client keeps only the status and body).
fn scrape(port: u16, accept: Option<&str>) -> Scrape {
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{accept}\r\n");
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the API");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    s.write_all(request.as_bytes()).expect("send the request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the answer");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "GET /metrics: {head}");
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Scrape {
        content_type: headers.get("content-type").cloned().unwrap_or_default(),
        body: body.to_string(),
    }
}

/// `promtool check metrics` on a scrape: Prometheus's own parser and linter.
/// In CI a missing promtool fails (scripts/install-deps installs it);
/// elsewhere the check is skipped with a note.
fn promtool_check(member: &str, text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let msg = format!(
                "promtool cannot be run ({e}): install it with scripts/install-deps (Debian package `prometheus`)"
            );
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{msg}");
            }
            eprintln!("SKIPPED promtool check of {member}: {msg}");
            return;
        }
    };
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success(),
        "{member}: promtool check metrics failed ({}):\n{}{}\n--- the scrape ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `/status`, a scrape, `/status` again: the scrape's values lie between
/// (or equal) the two documents'. Retried while the two documents differ
/// in what must be equal (a loop published between them).
fn status_scrape_status(node: &Node) -> (serde_json::Value, Scrape, serde_json::Value) {
    wait_for(
        SLOW,
        "a scrape between two agreeing status documents",
        || {
            let before = node.status()?;
            let s = scrape(node.api_port, None);
            let after = node.status()?;
            let same = |k: &str| before[k] == after[k];
            (same("role") && same("timeline") && same("server_version") && same("state"))
                .then_some((before, s, after))
        },
    )
}

#[test]
fn metrics_pass_promtool_and_agree_with_status_on_the_primary_and_the_replica() {
    if !require_root("metrics") {
        return;
    }
    let root = TestDir::new();
    let mut c = Cluster::new(root.path(), &DATA, |_| false, "5s", "500ms");
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    let replica = DATA
        .iter()
        .find(|n| **n != primary)
        .expect("a replica")
        .to_string();

    // The primary's view lists the replica's sender once its loop has seen
    // it, and its lag once the standby has replied with a replay position.
    let p = c.node(&primary);
    p.wait_status(SLOW, "the replica's wal sender", |d| {
        d["wal_senders"].as_array().is_some_and(|a| {
            a.iter()
                .any(|s| s["state"] == "streaming" && s["lag_bytes"].is_u64())
        })
    });
    let (before, s, after) = status_scrape_status(p);
    assert!(
        s.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        s.content_type
    );
    promtool_check(&primary, &s.body);
    assert_eq!(s.must("patroni_primary", &primary), 1.0);
    assert_eq!(s.must("patroni_replica", &primary), 0.0);
    assert_eq!(s.must("patroni_postgres_running", &primary), 1.0);
    assert_eq!(s.must("patroni_postgres_state", &primary), 5.0);
    assert_eq!(s.must("patroni_cluster_unlocked", &primary), 0.0);
    assert_eq!(s.must("pgwarden_lease_held", &primary), 1.0);
    assert_eq!(
        s.must("pgwarden_lease_term", &primary),
        before["leader"]["term"].as_f64().expect("a term")
    );
    assert_eq!(
        s.must("patroni_postgres_timeline", &primary),
        before["timeline"].as_f64().expect("a timeline")
    );
    assert_eq!(
        s.must("patroni_postgres_server_version", &primary),
        before["server_version"].as_f64().expect("a version")
    );
    let location = s.must("patroni_xlog_location", &primary);
    let (lo, hi) = (
        before["xlog"]["location"].as_f64().expect("a location"),
        after["xlog"]["location"].as_f64().expect("a location"),
    );
    assert!(
        lo <= location && location <= hi,
        "xlog_location {location} not within /status's {lo}..={hi}"
    );
    assert!(
        s.value(
            "pgwarden_wal_sender_lag_bytes",
            &primary,
            &format!(",application_name=\"{replica}\"")
        )
        .is_some(),
        "no lag for {replica}:\n{}",
        s.body
    );
    assert_eq!(
        s.value(
            "pgwarden_wal_sender_state",
            &primary,
            &format!(",application_name=\"{replica}\",state=\"streaming\",sync_state=\"async\"")
        ),
        Some(1.0),
        "{}",
        s.body
    );
    assert!(
        s.value(
            "pgwarden_lease_rounds_total",
            &primary,
            ",outcome=\"acquired\""
        )
        .is_some_and(|n| n >= 1.0),
        "the primary won its lease in rounds:\n{}",
        s.body
    );
    assert!(
        s.value("pgwarden_ha_loop_duration_seconds_count", &primary, "")
            .is_some_and(|n| n >= 1.0),
        "{}",
        s.body
    );
    let dcs_last_seen = s.must("patroni_dcs_last_seen", &primary);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs_f64();
    assert!(
        (now - 30.0..=now + 1.0).contains(&dcs_last_seen),
        "dcs_last_seen {dcs_last_seen} is not recent (now {now})"
    );

    // Requests are counted by route template; a raw path never becomes a label.
    let probe = "/no/such/path-4711";
    assert_eq!(p.api("GET", probe).expect("an answer").status, 404);
    let s = scrape(p.api_port, None);
    assert!(
        s.value(
            "pgwarden_api_requests_total",
            &primary,
            ",route=\"/status\",code=\"200\""
        )
        .is_some_and(|n| n >= 2.0),
        "{}",
        s.body
    );
    assert!(
        s.value(
            "pgwarden_api_requests_total",
            &primary,
            ",route=\"unmatched\",code=\"404\""
        )
        .is_some_and(|n| n >= 1.0),
        "{}",
        s.body
    );
    assert!(!s.body.contains("path-4711"), "{}", s.body);

    // OpenMetrics, when asked for.
    let om = scrape(
        p.api_port,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
    );
    assert!(
        om.content_type
            .starts_with("application/openmetrics-text; version=1.0.0"),
        "{}",
        om.content_type
    );
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
    assert!(
        om.body.contains("# TYPE pgwarden_lease_rounds counter\n"),
        "{}",
        om.body
    );
    assert_eq!(om.must("patroni_primary", &primary), 1.0);

    // The replica.
    let r = c.node(&replica);
    r.wait_status(SLOW, "a streaming replica with positions", |d| {
        d["xlog"]["replayed_location"].is_u64() && d["wal_receiver"]["status"] == "streaming"
    });
    let (before, s, after) = status_scrape_status(r);
    promtool_check(&replica, &s.body);
    assert_eq!(s.must("patroni_primary", &replica), 0.0);
    assert_eq!(s.must("patroni_replica", &replica), 1.0);
    assert_eq!(s.must("patroni_postgres_streaming", &replica), 1.0);
    assert_eq!(s.must("patroni_xlog_location", &replica), 0.0);
    assert_eq!(s.must("pgwarden_lease_held", &replica), 0.0);
    assert_eq!(s.must("patroni_cluster_unlocked", &replica), 0.0);
    assert_eq!(
        s.must("patroni_postgres_timeline", &replica),
        before["timeline"].as_f64().expect("a timeline")
    );
    assert_eq!(
        s.must("patroni_postgres_server_version", &replica),
        before["server_version"].as_f64().expect("a version")
    );
    let replayed = s.must("patroni_xlog_replayed_location", &replica);
    let (lo, hi) = (
        before["xlog"]["replayed_location"]
            .as_f64()
            .expect("a position"),
        after["xlog"]["replayed_location"]
            .as_f64()
            .expect("a position"),
    );
    assert!(
        lo <= replayed && replayed <= hi,
        "xlog_replayed_location {replayed} not within /status's {lo}..={hi}"
    );
    assert!(
        s.must("patroni_xlog_received_location", &replica) >= replayed,
        "{}",
        s.body
    );
}
