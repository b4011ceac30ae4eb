//! The failover benchmark: kills the primary node (agent and PostgreSQL)
//! of a three-node cluster under the writer, several times, and prints the
//! median and max of: seconds from the kill until a new primary accepted a
//! write; acknowledged writes lost; seconds until the old node streams
//! again (its agent restarted once the new primary took writes, as after
//! a reboot; restarted at once, within the lease, it would simply keep
//! its lease and restart PostgreSQL as primary, with no failover).
//! Then the same for a crash of PostgreSQL alone (back to writable).
//!
//! `--synchronous on|quorum` writes `replication.synchronous` into every
//! node's configuration: then no acknowledged write may be lost, and a
//! run that loses one fails the benchmark (exit 1, the ids printed)
//! instead of being counted as asynchronous replication's price.
//!
//! Run as root: `cargo run -p pgwarden-tests --bin failover-bench -- --runs 5 --ttl 10s --loop-wait 1s`
//! (build the agent first: `cargo build -p pgwarden`).

use pgwarden_tests::bench::failover::failover_run;
use pgwarden_tests::bench::{bench_args_with, print_stats, SYNCHRONOUS_MODES};
use pgwarden_tests::*;

fn main() {
    let a = bench_args_with(
        "failover-bench",
        5,
        &[],
        &[("--synchronous", "off|on|quorum")],
    );
    // None: the key left out of the configuration (asynchronous).
    let synchronous = a.value("--synchronous");
    let mode = synchronous.unwrap_or("off");
    if !SYNCHRONOUS_MODES.contains(&mode) {
        eprintln!("failover-bench: --synchronous takes one of {SYNCHRONOUS_MODES:?}, not {mode:?}");
        std::process::exit(2);
    }
    if !require_root("failover-bench") {
        std::process::exit(1);
    }
    println!(
        "failover benchmark: {} runs, ttl {}, loop_wait {}, synchronous = {mode:?}",
        a.runs, a.ttl, a.loop_wait
    );
    let (mut to_write, mut lost, mut to_stream, mut pg_crash) = (vec![], vec![], vec![], vec![]);
    // Synchronous modes: (run, the ids lost), which must stay empty.
    let mut losses: Vec<(usize, Vec<i64>)> = Vec::new();
    for run in 1..=a.runs {
        let r = failover_run(&a.ttl, &a.loop_wait, synchronous);
        let (old, new) = (&r.old, &r.new);
        let loss = if mode == "off" {
            format!("{} acknowledged writes lost", r.missing.len())
        } else {
            format!(
                "{} acknowledged writes lost (of {}; synchronous = {mode:?}: must be 0)",
                r.missing.len(),
                r.acknowledged
            )
        };
        println!(
            "run {run}: {old} killed; {new} accepted a write after {:.2} s; {loss}; {old} streaming again after {:.2} s",
            r.to_write_s, r.to_stream_s
        );
        if mode != "off" && !r.missing.is_empty() {
            println!("run {run}: acknowledged ids {new} lacks: {:?}", r.missing);
            losses.push((run, r.missing.clone()));
        }
        to_write.push(r.to_write_s);
        lost.push(r.missing.len() as f64);
        to_stream.push(r.to_stream_s);
        println!(
            "run {run}: PostgreSQL on {} killed; writable again after {:.2} s",
            r.crashed, r.crash_to_writable_s
        );
        pg_crash.push(r.crash_to_writable_s);
    }
    println!();
    print_stats(
        "kill -9 of the primary node -> new primary writes (s)",
        &mut to_write,
    );
    print_stats("acknowledged writes lost", &mut lost);
    if mode != "off" {
        if !losses.is_empty() {
            eprintln!(
                "FAILED: synchronous = {mode:?} lost acknowledged writes in {} of {} runs: {losses:?}",
                losses.len(),
                a.runs
            );
        } else {
            println!("writes lost = 0 in every run (synchronous = {mode:?}) ✔");
        }
    }
    print_stats("kill -9 -> old node streaming again (s)", &mut to_stream);
    print_stats(
        "kill -9 of postgres only -> writable again (s)",
        &mut pg_crash,
    );
    if !losses.is_empty() {
        std::process::exit(1);
    }
}
