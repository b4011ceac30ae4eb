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

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pgwarden_tests::bench::{
    bench_args_with, data_cluster, print_stats, wait_commits_flow, SYNCHRONOUS_MODES,
};
use pgwarden_tests::writer::{Writer, WriterTarget};
use pgwarden_tests::*;

const DATA: [&str; 3] = ["pg1", "pg2", "pg3"];

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
        let root = TestDir::new();
        let mut c = data_cluster(root.path(), &DATA, &a.ttl, &a.loop_wait, synchronous);
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
        let streaming = killed.elapsed();
        let write_s = first
            .map(|t| (t - killed).as_secs_f64())
            .unwrap_or(f64::NAN);
        let loss = if mode == "off" {
            format!("{} acknowledged writes lost", missing.len())
        } else {
            format!(
                "{} acknowledged writes lost (of {}; synchronous = {mode:?}: must be 0)",
                missing.len(),
                report.routed_ids().len()
            )
        };
        println!(
            "run {run}: {old} killed; {new} accepted a write after {write_s:.2} s; {loss}; {old} streaming again after {:.2} s",
            streaming.as_secs_f64()
        );
        if mode != "off" && !missing.is_empty() {
            println!("run {run}: acknowledged ids {new} lacks: {missing:?}");
            losses.push((run, missing.clone()));
        }
        to_write.push(write_s);
        lost.push(missing.len() as f64);
        to_stream.push(streaming.as_secs_f64());
        // PostgreSQL alone crashes on the primary: back to writable
        let primary = c.wait_streaming(&DATA);
        wait_commits_flow(c.node(&primary), mode);
        let node = c.node(&primary);
        let pm = node.postmaster_pid().unwrap_or(0);
        let crashed = Instant::now();
        let _ = kill(Pid::from_raw(pm), Signal::SIGKILL);
        wait_for(Duration::from_secs(120), "writable again", || {
            let new_pm = node.postmaster_pid()?;
            (new_pm != pm && node.psql("CREATE TABLE IF NOT EXISTS crash_probe (id int); INSERT INTO crash_probe VALUES (1)").is_ok())
                .then_some(())
        });
        let back = crashed.elapsed().as_secs_f64();
        println!("run {run}: PostgreSQL on {primary} killed; writable again after {back:.2} s");
        pg_crash.push(back);
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
