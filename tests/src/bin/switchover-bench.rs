//! The switchover benchmark: how long writes are unavailable when an
//! operator moves the primary (`POST /switchover`), from the last write the
//! old primary accepted to the first the new one accepted, under the
//! writer; and that no acknowledged write is lost and nobody rewinds.
//!
//! Run as root: `cargo run -p pgwarden-tests --bin switchover-bench -- --runs 7`
//! (build the agent first: `cargo build -p pgwarden`). One three-node
//! cluster; each run switches over from the current primary to the best
//! standby.

use std::time::{Duration, Instant};

use pgwarden_tests::bench::{bench_args, print_stats};
use pgwarden_tests::writer::{Writer, WriterTarget};
use pgwarden_tests::*;

const DATA: [&str; 3] = ["pg1", "pg2", "pg3"];

fn main() {
    let a = bench_args("switchover-bench", 7, &[]);
    if !require_root("switchover-bench") {
        std::process::exit(1);
    }
    println!(
        "switchover benchmark: {} switchovers, ttl {}, loop_wait {}",
        a.runs, a.ttl, a.loop_wait
    );
    let root = TestDir::new();
    let mut c = Cluster::new(root.path(), &DATA, |_| false, &a.ttl, &a.loop_wait);
    c.start_all();
    let mut primary = c.wait_streaming(&DATA);
    let writer = Writer::start(c.nodes.iter().map(WriterTarget::of).collect());
    writer.wait_routed_accept(&primary, Instant::now(), SLOW);
    let mut moves = Vec::new();
    for run in 1..=a.runs {
        std::thread::sleep(Duration::from_secs(2));
        let node = c.nodes.iter().find(|n| n.name == primary).expect("node");
        let asked = Instant::now();
        let answer = node.operate(
            "POST",
            "/switchover",
            &format!(r#"{{"leader": "{primary}"}}"#),
        );
        let answered = asked.elapsed().as_secs_f64();
        if answer.status != 200 {
            eprintln!("run {run}: the switchover was not done: {answer:?}");
            std::process::exit(1);
        }
        let new = answer.json()["leader"]
            .as_str()
            .expect("the new leader's name")
            .to_string();
        writer.wait_routed_accept(&new, asked, SLOW);
        c.wait_streaming(&DATA);
        println!("run {run}: {primary} -> {new}, answered in {answered:.2} s");
        moves.push((primary.clone(), new.clone(), asked, answered));
        primary = new;
    }
    let report = writer.stop();
    let (mut windows, mut answers) = (Vec::new(), Vec::new());
    for (old, new, asked, answered) in &moves {
        let Some(first_new) = report.first_accept_after(new, *asked) else {
            continue;
        };
        let last_old = report
            .accepts
            .get(old)
            .and_then(|a| a.iter().rev().find(|t| **t < first_new).copied())
            .unwrap_or(*asked);
        windows.push(first_new.saturating_duration_since(last_old).as_secs_f64());
        answers.push(*answered);
    }
    let final_node = c.nodes.iter().find(|n| n.name == primary).expect("node");
    let missing = report.missing_on(final_node.pg_port);
    let rewinds: Vec<&str> = c
        .nodes
        .iter()
        .filter(|n| n.log_text().contains("pg_rewind"))
        .map(|n| n.name.as_str())
        .collect();
    println!();
    print_stats(
        "write-unavailable: last old write -> first new (s)",
        &mut windows,
    );
    print_stats("POST /switchover answered after (s)", &mut answers);
    println!(
        "acknowledged writes lost: {} of {}; overlapping writable members: {}; members that ran pg_rewind: {:?}",
        missing.len(),
        report.routed_ids().len(),
        report.overlaps().len(),
        rewinds
    );
    if !missing.is_empty() || !report.overlaps().is_empty() {
        std::process::exit(1);
    }
}
