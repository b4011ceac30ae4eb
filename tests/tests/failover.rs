//! Automatic failover on real PostgreSQL with real agents: node death,
//! PostgreSQL crash, a frozen agent, a witness, and who may be promoted.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pgwarden_tests::writer::{Writer, WriterTarget};
use pgwarden_tests::*;

const DATA: [&str; 3] = ["pg1", "pg2", "pg3"];

fn data_cluster(root: &TestDir, names: &[&str], witness: &[&str]) -> Cluster {
    let witness: Vec<String> = witness.iter().map(|s| s.to_string()).collect();
    Cluster::new(
        root.path(),
        names,
        move |n| witness.iter().any(|w| w == n),
        "5s",
        "500ms",
    )
}

/// kill -9 of the agent and its postmaster: the node is dead.
fn kill_node(node: &mut Node) {
    let pm = node.postmaster_pid();
    node.kill_agent();
    if let Some(pm) = pm {
        let _ = kill(Pid::from_raw(pm), Signal::SIGKILL);
    }
}

fn timeline(node: &Node) -> Option<u64> {
    node.status()?["timeline"].as_u64()
}

#[test]
fn given_the_primary_node_dies_then_a_standby_takes_over_and_the_old_one_rejoins_by_rewind() {
    if !require_root("node death") {
        return;
    }
    let root = TestDir::new();
    let mut c = data_cluster(&root, &DATA, &[]);
    c.start_all();
    let old = c.wait_streaming(&DATA);
    c.node(&old)
        .psql("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100)")
        .unwrap();
    let writer = Writer::start(c.nodes.iter().map(WriterTarget::of).collect());
    writer.wait_routed_accept(&old, Instant::now(), SLOW);
    let killed = Instant::now();
    kill_node(c.node(&old));
    let rest: Vec<&str> = DATA.iter().copied().filter(|n| *n != old).collect();
    let new = wait_for(SLOW, "a new primary", || {
        rest.iter()
            .find(|n| {
                http(
                    c.nodes.iter().find(|x| x.name == **n).unwrap().api_port,
                    "GET",
                    "/primary",
                )
                .is_ok_and(|a| a.status == 200)
            })
            .map(|n| n.to_string())
    });
    eprintln!("new primary {new} after {:?}", killed.elapsed());
    writer.wait_routed_accept(&new, killed, SLOW);
    let report = writer.stop();
    eprintln!("{}", report.summary());
    assert!(
        report.overlaps().is_empty(),
        "two members writable at once: {:?}",
        report.overlaps()
    );
    let first_new = report
        .first_accept_after(&new, killed)
        .expect("the new primary accepted writes");
    eprintln!(
        "kill -9 to first write accepted by {new}: {:?}",
        first_new - killed
    );
    let new_node = c.node(&new);
    let missing = report.missing_on(new_node.pg_port);
    eprintln!(
        "acknowledged writes the new primary lacks (asynchronous replication): {} {:?}",
        missing.len(),
        missing
    );
    new_node.psql("INSERT INTO t VALUES (101)").unwrap();
    assert_eq!(timeline(new_node), Some(2));
    let history = http(new_node.api_port, "GET", "/pgwarden/history")
        .unwrap()
        .json();
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["new_leader"], new.as_str());
    assert!(
        last["reason"].as_str().unwrap().contains("promoted"),
        "{last}"
    );
    assert_eq!(last["timeline"], 2);
    // The promotion was noted before it was asked for, and is forgotten
    // once seen finished (a note left behind would keep the member
    // "possibly promoting").
    let state_file = new_node.data_dir.join("pgwarden.state");
    wait_for(
        SLOW,
        "the finished promotion forgotten in pgwarden.state",
        || {
            let state: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&state_file).ok()?).ok()?;
            state.get("promotion_requested")?.is_null().then_some(())
        },
    );
    // the old node comes back: rewind, then a standby of the new primary
    c.node(&old).start();
    c.wait_streaming(&DATA);
    let old_node = c.node(&old);
    assert!(
        old_node.log_text().contains("pg_rewind"),
        "{}",
        old_node.log_text()
    );
    wait_for(SLOW, "the new row on the old primary", || {
        (old_node.psql("SELECT count(*) FROM t").ok()? == "101").then_some(())
    });
    let old_history = http(old_node.api_port, "GET", "/pgwarden/history")
        .unwrap()
        .json();
    assert!(
        old_history
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"].as_str().is_some_and(|r| r.contains("rejoined"))),
        "{old_history}"
    );
}

#[test]
fn given_only_postgres_crashes_on_the_primary_then_it_restarts_in_place_without_failover() {
    if !require_root("postgres crash") {
        return;
    }
    let root = TestDir::new();
    let mut c = data_cluster(&root, &DATA, &[]);
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    let pm = c.node(&primary).postmaster_pid().unwrap();
    kill(Pid::from_raw(pm), Signal::SIGKILL).unwrap();
    let node = c.node(&primary);
    wait_for(SLOW, "a new postmaster", || {
        node.postmaster_pid()
            .filter(|p| *p != pm && process_alive(*p))
    });
    let again = c.wait_streaming(&DATA);
    assert_eq!(again, primary, "no failover");
    let node = c.node(&primary);
    assert_ne!(node.postmaster_pid(), Some(pm));
    assert_eq!(timeline(node), Some(1), "no timeline change");
    node.psql("CREATE TABLE after_crash (id int)").unwrap();
}

#[test]
fn given_two_data_members_and_a_witness_then_either_data_member_survives_the_others_death() {
    if !require_root("witness") {
        return;
    }
    let root = TestDir::new();
    let names = ["pg1", "pg2", "w1"];
    let mut c = data_cluster(&root, &names, &["w1"]);
    c.start_all();
    let first = c.wait_streaming(&["pg1", "pg2"]);
    assert_eq!(c.node("w1").status().unwrap()["role"], "witness");
    kill_node(c.node(&first));
    let other = if first == "pg1" { "pg2" } else { "pg1" };
    let doc = c
        .node(other)
        .wait_status(SLOW, "the survivor to be primary", |d| {
            d["role"] == "primary" && d["state"] == "running" && d["leader"]["name"] == other
        });
    assert_eq!(doc["timeline"], 2);
    assert_eq!(
        http(c.node(other).api_port, "GET", "/primary")
            .unwrap()
            .status,
        200
    );
    // and back: the dead one rejoins, then the survivor dies in turn
    c.node(&first).start();
    c.wait_streaming(&["pg1", "pg2"]);
    kill_node(c.node(other));
    c.node(&first)
        .wait_status(SLOW, "the first to be primary again", |d| {
            d["role"] == "primary" && d["state"] == "running"
        });
}

#[test]
fn a_nofailover_member_is_never_promoted() {
    if !require_root("nofailover") {
        return;
    }
    // pg1, pg2 (nofailover), w1: when pg1 dies, pg2 must stay a standby
    let root = TestDir::new();
    let mut c = data_cluster(&root, &["pg1", "pg2", "w1"], &["w1"]);
    for n in &mut c.nodes {
        let text = std::fs::read_to_string(&n.config).unwrap();
        let text = text.replace("{ name = \"pg2\",", "{ nofailover = true, name = \"pg2\",");
        std::fs::write(&n.config, text).unwrap();
    }
    c.node("pg2").start();
    c.node("w1").start();
    // pg2 alone with the witness: a majority, but it never bootstraps
    c.node("pg2")
        .wait_status(SLOW, "pg2's first loop", |d| d["reason"].is_string());
    let pg2 = c.node("pg2");
    holds_for(Duration::from_secs(8), "pg2 stays empty", || {
        let doc = pg2.status().ok_or("no status")?;
        if pg2.data_dir.join("PG_VERSION").exists() || doc["role"] != "uninitialized" {
            return Err(format!("nofailover member made a cluster: {doc}"));
        }
        Ok(())
    });
    c.node("pg1").start();
    let primary = c.wait_streaming(&["pg1", "pg2"]);
    assert_eq!(primary, "pg1");
    kill_node(c.node("pg1"));
    let pg2 = c.node("pg2");
    holds_for(Duration::from_secs(10), "pg2 stays a standby", || {
        let doc = pg2.status().ok_or("no status")?;
        if doc["role"] != "replica" {
            return Err(format!("nofailover member left the replica role: {doc}"));
        }
        Ok(())
    });
}

#[test]
fn given_a_frozen_primary_agent_then_the_fence_guard_stops_postgres_before_anyone_else_accepts_a_write(
) {
    if !require_root("frozen agent") {
        return;
    }
    let root = TestDir::new();
    let mut c = data_cluster(&root, &DATA, &[]);
    c.start_all();
    let old = c.wait_streaming(&DATA);
    let writer = Writer::start(c.nodes.iter().map(WriterTarget::of).collect());
    writer.wait_routed_accept(&old, Instant::now(), SLOW);
    let old_pm = c.node(&old).postmaster_pid().unwrap();
    let stopped = Instant::now();
    c.node(&old).signal_agent(Signal::SIGSTOP);
    let rest: Vec<String> = DATA
        .iter()
        .filter(|n| **n != old)
        .map(|n| n.to_string())
        .collect();
    let ports: Vec<(String, u16)> = c
        .nodes
        .iter()
        .filter(|n| rest.contains(&n.name))
        .map(|n| (n.name.clone(), n.api_port))
        .collect();
    let new = wait_for(SLOW, "a new primary", || {
        ports
            .iter()
            .find(|(_, p)| http(*p, "GET", "/primary").is_ok_and(|a| a.status == 200))
            .map(|(n, _)| n.clone())
    });
    writer.wait_routed_accept(&new, stopped, SLOW);
    let report = writer.stop();
    eprintln!("{}", report.summary());
    // the guard stopped the old postmaster while its agent was frozen
    assert!(
        !process_alive(old_pm),
        "postmaster {old_pm} of the frozen primary still runs"
    );
    let server_log = std::fs::read_to_string(format!("{}.log", c.node(&old).data_dir.display()))
        .unwrap_or_default();
    assert!(
        server_log.contains("fence-guard") && server_log.contains("sending SIGINT"),
        "{server_log}"
    );
    let last_old = report
        .last_accept(&old)
        .expect("the old primary accepted writes before");
    let first_new = report
        .first_accept_after(&new, stopped)
        .expect("the new primary accepted writes");
    assert!(
        last_old < first_new,
        "{old} accepted a write after {new} did"
    );
    assert!(
        report.overlaps().is_empty(),
        "two members writable at once: {:?}",
        report.overlaps()
    );
    eprintln!(
        "SIGSTOP -> last write on {old}: {:?}; first write on {new}: {:?}",
        last_old.saturating_duration_since(stopped),
        first_new - stopped
    );
    // SIGCONT: the old agent learns it lost, and rejoins
    c.node(&old).signal_agent(Signal::SIGCONT);
    c.wait_streaming(&DATA);
    let log = c.node(&old).log_text();
    assert!(log.contains("lost the leader lease"), "{log}");
    assert_eq!(
        c.node(&old).status().unwrap()["leader"]["name"],
        new.as_str()
    );
}

#[test]
fn a_lagging_standby_is_not_promoted_while_a_good_one_exists() {
    if !require_root("lagging standby") {
        return;
    }
    let root = TestDir::new();
    let mut c = data_cluster(&root, &DATA, &[]);
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    let standbys: Vec<String> = DATA
        .iter()
        .filter(|n| **n != primary)
        .map(|n| n.to_string())
        .collect();
    // the first by name would win a tie: make that one lag
    let (lagging, good) = (standbys[0].clone(), standbys[1].clone());
    let receiver = c
        .node(&lagging)
        .psql("SELECT pid FROM pg_stat_wal_receiver")
        .unwrap();
    let receiver: i32 = receiver.parse().expect("walreceiver pid");
    kill(Pid::from_raw(receiver), Signal::SIGSTOP).unwrap();
    c.node(&primary)
        .psql("CREATE TABLE big AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 30000) g")
        .unwrap();
    wait_for(SLOW, "the good standby to have the table", || {
        (c.nodes
            .iter()
            .find(|n| n.name == good)?
            .psql("SELECT count(*) FROM big")
            .ok()?
            == "30000")
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    kill_node(c.node(&primary));
    let _ = kill(Pid::from_raw(receiver), Signal::SIGCONT);
    let doc = c
        .node(&good)
        .wait_status(SLOW, "the good standby to be primary", |d| {
            d["role"] == "primary" && d["state"] == "running"
        });
    assert_eq!(doc["leader"]["name"], good.as_str());
    assert_ne!(c.node(&lagging).status().unwrap()["role"], "primary");
    assert!(
        c.node(&good).log_text().contains("promoting"),
        "the promotion is logged with its reason"
    );
}

fn guard_pid(node: &Node) -> Option<i32> {
    let text = std::fs::read_to_string(format!("{}.fence.pid", node.data_dir.display())).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

#[test]
fn the_fence_guard_runs_beside_the_primary_only_and_survives_an_agent_restart() {
    if !require_root("fence guard") {
        return;
    }
    let root = TestDir::new();
    let mut c = data_cluster(&root, &DATA, &[]);
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    let node = c.node(&primary);
    let guard = wait_for(SLOW, "the fence guard", || {
        guard_pid(node).filter(|p| process_alive(*p))
    });
    for n in DATA.iter().filter(|n| **n != primary) {
        let standby = c.nodes.iter().find(|x| x.name == *n).unwrap();
        assert!(
            guard_pid(standby).is_none(),
            "{n} is a standby and has a fence guard"
        );
    }
    // kill -9 of the agent: the guard and PostgreSQL stay; the new agent takes the guard over
    let pm = c.node(&primary).postmaster_pid().unwrap();
    c.node(&primary).kill_agent();
    assert!(process_alive(guard), "the guard died with the agent");
    c.node(&primary).start();
    c.node(&primary).wait_primary();
    let node = c.node(&primary);
    assert_eq!(
        node.postmaster_pid(),
        Some(pm),
        "PostgreSQL was not restarted"
    );
    assert_eq!(guard_pid(node), Some(guard));
    assert!(
        node.log_text()
            .contains("took over the running fence guard"),
        "{}",
        node.log_text()
    );
    // a clean stop (SIGINT, what `systemctl stop` sends): PostgreSQL stops,
    // and the guard leaves with it
    node.signal_agent(Signal::SIGINT);
    assert_eq!(c.node(&primary).wait_agent(SLOW), Some(0));
    wait_for(Duration::from_secs(10), "the guard to leave", || {
        (!process_alive(guard)).then_some(())
    });
}
