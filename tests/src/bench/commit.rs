//! One `pgbench` run per `replication.synchronous` mode, as
//! `commit-bench` and `bench` measure it: a fresh three-node cluster,
//! pgbench's simple-update script (`-N`) against the primary, and the
//! throughput and latency of every transaction from pgbench's
//! per-transaction log.

use std::fs;
use std::path::Path;
use std::process::Command;

use super::{data_cluster, median, percentile, wait_commits_flow};
use crate::{pg_bin_dir, Node, TestDir};

const DATA: [&str; 3] = ["pg1", "pg2", "pg3"];

/// What one pgbench run measured.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Transactions per second (pgbench's, without connection time).
    pub tps: f64,
    /// Latency of a transaction, ms: the average, the median and the 99th
    /// percentile over every transaction of the run.
    pub avg_ms: f64,
    /// The median latency, ms.
    pub p50_ms: f64,
    /// The 99th percentile (nearest rank), ms.
    pub p99_ms: f64,
    /// Transactions that committed.
    pub transactions: usize,
}

/// How pgbench is run: `-c`, `-j`, `-T` and the scale of `-i -s`.
pub struct Load {
    /// Clients (`-c`).
    pub clients: u32,
    /// Threads (`-j`).
    pub jobs: u32,
    /// Seconds (`-T`).
    pub seconds: u32,
    /// Scale factor of the tables (`-i -s`).
    pub scale: u32,
}

/// `pgbench <args>` against `node`'s PostgreSQL as the superuser, through
/// its socket (as [`Node::psql`] connects); its standard output, or exit 1
/// with what pgbench said.
pub fn pgbench(node: &Node, args: &[String]) -> String {
    let out = Command::new(pg_bin_dir().join("pgbench"))
        .arg("-h")
        .arg(&node.socket_dir)
        .arg("-p")
        .arg(node.pg_port.to_string())
        .args(["-U", "postgres"])
        .args(args)
        .arg("postgres")
        .output()
        .unwrap_or_else(|e| panic!("cannot run pgbench from {}: {e}", pg_bin_dir().display()));
    if !out.status.success() {
        eprintln!(
            "pgbench {} on {} failed ({}):\n{}{}",
            args.join(" "),
            node.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::process::exit(1);
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number after `prefix` on the line of pgbench's summary that starts
/// with it (`tps = 812.3 (without initial connection time)`).
fn summary_figure(summary: &str, prefix: &str) -> Option<f64> {
    summary
        .lines()
        .find_map(|l| l.strip_prefix(prefix))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The latencies, ms, of every transaction in pgbench's per-transaction
/// logs in `dir` (`client_id transaction_no time_us script_no epoch us`;
/// a failed transaction has a word instead of a time, and is left out).
fn logged_latencies(dir: &Path) -> Vec<f64> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("pgbench log directory") {
        let text = fs::read_to_string(entry.expect("log file").path()).unwrap_or_default();
        out.extend(
            text.lines()
                .filter_map(|l| l.split_whitespace().nth(2)?.parse::<f64>().ok())
                .map(|us| us / 1000.0),
        );
    }
    out
}

/// One run of `mode` (`replication.synchronous`) with `ttl` and
/// `loop_wait`: a fresh cluster, pgbench's tables, then the load.
pub fn run_mode(ttl: &str, loop_wait: &str, mode: &str, load: &Load) -> Measured {
    let root = TestDir::new();
    let mut c = data_cluster(root.path(), &DATA, ttl, loop_wait, Some(mode));
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    let node = c.node(&primary);
    let sync = wait_commits_flow(node, mode);
    let standbys = node
        .psql("SELECT string_agg(application_name || ' ' || sync_state, ', ' ORDER BY application_name) FROM pg_stat_replication")
        .unwrap_or_else(|e| e.trim().to_string());
    println!("  {mode}: primary {primary}; its standbys: {standbys}; /status synchronous: {sync}");
    pgbench(
        node,
        &[
            "-i".into(),
            "-q".into(),
            "-s".into(),
            load.scale.to_string(),
        ],
    );
    let logs = root.path().join("pgbench-log");
    fs::create_dir(&logs).expect("pgbench log directory");
    let summary = pgbench(
        node,
        &[
            "-N".into(),
            "-c".into(),
            load.clients.to_string(),
            "-j".into(),
            load.jobs.to_string(),
            "-T".into(),
            load.seconds.to_string(),
            "-l".into(),
            format!("--log-prefix={}", logs.join("tx").display()),
        ],
    );
    let tps = summary_figure(&summary, "tps = ").unwrap_or(f64::NAN);
    let mut latencies = logged_latencies(&logs);
    let transactions = latencies.len();
    let avg_ms = latencies.iter().sum::<f64>() / transactions as f64;
    let p50_ms = median(&mut latencies);
    let p99_ms = percentile(&mut latencies, 99.0);
    let counted = summary_figure(&summary, "number of transactions actually processed: ");
    if counted != Some(transactions as f64) {
        println!(
            "  {mode}: pgbench counted {counted:?} transactions, its logs {transactions}; summary:\n{summary}"
        );
    }
    // Still committing on as many standbys as at the start: the figure is
    // the mode's, not that of a cluster that fell back or stalled.
    let after = wait_commits_flow(c.node(&primary), mode);
    if after != sync {
        println!("  {mode}: /status synchronous after the load: {after}");
    }
    Measured {
        tps,
        avg_ms,
        p50_ms,
        p99_ms,
        transactions,
    }
}

/// `median / max` of one figure over the runs of a mode.
pub fn cell(values: &[f64], decimals: usize) -> String {
    let mut v = values.to_vec();
    let m = median(&mut v);
    let max = v.last().copied().unwrap_or(f64::NAN);
    format!("{m:.decimals$} / {max:.decimals$}")
}
