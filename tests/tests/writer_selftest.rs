//! The writer checked on its own before failover tests rely on it: what it
//! records against a healthy primary and one that goes away, that it never
//! hangs, and what `overlaps` calls an overlap, on synthetic histories.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pgwarden_tests::writer::{Writer, WriterReport, WriterTarget};
use pgwarden_tests::*;

#[test]
fn given_one_primary_when_the_writer_runs_then_every_acknowledged_id_is_stored_and_nothing_overlaps(
) {
    if !require_root("writer against one primary") {
        return;
    }
    let root = TestDir::new();
    let mut node = Node::single(root.path(), "pg1");
    node.start();
    node.wait_primary();

    let writer = Writer::start(vec![WriterTarget::of(&node)]);
    std::thread::sleep(Duration::from_secs(3));
    let report = writer.stop();
    eprintln!("{}", report.summary());

    let routed = report.routed_ids();
    assert!(
        routed.len() > 20,
        "only {} routed ids acknowledged\n{}",
        routed.len(),
        report.summary()
    );
    assert!(
        routed.windows(2).all(|w| w[0] < w[1]),
        "routed ids are acknowledged in increasing order"
    );
    assert_eq!(report.missing_on(node.pg_port), Vec::<i64>::new());
    assert_eq!(report.overlaps(), vec![]);
    assert!(
        report.acked.iter().any(|(id, m, _)| *id < 0 && m == "pg1"),
        "the direct checks wrote to pg1\n{}",
        report.summary()
    );
    assert!(
        report.refusals.get("pg1").is_none_or(Vec::is_empty),
        "a healthy primary refused nothing\n{}",
        report.summary()
    );
    assert_eq!(report.routes.len(), 1, "{}", report.summary());

    // What the writer acknowledged is what the table holds, both kinds.
    let stored: usize = node
        .psql("SELECT count(*) FROM writer_ids")
        .expect("count")
        .parse()
        .expect("a number");
    assert!(
        stored >= report.acked.len(),
        "{stored} rows for {} acks",
        report.acked.len()
    );
}

#[test]
fn given_a_running_writer_when_the_agent_stops_then_writes_are_refused_and_stop_returns_promptly() {
    if !require_root("writer across an agent stop") {
        return;
    }
    let root = TestDir::new();
    let mut node = Node::single(root.path(), "pg1");
    node.start();
    node.wait_primary();
    let writer = Writer::start(vec![WriterTarget::of(&node)]);
    std::thread::sleep(Duration::from_millis(1500));

    let sigterm = Instant::now();
    node.signal_agent(Signal::SIGINT);
    assert_eq!(node.wait_agent(SLOW), Some(0), "the agent exits cleanly");
    let exited = Instant::now();
    // Long enough for several direct checks against the stopped member.
    std::thread::sleep(Duration::from_millis(1500));

    let stopping = Instant::now();
    let report = writer.stop();
    let took = stopping.elapsed();
    eprintln!("{}", report.summary());

    assert!(took < Duration::from_secs(3), "stop() took {took:?}");
    assert!(
        report.first_accept("pg1").is_some_and(|t| t < sigterm),
        "pg1 accepted writes before the stop\n{}",
        report.summary()
    );
    assert!(
        report.last_accept("pg1").is_some_and(|t| t < exited),
        "PostgreSQL stops with the agent: nothing is accepted once it exited\n{}",
        report.summary()
    );
    assert_eq!(report.first_accept_after("pg1", exited), None);
    let (_, why) = report
        .first_refusal_after("pg1", exited)
        .unwrap_or_else(|| panic!("no refusal after the agent exited\n{}", report.summary()));
    assert!(why.contains("direct check"), "{why}");
    assert!(
        report
            .refusals
            .get("pg1")
            .is_some_and(|r| r.iter().filter(|(t, _)| *t > exited).count() >= 3),
        "the direct checks keep trying\n{}",
        report.summary()
    );
}

#[test]
fn given_no_primary_anywhere_when_the_writer_runs_then_it_records_nothing_and_stops_promptly() {
    // One member whose port refuses, one that accepts the connection and
    // never answers (a frozen agent): neither may hold the writer up.
    let frozen = TcpListener::bind("127.0.0.1:0").expect("bind");
    let frozen_port = frozen.local_addr().expect("addr").port();
    let writer = Writer::start(vec![
        WriterTarget::on_loopback("gone", free_port(), free_port()),
        WriterTarget::on_loopback("frozen", frozen_port, free_port()),
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    let stopping = Instant::now();
    let report = writer.stop();
    let took = stopping.elapsed();

    assert!(took < Duration::from_millis(500), "stop() took {took:?}");
    assert!(report.acked.is_empty(), "{}", report.summary());
    assert!(report.accepts.is_empty(), "{}", report.summary());
    // Nobody was named primary, so nothing was tried, hence nothing refused.
    assert!(report.refusals.is_empty(), "{}", report.summary());
    assert!(report.routes.is_empty(), "{}", report.summary());
    assert!(report.summary().contains("routed to: nobody"));
}

/// One event of a synthetic history: member, milliseconds after the start,
/// accepted (true) or refused (false).
type Event = (&'static str, u64, bool);

/// An expected overlap: earlier member, its last accept (ms), later member,
/// its first accept (ms).
type Overlap = (&'static str, u64, &'static str, u64);

fn synthetic(events: &[Event]) -> (Instant, WriterReport) {
    let t0 = Instant::now();
    let mut accepts: BTreeMap<String, Vec<Instant>> = BTreeMap::new();
    let mut refusals: BTreeMap<String, Vec<(Instant, String)>> = BTreeMap::new();
    let mut acked = Vec::new();
    for (i, &(member, ms, accepted)) in events.iter().enumerate() {
        let at = t0 + Duration::from_millis(ms);
        if accepted {
            accepts.entry(member.into()).or_default().push(at);
            acked.push((i as i64 + 1, member.to_string(), at));
        } else {
            refusals
                .entry(member.into())
                .or_default()
                .push((at, "refused".into()));
        }
    }
    let report = WriterReport {
        started: t0,
        stopped: t0 + Duration::from_secs(10),
        acked,
        accepts,
        refusals,
        routes: Vec::new(),
    };
    (t0, report)
}

fn accepts(member: &'static str, from: u64, to: u64) -> Vec<Event> {
    (from..=to)
        .step_by(100)
        .map(|ms| (member, ms, true))
        .collect()
}

#[test]
fn overlaps_on_synthetic_histories() {
    let refused = |member: &'static str, ms: u64| vec![(member, ms, false)];
    // (scenario, history, expected (earlier, its last ms, later, its first ms))
    let cases: Vec<(&str, Vec<Event>, Vec<Overlap>)> = vec![
        ("nothing happened", vec![], vec![]),
        ("one member only", accepts("pg1", 0, 1000), vec![]),
        (
            "a clean failover: the old primary refuses before the new one accepts",
            [
                accepts("pg1", 0, 200),
                refused("pg1", 300),
                accepts("pg2", 500, 800),
            ]
            .concat(),
            vec![],
        ),
        (
            "the old primary never stops accepting",
            [accepts("pg1", 0, 1000), accepts("pg2", 500, 800)].concat(),
            vec![("pg1", 1000, "pg2", 500)],
        ),
        (
            "A A B A A: another member's accept does not end a reign",
            [
                accepts("pg1", 0, 100),
                accepts("pg2", 150, 150),
                accepts("pg1", 200, 300),
            ]
            .concat(),
            vec![("pg1", 300, "pg2", 150)],
        ),
        (
            "back and forth, each handover marked by a refusal",
            [
                accepts("pg1", 0, 100),
                refused("pg1", 150),
                accepts("pg2", 200, 300),
                refused("pg2", 350),
                accepts("pg1", 400, 500),
            ]
            .concat(),
            vec![],
        ),
        (
            "a fenced old primary that comes back writable while the new one still accepts",
            [
                accepts("pg1", 0, 100),
                refused("pg1", 150),
                accepts("pg2", 200, 900),
                accepts("pg1", 600, 700),
            ]
            .concat(),
            vec![("pg2", 900, "pg1", 600)],
        ),
        (
            "three members: each newcomer overlaps the one that never stopped, not each other",
            [
                accepts("pg1", 0, 1000),
                accepts("pg2", 300, 300),
                accepts("pg3", 500, 500),
            ]
            .concat(),
            vec![("pg1", 1000, "pg2", 300), ("pg1", 1000, "pg3", 500)],
        ),
    ];
    for (scenario, history, expected) in cases {
        let (t0, report) = synthetic(&history);
        let ms = |t: Instant| t.duration_since(t0).as_millis() as u64;
        let got: Vec<(String, u64, String, u64)> = report
            .overlaps()
            .into_iter()
            .map(|(a, ta, b, tb)| (a, ms(ta), b, ms(tb)))
            .collect();
        let expected: Vec<(String, u64, String, u64)> = expected
            .into_iter()
            .map(|(a, ta, b, tb)| (a.to_string(), ta, b.to_string(), tb))
            .collect();
        assert_eq!(got, expected, "{scenario}\n{}", report.summary());
        assert_eq!(
            report.summary().contains("OVERLAP"),
            !expected.is_empty(),
            "{scenario}"
        );
    }
}

#[test]
fn accept_and_refusal_lookups_on_a_synthetic_history() {
    let (t0, report) = synthetic(
        &[
            accepts("pg1", 0, 300),
            vec![("pg1", 400, false), ("pg1", 500, false)],
            accepts("pg2", 600, 800),
        ]
        .concat(),
    );
    let at = |ms| t0 + Duration::from_millis(ms);
    assert_eq!(report.first_accept("pg1"), Some(at(0)));
    assert_eq!(report.last_accept("pg1"), Some(at(300)));
    assert_eq!(report.first_accept_after("pg1", at(300)), None);
    assert_eq!(report.first_accept_after("pg2", at(300)), Some(at(600)));
    assert_eq!(report.first_accept_after("pg2", at(600)), Some(at(700)));
    assert_eq!(report.first_accept("pg3"), None);
    assert_eq!(report.first_refusal("pg1").map(|(t, _)| t), Some(at(400)));
    assert_eq!(
        report.first_refusal_after("pg1", at(400)).map(|(t, _)| t),
        Some(at(500))
    );
    assert_eq!(report.first_refusal("pg2"), None);
    let reigns = report.reigns();
    assert_eq!(reigns.len(), 2);
    assert_eq!(
        (reigns[0].member.as_str(), reigns[0].first, reigns[0].last),
        ("pg1", at(0), at(300))
    );
    assert_eq!(
        (reigns[1].member.as_str(), reigns[1].first, reigns[1].last),
        ("pg2", at(600), at(800))
    );
}
