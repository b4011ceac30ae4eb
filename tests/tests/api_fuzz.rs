//! The API's contract, fuzzed: schemathesis (PyPI) generates requests from
//! `docs/api/openapi.yaml` — valid and invalid query parameters, bodies,
//! methods, missing tokens — against a live one-member cluster with an
//! `api.token_file`, so the operator actions run for real (a restart, a
//! pause, a refused switchover). The run fails on any 5xx but the
//! documented 503, any answer that does not match the spec (status code,
//! content type, schema), invalid input that is not refused with a 4xx,
//! and afterwards on an agent that died, stopped answering, or lost the
//! row written before the run (a `/reinitialize` renames aside, never
//! deletes; on the primary it is refused). A second test checks every
//! read of a primary, its replica and a witness against the spec, and
//! sends malformed lease messages with the cluster secret.
//!
//! Settings: `docs/api/schemathesis.toml`. `PGWARDEN_FUZZ_SEED` replays a
//! run (every run prints its seed), `PGWARDEN_FUZZ_EXAMPLES` sets the
//! examples per operation (default 40). schemathesis is looked up in
//! `PGWARDEN_SCHEMATHESIS`, the virtualenvs `scripts/install-deps` makes
//! (`/opt/pgwarden-ci/venv`, `target/schemathesis-venv`), then `PATH`;
//! missing, the test is skipped, or fails with `CI=true`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pgwarden_tests::*;

/// One schemathesis run may take this long (it stops by itself after
/// its examples; this bounds a request that hangs).
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// The workspace's root.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The schemathesis executable, where `scripts/install-deps` puts it or
/// on `PATH`.
fn schemathesis() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PGWARDEN_SCHEMATHESIS") {
        return Some(PathBuf::from(p));
    }
    let venvs = [
        PathBuf::from("/opt/pgwarden-ci/venv"),
        workspace().join("target/schemathesis-venv"),
    ];
    let in_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    venvs
        .iter()
        .map(|v| v.join("bin"))
        .chain(in_path)
        .map(|dir| dir.join("schemathesis"))
        .find(|p| p.is_file())
}

fn seed() -> u64 {
    std::env::var("PGWARDEN_FUZZ_SEED")
        .ok()
        .map(|s| s.parse().expect("PGWARDEN_FUZZ_SEED is a number"))
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock")
                .as_micros() as u64
                % 1_000_000_000
        })
}

/// schemathesis, found or the reason the test cannot run (a failure
/// with `CI=true`, else a skip).
fn schemathesis_or_skip() -> Option<PathBuf> {
    if let Some(st) = schemathesis() {
        return Some(st);
    }
    let msg =
        "api fuzz: schemathesis not found (run scripts/install-deps, or set PGWARDEN_SCHEMATHESIS)";
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED {msg}");
    None
}

/// One schemathesis run against the agent on `port` with `args` after
/// the common ones; true when it found nothing. Its report goes to the
/// test's output; a run longer than [`RUN_LIMIT`] is a failure.
fn fuzz(st: &Path, dir: &Path, port: u16, seed: u64, args: &[&str]) -> bool {
    let spec = workspace().join("docs/api/openapi.yaml");
    let config = workspace().join("docs/api/schemathesis.toml");
    let url = format!("http://127.0.0.1:{port}");
    eprintln!(
        "api fuzz: seed {seed} (replay: PGWARDEN_FUZZ_SEED={seed}); by hand:\n  \
         PGWARDEN_API_TOKEN={API_TOKEN} PGWARDEN_CLUSTER_SECRET=... {} --config-file {} run {} --url {url} --seed {seed} {}",
        st.display(),
        config.display(),
        spec.display(),
        args.join(" ")
    );
    let mut child = Command::new(st)
        .arg("--config-file")
        .arg(&config)
        .arg("--no-color")
        .arg("run")
        .arg(&spec)
        .args(["--url", &url])
        .args(["--seed", &seed.to_string()])
        // One worker: hypothesis's lambda descriptions race in CPython
        // 3.11's AST constructor with two ("recursion depth mismatch").
        .args(["--workers", "1"])
        .args(["--request-timeout", "60"])
        .args(["--generation-database", "none"])
        .arg("--report-dir")
        .arg(dir.join("schemathesis-report"))
        .args(args)
        .env("PGWARDEN_API_TOKEN", API_TOKEN)
        .env("PGWARDEN_CLUSTER_SECRET", CLUSTER_SECRET)
        .current_dir(dir)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", st.display()));
    let began = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("schemathesis") {
            break status;
        }
        if began.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("api fuzz: schemathesis still ran after {RUN_LIMIT:?} (a request hangs?); seed {seed}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("api fuzz: schemathesis ran {:?}: {status}", began.elapsed());
    status.success()
}

/// A panic in a request's task only drops that connection (schemathesis
/// sees a network error); one in a background task may not even do that:
/// the agent's log says it either way.
fn assert_no_panic(node: &Node) {
    let log = node.log_text();
    assert!(
        !log.contains("panicked"),
        "api fuzz: {} panicked:\n{}",
        node.name,
        log.lines()
            .filter(|l| l.contains("panicked"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Examples per operation: `PGWARDEN_FUZZ_EXAMPLES`, else 40.
fn examples() -> String {
    std::env::var("PGWARDEN_FUZZ_EXAMPLES").unwrap_or_else(|_| "40".into())
}

/// The cluster secret the harness writes (`secrets/cluster.secret`).
const CLUSTER_SECRET: &str = "cluster-secret-for-tests";

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_outside_the_spec_and_the_agent_survives() {
    if !require_root("api fuzz") {
        return;
    }
    let Some(st) = schemathesis_or_skip() else {
        return;
    };
    let root = TestDir::new();
    let mut node = Node::single(root.path(), "pg1");
    node.start();
    node.wait_primary();
    node.psql("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before the fuzz')")
        .expect("a row to keep");
    let pid = node.agent_pid().expect("agent pid");

    let seed = seed();
    let examples = examples();
    let clean = fuzz(
        &st,
        root.path(),
        node.api_port,
        seed,
        &["--checks", "all", "--max-examples", &examples],
    );
    // The agent is alive and answering, and back to a running primary
    // (the fuzzer may have restarted PostgreSQL or paused the cluster).
    assert!(
        process_alive(pid),
        "api fuzz: the agent died during the run (seed {seed})"
    );
    assert_no_panic(&node);
    // Answering at once; live within a loop or two (a restart the run
    // scheduled in the past may be under way).
    node.api("GET", "/liveness")
        .expect("the agent answers /liveness");
    wait_for(
        Duration::from_secs(30),
        "/liveness 200 after the run",
        || {
            node.api("GET", "/liveness")
                .ok()
                .filter(|a| a.status == 200)
        },
    );
    // What the run did, by the agent's own count (route and code), for
    // the log; an operator action answered 200/202 proves the token was
    // used and actions ran for real, not only their refusals.
    let metrics = node.api("GET", "/metrics").expect("/metrics");
    let requests: Vec<&str> = metrics
        .body
        .lines()
        .filter(|l| l.starts_with("pgwarden_api_requests_total{"))
        .collect();
    eprintln!(
        "api fuzz: requests by route and code:\n{}",
        requests.join("\n")
    );
    let acted = requests.iter().any(|l| {
        ["/restart", "/pause", "/resume", "/reload", "/config"]
            .iter()
            .any(|r| l.contains(&format!("route=\"{r}\"")))
            && (l.contains("code=\"200\"") || l.contains("code=\"202\""))
    });
    assert!(
        acted,
        "api fuzz: no operator action succeeded: was the token sent?"
    );
    node.operate("POST", "/resume", "");
    node.wait_primary();
    assert_eq!(
        node.psql("SELECT v FROM kept").as_deref(),
        Ok("before the fuzz"),
        "the row written before the run is gone"
    );
    assert!(
        clean,
        "api fuzz: schemathesis found problems (above); replay with PGWARDEN_FUZZ_SEED={seed}"
    );
}

/// Every document in the shapes only a cluster has (a streaming receiver,
/// `wal_senders` and `replication` rows, peers in `/cluster`, lags, a
/// witness without PostgreSQL) matches the spec: each GET, HEAD and
/// OPTIONS with valid parameters, on the primary, the replica and the
/// witness. Then the lease endpoints on the replica get malformed
/// messages with the cluster secret (each a 422 that never reaches the
/// acceptor) and requests without it (401): no server error, and the pair
/// keeps a primary and a streaming replica.
///
/// Then the two ballots no proposer could outbid (a counter near
/// `u64::MAX`, a member name above every voter's), well-formed and with
/// the secret: each a 422 (`Acceptor::screen`), so the cluster keeps its
/// leader. Before the screen, one such promise left the cluster without a
/// leader for good, which the fuzzer reached within a few hundred examples.
#[test]
fn a_primary_its_replica_and_a_witness_answer_every_read_as_the_spec_says_and_refuse_malformed_lease_messages(
) {
    if !require_root("api fuzz (pair)") {
        return;
    }
    let Some(st) = schemathesis_or_skip() else {
        return;
    };
    let root = TestDir::new();
    let mut c = Cluster::new(
        root.path(),
        &["pg1", "pg2", "w1"],
        |n| n == "w1",
        "10s",
        "500ms",
    );
    c.start_all();
    let primary = c.wait_streaming(&["pg1", "pg2"]);
    let seed = seed();
    let mut clean = true;
    for n in &c.nodes {
        let what = match n.name.as_str() {
            "w1" => "witness",
            name if name == primary => "primary",
            _ => "replica",
        };
        eprintln!("api fuzz: the reads of {} ({what})", n.name);
        clean &= fuzz(
            &st,
            root.path(),
            n.api_port,
            seed,
            &[
                "--include-method-regex",
                "^(GET|HEAD|OPTIONS)$",
                "--mode",
                "positive",
                "--max-examples",
                "8",
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            ],
        );
    }
    let replica = c
        .nodes
        .iter()
        .find(|n| n.name != primary && n.name != "w1")
        .expect("replica");
    eprintln!("api fuzz: malformed lease messages to {}", replica.name);
    clean &= fuzz(
        &st,
        root.path(),
        replica.api_port,
        seed,
        &[
            "--include-path-regex",
            "^/internal/",
            "--mode",
            "negative",
            "--checks",
            "all",
            "--max-examples",
            &examples(),
        ],
    );
    // Well-formed lease messages with the secret that no proposer could
    // outbid are refused before the acceptor sees them (once, they left
    // the cluster without a leader for good: the acceptor kept the
    // promise in its notes).
    for (what, ballot) in [
        (
            "a counter no proposer can reach",
            r#"{"counter": 18446744073709551615, "member": "pg1", "incarnation": 1}"#,
        ),
        (
            "a member that is not a voter",
            r#"{"counter": 3, "member": "zzzz", "incarnation": 18446744073709551615}"#,
        ),
    ] {
        for path in ["/internal/lease/prepare", "/internal/lease/propose"] {
            let body = format!(r#"{{"ballot": {ballot}, "lease_ms": 10000}}"#);
            let a = replica.operate_with("POST", path, &body, Some(CLUSTER_SECRET));
            assert_eq!(a.status, 422, "{what} to {path}: {a:?}");
        }
    }
    let after = c.wait_streaming(&["pg1", "pg2"]);
    for n in &c.nodes {
        assert_no_panic(n);
    }
    eprintln!("api fuzz: after them, {after} is the primary and the other streams");
    assert!(
        clean,
        "api fuzz: schemathesis found problems (above); replay with PGWARDEN_FUZZ_SEED={seed}"
    );
}
