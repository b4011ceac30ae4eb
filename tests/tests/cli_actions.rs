//! The operator commands run as the built binary, the way a script or a
//! playbook runs them (stdin not a terminal: nothing is asked), against a
//! fake agent on loopback that answers the documented codes: the command
//! line parses, the exit code is SPEC's, and what is printed is the agent's
//! message or reason. The commands' logic is tested in the agent's unit
//! tests (`client/scenarios.rs`); these check the process around it.
//!
//! The binary is `$PGWARDEN_BIN`, else `target/debug/pgwarden` of this
//! workspace (or of `$CARGO_TARGET_DIR`): build it first with `cargo build`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use pgwarden_tests::pgwarden_bin;
use serde_json::{json, Value};

/// A fake agent: answers `METHOD /path` from a fixed table (404 for the
/// rest) and records the requests (`METHOD /path auth body`).
struct Fake {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn start(answers: Vec<(&'static str, u16, Value)>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut length = 0;
                let mut auth = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    let (name, value) = line.split_once(':').unwrap_or((&line, ""));
                    match name.to_ascii_lowercase().as_str() {
                        "content-length" => length = value.trim().parse().unwrap_or(0),
                        "authorization" => auth = value.trim().to_string(),
                        _ => {}
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let mut parts = request_line.split_whitespace();
                let what = format!(
                    "{} {}",
                    parts.next().unwrap_or(""),
                    parts.next().unwrap_or("")
                );
                log.lock()
                    .unwrap()
                    .push(format!("{what} {auth} {}", String::from_utf8_lossy(&body)));
                let (code, answer) = answers
                    .iter()
                    .find(|(w, _, _)| *w == what)
                    .map(|(_, c, a)| (*c, a.clone()))
                    .unwrap_or((404, json!({"error": "no such endpoint"})));
                let text = answer.to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        Fake { url, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// A member's status document.
fn status(name: &str, role: &str) -> Value {
    json!({
        "name": name, "cluster": "main", "role": role, "state": "running",
        "agent": {"version": "0.1.0", "uptime_s": 5, "loop_last_ms_ago": 20, "paused": false},
        "postgres": {"version_num": 150018, "host": "127.0.0.1", "port": 5432, "pid": 42,
                     "timeline": 1, "system_identifier": "7311", "start_time": null,
                     "pending_restart": false},
        "timeline": 1
    })
}

/// `/pgwarden/cluster` of pg2 (the agent asked), with pg1 leading at `leader_url`.
fn cluster(leader_url: &str) -> Value {
    json!({"cluster": "main", "leader": "pg1", "term": 3, "members": [
        {"name": "pg2", "api_url": null, "status": status("pg2", "replica")},
        {"name": "pg1", "api_url": leader_url, "age_ms": 100, "status": status("pg1", "primary")},
    ]})
}

#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `pgwarden ARGS` with stdin closed (not a terminal).
fn pgwarden(args: &[&str]) -> Run {
    let out = Command::new(pgwarden_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", pgwarden_bin().display()));
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn token_file() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api.token");
    std::fs::write(&file, "s3cret\n").unwrap();
    let path = file.to_string_lossy().into_owned();
    (dir, path)
}

#[test]
fn a_switchover_from_a_script_is_not_asked_about_and_prints_the_outcome_and_the_cluster() {
    let leader = Fake::start(vec![(
        "POST /switchover",
        200,
        json!({"message": "switched over: pg2 is the primary", "leader": "pg2"}),
    )]);
    let here = Fake::start(vec![("GET /pgwarden/cluster", 200, cluster(&leader.url))]);
    let (_dir, token) = token_file();
    let r = pgwarden(&[
        "switchover",
        "--url",
        &here.url,
        "--token-file",
        &token,
        "--candidate",
        "pg2",
    ]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout
            .starts_with("switched over: pg2 is the primary\n+ Cluster: main"),
        "{r:?}"
    );
    assert_eq!(
        leader.seen(),
        [r#"POST /switchover Bearer s3cret {"candidate":"pg2","leader":"pg1"}"#]
    );
}

#[test]
fn refusals_and_mistakes_end_with_the_exit_codes_spec_gives_them() {
    let (_dir, token) = token_file();
    for (code, exit, needle) in [
        (412, 3, "not possible: pg2 lags"),
        (409, 3, "not possible: pg2 lags"),
        (503, 3, "not possible: pg2 lags"),
        (401, 2, "check that --token-file"),
        (403, 2, "set api.token_file"),
        (500, 1, "not possible: pg2 lags"),
    ] {
        let leader = Fake::start(vec![(
            "POST /switchover",
            code,
            json!({"error": "not possible: pg2 lags"}),
        )]);
        let here = Fake::start(vec![("GET /pgwarden/cluster", 200, cluster(&leader.url))]);
        let r = pgwarden(&["switchover", "--url", &here.url, "--token-file", &token]);
        assert_eq!(r.code, Some(exit), "{code}: {r:?}");
        assert!(r.stderr.contains(needle), "{code}: {r:?}");
    }

    let here = Fake::start(vec![(
        "GET /pgwarden/cluster",
        200,
        cluster("http://127.0.0.1:9"),
    )]);
    for (args, exit, needle) in [
        (
            vec!["switchover", "--url", &here.url],
            2,
            "--token-file FILE",
        ),
        (
            vec![
                "switchover",
                "--url",
                &here.url,
                "--token-file",
                &token,
                "--at",
                "02:00",
            ],
            2,
            "--at \"02:00\" is not an RFC 3339 time",
        ),
        (
            vec![
                "failover",
                "--url",
                &here.url,
                "--token-file",
                &token,
                "--candidate",
                "pg9",
            ],
            2,
            "no member pg9 in cluster main (members: pg1, pg2)",
        ),
        (
            vec![
                "restart",
                "pg1",
                "--all",
                "--url",
                &here.url,
                "--token-file",
                &token,
            ],
            2,
            "cannot be used with",
        ),
        (
            vec![
                "reload",
                "--url",
                "http://127.0.0.1:9",
                "--token-file",
                &token,
            ],
            1,
            "cannot reach the agent at http://127.0.0.1:9/reload",
        ),
    ] {
        let r = pgwarden(&args);
        assert_eq!(r.code, Some(exit), "{args:?}: {r:?}");
        assert!(r.stderr.contains(needle), "{args:?}: {r:?}");
    }
}

#[test]
fn pause_and_reload_print_the_agents_message() {
    let (_dir, token) = token_file();
    let here = Fake::start(vec![
        (
            "POST /pause",
            200,
            json!({"message": "paused", "paused": true}),
        ),
        (
            "POST /reload",
            200,
            json!({"message": "reloaded: nothing changed"}),
        ),
    ]);
    let r = pgwarden(&["pause", "--url", &here.url, "--token-file", &token]);
    assert_eq!((r.code, r.stdout.as_str()), (Some(0), "paused\n"), "{r:?}");
    let r = pgwarden(&["reload", "--url", &here.url, "--token-file", &token]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (Some(0), "reloaded: nothing changed\n"),
        "{r:?}"
    );
    assert_eq!(
        here.seen(),
        [
            "POST /pause Bearer s3cret ",
            "POST /reload Bearer s3cret {}"
        ]
    );
}
