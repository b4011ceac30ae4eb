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

use pgwarden_tests::bench::commit::{cell, run_mode, Load, Measured};
use pgwarden_tests::bench::{bench_args_with, SYNCHRONOUS_MODES};
use pgwarden_tests::*;

/// The usage line's options, with their defaults.
const OPTIONS: [(&str, &str); 5] = [
    ("--clients", "4"),
    ("--jobs", "2"),
    ("--duration", "30 (seconds)"),
    ("--scale", "1"),
    ("--modes", "off,on,quorum"),
];

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
            let m = run_mode(&a.ttl, &a.loop_wait, mode, &load);
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
