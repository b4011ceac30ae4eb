//! Bounded parallelism for tests that run agents.
//!
//! `cargo test` runs every test function of a file on its own thread, and
//! every test file as its own process. Left alone, the failover file starts
//! seven three-node clusters at once on two cores: lease rounds and probes
//! then miss their deadlines, and the agents act on that exactly as they
//! would on an overloaded host. So every test that starts an agent first
//! takes **slots**, one per member of the cluster it runs, from a fixed
//! number ([`capacity`], three by default: one three-node cluster, or
//! three single-node tests, at a time), shared by every test process on
//! the machine through lock files (`flock`). Unit tests and the simulator
//! take none and stay parallel.
//!
//! The harness takes the slots by itself: the first agent a test thread
//! starts takes as many slots as that agent's cluster has members; every
//! later agent of the same test shares them; they are given back when the
//! last of the test's nodes is dropped (after its processes are killed).
//! A new test that uses [`crate::Node`], [`crate::Cluster`] or
//! [`crate::netns::NetCluster`] follows the rule without doing anything.
//!
//! Fairness: one test at a time collects slots while holding a gate lock,
//! so a three-slot test is not starved by a stream of one-slot tests.

use std::cell::RefCell;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// How many slots exist: `PGWARDEN_TEST_SLOTS`, else 3.
pub fn capacity() -> usize {
    std::env::var("PGWARDEN_TEST_SLOTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(3)
}

/// Slots held by one test; given back when dropped.
pub struct Slots {
    held: Vec<Flock<File>>,
}

impl Slots {
    /// How many slots are held.
    pub fn count(&self) -> usize {
        self.held.len()
    }
}

thread_local! {
    /// The slots of the test running on this thread, while any of its
    /// nodes lives.
    static MINE: RefCell<Weak<Slots>> = const { RefCell::new(Weak::new()) };
}

/// The slots of the test running on this thread: the ones it already
/// holds, or `members` new ones (at most [`capacity`]), waiting for them.
pub fn for_this_test(members: usize) -> Arc<Slots> {
    if let Some(held) = MINE.with(|m| m.borrow().upgrade()) {
        return held;
    }
    let slots = Arc::new(acquire(members.clamp(1, capacity())));
    MINE.with(|m| *m.borrow_mut() = Arc::downgrade(&slots));
    slots
}

fn dir() -> PathBuf {
    let dir = std::env::temp_dir().join("pgwarden-test-slots");
    if fs::create_dir_all(&dir).is_ok() {
        // Shared by every user's test runs on this machine.
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777));
    }
    dir
}

fn open(name: &str) -> File {
    let path = dir().join(name);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("test slots: cannot open {}: {e}", path.display()));
    let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o666));
    file
}

fn acquire(want: usize) -> Slots {
    let began = Instant::now();
    let gate = Flock::lock(open("gate"), FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("test slots: cannot lock the gate: {e}"));
    let mut held = Vec::new();
    let mut said = false;
    while held.len() < want {
        for i in 0..capacity() {
            if held.len() == want {
                break;
            }
            if let Ok(lock) =
                Flock::lock(open(&format!("slot-{i}")), FlockArg::LockExclusiveNonblock)
            {
                held.push(lock);
            }
        }
        if held.len() < want {
            if !said && began.elapsed() > Duration::from_secs(1) {
                eprintln!(
                    "test slots: waiting for {want} of {} (other cluster tests run)",
                    capacity()
                );
                said = true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    drop(gate);
    Slots { held }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_of_one_test_share_its_slots_and_give_them_back() {
        let a = for_this_test(2);
        let b = for_this_test(3);
        assert!(Arc::ptr_eq(&a, &b), "a second node shares the test's slots");
        assert_eq!(a.count(), 2.min(capacity()));
        drop((a, b));
        let c = for_this_test(1);
        assert_eq!(c.count(), 1, "a new set once the old one was given back");
    }
}
