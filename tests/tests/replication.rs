//! Three (and four) real agents with real PostgreSQL build a streaming
//! replication cluster by themselves, and report it.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pgwarden_tests::*;

const DATA: [&str; 3] = ["pg1", "pg2", "pg3"];

fn data_cluster(root: &TestDir, names: &[&str]) -> Cluster {
    Cluster::new(root.path(), names, |_| false, "5s", "500ms")
}

fn list(node: &Node) -> String {
    let out = std::process::Command::new(pgwarden_bin())
        .args(["list", "--url"])
        .arg(format!("http://127.0.0.1:{}", node.api_port))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn three_empty_members_become_one_primary_and_two_streaming_standbys() {
    if !require_root("replication") {
        return;
    }
    let root = TestDir::new();
    let mut c = data_cluster(&root, &DATA);
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    let p = c.node(&primary);
    assert_eq!(
        p.psql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
            .unwrap(),
        "2"
    );
    // one physical slot per standby, in use
    let standbys: Vec<&str> = DATA.iter().copied().filter(|n| *n != primary).collect();
    let slots = p.psql("SELECT string_agg(slot_name || ':' || active, ',' ORDER BY slot_name) FROM pg_replication_slots").unwrap();
    assert_eq!(slots, format!("{}:true,{}:true", standbys[0], standbys[1]));
    // the primary's status lists both senders with every column and lag_bytes
    // (its document is as of its last loop: wait for the loop to see them)
    let doc = p.wait_status(SLOW, "two wal senders with replies", |d| {
        d["wal_senders"]
            .as_array()
            .is_some_and(|a| a.len() == 2 && a.iter().all(|s| s["replay_lsn"].is_string()))
    });
    let senders = doc["wal_senders"].as_array().unwrap();
    assert_eq!(senders.len(), 2);
    for s in senders {
        assert!(
            standbys.contains(&s["application_name"].as_str().unwrap()),
            "{s}"
        );
        assert!(
            s["lag_bytes"].is_u64() && s["sent_lsn"].is_string() && s["sync_state"] == "async",
            "{s}"
        );
    }
    assert_eq!(
        doc["replication"].as_array().unwrap().len(),
        2,
        "Patroni's field"
    );
    p.psql("CREATE TABLE t (id int); INSERT INTO t VALUES (42)")
        .unwrap();
    for name in &standbys {
        let s = c.node(name);
        let doc = s.status().unwrap();
        assert_eq!(doc["wal_receiver"]["slot_name"], *name);
        assert_eq!(doc["wal_receiver_problem"], serde_json::Value::Null);
        assert!(doc["xlog"]["replayed_location"].is_u64());
        wait_for(SLOW, "the row on the standby", || {
            (s.psql("SELECT id FROM t").ok()? == "42").then_some(())
        });
        assert_eq!(http(s.api_port, "GET", "/replica").unwrap().status, 200);
        assert_eq!(
            http(
                s.api_port,
                "GET",
                "/replica?lag=1MB&replication_state=streaming"
            )
            .unwrap()
            .status,
            200
        );
        assert_eq!(http(s.api_port, "GET", "/primary").unwrap().status, 503);
        assert_eq!(http(s.api_port, "GET", "/read-only").unwrap().status, 200);
    }
    assert_eq!(
        http(c.node(&primary).api_port, "GET", "/replica")
            .unwrap()
            .status,
        503
    );
    // `pgwarden list` shows the whole cluster from any member (each row as
    // of that member's last loop: wait for the loops to have seen it all)
    let standby = c.node(standbys[0]);
    let table = wait_for(SLOW, "the list to show both standbys streaming", || {
        let t = list(standby);
        (t.matches("streaming").count() == 2).then_some(t)
    });
    assert!(table.contains(&format!("leader: {primary}")), "{table}");
    assert_eq!(table.matches("streaming").count(), 2, "{table}");
    for n in DATA {
        assert!(table.contains(&format!("| {n} ")), "{table}");
    }
    // `/pgwarden/cluster` has every member's document
    let cluster = http(c.nodes[0].api_port, "GET", "/pgwarden/cluster")
        .unwrap()
        .json();
    assert_eq!(cluster["members"].as_array().unwrap().len(), 3);
    assert_eq!(cluster["leader"], primary.as_str());
}

#[test]
fn given_a_member_down_at_first_bootstrap_then_nobody_runs_initdb_until_it_is_back() {
    if !require_root("bootstrap waits") {
        return;
    }
    let root = TestDir::new();
    let mut c = data_cluster(&root, &DATA);
    c.node("pg1").start();
    c.node("pg2").start();
    // long enough for the lease (3 s ttl + start-up silence) and several loops
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        for n in ["pg1", "pg2"] {
            let node = c.node(n);
            assert!(
                !node.data_dir.join("PG_VERSION").exists(),
                "{n} ran initdb with pg3 down"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for n in ["pg1", "pg2"] {
        let doc = c.node(n).status().unwrap();
        assert_eq!(doc["role"], "uninitialized");
        let reason = doc["reason"].as_str().unwrap_or_default().to_string();
        assert!(reason.contains("pg3"), "{n} says why it waits: {reason}");
    }
    c.node("pg3").start();
    c.wait_streaming(&DATA);
}

#[test]
fn a_fourth_member_added_with_sighup_clones_and_streams() {
    if !require_root("add a member") {
        return;
    }
    let root = TestDir::new();
    let mut c = data_cluster(&root, &DATA);
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    let mut pg4 = Node::new(root.path(), "pg4");
    pg4.ttl = "5s".into();
    pg4.loop_wait = "500ms".into();
    let mut members: Vec<(String, u16, bool)> = c
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.api_port, false))
        .collect();
    members.push(("pg4".into(), pg4.api_port, false));
    for n in &mut c.nodes {
        n.write_cluster_config(&members);
        n.signal_agent(Signal::SIGHUP);
    }
    pg4.write_cluster_config(&members);
    pg4.start();
    c.nodes.push(pg4);
    let now_primary = c.wait_streaming(&["pg1", "pg2", "pg3", "pg4"]);
    assert_eq!(now_primary, primary);
    let p = c.node(&primary);
    wait_for(SLOW, "pg4's slot on the primary", || {
        (p.psql("SELECT active FROM pg_replication_slots WHERE slot_name = 'pg4'")
            .ok()?
            == "t")
            .then_some(())
    });
    assert_eq!(
        p.psql("SELECT count(*) FROM pg_stat_replication").unwrap(),
        "3"
    );
}

#[test]
fn a_member_with_another_clusters_data_refuses_to_join_and_says_so() {
    if !require_root("foreign cluster") {
        return;
    }
    // another cluster, made by a one-member agent, then stopped
    let other_root = TestDir::new();
    let mut other = Node::single(other_root.path(), "pg3");
    other.start();
    let other_id = other.wait_primary()["postgres"]["system_identifier"].clone();
    other.signal_agent(Signal::SIGINT);
    assert_eq!(other.wait_agent(SLOW), Some(0));

    let root = TestDir::new();
    let mut c = data_cluster(&root, &DATA);
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    let cluster_id = c.node(&primary).status().unwrap()["postgres"]["system_identifier"].clone();
    assert_ne!(other_id, cluster_id);
    let victim = DATA.iter().copied().find(|n| *n != primary).unwrap();
    let node = c.node(victim);
    node.signal_agent(Signal::SIGINT);
    assert_eq!(node.wait_agent(SLOW), Some(0));
    // the operator points this member at the other cluster's data
    let aside = node.data_dir.with_extension("mine");
    std::fs::rename(&node.data_dir, &aside).unwrap();
    std::fs::rename(&other.data_dir, &node.data_dir).unwrap();
    node.start();
    let doc = node.wait_status(SLOW, "the refusal", |d| {
        d["reason"]
            .as_str()
            .is_some_and(|r| r.contains("different cluster"))
    });
    let reason = doc["reason"].as_str().unwrap();
    assert!(
        reason.contains(other_id.as_str().unwrap())
            && reason.contains(cluster_id.as_str().unwrap()),
        "{reason}"
    );
    assert_eq!(http(node.api_port, "GET", "/replica").unwrap().status, 503);
    assert_eq!(http(node.api_port, "GET", "/primary").unwrap().status, 503);
    // it stays out: the primary never streams to it
    std::thread::sleep(Duration::from_secs(3));
    let names = c
        .node(&primary)
        .psql("SELECT coalesce(string_agg(application_name, ','), '') FROM pg_stat_replication")
        .unwrap();
    assert!(!names.contains(victim), "{names}");
}

#[test]
fn a_wrong_replication_password_is_reported_as_the_receivers_problem() {
    if !require_root("wrong password") {
        return;
    }
    let root = TestDir::new();
    let mut c = data_cluster(&root, &DATA);
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    let victim = DATA.iter().copied().find(|n| *n != primary).unwrap();
    let wrong = root.path().join("secrets/wrong.pass");
    write_secret(&wrong, "not-the-password");
    let node = c.node(victim);
    node.signal_agent(Signal::SIGINT);
    assert_eq!(node.wait_agent(SLOW), Some(0));
    node.start_with_env(&[(
        "PGWARDEN_REPLICATION__PASSWORD_FILE",
        wrong.to_str().unwrap(),
    )]);
    let doc = node.wait_status(SLOW, "the authentication problem", |d| {
        d["wal_receiver_problem"]
            .as_str()
            .is_some_and(|p| p.contains("authentication failed"))
    });
    assert_eq!(doc["role"], "replica");
    // A running replica, as Patroni's /replica means it; not a streaming one.
    assert_eq!(http(node.api_port, "GET", "/replica").unwrap().status, 200);
    assert_eq!(
        http(node.api_port, "GET", "/replica?replication_state=streaming")
            .unwrap()
            .status,
        503
    );
    assert_eq!(
        http(
            node.api_port,
            "GET",
            "/replica?replication_state=in%20archive%20recovery"
        )
        .unwrap()
        .status,
        200
    );
    assert_eq!(http(node.api_port, "GET", "/health").unwrap().status, 200);
}

#[test]
fn pgwarden_demo_starts_converges_and_cleans_up() {
    if !require_root("demo") {
        return;
    }
    use std::io::{BufRead, BufReader};
    // the demo's three agents count like a cluster's (tests/README.md)
    let _slots = pgwarden_tests::slots::for_this_test(3);
    let root = TestDir::new();
    let dir = root.path().join("demo");
    let mut child = std::process::Command::new(pgwarden_bin())
        .args(["demo", "--dir"])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + SLOW;
    let mut table = Vec::new();
    let mut converged = false;
    while Instant::now() < deadline && !converged {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        if line.starts_with("--- after") {
            table.clear();
        }
        table.push(line);
        let streaming = table.iter().filter(|l| l.contains("streaming")).count();
        let primaries = table.iter().filter(|l| l.contains("| primary ")).count();
        converged = streaming == 2 && primaries == 1;
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, Signal::SIGINT);
    let status = child.wait().unwrap();
    assert!(
        converged,
        "the demo did not show one primary and two streaming replicas within {SLOW:?}"
    );
    assert!(status.success(), "demo exit: {status}");
    assert!(!dir.exists(), "the demo left {} behind", dir.display());
    let leftovers = std::process::Command::new("pgrep")
        .args(["-f", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        leftovers.stdout.is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&leftovers.stdout)
    );
}

#[test]
fn pgwarden_demo_in_an_existing_directory_removes_only_what_it_made() {
    if !require_root("demo in an existing directory") {
        return;
    }
    use std::io::{BufRead, BufReader};
    let _slots = pgwarden_tests::slots::for_this_test(3);
    let root = TestDir::new();
    let dir = root.path().join("mine");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("keep.txt"), "the user's").unwrap();
    let mut child = std::process::Command::new(pgwarden_bin())
        .args(["demo", "--dir"])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    assert!(
        lines.any(|l| l.contains("waiting for the cluster to converge")),
        "the demo did not start"
    );
    assert!(dir.join("pg1").is_dir() && dir.join("secrets").is_dir());
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, Signal::SIGINT);
    assert!(child.wait().unwrap().success());
    assert_eq!(
        std::fs::read_to_string(dir.join("keep.txt")).unwrap(),
        "the user's",
        "the demo touched what it did not make"
    );
    for made in ["secrets", "pg1", "pg2", "pg3"] {
        assert!(!dir.join(made).exists(), "{made} left behind");
    }
    // and it refuses to build over its own names
    std::fs::create_dir(dir.join("pg2")).unwrap();
    let out = std::process::Command::new(pgwarden_bin())
        .args(["demo", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pg2") && err.contains("already exists"),
        "{err}"
    );
    assert!(dir.join("pg2").is_dir() && dir.join("keep.txt").is_file());
}

#[test]
fn a_clone_longer_than_systemds_watchdog_completes_while_the_loop_keeps_pinging_it() {
    if !require_root("long clone under a watchdog") {
        return;
    }
    let root = TestDir::new();
    let mut c = Cluster::new(
        root.path(),
        &["pg1", "pg2", "w1"],
        |n| n == "w1",
        "5s",
        "500ms",
    );
    c.start_all();
    let primary = c.wait_streaming(&["pg1", "pg2"]);
    let joiner = if primary == "pg1" { "pg2" } else { "pg1" };
    // a database worth a clone of a few seconds at the rate below
    c.node(&primary)
        .psql("CREATE TABLE bulk AS SELECT g, repeat(md5(g::text), 30) AS pad FROM generate_series(1, 40000) g")
        .unwrap();
    // the joiner comes back with an empty data directory (a new disk)
    let node = c.node(joiner);
    node.signal_agent(Signal::SIGINT);
    assert_eq!(node.wait_agent(SLOW), Some(0));
    std::fs::rename(&node.data_dir, node.data_dir.with_extension("old")).unwrap();
    let socket_path = root.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    const WATCHDOG: Duration = Duration::from_secs(3);
    node.start_with_env(&[
        ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
        ("WATCHDOG_USEC", &WATCHDOG.as_micros().to_string()),
        ("PGWARDEN_REPLICATION__CLONE_MAX_RATE", "4MB"),
    ]);
    let started = Instant::now();
    let mut pings = vec![started];
    let mut cloning_since = None;
    let mut streaming = false;
    let mut buf = [0u8; 4096];
    while started.elapsed() < SLOW && !streaming {
        if let Ok(n) = socket.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            if msg.contains("WATCHDOG=1") {
                pings.push(Instant::now());
            }
            if msg.contains("STATUS=uninitialized, cloning") && cloning_since.is_none() {
                cloning_since = Some(Instant::now());
            }
        }
        streaming = c
            .node(joiner)
            .status()
            .is_some_and(|d| d["role"] == "replica" && d["wal_receiver"]["status"] == "streaming");
    }
    assert!(
        streaming,
        "{joiner} did not clone and stream within {SLOW:?}"
    );
    let cloning_since = cloning_since.expect("the status said cloning");
    let clone_took = c
        .node(joiner)
        .log_text()
        .contains("clone done")
        .then(|| cloning_since.elapsed())
        .expect("the clone finished");
    pings.push(Instant::now());
    let longest = pings
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    eprintln!(
        "clone ran for about {clone_took:?}; {} watchdog pings, the longest gap {longest:?}",
        pings.len()
    );
    assert!(
        clone_took > WATCHDOG,
        "the clone ({clone_took:?}) must outlast the watchdog ({WATCHDOG:?}) for this test to mean anything"
    );
    assert!(
        longest < WATCHDOG,
        "the watchdog went {longest:?} without a ping: systemd would have killed the agent mid-clone"
    );
}
