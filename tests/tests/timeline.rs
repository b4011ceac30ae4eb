//! A standby whose WAL receiver stopped (its primary died) reports the
//! timeline it replays, not its last restartpoint's: candidates are
//! compared by (timeline, LSN), and a stale, older timeline ranked the
//! standby with the newest WAL behind one without it (the chaos run, seed
//! 1001, fault 485: four acknowledged writes lost in quorum mode).

use std::time::{Duration, Instant};

use pgwarden_tests::*;

const DATA: [&str; 3] = ["pg1", "pg2", "pg3"];

fn switch_over(c: &mut Cluster, from: &str, to: &str) -> String {
    let body = format!(r#"{{"leader": "{from}", "candidate": "{to}"}}"#);
    let a = c.node(from).operate("POST", "/switchover", &body);
    assert_eq!(a.status, 200, "switchover {from} -> {to}: {a:?}");
    let primary = c.wait_streaming(&DATA);
    assert_eq!(primary, to);
    primary
}

fn timeline(doc: &serde_json::Value) -> Option<u64> {
    doc["postgres"]["timeline"].as_u64()
}

#[test]
fn given_two_switchovers_when_the_primary_dies_then_the_standbys_report_its_timeline_not_their_last_restartpoints(
) {
    if !require_root("standby timelines") {
        return;
    }
    let root = TestDir::new();
    // A long ttl: the standbys stay without a primary long enough to be
    // looked at before one of them is promoted.
    let mut c = Cluster::new(root.path(), &DATA, |_| false, "20s", "500ms");
    c.start_all();
    let first = c.wait_streaming(&DATA);
    // Two switchovers: timeline 3, and standbys whose last restartpoint
    // (there is none between: checkpoint_timeout is minutes) is older.
    let others: Vec<&str> = DATA.iter().copied().filter(|n| *n != first).collect();
    let second = switch_over(&mut c, &first, others[0]);
    let third = switch_over(&mut c, &second, others[1]);
    let tl = wait_for(SLOW, "the third primary's timeline", || {
        c.node(&third).status().and_then(|d| timeline(&d))
    });
    assert!(
        tl >= 3,
        "two switchovers make timeline 3 at least, got {tl}"
    );
    for n in [&first, &second] {
        wait_for(SLOW, "each standby streaming on the new timeline", || {
            c.node(n)
                .status()
                .filter(|d| is_streaming_replica(d) && timeline(d) == Some(tl))
        });
    }

    // When the primary dies, the receivers stop;
    c.node(&third).kill_node();
    let died = Instant::now();
    for n in [&first, &second] {
        let doc = wait_for(
            Duration::from_secs(15),
            "a standby without its receiver",
            || {
                c.node(n).status().filter(|d| {
                    d["role"] == "replica" && d["wal_receiver"]["status"] != "streaming"
                })
            },
        );
        // then each still says the timeline it replays.
        assert!(
            died.elapsed() < Duration::from_secs(20),
            "looked too late: a new primary may have been elected"
        );
        assert_eq!(
            timeline(&doc),
            Some(tl),
            "{n} without its receiver reports another timeline than the one it replays: {doc}"
        );
    }
}
