//! A series of switchovers on one cluster under the writer, as
//! `switchover-bench` and `bench` measure it: the write-unavailable window
//! of each (the last write the old primary acknowledged to the first the
//! new one acknowledged), when the request was answered, and what the
//! series lost.

use std::time::{Duration, Instant};

use crate::writer::{Writer, WriterTarget};
use crate::{Cluster, TestDir, SLOW};

const DATA: [&str; 3] = ["pg1", "pg2", "pg3"];

/// What a series of switchovers measured.
#[derive(Debug, Clone)]
pub struct Switchovers {
    /// Seconds without an acknowledged write, one per switchover.
    pub windows: Vec<f64>,
    /// Seconds until `POST /switchover` was answered, one per switchover.
    pub answers: Vec<f64>,
    /// Acknowledged ids the final primary lacks.
    pub missing: Vec<i64>,
    /// Ids the writer had acknowledged through `/primary`.
    pub acknowledged: usize,
    /// Times two members accepted writes at once (from the writer's record).
    pub overlaps: usize,
    /// Members whose agent ran `pg_rewind`.
    pub rewinds: Vec<String>,
}

/// `count` switchovers, one every 2 s, from the current primary to the
/// best standby (`POST /switchover {"leader": <primary>}`, as `pgwarden
/// switchover` sends it), on one three-node cluster with `ttl` and
/// `loop_wait`; prints a line per switchover. Exits 1 when one is refused.
pub fn switchovers(count: usize, ttl: &str, loop_wait: &str) -> Switchovers {
    let root = TestDir::new();
    let mut c = Cluster::new(root.path(), &DATA, |_| false, ttl, loop_wait);
    c.start_all();
    let mut primary = c.wait_streaming(&DATA);
    let writer = Writer::start(c.nodes.iter().map(WriterTarget::of).collect());
    writer.wait_routed_accept(&primary, Instant::now(), SLOW);
    let mut moves = Vec::new();
    for run in 1..=count {
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
    Switchovers {
        windows,
        answers,
        missing: report.missing_on(final_node.pg_port),
        acknowledged: report.routed_ids().len(),
        overlaps: report.overlaps().len(),
        rewinds: c
            .nodes
            .iter()
            .filter(|n| n.log_text().contains("pg_rewind"))
            .map(|n| n.name.clone())
            .collect(),
    }
}
