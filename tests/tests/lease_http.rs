//! The leader lease among real agents over real HTTP: three witness-mode
//! agents (no PostgreSQL) on loopback, `ttl = 3s`, `loop_wait = 500ms`.
//! A witness holds the lease only in a cluster without data members,
//! which is what these tests build.
//!
//! Bounds are the issue's (`ttl + 2 × loop_wait` after a kill, `2 ×
//! loop_wait` after a clean shutdown) plus a stated slack for polling and
//! a loaded 2-core machine; safety bounds have no slack at all.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pgwarden_tests::*;

const TTL: Duration = Duration::from_secs(3);
const LOOP_WAIT: Duration = Duration::from_millis(500);
/// Polling every 100 ms plus scheduling on a busy machine.
const SLACK: Duration = Duration::from_millis(1500);

fn cluster(root: &TestDir) -> Cluster {
    let mut c = Cluster::new(root.path(), &["w1", "w2", "w3"], |_| true, "3s", "500ms");
    c.start_all();
    c
}

/// Waits until exactly one member holds the lease and returns it,
/// checking at every poll that never two do.
fn one_holder(c: &Cluster, limit: Duration, among: &[&str]) -> (String, Instant) {
    let deadline = Instant::now() + limit;
    loop {
        let holders: Vec<String> = c
            .holders()
            .into_iter()
            .filter(|h| among.contains(&h.as_str()))
            .collect();
        assert!(holders.len() <= 1, "two holders at once: {holders:?}");
        if let Some(h) = holders.into_iter().next() {
            return (h, Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "no holder among {among:?} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn others<'a>(all: &[&'a str], but: &str) -> Vec<&'a str> {
    all.iter().copied().filter(|n| *n != but).collect()
}

const ALL: [&str; 3] = ["w1", "w2", "w3"];

#[test]
fn three_members_elect_exactly_one_holder_and_all_agree_who() {
    let root = TestDir::new();
    let c = cluster(&root);
    // new acceptors (no lease notes yet) answer at once: someone wins
    let (holder, _) = one_holder(&c, TTL * 4 + SLACK, &ALL);
    // for a while, at every poll: one holder, and every member names it
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(c.holders(), vec![holder.clone()]);
        std::thread::sleep(Duration::from_millis(100));
    }
    for n in &c.nodes {
        let doc = n.wait_status(SLOW, "the leader's name", |d| {
            d["leader"]["name"] == holder.as_str()
        });
        assert_eq!(doc["role"], "witness");
        assert!(doc["leader"]["term"].as_u64().is_some_and(|t| t >= 1));
        if n.name == holder {
            let left = doc["leader"]["lease_remaining_ms"].as_u64().unwrap();
            assert!(left > 0 && left <= TTL.as_millis() as u64, "{left}");
        }
    }
}

#[test]
fn given_the_holder_is_killed_then_another_holds_within_ttl_plus_two_loops() {
    let root = TestDir::new();
    let mut c = cluster(&root);
    let (holder, _) = one_holder(&c, TTL * 4 + SLACK, &ALL);
    c.node(&holder).kill_agent();
    let killed = Instant::now();
    let rest = others(&ALL, &holder);
    let (next, at) = one_holder(&c, TTL * 4 + SLACK, &rest);
    let took = at - killed;
    assert!(
        took <= TTL + LOOP_WAIT * 2 + SLACK,
        "{next} took {took:?} after kill -9 of {holder}"
    );
}

#[test]
fn given_the_holder_restarted_with_another_member_down_then_it_still_holds_and_nobody_else_did() {
    let root = TestDir::new();
    let mut c = cluster(&root);
    let (holder, _) = one_holder(&c, TTL * 4 + SLACK, &ALL);
    // An election duel at start-up can leave a loser's lease accepted by
    // its own acceptor alone; it blocks nobody's first election but would
    // block a renewal that needs that acceptor, until it expires. Past one
    // ttl the cluster is in its steady state, which is what this is about.
    std::thread::sleep(TTL);
    let rest = others(&ALL, &holder);
    // one other member down: the holder's own acceptor is needed for a majority
    c.node(rest[0]).kill_agent();
    c.node(&holder).kill_agent();
    c.node(&holder).start();
    let restarted = c.node(&holder);
    let doc = restarted.wait_status(SLOW, "the restarted holder's first loop", |d| {
        d["agent"]["loop_last_ms_ago"].is_u64()
    });
    assert_eq!(
        doc["leader"]["name"],
        holder.as_str(),
        "the restarted agent resumed its lease: {doc}"
    );
    let log = restarted.log_text();
    assert!(log.contains("resumed from"), "{log}");
    // for more than a ttl, at every poll: the same holder, renewed by the
    // new agent with the one other member left
    holds_for(TTL * 2, "the holder keeps its lease", || {
        let holders = c.holders();
        if holders == vec![holder.clone()] {
            Ok(())
        } else {
            Err(format!("holders now: {holders:?}"))
        }
    });
    let survivor = c.node(rest[1]);
    assert!(
        !survivor.log_text().contains("acquired the leader lease"),
        "{}",
        survivor.log_text()
    );
}

#[test]
fn given_the_holder_is_frozen_then_nobody_holds_before_its_lease_ran_out_and_it_learns_it_lost() {
    let root = TestDir::new();
    let mut c = cluster(&root);
    let (holder, _) = one_holder(&c, TTL * 4 + SLACK, &ALL);
    let doc = c.node(&holder).status().expect("holder status");
    let read_at = Instant::now();
    let remaining = Duration::from_millis(
        doc["leader"]["lease_remaining_ms"]
            .as_u64()
            .expect("remaining"),
    );
    c.node(&holder).signal_agent(Signal::SIGSTOP);
    let rest = others(&ALL, &holder);
    let (next, at) = one_holder(&c, TTL * 4 + SLACK, &rest);
    // Safety, no slack: the holder's own lease (at least `remaining` from
    // the reading) had run out before the new holder was seen.
    assert!(
        at - read_at >= remaining,
        "{next} held the lease {:?} after the reading, while {holder} still had {remaining:?}",
        at - read_at
    );
    c.node(&holder).signal_agent(Signal::SIGCONT);
    let old = c.node(&holder);
    let doc = old.wait_status(SLOW, "the old holder to learn it lost", |d| {
        d["leader"]["name"] == next.as_str()
    });
    assert_ne!(doc["leader"]["name"], holder.as_str());
    assert_eq!(http(old.api_port, "GET", "/leader").unwrap().status, 503);
    wait_for(SLOW, "the log line", || {
        old.log_text()
            .contains("lost the leader lease")
            .then_some(())
    });
    assert_eq!(c.holders(), vec![next]);
}

#[test]
fn given_a_clean_shutdown_of_the_holder_then_another_holds_within_two_loops() {
    let root = TestDir::new();
    let mut c = cluster(&root);
    let (holder, _) = one_holder(&c, TTL * 4 + SLACK, &ALL);
    c.node(&holder).signal_agent(Signal::SIGINT);
    let stopped = Instant::now();
    let rest = others(&ALL, &holder);
    let (next, at) = one_holder(&c, TTL * 4, &rest);
    let took = at - stopped;
    assert!(
        took <= LOOP_WAIT * 2 + SLACK,
        "{next} took {took:?}: release, not expiry (ttl {TTL:?})"
    );
    assert_eq!(c.node(&holder).wait_agent(SLOW), Some(0));
}

#[test]
fn given_a_takeover_and_the_old_holder_back_when_the_new_holder_stops_then_the_next_holds_within_two_loops(
) {
    let root = TestDir::new();
    let mut c = cluster(&root);
    let (first, _) = one_holder(&c, TTL * 4 + SLACK, &ALL);
    c.node(&first).kill_agent();
    let rest = others(&ALL, &first);
    let (second, _) = one_holder(&c, TTL * 4 + SLACK, &rest);
    // the dead holder comes back, and has learned who holds the lease
    c.node(&first).start();
    c.node(&first)
        .wait_status(SLOW, "the restarted member to know the holder", |d| {
            d["leader"]["name"] == second.as_str()
        });
    // Every member waits for the end of the lease it last saw; a clean stop
    // of the holder releases it, and that wait must end with it.
    c.node(&second).signal_agent(Signal::SIGINT);
    let stopped = Instant::now();
    let (third, at) = one_holder(&c, TTL * 4, &others(&ALL, &second));
    let took = at - stopped;
    eprintln!("{third} holds the lease {took:?} after {second} stopped");
    assert!(
        took <= LOOP_WAIT * 2 + SLACK,
        "{third} took {took:?}: the release did not end the others' wait (ttl {TTL:?})"
    );
    assert_eq!(c.node(&second).wait_agent(SLOW), Some(0));
}

#[test]
fn internal_endpoints_need_the_cluster_secret_and_refuse_garbage() {
    let root = TestDir::new();
    let c = cluster(&root);
    let port = c.nodes[0].api_port;
    c.nodes[0].wait_status(SLOW, "the API", |d| d["role"] == "witness");
    let body = r#"{"ballot":{"counter":99,"member":"w2","incarnation":1}}"#;
    let post = |auth: Option<&str>, body: &str| {
        let auth = auth
            .map(|a| format!("Authorization: Bearer {a}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "POST /internal/lease/prepare HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        http_raw(port, req.as_bytes()).unwrap()
    };
    let none = post(None, body);
    assert_eq!(none.status, 401);
    assert!(none.json()["error"]
        .as_str()
        .unwrap()
        .contains("cluster secret"));
    assert_eq!(post(Some("wrong"), body).status, 401);
    let garbage = post(Some("cluster-secret-for-tests"), "{not json");
    assert_eq!(garbage.status, 422);
    assert!(garbage.json()["error"].is_string());
    let wrong_shape = post(Some("cluster-secret-for-tests"), r#"{"ballot": "high"}"#);
    assert_eq!(wrong_shape.status, 422);
    assert_eq!(
        http(port, "GET", "/internal/lease/prepare").unwrap().status,
        405
    );
    // a well-formed prepare with the secret: a promise or a reject
    let answer = wait_for(SLOW, "the acceptor to answer", || {
        let a = post(Some("cluster-secret-for-tests"), body);
        (a.status == 200).then_some(a)
    });
    assert!(answer.json()["reply"].is_string(), "{}", answer.body);
}

#[test]
fn a_member_that_hangs_cannot_stall_the_others() {
    let root = TestDir::new();
    let mut c = Cluster::new(root.path(), &["w1", "w2", "w3"], |_| true, "3s", "500ms");
    // w3 is not an agent: its port accepts connections, reads, and never answers
    let w3_port = c.node("w3").api_port;
    let hanging = std::net::TcpListener::bind(("127.0.0.1", w3_port)).unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for conn in hanging.incoming().flatten() {
            if let Ok(mut v) = keep.lock() {
                v.push(conn);
            }
        }
    });
    c.node("w1").start();
    c.node("w2").start();
    let ports = [("w1", c.node("w1").api_port), ("w2", c.node("w2").api_port)];
    let holders = || -> Vec<&str> {
        ports
            .iter()
            .filter(|(_, p)| http(*p, "GET", "/leader").is_ok_and(|a| a.status == 200))
            .map(|(n, _)| *n)
            .collect()
    };
    let holder = wait_for(TTL * 4 + SLACK, "a holder among w1, w2", || {
        let h = holders();
        assert!(h.len() <= 1, "two holders: {h:?}");
        h.first().map(|s| s.to_string())
    });
    // the loops keep their pace while every call to w3 times out
    for name in ["w1", "w2"] {
        let doc = c.node(name).wait_status(SLOW, "a first loop", |d| {
            d["agent"]["loop_last_ms_ago"].is_u64()
        });
        let loop_ms = doc["agent"]["loop_last_ms_ago"].as_u64().unwrap();
        assert!(
            loop_ms < 3_000,
            "{name}'s loop stalled: last ran {loop_ms} ms ago"
        );
        assert_eq!(
            http(c.node(name).api_port, "GET", "/liveness")
                .unwrap()
                .status,
            200
        );
    }
    // and the holder keeps renewing: still the same holder a few seconds later
    std::thread::sleep(TTL * 2);
    assert_eq!(holders(), vec![holder.as_str()]);
    drop(held);
}
