//! One failover run, as `failover-bench` and `bench` measure it: a fresh
//! three-node cluster under the writer, node death of the primary (agent
//! and postmaster killed together), the dead node started again, then a
//! crash of PostgreSQL alone on the new primary.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{data_cluster, wait_commits_flow};
use crate::writer::{Writer, WriterTarget};
use crate::{http, wait_for, TestDir};

const DATA: [&str; 3] = ["pg1", "pg2", "pg3"];

/// What one failover run measured.
#[derive(Debug, Clone)]
pub struct FailoverRun {
    /// The primary that was killed.
    pub old: String,
    /// The member that took over.
    pub new: String,
    /// Seconds from the kill until the writer's first acknowledged insert
    /// on the new primary (NaN when none arrived).
    pub to_write_s: f64,
    /// Acknowledged ids the new primary lacks.
    pub missing: Vec<i64>,
    /// Ids the writer had acknowledged through `/primary`.
    pub acknowledged: usize,
    /// Seconds from the kill until all three stream again, the dead node's
    /// agent started again once the new primary took writes.
    pub to_stream_s: f64,
    /// The primary whose PostgreSQL alone was then killed.
    pub crashed: String,
    /// Seconds from that kill until an INSERT succeeded on it again.
    pub crash_to_writable_s: f64,
}

/// One run: `ttl`, `loop_wait`, and `replication.synchronous` when given
/// (`None`: the key left out, asynchronous). Panics, with the agents'
/// logs, when the cluster does not converge within the harness's bounds.
pub fn failover_run(ttl: &str, loop_wait: &str, synchronous: Option<&str>) -> FailoverRun {
    let mode = synchronous.unwrap_or("off");
    let root = TestDir::new();
    let mut c = data_cluster(root.path(), &DATA, ttl, loop_wait, synchronous);
    c.start_all();
    let old = c.wait_streaming(&DATA);
    wait_commits_flow(c.node(&old), mode);
    let writer = Writer::start(c.nodes.iter().map(WriterTarget::of).collect());
    std::thread::sleep(Duration::from_secs(3));
    // node death: agent and postmaster together
    let killed = Instant::now();
    let pm = c.node(&old).postmaster_pid();
    c.node(&old).kill_agent();
    if let Some(pm) = pm {
        let _ = kill(Pid::from_raw(pm), Signal::SIGKILL);
    }
    let ports: Vec<(String, u16)> = c
        .nodes
        .iter()
        .filter(|n| n.name != old)
        .map(|n| (n.name.clone(), n.api_port))
        .collect();
    let new = wait_for(Duration::from_secs(120), "a new primary", || {
        ports
            .iter()
            .find(|(_, p)| http(*p, "GET", "/primary").is_ok_and(|r| r.status == 200))
            .map(|(n, _)| n.clone())
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        std::thread::sleep(Duration::from_millis(500));
        // the writer must have gone through the new primary
        if Instant::now() > deadline {
            break writer.stop();
        }
        if c.node(&new).psql("SELECT count(*) FROM writer_ids").is_ok() {
            std::thread::sleep(Duration::from_secs(1));
            break writer.stop();
        }
    };
    let first = report.first_accept_after(&new, killed);
    let missing = report.missing_on(c.node(&new).pg_port);
    // the dead node comes back (a reboot, systemd restarting the agent)
    c.node(&old).start();
    c.wait_streaming(&DATA);
    let to_stream_s = killed.elapsed().as_secs_f64();
    let to_write_s = first
        .map(|t| (t - killed).as_secs_f64())
        .unwrap_or(f64::NAN);
    // PostgreSQL alone crashes on the primary: back to writable
    let crashed = c.wait_streaming(&DATA);
    wait_commits_flow(c.node(&crashed), mode);
    let node = c.node(&crashed);
    let pm = node.postmaster_pid().unwrap_or(0);
    let crash = Instant::now();
    let _ = kill(Pid::from_raw(pm), Signal::SIGKILL);
    wait_for(Duration::from_secs(120), "writable again", || {
        let new_pm = node.postmaster_pid()?;
        (new_pm != pm
            && node
                .psql("CREATE TABLE IF NOT EXISTS crash_probe (id int); INSERT INTO crash_probe VALUES (1)")
                .is_ok())
        .then_some(())
    });
    FailoverRun {
        old,
        new,
        to_write_s,
        acknowledged: report.routed_ids().len(),
        missing,
        to_stream_s,
        crashed,
        crash_to_writable_s: crash.elapsed().as_secs_f64(),
    }
}
