//! The invariants a chaos run checks besides the writer's: no data
//! directory deleted, no agent panic or unexpected exit, no 5xx other than
//! the health checks' 503.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{http_raw_to, Node};

/// The data directories every member ever had, by inode: a directory
/// renamed aside keeps its inode, a deleted one loses it.
#[derive(Debug, Default)]
pub struct DataDirs {
    seen: BTreeMap<String, BTreeMap<u64, PathBuf>>,
}

/// The inodes of the directories in `node`'s own directory, with their
/// paths (the data directory and whatever was renamed aside next to it).
fn directories(node: &Node) -> BTreeMap<u64, PathBuf> {
    let Some(parent) = node.data_dir.parent() else {
        return BTreeMap::new();
    };
    let Ok(entries) = fs::read_dir(parent) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| Some((e.metadata().ok()?.ino(), e.path())))
        .collect()
}

impl DataDirs {
    /// Records the data directories of `nodes` and returns, for each one
    /// seen before that is gone now, a violation.
    pub fn check(&mut self, nodes: &[Node]) -> Vec<String> {
        let mut gone = Vec::new();
        for node in nodes {
            let now = directories(node);
            let seen = self.seen.entry(node.name.clone()).or_default();
            for (ino, path) in seen.iter() {
                if !now.contains_key(ino) {
                    gone.push(format!(
                        "{}: the directory {} (inode {ino}) was deleted, not renamed aside",
                        node.name,
                        path.display()
                    ));
                }
            }
            if let Ok(meta) = fs::metadata(&node.data_dir) {
                seen.insert(meta.ino(), node.data_dir.clone());
            }
            // Directories renamed aside are data directories too.
            for (ino, path) in now {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                if name.is_some_and(|n| n.starts_with("data.")) {
                    seen.insert(ino, path);
                }
            }
        }
        gone
    }
}

/// Lines of the agents' logs that say a thread panicked, with the log's
/// path; every log the nodes ever wrote (one per start).
pub fn panics(nodes: &[Node]) -> Vec<String> {
    let mut found = Vec::new();
    for node in nodes {
        let Ok(entries) = fs::read_dir(&node.dir) else {
            continue;
        };
        let mut logs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("agent-"))
            })
            .collect();
        logs.sort();
        for log in logs {
            let text = fs::read_to_string(&log).unwrap_or_default();
            for line in text.lines().filter(|l| l.contains("panicked at")) {
                found.push(format!("{}: {line}", log.display()));
            }
        }
    }
    found
}

/// The read-only endpoints the prober asks: every one a load balancer,
/// a monitoring system or `pgwarden list` uses.
const PROBED: [&str; 10] = [
    "/status",
    "/health",
    "/primary",
    "/replica",
    "/liveness",
    "/readiness",
    "/patroni",
    "/cluster",
    "/pgwarden/cluster",
    "/metrics",
];

/// A thread asking every member's API the [`PROBED`] endpoints in turn,
/// all through the run of a fault, recording any answer 500 or above but
/// 503 (the health checks' "no").
pub struct Prober {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    found: Arc<Mutex<BTreeSet<String>>>,
    asked: Arc<Mutex<u64>>,
}

impl Prober {
    /// Starts asking `apis` (member name, API address).
    pub fn start(apis: Vec<(String, SocketAddr)>) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let found = Arc::new(Mutex::new(BTreeSet::new()));
        let asked = Arc::new(Mutex::new(0u64));
        let (flag, sink, count) = (stop.clone(), found.clone(), asked.clone());
        let thread = std::thread::Builder::new()
            .name("chaos-prober".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    for (name, api) in &apis {
                        for path in PROBED {
                            if flag.load(Ordering::Relaxed) {
                                return;
                            }
                            let req = format!(
                                "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                                api.ip()
                            );
                            // Unreachable or frozen agents time out: that
                            // is the fault, not a 5xx.
                            if let Ok(a) =
                                http_raw_to(*api, req.as_bytes(), Duration::from_millis(1500))
                            {
                                *count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
                                if a.status >= 500 && a.status != 503 {
                                    sink.lock().unwrap_or_else(PoisonError::into_inner).insert(
                                        format!(
                                            "GET {path} on {name}: {} {}",
                                            a.status,
                                            a.body.chars().take(200).collect::<String>()
                                        ),
                                    );
                                }
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
            .ok();
        Prober {
            stop,
            thread,
            found,
            asked,
        }
    }

    /// Stops it; the 5xx answers it saw and how many answers it got.
    pub fn stop(mut self) -> (Vec<String>, u64) {
        self.join();
        let found = self
            .found
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        let asked = *self.asked.lock().unwrap_or_else(PoisonError::into_inner);
        (found, asked)
    }

    fn join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.join();
    }
}
