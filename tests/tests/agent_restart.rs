//! An agent restart never touches PostgreSQL: after kill -9 and after
//! SIGTERM (what `systemctl restart` sends), with every member up and with
//! a standby down, the primary's postmaster is the same, nobody fails
//! over, and `/primary` answers 200 again within a loop of the new agent.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pgwarden_tests::*;

const DATA: [&str; 3] = ["pg1", "pg2", "pg3"];
const LOOP_WAIT: Duration = Duration::from_millis(500);

/// Restarts the primary's agent (`how`: kill -9 or SIGTERM) and checks
/// that nothing else changed.
fn restart_primary_agent(c: &mut Cluster, primary: &str, how: Option<Signal>, case: &str) {
    let node = c.node(primary);
    let pm = node.postmaster_pid().expect("the primary's postmaster");
    let timeline = node.status().expect("status")["timeline"].clone();
    match how {
        Some(sig) => {
            node.signal_agent(sig);
            assert_eq!(node.wait_agent(SLOW), Some(0), "{case}: the agent exits 0");
        }
        None => node.kill_agent(),
    }
    assert!(
        process_alive(pm),
        "{case}: PostgreSQL stopped with its agent"
    );
    node.start();
    // The API answers first; from then on /primary is 200 within a loop
    // (plus slack for a loaded machine).
    let api_up = wait_for(SLOW, "the new agent's API", || {
        http(node.api_port, "GET", "/liveness")
            .ok()
            .map(|_| Instant::now())
    });
    let primary_again = wait_for(SLOW, "/primary 200 again", || {
        (http(node.api_port, "GET", "/primary").ok()?.status == 200).then(Instant::now)
    });
    let took = primary_again - api_up;
    eprintln!("{case}: /primary 200 again {took:?} after the new agent's API answered");
    assert!(
        took <= LOOP_WAIT * 2 + Duration::from_secs(2),
        "{case}: /primary took {took:?} to come back"
    );
    let doc = node.wait_primary();
    assert_eq!(
        node.postmaster_pid(),
        Some(pm),
        "{case}: PostgreSQL was restarted"
    );
    assert_eq!(doc["timeline"], timeline, "{case}: a failover happened");
    let log = node.log_text();
    for sign in ["fencing", "PostgreSQL stopped", "lost the leader lease"] {
        assert!(
            !log.contains(sign),
            "{case}: {sign:?} in the new agent's log:\n{log}"
        );
    }
    assert!(
        log.contains("resumed from"),
        "{case}: the lease notes were not used:\n{log}"
    );
}

#[test]
fn given_an_agent_restart_of_the_primary_then_postgres_is_never_stopped_and_nobody_fails_over() {
    if !require_root("agent restarts") {
        return;
    }
    let root = TestDir::new();
    let mut c = Cluster::new(root.path(), &DATA, |_| false, "5s", "500ms");
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    restart_primary_agent(&mut c, &primary, None, "kill -9, every member up");
    restart_primary_agent(
        &mut c,
        &primary,
        Some(Signal::SIGTERM),
        "SIGTERM, every member up",
    );
    // One standby's agent down: the primary's own acceptor is needed for a
    // majority, right after its restart.
    let standby = DATA
        .iter()
        .copied()
        .find(|n| *n != primary)
        .expect("a standby");
    c.node(standby).kill_agent();
    restart_primary_agent(&mut c, &primary, None, "kill -9, a standby's agent down");
    restart_primary_agent(
        &mut c,
        &primary,
        Some(Signal::SIGTERM),
        "SIGTERM, a standby's agent down",
    );
    // and the standby's agent comes back to a cluster that never changed
    c.node(standby).start();
    assert_eq!(c.wait_streaming(&DATA), primary);
}
