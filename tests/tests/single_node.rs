//! One agent, one PostgreSQL: from an empty directory to a supervised
//! primary, and what the agent does when things happen to it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pgwarden_tests::*;

#[test]
fn given_an_empty_dir_and_a_root_agent_then_a_replication_ready_primary_runs_as_postgres() {
    if !require_root("bootstrap") {
        return;
    }
    let root = TestDir::new();
    let mut node = Node::single(root.path(), "pg1");
    node.start();
    let doc = node.wait_primary();

    // the status document
    assert_eq!(doc["name"], "pg1");
    assert_eq!(doc["cluster"], "test");
    assert_eq!(doc["role"], "primary");
    assert_eq!(doc["timeline"], 1);
    assert_eq!(doc["postgres"]["timeline"], 1);
    assert!(
        doc["wal"]["lsn"].as_str().is_some_and(|l| l.contains('/')),
        "{doc}"
    );
    assert!(
        doc["xlog"]["location"].as_u64().is_some_and(|l| l > 0),
        "{doc}"
    );
    assert_eq!(doc["leader"]["name"], "pg1");
    assert!(doc["postgres"]["version_num"]
        .as_u64()
        .is_some_and(|v| v >= 120000));
    assert!(doc["postgres"]["system_identifier"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert_eq!(doc["wal_senders"], serde_json::json!([]));

    // PostgreSQL runs as postgres, never root; its data directory is 0700, owned by postgres
    let pid = node.postmaster_pid().expect("postmaster.pid");
    let postgres_uid = nix::unistd::User::from_name("postgres")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    assert_eq!(process_uid(pid), Some(postgres_uid));
    let meta = std::fs::metadata(&node.data_dir).unwrap();
    assert_eq!(meta.uid(), postgres_uid);
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    assert!(
        node.log_text().contains("run as postgres"),
        "the log says who PostgreSQL runs as"
    );

    // the managed settings are in effect
    for (setting, expected) in [
        ("wal_level", "replica"),
        ("wal_log_hints", "on"),
        ("hot_standby", "on"),
        ("cluster_name", "test"),
        ("wal_keep_size", "128MB"),
        ("data_checksums", "on"),
        ("password_encryption", "scram-sha-256"),
        ("fsync", "off"),
    ] {
        assert_eq!(
            node.psql(&format!("SHOW {setting}")).unwrap(),
            expected,
            "{setting}"
        );
    }
    let senders: u32 = node.psql("SHOW max_wal_senders").unwrap().parse().unwrap();
    let slots: u32 = node
        .psql("SHOW max_replication_slots")
        .unwrap()
        .parse()
        .unwrap();
    assert!(senders >= 3 && slots >= 3);

    // the replication role: REPLICATION LOGIN, not superuser, with a SCRAM password
    assert_eq!(
        node.psql("SELECT rolreplication, rolcanlogin, rolsuper FROM pg_roles WHERE rolname = 'replicator'")
            .unwrap(),
        "t|t|f"
    );
    assert_eq!(
        node.psql("SELECT left(rolpassword, 13) FROM pg_authid WHERE rolname = 'replicator'")
            .unwrap(),
        "SCRAM-SHA-256"
    );
    assert_eq!(
        node.psql("SELECT left(rolpassword, 13) FROM pg_authid WHERE rolname = 'postgres'")
            .unwrap(),
        "SCRAM-SHA-256",
        "the superuser password came from superuser_password_file"
    );

    // pg_hba: local access, then one replication line per member
    let rules = node
        .psql("SELECT type, array_to_string(database, ','), array_to_string(user_name, ','), coalesce(address, ''), auth_method FROM pg_hba_file_rules ORDER BY line_number")
        .unwrap();
    assert!(rules.contains("local|all|all||peer"), "{rules}");
    assert!(
        rules.contains("host|replication|replicator|127.0.0.1|scram-sha-256"),
        "{rules}"
    );

    // the managed postgresql.conf includes initdb's file, kept as the base
    assert!(node.data_dir.join("postgresql.base.conf").is_file());
    let conf = std::fs::read_to_string(node.data_dir.join("postgresql.conf")).unwrap();
    assert!(conf.starts_with("# Managed by pgwarden"));
    assert!(node.data_dir.join("pgwarden.state").is_file());
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(node.data_dir.join("pgwarden.state")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        state["system_identifier"],
        doc["postgres"]["system_identifier"]
    );

    // the superuser password never reached the command line or the log
    assert!(!node.log_text().contains("super-pass"));
}

#[test]
fn health_endpoints_answer_as_patroni_does_for_a_primary_and_bad_requests_get_json_errors() {
    if !require_root("health endpoints") {
        return;
    }
    let root = TestDir::new();
    let mut node = Node::single(root.path(), "pg1");
    node.start();
    node.wait_primary();
    let p = node.api_port;
    for (path, code) in [
        ("/", 200),
        ("/primary", 200),
        ("/read-write", 200),
        ("/leader", 200),
        ("/read-only", 200),
        ("/health", 200),
        ("/liveness", 200),
        ("/readiness", 200),
        ("/replica", 503),
        ("/sync", 503),
        ("/async", 503),
        ("/replica?lag=16MB", 503),
        ("/standby-leader", 503),
        ("/read-only-synchronous", 200),
        // the primary and leader checks ignore tag filters (Patroni's rule)
        ("/?tag_dc=nowhere", 200),
        ("/leader?tag_dc=nowhere", 200),
        ("/read-only?tag_dc=nowhere", 503),
        ("/readiness?lag=1&mode=write", 200),
    ] {
        let a = http(p, "GET", path).unwrap();
        assert_eq!(a.status, code, "GET {path}");
        assert_eq!(
            a.json()["name"],
            "pg1",
            "GET {path} returns the status document"
        );
        let head = http(p, "HEAD", path).unwrap();
        assert_eq!(head.status, code, "HEAD {path}");
        assert!(head.body.is_empty(), "HEAD {path} has no body");
        let options = http(p, "OPTIONS", path).unwrap();
        assert_eq!(options.status, code, "OPTIONS {path}");
        assert!(
            options.body.is_empty(),
            "OPTIONS {path} has no body: {:?}",
            options.body
        );
    }
    // malformed requests: 4xx with a JSON error, never a 500, never a hang
    for (method, path, code) in [
        ("GET", "/nope", 404),
        ("POST", "/status", 405),
        ("DELETE", "/primary", 405),
        ("GET", "/replica?lag=lots", 400),
        ("GET", "/replica?replication_state=dancing", 400),
        ("GET", "/readiness?mode=sideways", 400),
    ] {
        let a = http(p, method, path).unwrap();
        assert_eq!(a.status, code, "{method} {path}");
        assert!(
            a.json()["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{method} {path}: {}",
            a.body
        );
    }
    let garbage = http_raw(p, b"BLAH\r\n\r\n").unwrap();
    assert!(
        (400..500).contains(&garbage.status),
        "garbage request line: {}",
        garbage.status
    );
    // the agent is still fine
    assert_eq!(http(p, "GET", "/health").unwrap().status, 200);
    // `pgwarden status` prints a table, `--json` the document
    let out = std::process::Command::new(pgwarden_bin())
        .args(["status", "--config"])
        .arg(&node.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("role            primary"), "{table}");
    assert!(table.contains("timeline 1"), "{table}");
    let out = std::process::Command::new(pgwarden_bin())
        .args(["status", "--json", "--url"])
        .arg(format!("http://127.0.0.1:{p}"))
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["role"], "primary");
}

/// A client that stops in the middle of its request is dropped: one that
/// never finishes its headers after the header timeout (10 s), one that
/// announces a body and sends a byte of it with a 408 after the body
/// timeout (10 s), and nothing it asked for happens. Meanwhile, and after,
/// the health checks answer.
#[test]
fn a_client_that_stalls_mid_request_is_dropped_and_the_api_keeps_answering() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    if !require_root("stalled clients") {
        return;
    }
    let root = TestDir::new();
    let mut node = Node::single(root.path(), "pg1");
    node.start();
    node.wait_primary();
    let p = node.api_port;
    let open = |request: &str| {
        let mut s = TcpStream::connect(("127.0.0.1", p)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(40)))
            .expect("read timeout");
        s.write_all(request.as_bytes()).expect("write");
        s
    };
    let started = std::time::Instant::now();
    let mut headers = open("GET /status HTTP/1.1\r\nHost: x\r\n");
    let mut body = open(&format!(
        "POST /pause HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    ));
    // The API answers others meanwhile.
    assert_eq!(http(p, "GET", "/health").unwrap().status, 200);
    let mut answer = String::new();
    let read = body.read_to_string(&mut answer);
    assert!(read.is_ok(), "the server closes after its answer: {read:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    let mut rest = Vec::new();
    let read = headers.read_to_end(&mut rest);
    assert!(
        read.is_ok(),
        "the server closes a connection whose headers never end: {read:?}"
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(35),
        "both stalled connections were dropped within the timeouts, took {took:?}"
    );
    assert_eq!(http(p, "GET", "/health").unwrap().status, 200);
    let doc = node.status().unwrap();
    assert_eq!(doc["agent"]["paused"], false, "the stalled pause never ran");
}

#[test]
fn given_postgres_that_cannot_start_then_health_is_503_and_liveness_200() {
    if !require_root("stopped postgres") {
        return;
    }
    let root = TestDir::new();
    let mut node = Node::new(root.path(), "pg1");
    // initdb succeeds; the postmaster then refuses to start with this library missing
    node.extra_parameters
        .push("shared_preload_libraries = \"pgwarden_no_such_library\"".into());
    node.write_config(&[("pg1".into(), node.api_port)]);
    node.start();
    let doc = node.wait_status(SLOW, "a crashed postgres", |d| d["state"] == "crashed");
    assert_eq!(doc["role"], "primary", "the data directory is a primary's");
    let p = node.api_port;
    for (path, code) in [
        ("/health", 503),
        ("/primary", 503),
        ("/", 503),
        ("/replica", 503),
        ("/read-only", 503),
        // Patroni's readiness: the lease holder is ready, whatever its server does
        ("/readiness", 200),
        ("/liveness", 200),
        ("/leader", 200),
    ] {
        assert_eq!(http(p, "GET", path).unwrap().status, code, "GET {path}");
    }
    assert!(
        node.log_text().contains("PostgreSQL exited unexpectedly"),
        "{}",
        node.log_text()
    );
}

#[test]
fn given_a_killed_postmaster_then_the_agent_restarts_it_and_health_returns() {
    if !require_root("crash restart") {
        return;
    }
    let root = TestDir::new();
    let mut node = Node::single(root.path(), "pg1");
    node.start();
    node.wait_primary();
    node.psql("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .unwrap();
    let old = node.postmaster_pid().unwrap();
    kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
    wait_for(SLOW, "the agent to notice and restart PostgreSQL", || {
        let new = node.postmaster_pid()?;
        (new != old
            && process_alive(new)
            && http(node.api_port, "GET", "/health").ok()?.status == 200)
            .then_some(())
    });
    node.wait_primary();
    assert_eq!(node.psql("SELECT count(*) FROM t").unwrap(), "1");
    let log = node.log_text();
    assert!(
        log.contains("PostgreSQL exited unexpectedly") && log.contains("restarting in"),
        "{log}"
    );
}

#[test]
fn given_a_restarted_agent_then_it_adopts_the_running_postmaster() {
    if !require_root("adoption") {
        return;
    }
    let root = TestDir::new();
    let mut node = Node::single(root.path(), "pg1");
    node.start();
    node.wait_primary();
    let pid = node.postmaster_pid().unwrap();
    node.kill_agent();
    assert!(
        process_alive(pid),
        "kill -9 of the agent leaves PostgreSQL running"
    );
    assert_eq!(node.psql("SELECT 1").unwrap(), "1");
    node.start();
    let doc = node.wait_primary();
    assert_eq!(doc["postgres"]["pid"], pid, "same postmaster");
    assert_eq!(node.postmaster_pid(), Some(pid));
    assert!(
        node.log_text().contains("adopted the running postmaster"),
        "{}",
        node.log_text()
    );
    assert_eq!(http(node.api_port, "GET", "/primary").unwrap().status, 200);
}

#[test]
fn sigterm_leaves_postgres_running_and_the_next_agent_adopts_it_as_primary() {
    if !require_root("SIGTERM") {
        return;
    }
    let root = TestDir::new();
    let mut node = Node::single(root.path(), "pg1");
    node.start();
    node.wait_primary();
    let pid = node.postmaster_pid().unwrap();
    // SIGTERM (`systemctl restart`, an upgrade): the agent exits 0 and
    // PostgreSQL takes writes on
    node.signal_agent(Signal::SIGTERM);
    assert_eq!(node.wait_agent(SLOW), Some(0));
    assert!(process_alive(pid), "SIGTERM stopped PostgreSQL");
    node.psql("CREATE TABLE while_no_agent (id int)")
        .expect("writable while the agent is away");
    node.start();
    let doc = node.wait_primary();
    assert_eq!(doc["postgres"]["pid"], pid, "the same postmaster");
    assert_eq!(http(node.api_port, "GET", "/primary").unwrap().status, 200);
    let log = node.log_text();
    assert!(log.contains("adopted the running postmaster"), "{log}");
    assert!(!log.contains("fencing"), "{log}");
}

#[test]
fn sigint_stops_postgres_cleanly_and_exits_0_and_sighup_applies_reloadable_parameters() {
    if !require_root("signals") {
        return;
    }
    let root = TestDir::new();
    let mut node = Node::single(root.path(), "pg1");
    node.start();
    node.wait_primary();
    assert_eq!(node.psql("SHOW work_mem").unwrap(), "4MB");

    // SIGHUP: a reloadable parameter applies, a restart-only one is reported
    node.extra_parameters = vec!["work_mem = \"8MB\"".into(), "max_connections = 77".into()];
    node.write_config(&[("pg1".into(), node.api_port)]);
    node.signal_agent(Signal::SIGHUP);
    wait_for(SLOW, "work_mem to become 8MB", || {
        (node.psql("SHOW work_mem").ok()? == "8MB").then_some(())
    });
    node.wait_status(SLOW, "pending_restart", |d| {
        d["postgres"]["pending_restart"] == true
    });

    // SIGINT (`systemctl stop`): fast stop, exit 0, nothing left running
    let pid = node.postmaster_pid().unwrap();
    node.signal_agent(Signal::SIGINT);
    assert_eq!(node.wait_agent(SLOW), Some(0));
    assert!(
        !process_alive(pid),
        "postmaster {pid} still running after SIGINT"
    );
    assert!(
        !node.data_dir.join("postmaster.pid").exists(),
        "a clean shutdown removes postmaster.pid"
    );
    let control = std::process::Command::new(pg_bin_dir().join("pg_controldata"))
        .arg(&node.data_dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&control.stdout);
    assert!(
        text.contains("Database cluster state:               shut down"),
        "{text}"
    );
}

#[test]
fn given_a_stray_file_in_the_data_dir_then_it_is_renamed_aside_not_deleted() {
    if !require_root("foreign data dir") {
        return;
    }
    let root = TestDir::new();
    let mut node = Node::single(root.path(), "pg1");
    std::fs::create_dir_all(&node.data_dir).unwrap();
    std::fs::write(node.data_dir.join("precious.txt"), "keep me").unwrap();
    let pg = nix::unistd::User::from_name("postgres").unwrap().unwrap();
    nix::unistd::chown(&node.data_dir, Some(pg.uid), Some(pg.gid)).unwrap();
    node.start();
    node.wait_primary();
    let aside: Vec<_> = std::fs::read_dir(root.path().join("pg1"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("data.foreign-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        std::fs::read_to_string(aside[0].path().join("precious.txt")).unwrap(),
        "keep me"
    );
    assert!(
        node.log_text().contains("renamed it to"),
        "the log says where the files went"
    );
}

#[test]
fn given_a_data_dir_owned_by_root_then_the_agent_refuses_with_the_fix() {
    if !require_root("root-owned data dir") {
        return;
    }
    let root = TestDir::new();
    let mut node = Node::single(root.path(), "pg1");
    std::fs::create_dir_all(&node.data_dir).unwrap();
    node.start();
    assert_eq!(node.wait_agent(Duration::from_secs(30)), Some(1));
    let log = node.log_text();
    assert!(
        log.contains("owned by root") && log.contains("chown -R postgres"),
        "{log}"
    );
}

#[test]
fn under_systemd_the_agent_says_ready_when_postgres_accepts_connections_and_pings_the_watchdog() {
    if !require_root("sd_notify") {
        return;
    }
    let root = TestDir::new();
    let socket_path = root.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut node = Node::single(root.path(), "pg1");
    node.start_with_env(&[
        ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
        ("WATCHDOG_USEC", "30000000"),
    ]);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = std::time::Instant::now() + SLOW;
    while std::time::Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            if msg.contains("READY=1") {
                // READY only once PostgreSQL accepts connections
                assert_eq!(node.psql("SELECT 1").unwrap(), "1");
            }
            seen.push(msg);
        }
        if seen.iter().any(|m| m.contains("READY=1"))
            && seen.iter().any(|m| m.contains("WATCHDOG=1"))
            && seen
                .iter()
                .any(|m| m.starts_with("STATUS=primary, running"))
        {
            return;
        }
    }
    panic!("expected READY=1, WATCHDOG=1 and STATUS=primary, running; got {seen:?}");
}

#[test]
fn given_an_agent_started_as_postgres_then_it_bootstraps_without_switching_users() {
    if !require_root("agent as postgres") {
        return;
    }
    let root = TestDir::new();
    let mut node = Node::single(root.path(), "pg1");
    node.start_as_postgres();
    let doc = node.wait_primary();
    assert_eq!(doc["timeline"], 1);
    let postgres_uid = nix::unistd::User::from_name("postgres")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    assert_eq!(process_uid(node.agent_pid().unwrap()), Some(postgres_uid));
    assert_eq!(
        process_uid(node.postmaster_pid().unwrap()),
        Some(postgres_uid)
    );
    assert!(
        !node.log_text().contains("running as root"),
        "{}",
        node.log_text()
    );
    assert_eq!(
        node.psql("SELECT rolsuper FROM pg_roles WHERE rolname = 'replicator'")
            .unwrap(),
        "f"
    );
}

#[test]
fn with_a_required_watchdog_the_primary_feeds_it_and_disarms_it_on_stop_and_without_one_never_becomes_primary(
) {
    if !require_root("watchdog") {
        return;
    }
    // a regular file stands in for /dev/watchdog: it records every feed
    let root = TestDir::new();
    let device = root.path().join("watchdog");
    std::fs::write(&device, b"").unwrap();
    let mut node = Node::single(root.path(), "pg1");
    node.start_with_env(&[
        ("PGWARDEN_NODE__WATCHDOG", "required"),
        ("PGWARDEN_NODE__WATCHDOG_DEVICE", device.to_str().unwrap()),
    ]);
    node.wait_primary();
    wait_for(SLOW, "feeds", || {
        (std::fs::read(&device).ok()?.len() >= 3).then_some(())
    });
    node.signal_agent(Signal::SIGINT);
    assert_eq!(node.wait_agent(SLOW), Some(0));
    let fed = std::fs::read(&device).unwrap();
    assert_eq!(fed.last(), Some(&b'V'), "magic close on stop");
    assert!(fed[..fed.len() - 1].iter().all(|b| *b == 0));

    let root = TestDir::new();
    let mut node = Node::single(root.path(), "pg1");
    let missing = root.path().join("no-watchdog");
    node.start_with_env(&[
        ("PGWARDEN_NODE__WATCHDOG", "required"),
        ("PGWARDEN_NODE__WATCHDOG_DEVICE", missing.to_str().unwrap()),
    ]);
    let doc = node.wait_status(SLOW, "the reason", |d| {
        d["reason"].as_str().is_some_and(|r| r.contains("watchdog"))
    });
    assert_ne!(doc["role"], "primary");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(http(node.api_port, "GET", "/primary").unwrap().status, 503);
}

#[test]
fn a_ttl_reload_on_a_running_primary_waits_for_the_agent_restart_and_never_bounces_it() {
    if !require_root("ttl reload") {
        return;
    }
    let root = TestDir::new();
    let mut node = Node::single(root.path(), "pg1");
    node.start();
    node.wait_primary();
    let pid = node.postmaster_pid().unwrap();
    // a lease six times longer, and a parameter that does apply now
    node.ttl = "60s".into();
    node.extra_parameters.push("work_mem = \"8MB\"".into());
    node.write_config(&[("pg1".into(), node.api_port)]);
    node.signal_agent(Signal::SIGHUP);
    wait_for(SLOW, "work_mem to become 8MB", || {
        (node.psql("SHOW work_mem").ok()? == "8MB").then_some(())
    });
    holds_for(Duration::from_secs(4), "the primary stays", || {
        let code = http(node.api_port, "GET", "/primary")
            .map_err(|e| e.to_string())?
            .status;
        if code != 200 || node.postmaster_pid() != Some(pid) {
            return Err(format!(
                "/primary {code}, postmaster {:?}",
                node.postmaster_pid()
            ));
        }
        Ok(())
    });
    let log = node.log_text();
    assert!(
        log.contains("kept at their running values until the agent restarts: cluster.ttl"),
        "{log}"
    );
    assert!(!log.contains("fencing"), "{log}");
}
