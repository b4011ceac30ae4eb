//! The start-up benchmark: how long a three-node cluster takes from empty
//! data directories to a primary and two streaming standbys, and how long
//! the primary stops taking writes when its agent is restarted (SIGTERM, as
//! `systemctl restart` sends, and kill -9): the target is no gap at all and
//! the same postmaster.
//!
//! Run as root: `cargo run -p pgwarden-tests --bin bootstrap-bench -- --runs 5`
//! (build the agent first: `cargo build -p pgwarden`).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pgwarden_tests::bench::{bench_args, print_stats};
use pgwarden_tests::writer::{Writer, WriterTarget};
use pgwarden_tests::*;

const DATA: [&str; 3] = ["pg1", "pg2", "pg3"];

/// The longest time between two writes the writer had acknowledged by
/// `primary` within `[from, to]`, in seconds.
fn longest_gap(accepts: &[Instant], from: Instant, to: Instant) -> f64 {
    let inside: Vec<Instant> = accepts
        .iter()
        .copied()
        .filter(|t| *t >= from && *t <= to)
        .collect();
    inside
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .fold(0.0, f64::max)
}

fn main() {
    let a = bench_args("bootstrap-bench", 5, &["--logs"]);
    if !require_root("bootstrap-bench") {
        std::process::exit(1);
    }
    println!(
        "start-up benchmark: {} runs, ttl {}, loop_wait {}",
        a.runs, a.ttl, a.loop_wait
    );
    let (mut bootstrap, mut sigterm_gap, mut kill_gap, mut bounced) = (vec![], vec![], vec![], 0);
    for run in 1..=a.runs {
        let root = TestDir::new();
        let mut c = Cluster::new(root.path(), &DATA, |_| false, &a.ttl, &a.loop_wait);
        let started = Instant::now();
        c.start_all();
        let primary = c.wait_streaming(&DATA);
        let took = started.elapsed().as_secs_f64();
        bootstrap.push(took);
        if a.has("--logs") {
            for n in &c.nodes {
                println!("--- {} ---\n{}", n.name, n.log_text());
            }
        }
        let writer = Writer::start(c.nodes.iter().map(WriterTarget::of).collect());
        writer.wait_routed_accept(&primary, Instant::now(), SLOW);
        let pm = c.node(&primary).postmaster_pid();
        let mut gaps = Vec::new();
        for (how, signal) in [("SIGTERM", Some(Signal::SIGTERM)), ("kill -9", None)] {
            std::thread::sleep(Duration::from_secs(1));
            let before = Instant::now();
            let node = c.node(&primary);
            match signal {
                Some(sig) => {
                    node.signal_agent(sig);
                    node.wait_agent(SLOW);
                }
                None => node.kill_agent(),
            }
            node.start();
            node.wait_primary();
            std::thread::sleep(Duration::from_secs(2));
            gaps.push((how, before, Instant::now()));
        }
        let report = writer.stop();
        let accepts = report.accepts.get(&primary).cloned().unwrap_or_default();
        let same = c.node(&primary).postmaster_pid() == pm;
        if !same {
            bounced += 1;
        }
        let sig = longest_gap(&accepts, gaps[0].1, gaps[0].2);
        let k9 = longest_gap(&accepts, gaps[1].1, gaps[1].2);
        println!(
            "run {run}: empty to all streaming in {took:.2} s; agent restart of {primary}: longest write gap {sig:.2} s (SIGTERM), {k9:.2} s (kill -9); postmaster {}",
            if same { "unchanged" } else { "RESTARTED" }
        );
        sigterm_gap.push(sig);
        kill_gap.push(k9);
    }
    println!();
    print_stats(
        "three-node bootstrap, empty to all streaming (s)",
        &mut bootstrap,
    );
    print_stats(
        "agent restart (SIGTERM): longest gap between writes (s)",
        &mut sigterm_gap,
    );
    print_stats(
        "agent restart (kill -9): longest gap between writes (s)",
        &mut kill_gap,
    );
    println!(
        "runs in which the primary's postmaster was restarted: {bounced} of {}",
        a.runs
    );
}
