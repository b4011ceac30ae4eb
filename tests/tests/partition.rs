//! A network partition of the primary, with every member in a network
//! namespace of its own (`pgwarden_tests::netns`): the cut-off primary
//! fences itself, the majority promotes another member, the two never
//! accept writes at the same time, and after the heal the old primary
//! rejoins by pg_rewind and streams from the new one.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use pgwarden_tests::netns::{or_skip, sql, ConnectionStorm, NetCluster};
use pgwarden_tests::writer::{
    present_ids, Ack, Ids, Writer, WriterOptions, WriterTarget, CREATE_TABLE,
};
use pgwarden_tests::{is_running_primary, require_root, wait_for, SLOW};

const DATA: [&str; 3] = ["pg1", "pg2", "pg3"];

/// How often the writer inside the cut-off primary's namespace tries a write:
/// the resolution of "its last accepted write".
const INSIDE_EVERY: Duration = Duration::from_millis(100);

/// How often the outside writer checks every member directly.
const OUTSIDE_EVERY: Duration = Duration::from_millis(200);

/// How long the partition lasts once both sides have settled: long enough
/// for a fence that did not hold to show as late accepts inside.
const SETTLED_PARTITION: Duration = Duration::from_secs(3);

/// `t` relative to `origin`, signed, in seconds.
fn rel(t: Instant, origin: Instant) -> String {
    if t >= origin {
        format!("+{:.3}s", (t - origin).as_secs_f64())
    } else {
        format!("-{:.3}s", (origin - t).as_secs_f64())
    }
}

/// Starts the cluster; once a primary and two streaming standbys run,
/// writes go on from outside (every member) and from inside the primary's
/// namespace. Returns the primary and the two writers.
fn primary_with_writers(c: &mut NetCluster, started: Instant) -> (String, Writer, Writer) {
    c.start_all();
    let old = c.wait_streaming(&DATA, SLOW);
    eprintln!(
        "{old} is the primary after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    sql(c.node(&old).pg_addr(), CREATE_TABLE).expect("create the writers' table");
    for n in &c.nodes {
        // Until the table reaches a standby, a write there fails for want
        // of it, which says nothing about the member.
        wait_for(SLOW, "the writers' table on every member", || {
            let rows = sql(n.pg_addr(), "SELECT to_regclass('writer_ids') IS NOT NULL").ok()?;
            (rows == [[Some("t".to_string())]]).then_some(())
        });
    }
    let ids = Ids::shared();
    let outside = Writer::start_with(
        c.targets(),
        WriterOptions {
            direct_every: OUTSIDE_EVERY,
            ids: Some(ids.clone()),
            ..WriterOptions::default()
        },
    )
    .expect("the writer outside");
    let inside = Writer::start_with(
        vec![WriterTarget::of(c.node(&old))],
        WriterOptions {
            routed: false,
            direct_every: INSIDE_EVERY,
            netns: Some(c.slot(&old).netns.clone()),
            ids: Some(ids.clone()),
        },
    )
    .expect("the writer inside the primary's namespace");
    wait_for(SLOW, "both writers to write on the primary", || {
        let routed = outside.snapshot().acks_of(&old).any(|a| a.id > 0);
        let direct = inside.snapshot().last_ack(&old).is_some();
        (routed && direct).then_some(())
    });
    (old, outside, inside)
}

#[test]
fn given_the_primary_is_cut_off_then_it_fences_before_the_majority_promotes_and_rejoins_after_the_heal(
) {
    const TEST: &str = "partition of the primary";
    if !require_root(TEST) {
        return;
    }
    let Some(mut c) = or_skip(TEST, NetCluster::new(&DATA, "3s", "500ms")) else {
        return;
    };
    let started = Instant::now();
    eprintln!(
        "network {} on bridge {}; test files in {}",
        c.net.cidr(),
        c.net.bridge,
        c.dir.path().display()
    );

    // Given a primary and two streaming standbys, and writes going on from
    // outside (every member) and from inside the primary's namespace.
    let (old, outside, inside) = primary_with_writers(&mut c, started);
    std::thread::sleep(Duration::from_secs(1));

    // When the primary is cut off the network,
    let cut = Instant::now();
    c.partition(&old);
    eprintln!("{old} partitioned at {}", rel(cut, started));

    // then, seen from inside its namespace, it stops accepting writes and
    // its agent no longer says it is a running primary,
    let (fenced_doc, first_refusal) = wait_for(SLOW, "the old primary to fence itself", || {
        let log = inside.snapshot();
        let last = log.last_ack(&old)?.acked;
        let refusal = log.first_refusal_after(&old, last.max(cut))?.clone();
        let doc = c.node(&old).status_inside()?;
        (!is_running_primary(&doc)).then_some((doc, refusal))
    });
    eprintln!(
        "{old} refused a write from inside at {} ({}); its status from inside: role={} state={} reason={}",
        rel(first_refusal.at, cut),
        first_refusal.why,
        fenced_doc["role"],
        fenced_doc["state"],
        fenced_doc["reason"]
    );
    // (an id no writer uses: should the insert succeed, the failure says so)
    let refused = c
        .node(&old)
        .sql_inside("INSERT INTO writer_ids (id) VALUES (-9223372036854775808)");
    assert!(
        refused.is_err(),
        "{old} accepted a write from inside its namespace after it fenced"
    );

    // and the majority promotes another member, which takes the writes.
    let majority: Vec<&str> = DATA.iter().copied().filter(|n| *n != old).collect();
    let new = wait_for(SLOW, "a new primary on the majority side", || {
        majority
            .iter()
            .find(|n| c.node(n).status().is_some_and(|d| is_running_primary(&d)))
            .map(|n| n.to_string())
    });
    let new_first = wait_for(SLOW, "the new primary to acknowledge a write", || {
        outside.snapshot().first_ack(&new).cloned()
    });
    eprintln!(
        "{new} is the new primary; its first write was sent at {}",
        rel(new_first.sent, cut)
    );
    std::thread::sleep(SETTLED_PARTITION);
    let old_while_cut = c.node(&old).status_inside();

    // When the partition heals, the old primary rejoins as a standby of the
    // new one (by pg_rewind) and replays its writes.
    let healed = Instant::now();
    c.heal(&old);
    eprintln!("healed at {}", rel(healed, cut));
    let primary = c.wait_streaming(&DATA, SLOW);
    assert_eq!(
        primary, new,
        "the new primary must stay primary after the heal"
    );
    eprintln!("all three streaming again at {}", rel(Instant::now(), cut));
    let latest = outside
        .snapshot()
        .last_ack(&new)
        .expect("the new primary acknowledged writes")
        .id;
    let old_pg = c.node(&old).pg_addr();
    wait_for(
        SLOW,
        "the old primary to replay the new primary's writes",
        || {
            present_ids(old_pg, &[latest])
                .ok()?
                .contains(&latest)
                .then_some(())
        },
    );
    let stopped = Instant::now();
    let log = outside.stop_log().merged(inside.stop_log());
    let report = log.report(started, stopped);
    eprintln!("{}", report.summary());
    eprintln!(
        "the old primary's status inside the partition after {SETTLED_PARTITION:?}: {}",
        old_while_cut
            .map(|d| format!(
                "role={} state={} reason={}",
                d["role"], d["state"], d["reason"]
            ))
            .unwrap_or_else(|| "no answer".into())
    );

    // At no time did both accept writes: the old primary's last acknowledged
    // write (an upper bound of its commit) came before the new primary's
    // first write was even sent (a lower bound of its commit).
    let old_last = log
        .last_ack(&old)
        .expect("the old primary acknowledged writes");
    let new_first = log
        .first_ack(&new)
        .expect("the new primary acknowledged writes");
    eprintln!(
        "{old}'s last accepted write (id {}) acknowledged at {}; {new}'s first (id {}) sent at {}: {} apart",
        old_last.id,
        rel(old_last.acked, cut),
        new_first.id,
        rel(new_first.sent, cut),
        rel(new_first.sent, old_last.acked)
    );
    assert!(
        old_last.acked < new_first.sent,
        "{old} accepted id {} at {} (after the cut) while {new} had accepted id {} sent at {}",
        old_last.id,
        rel(old_last.acked, cut),
        new_first.id,
        rel(new_first.sent, cut)
    );
    assert!(
        report.overlaps().is_empty(),
        "two members accepted writes at overlapping times:\n{}",
        report.summary()
    );

    // Every write the majority side acknowledged is on the new primary; of
    // the old primary's, only the last ones before the fence may be lost
    // (asynchronous replication): reported, not failed.
    let new_pg = c.node(&new).pg_addr();
    let all: Vec<i64> = log.acks.iter().map(|a| a.id).collect();
    let present: HashSet<i64> = wait_for(SLOW, "the acknowledged ids on the new primary", || {
        present_ids(new_pg, &all).ok()
    });
    let missing: Vec<&Ack> = log
        .acks
        .iter()
        .filter(|a| !present.contains(&a.id))
        .collect();
    let lost_majority: Vec<String> = missing
        .iter()
        .filter(|a| a.member != old)
        .map(|a| format!("{} by {} at {}", a.id, a.member, rel(a.acked, cut)))
        .collect();
    let lost_old: Vec<String> = missing
        .iter()
        .filter(|a| a.member == old)
        .map(|a| format!("{} at {}", a.id, rel(a.acked, cut)))
        .collect();
    eprintln!(
        "{} acknowledged writes; lost on failover (acknowledged by {old}, asynchronous replication): {} {lost_old:?}",
        log.acks.len(),
        lost_old.len()
    );
    assert!(
        lost_majority.is_empty(),
        "writes acknowledged on the majority side are missing on {new}: {lost_majority:?}"
    );

    let old_log = c.node(&old).log_text();
    assert!(
        old_log.contains("pg_rewind"),
        "{old} rejoined without pg_rewind:\n{old_log}"
    );

    // And the test leaves nothing behind.
    let (namespaces, links) = c.net.names();
    drop(c);
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let left = String::from_utf8_lossy(&left.stdout);
    for ns in &namespaces {
        assert!(
            !left.split_whitespace().any(|w| w == ns),
            "namespace {ns} left behind"
        );
    }
    for link in &links {
        let shown = std::process::Command::new("ip")
            .args(["link", "show", link])
            .output()
            .expect("ip link show");
        assert!(!shown.status.success(), "link {link} left behind");
    }
    eprintln!("done in {:.1}s", started.elapsed().as_secs_f64());
}

#[test]
fn given_a_primary_whose_probe_fails_under_a_connection_storm_when_it_is_cut_off_then_it_stops_taking_writes_before_the_majority_promotes(
) {
    const TEST: &str = "connection storm and partition";
    if !require_root(TEST) {
        return;
    }
    let Some(mut c) = or_skip(TEST, NetCluster::new(&DATA, "3s", "500ms")) else {
        return;
    };
    let started = Instant::now();
    let (old, outside, inside) = primary_with_writers(&mut c, started);

    // Given a primary whose every connection slot is taken and whose agent's
    // own probe is kept out — sessions opened before still write —
    let storm = ConnectionStorm::start(&c.slot(&old).netns, c.node(&old).pg_addr())
        .expect("the connection storm");
    let blind = wait_for(
        SLOW,
        "the primary's agent to lose sight of PostgreSQL",
        || {
            let doc = c.node(&old).status_inside()?;
            (doc["role"] == "primary" && doc["state"] == "starting").then_some(doc)
        },
    );
    eprintln!(
        "{} sessions held; {old}'s agent sees: state={} reason={}",
        storm.held(),
        blind["state"],
        blind["reason"]
    );
    assert!(
        inside.snapshot().last_ack(&old).is_some(),
        "the session opened before the storm writes"
    );

    // when it is cut off from the others,
    let cut = Instant::now();
    c.partition(&old);

    // then the majority promotes another member,
    let majority: Vec<&str> = DATA.iter().copied().filter(|n| *n != old).collect();
    let new = wait_for(SLOW, "a new primary on the majority side", || {
        majority
            .iter()
            .find(|n| c.node(n).status().is_some_and(|d| is_running_primary(&d)))
            .map(|n| n.to_string())
    });
    wait_for(SLOW, "the new primary to acknowledge a write", || {
        outside.snapshot().first_ack(&new).cloned()
    });
    std::thread::sleep(SETTLED_PARTITION);
    drop(storm);
    let log = outside.stop_log().merged(inside.stop_log());
    let report = log.report(started, Instant::now());
    eprintln!("{}", report.summary());

    // and the old primary, blind as its agent was, took no write after the
    // new one took its first: it was fenced (by its agent, or its guard).
    let old_last = log
        .last_ack(&old)
        .expect("the old primary acknowledged writes");
    let new_first = log
        .first_ack(&new)
        .expect("the new primary acknowledged writes");
    eprintln!(
        "{old}'s last accepted write acknowledged at {}; {new}'s first sent at {}",
        rel(old_last.acked, cut),
        rel(new_first.sent, cut)
    );
    assert!(
        old_last.acked < new_first.sent,
        "{old} accepted id {} at {} while {new} had accepted id {} sent at {}",
        old_last.id,
        rel(old_last.acked, cut),
        new_first.id,
        rel(new_first.sent, cut)
    );
    assert!(
        report.overlaps().is_empty(),
        "two members accepted writes at overlapping times:\n{}",
        report.summary()
    );
    let old_log = c.node(&old).log_text();
    assert!(
        old_log.contains("fencing"),
        "{old} never fenced:\n{old_log}"
    );
}
