//! Load is part of the test: a healthy cluster on a host whose cores are
//! both busy must stay exactly as it is — no fence, no failover, no
//! PostgreSQL restart. A production host under a batch job, a backup or a
//! noisy neighbour needs the same.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgwarden_tests::*;

const DATA: [&str; 3] = ["pg1", "pg2", "pg3"];

/// How long both cores are kept busy.
const BUSY_FOR: Duration = Duration::from_secs(60);

/// One busy loop per core, at normal priority, until `stop`.
fn hog_every_core(stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<u64>> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (0..cores)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut spins = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    spins = std::hint::black_box(spins.wrapping_add(1));
                }
                spins
            })
        })
        .collect()
}

#[test]
fn given_every_core_busy_for_a_minute_then_a_healthy_cluster_neither_fences_nor_fails_over() {
    if !require_root("load") {
        return;
    }
    let root = TestDir::new();
    let mut c = Cluster::new(root.path(), &DATA, |_| false, "5s", "500ms");
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    let postmasters: Vec<(String, i32)> = c
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.postmaster_pid().expect("postmaster.pid")))
        .collect();
    let logs_before: Vec<usize> = c.nodes.iter().map(|n| n.log_text().len()).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let hogs = hog_every_core(stop.clone());
    let began = Instant::now();
    let mut slowest_loop_ms = 0u64;
    let watched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        holds_for(BUSY_FOR, "the cluster stays as it was", || {
            for n in &c.nodes {
                // A status that does not come back within the harness's
                // 10 s is a stalled agent: that is a finding too.
                let doc = n
                    .status()
                    .ok_or(format!("{} did not answer /status", n.name))?;
                if let Some(ms) = doc["agent"]["loop_last_ms_ago"].as_u64() {
                    slowest_loop_ms = slowest_loop_ms.max(ms);
                }
                let role = if n.name == primary {
                    "primary"
                } else {
                    "replica"
                };
                if doc["role"] != role || doc["state"] != "running" {
                    return Err(format!(
                        "{} after {:?} of load: {doc}",
                        n.name,
                        began.elapsed()
                    ));
                }
            }
            Ok(())
        });
    }));
    stop.store(true, Ordering::Relaxed);
    let spins: u64 = hogs.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    if let Err(panic) = watched {
        std::panic::resume_unwind(panic);
    }
    eprintln!(
        "{BUSY_FOR:?} with every core busy ({spins} spins); the slowest HA loop seen was {slowest_loop_ms} ms ago"
    );

    for (n, before) in c.nodes.iter().zip(logs_before) {
        let (_, pm) = postmasters
            .iter()
            .find(|(name, _)| *name == n.name)
            .unwrap();
        assert_eq!(
            n.postmaster_pid(),
            Some(*pm),
            "{}: PostgreSQL was restarted under load",
            n.name
        );
        let during = &n.log_text()[before..];
        for sign in [
            "fencing",
            "lost the leader lease",
            "exited unexpectedly",
            "acquired the leader lease",
        ] {
            assert!(
                !during.contains(sign),
                "{}: {sign:?} under load:\n{during}",
                n.name
            );
        }
    }
    assert_eq!(c.wait_streaming(&DATA), primary);
}
