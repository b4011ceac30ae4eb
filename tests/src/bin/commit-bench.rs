//! The commit benchmark: what each `replication.synchronous` mode costs a
//! writing application. For every mode (`off`, `on`, `quorum`) a fresh
//! three-node cluster; once both standbys stream (and, in a synchronous
//! mode, the primary's `/status` says writes are not blocked), `pgbench`
//! runs its simple-update script (`-N`) against the primary, and the
//! throughput and the latency of every transaction (average, median, 99th
//! percentile, from pgbench's per-transaction log) are printed per run,
//! then as a table of the median and max over the runs.
//!
//! Run as root: `cargo run -p pgwarden-tests --bin commit-bench -- --runs 3`
//! (build the agent first: `cargo build -p pgwarden`). `--quick` runs
//! pgbench for 5 s instead of 30. The modes of one run follow each other,
//! so that a change in the machine's other load touches all of them.

use std::fs;
use std::path::Path;
use std::process::Command;

use pgwarden_tests::bench::{
    bench_args_with, data_cluster, median, percentile, wait_commits_flow, SYNCHRONOUS_MODES,
};
use pgwarden_tests::*;

const DATA: [&str; 3] = ["pg1", "pg2", "pg3"];

/// The usage line's options, with their defaults.
const OPTIONS: [(&str, &str); 5] = [
    ("--clients", "4"),
    ("--jobs", "2"),
    ("--duration", "30 (seconds)"),
    ("--scale", "1"),
    ("--modes", "off,on,quorum"),
];

/// What one pgbench run measured.
#[derive(Debug, Clone, Copy)]
struct Measured {
    /// Transactions per second (pgbench's, without connection time).
    tps: f64,
    /// Latency of a transaction, ms: the average, the median and the 99th
    /// percentile over every transaction of the run.
    avg_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Transactions that committed.
    transactions: usize,
}

/// How pgbench is run.
struct Load {
    clients: u32,
    jobs: u32,
    seconds: u32,
    scale: u32,
}

/// A number option, or exit 2 naming it.
fn number(a: &pgwarden_tests::bench::BenchArgs, option: &str, default: u32) -> u32 {
    match a.value(option) {
        None => default,
        Some(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("commit-bench: {option} takes a number, not {v:?}");
            std::process::exit(2);
        }),
    }
}

/// `pgbench <args>` against `node`'s PostgreSQL as the superuser, through
/// its socket (as [`Node::psql`] connects); its standard output, or exit 1
/// with what pgbench said.
fn pgbench(node: &Node, args: &[String]) -> String {
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
            "commit-bench: pgbench {} on {} failed ({}):\n{}{}",
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

/// One run of `mode`: a fresh cluster, pgbench's tables, then the load.
fn run_mode(a: &pgwarden_tests::bench::BenchArgs, mode: &str, load: &Load) -> Measured {
    let root = TestDir::new();
    let mut c = data_cluster(root.path(), &DATA, &a.ttl, &a.loop_wait, Some(mode));
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
fn cell(values: &[f64], decimals: usize) -> String {
    let mut v = values.to_vec();
    let m = median(&mut v);
    let max = v.last().copied().unwrap_or(f64::NAN);
    format!("{m:.decimals$} / {max:.decimals$}")
}

fn main() {
    let a = bench_args_with("commit-bench", 1, &["--quick"], &OPTIONS);
    let modes: Vec<String> = a
        .value("--modes")
        .unwrap_or("off,on,quorum")
        .split(',')
        .map(|m| m.trim().to_string())
        .collect();
    if let Some(bad) = modes
        .iter()
        .find(|m| !SYNCHRONOUS_MODES.contains(&m.as_str()))
    {
        eprintln!("commit-bench: --modes: {bad:?} is not one of {SYNCHRONOUS_MODES:?}");
        std::process::exit(2);
    }
    let load = Load {
        clients: number(&a, "--clients", 4),
        jobs: number(&a, "--jobs", 2),
        seconds: number(&a, "--duration", if a.has("--quick") { 5 } else { 30 }),
        scale: number(&a, "--scale", 1),
    };
    if !require_root("commit-bench") {
        std::process::exit(1);
    }
    println!(
        "commit benchmark: {} runs of modes {}; pgbench -N -c {} -j {} -T {} (scale {}); ttl {}, loop_wait {}",
        a.runs,
        modes.join(", "),
        load.clients,
        load.jobs,
        load.seconds,
        load.scale,
        a.ttl,
        a.loop_wait
    );
    let mut results: Vec<(String, Vec<Measured>)> =
        modes.iter().map(|m| (m.clone(), Vec::new())).collect();
    for run in 1..=a.runs {
        for (mode, measured) in &mut results {
            let m = run_mode(&a, mode, &load);
            println!(
                "run {run}, synchronous = {mode:?}: {:.1} tps; latency avg {:.2} ms, median {:.2} ms, p99 {:.2} ms ({} transactions)",
                m.tps, m.avg_ms, m.p50_ms, m.p99_ms, m.transactions
            );
            measured.push(m);
        }
    }
    println!();
    println!("median / max over the runs");
    println!("| mode | tps | latency avg (ms) | latency median (ms) | latency p99 (ms) | runs |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (mode, measured) in &results {
        let column = |f: fn(&Measured) -> f64| measured.iter().map(f).collect::<Vec<f64>>();
        println!(
            "| `{mode}` | {} | {} | {} | {} | {} |",
            cell(&column(|m| m.tps), 0),
            cell(&column(|m| m.avg_ms), 2),
            cell(&column(|m| m.p50_ms), 2),
            cell(&column(|m| m.p99_ms), 2),
            measured.len()
        );
    }
}
