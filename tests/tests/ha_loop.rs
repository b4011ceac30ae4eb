//! The HA loop held to the lease's standard, on real PostgreSQL with real
//! agents: a stale old primary does not come back as primary, a primary
//! frozen right after its promotion is stopped by its guard before anyone
//! else promotes, and PostgreSQL crash loops end in a failover when a
//! standby can take over and in endless retries when none can.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pgwarden_tests::writer::{Writer, WriterTarget};
use pgwarden_tests::*;

const DATA: [&str; 3] = ["pg1", "pg2", "pg3"];

fn data_cluster(root: &TestDir) -> Cluster {
    Cluster::new(root.path(), &DATA, |_| false, "5s", "500ms")
}

/// kill -9 of the agent and its postmaster: the node is dead.
fn kill_node(node: &mut Node) {
    let pm = node.postmaster_pid();
    node.kill_agent();
    if let Some(pm) = pm {
        let _ = kill(Pid::from_raw(pm), Signal::SIGKILL);
    }
}

/// The member among `names` that runs as primary now, if one does.
fn running_primary(c: &Cluster, names: &[&str]) -> Option<String> {
    c.nodes
        .iter()
        .filter(|n| names.contains(&n.name.as_str()))
        .find(|n| {
            n.status()
                .is_some_and(|d| d["role"] == "primary" && d["state"] == "running")
        })
        .map(|n| n.name.clone())
}

#[test]
fn given_the_old_primary_comes_back_after_its_successor_died_then_it_never_serves_without_the_successors_write(
) {
    if !require_root("old primary comes back") {
        return;
    }
    let root = TestDir::new();
    let mut c = data_cluster(&root);
    c.start_all();
    // A is the primary; it dies.
    let a = c.wait_streaming(&DATA);
    c.node(&a)
        .psql("CREATE TABLE w (id int)")
        .expect("create the table");
    let rest: Vec<&str> = DATA.iter().copied().filter(|n| *n != a).collect();
    wait_for(SLOW, "the table on both standbys", || {
        rest.iter()
            .all(|n| {
                c.nodes
                    .iter()
                    .find(|x| x.name == *n)
                    .is_some_and(|x| x.psql("SELECT count(*) FROM w").is_ok())
            })
            .then_some(())
    });
    kill_node(c.node(&a));
    // B promotes and commits W, which reaches C; then B dies too.
    let b = wait_for(SLOW, "a new primary", || running_primary(&c, &rest));
    let other = *rest.iter().find(|n| **n != b).expect("the third member");
    c.node(&b)
        .psql("INSERT INTO w VALUES (42)")
        .expect("W on the new primary");
    wait_for(SLOW, "W on the third member", || {
        (c.nodes
            .iter()
            .find(|x| x.name == other)?
            .psql("SELECT count(*) FROM w WHERE id = 42")
            .ok()?
            == "1")
            .then_some(())
    });
    kill_node(c.node(&b));
    // A comes back. The member with W (on B's timeline) must lead; A must
    // never serve without W.
    c.node(&a).start();
    let came_back = Instant::now();
    let primary = wait_for(SLOW, "a primary again", || {
        if let Some(doc) = c.node(&a).status() {
            if doc["role"] == "primary" && doc["state"] == "running" {
                let has_w = c.node(&a).psql("SELECT count(*) FROM w WHERE id = 42");
                assert_eq!(
                    has_w.as_deref(),
                    Ok("1"),
                    "{a} serves as primary without the write its successor acknowledged: {doc}"
                );
            }
        }
        running_primary(&c, &[a.as_str(), other])
    });
    eprintln!(
        "{primary} leads {:?} after {a} came back",
        came_back.elapsed()
    );
    assert_eq!(
        primary, other,
        "the member that has W leads, not the stale {a}"
    );
    let node_a = c.node(&a);
    wait_for(SLOW, "W on the old primary, as a standby", || {
        (node_a.psql("SELECT count(*) FROM w WHERE id = 42").ok()? == "1").then_some(())
    });
    let doc = node_a.wait_status(SLOW, "A to be a replica", |d| {
        d["role"] == "replica" && d["state"] == "running"
    });
    assert_eq!(doc["leader"]["name"], other);
}

#[test]
fn given_a_new_primary_frozen_right_after_its_promotion_then_its_guard_stops_it_before_anyone_else_takes_writes(
) {
    if !require_root("frozen right after a promotion") {
        return;
    }
    let root = TestDir::new();
    let mut c = data_cluster(&root);
    c.start_all();
    let a = c.wait_streaming(&DATA);
    let writer = Writer::start(c.nodes.iter().map(WriterTarget::of).collect());
    writer.wait_routed_accept(&a, Instant::now(), SLOW);
    // The primary dies; its agent comes back at once with an empty data
    // directory (a replaced disk): it votes, so that a majority remains when
    // the next primary freezes, and it is no candidate.
    kill_node(c.node(&a));
    let data_dir = c.node(&a).data_dir.clone();
    std::fs::rename(&data_dir, data_dir.with_extension("replaced")).expect("move A's data aside");
    c.node(&a).start();
    // Catch the promotion on PostgreSQL itself, within milliseconds, and
    // freeze that member's agent before its loop goes on.
    let sockets: Vec<(String, std::path::PathBuf, u16)> = c
        .nodes
        .iter()
        .filter(|n| n.name != a)
        .map(|n| (n.name.clone(), n.socket_dir.clone(), n.pg_port))
        .collect();
    let b = wait_promotion(&sockets, SLOW);
    let frozen_at = Instant::now();
    c.node(&b).signal_agent(Signal::SIGSTOP);
    let pm = c
        .node(&b)
        .postmaster_pid()
        .expect("the new primary's postmaster");
    eprintln!("{b} promoted and its agent frozen");
    // Another member takes over once B's lease is over; B's guard must have
    // stopped B's PostgreSQL before that member accepts a write.
    let others: Vec<&str> = DATA.iter().copied().filter(|n| *n != b).collect();
    let next = wait_for(SLOW, "a primary after the frozen one", || {
        running_primary(&c, &others)
    });
    writer.wait_routed_accept(&next, frozen_at, SLOW);
    let report = writer.stop();
    eprintln!("{}", report.summary());
    assert!(!process_alive(pm), "{b}'s postmaster still runs");
    let server_log = std::fs::read_to_string(format!("{}.log", c.node(&b).data_dir.display()))
        .unwrap_or_default();
    assert!(
        server_log.contains("fence-guard") && server_log.contains("sending SIGINT"),
        "{server_log}"
    );
    assert!(
        report.overlaps().is_empty(),
        "two members accepted writes at once: {:?}",
        report.overlaps()
    );
    if let Some(last_b) = report.last_accept(&b) {
        let first_next = report
            .first_accept_after(&next, frozen_at)
            .expect("the next primary accepted writes");
        assert!(last_b < first_next, "{b} accepted a write after {next} did");
    }
    c.node(&b).signal_agent(Signal::SIGCONT);
}

/// Polls `pg_is_in_recovery()` on each `(name, socket dir, port)` until one
/// says false; returns that member.
fn wait_promotion(members: &[(String, std::path::PathBuf, u16)], limit: Duration) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut clients = Vec::new();
        for (name, socket, port) in members {
            let mut cfg = tokio_postgres::Config::new();
            cfg.host_path(socket)
                .port(*port)
                .user("postgres")
                .dbname("postgres")
                .connect_timeout(Duration::from_secs(5));
            let (client, conn) = cfg
                .connect(tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("connect to {name}: {e}"));
            tokio::spawn(conn);
            clients.push((name.clone(), client));
        }
        let deadline = Instant::now() + limit;
        loop {
            for (name, client) in &clients {
                if let Ok(row) = client.query_one("SELECT pg_is_in_recovery()", &[]).await {
                    if !row.get::<_, bool>(0) {
                        return name.clone();
                    }
                }
            }
            assert!(Instant::now() < deadline, "no promotion within {limit:?}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
}

/// Kills the postmaster of `node` `times` times, each time once the agent
/// has started a new one; returns the last pid killed.
fn crash_postgres(node: &Node, times: u32) -> i32 {
    let mut pm = node.postmaster_pid().expect("a postmaster");
    for i in 1..=times {
        kill(Pid::from_raw(pm), Signal::SIGKILL).expect("kill -9 of the postmaster");
        if i == times {
            break;
        }
        let old = pm;
        pm = wait_for(SLOW, "the agent to start PostgreSQL again", || {
            node.postmaster_pid()
                .filter(|p| *p != old && process_alive(*p))
        });
    }
    pm
}

#[test]
fn given_three_postmaster_crashes_in_a_row_on_a_primary_with_a_healthy_standby_then_it_fails_over()
{
    if !require_root("crash loop with a standby") {
        return;
    }
    let root = TestDir::new();
    let mut c = data_cluster(&root);
    c.start_all();
    let a = c.wait_streaming(&DATA);
    crash_postgres(c.node(&a), 3);
    let rest: Vec<&str> = DATA.iter().copied().filter(|n| *n != a).collect();
    let b = wait_for(SLOW, "a standby to take over", || {
        running_primary(&c, &rest)
    });
    let log = c.node(&a).log_text();
    assert!(
        log.contains("crashed 3 times in a row: handing over to"),
        "{log}"
    );
    // and the crashing member rejoins as a standby of the new primary
    let doc = c
        .node(&a)
        .wait_status(SLOW, "the old primary as a replica", |d| {
            d["role"] == "replica" && d["state"] == "running"
        });
    assert_eq!(doc["leader"]["name"], b.as_str());
}

#[test]
fn given_postmaster_crashes_with_no_other_member_to_take_over_then_it_keeps_restarting_and_says_so()
{
    if !require_root("crash loop alone") {
        return;
    }
    let root = TestDir::new();
    let mut node = Node::single(root.path(), "pg1");
    node.start();
    node.wait_primary();
    let last = crash_postgres(&node, 4);
    let doc = node.wait_status(SLOW, "the crash loop to be reported", |d| {
        d["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no other member can take over"))
    });
    eprintln!("{}", doc["reason"]);
    // it does not give up: PostgreSQL runs again, as primary
    wait_for(SLOW, "PostgreSQL to run again", || {
        node.postmaster_pid()
            .filter(|p| *p != last && process_alive(*p))
    });
    node.wait_primary();
    node.psql("CREATE TABLE after_crashes (id int)")
        .expect("writable again");
}
