//! The API's contract, fuzzed: schemathesis (PyPI) generates requests from
//! `docs/api/openapi.yaml` — valid and invalid query parameters, bodies,
//! methods, missing tokens — against a live one-member cluster with an
//! `api.token_file`, so the operator actions run for real (a restart, a
//! pause, a refused switchover). The run fails on any 5xx but the
//! documented 503, any answer that does not match the spec (status code,
//! content type, schema), invalid input that is not refused with a 4xx,
//! and afterwards on an agent that died, stopped answering, or lost the
//! row written before the run (a `/reinitialize` renames aside, never
//! deletes; on the primary it is refused).
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

/// The whole schemathesis run may take this long (its own `--max-time`
/// stops generating earlier; this bounds a hung request too).
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

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_outside_the_spec_and_the_agent_survives() {
    if !require_root("api fuzz") {
        return;
    }
    let Some(st) = schemathesis() else {
        let msg = "api fuzz: schemathesis not found (run scripts/install-deps, or set PGWARDEN_SCHEMATHESIS)";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED {msg}");
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
    let examples = std::env::var("PGWARDEN_FUZZ_EXAMPLES").unwrap_or_else(|_| "40".into());
    let spec = workspace().join("docs/api/openapi.yaml");
    let config = workspace().join("docs/api/schemathesis.toml");
    let url = format!("http://127.0.0.1:{}", node.api_port);
    eprintln!(
        "api fuzz: seed {seed}, {examples} examples per operation; replay with PGWARDEN_FUZZ_SEED={seed}\n\
         by hand: PGWARDEN_API_TOKEN={API_TOKEN} PGWARDEN_CLUSTER_SECRET=... {} --config-file {} run {} --url {url} --checks all --seed {seed} --max-examples {examples}",
        st.display(),
        config.display(),
        spec.display()
    );
    let report = root.path().join("schemathesis-report");
    let mut child = Command::new(&st)
        .arg("--config-file")
        .arg(&config)
        .arg("--no-color")
        .arg("run")
        .arg(&spec)
        .args(["--url", &url])
        .args(["--checks", "all"])
        .args(["--seed", &seed.to_string()])
        .args(["--max-examples", &examples])
        // One worker: hypothesis's lambda descriptions race in CPython
        // 3.11's AST constructor with two ("recursion depth mismatch").
        .args(["--workers", "1"])
        .args(["--request-timeout", "60"])
        .args(["--generation-database", "none"])
        .arg("--report-dir")
        .arg(&report)
        .env("PGWARDEN_API_TOKEN", API_TOKEN)
        .env("PGWARDEN_CLUSTER_SECRET", "cluster-secret-for-tests")
        .current_dir(root.path())
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
    eprintln!("api fuzz: schemathesis ran {:?}", began.elapsed());

    // The agent is alive and answering, and back to a running primary
    // (the fuzzer may have restarted PostgreSQL or paused the cluster).
    assert!(
        process_alive(pid),
        "api fuzz: the agent died during the run (seed {seed})"
    );
    let live = node.api("GET", "/liveness").expect("the agent answers /liveness");
    assert_eq!(live.status, 200, "/liveness after the run: {}", live.body);
    node.operate("POST", "/resume", "");
    node.wait_primary();
    assert_eq!(
        node.psql("SELECT v FROM kept").as_deref(),
        Ok("before the fuzz"),
        "the row written before the run is gone"
    );
    assert!(
        status.success(),
        "api fuzz: schemathesis found problems (exit {status}); seed {seed}: replay with PGWARDEN_FUZZ_SEED={seed}"
    );
}
