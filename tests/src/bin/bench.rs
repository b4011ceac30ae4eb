//! `bench`: every figure pgwarden promises, measured by one command and
//! printed with the method, the machine and, beside each figure, its
//! target on 2 cores and PASS or MISS. A miss is reported, never an exit
//! status: benchmarks measure, tests assert.
//!
//! The benchmarks, in the order they run (`--only` takes these names):
//!
//! - `bootstrap`: three agents on empty data directories, until one
//!   primary and two streaming standbys (as `bootstrap-bench`);
//! - `idle`: a settled three-node cluster at the defaults, each agent's
//!   resident memory (`VmRSS`) and CPU time (`utime + stime`) from
//!   `/proc` over a 60 s window;
//! - `health`: `GET /primary` of the primary under `wrk -t2 -c16 -d10s`
//!   (or, when wrk is not installed, an in-process generator doing the
//!   same): requests per second and the 99th percentile;
//! - `switchover`: the write-unavailable window of `POST /switchover`
//!   under the writer (as `switchover-bench`);
//! - `failover`, `failover-ttl3`: node death of the primary under the
//!   writer, at the defaults and at `ttl = 3s`, `loop_wait = 500ms` (as
//!   `failover-bench`): to the new primary's first write, to the old
//!   primary streaming again, and a PostgreSQL-only crash to writable;
//! - `commit`: pgbench's simple-update script in each replication mode
//!   (as `commit-bench`, 10 s per mode).
//!
//! Each figure is the median and max over `--runs` runs (5; `idle` over
//! the three agents of one window; `switchover` over as many switchovers
//! on one cluster). `--quick`: one run, shorter windows, a smoke check.
//!
//! Run as root: `cargo build --workspace --all-targets && target/debug/bench`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;
use std::time::{Duration, Instant};

use pgwarden_tests::bench::commit::{run_mode, Load};
use pgwarden_tests::bench::failover::failover_run;
use pgwarden_tests::bench::load::{load, wrk_installed, LoadShape};
use pgwarden_tests::bench::machine;
use pgwarden_tests::bench::switchover::switchovers;
use pgwarden_tests::bench::{bench_args_with, median, BenchArgs, SYNCHRONOUS_MODES};
use pgwarden_tests::*;

/// The benchmarks, in the order they run.
const BENCHMARKS: [&str; 7] = [
    "bootstrap",
    "idle",
    "health",
    "switchover",
    "failover",
    "failover-ttl3",
    "commit",
];

const DATA: [&str; 3] = ["pg1", "pg2", "pg3"];

/// Which statistic of a figure its target judges.
#[derive(Debug, Clone, Copy)]
enum Judged {
    /// The median over the runs.
    Median,
    /// The largest value (every node must meet it).
    Max,
}

/// A promise: the statistic `judged` must be at most (or, `at_least`, at
/// least) `bound`.
#[derive(Debug, Clone, Copy)]
struct Target {
    bound: f64,
    at_least: bool,
    judged: Judged,
}

impl Target {
    fn at_most(bound: f64) -> Option<Target> {
        Some(Target {
            bound,
            at_least: false,
            judged: Judged::Median,
        })
    }

    fn at_least(bound: f64) -> Option<Target> {
        Some(Target {
            bound,
            at_least: true,
            judged: Judged::Median,
        })
    }

    fn every_node_at_most(bound: f64) -> Option<Target> {
        Some(Target {
            bound,
            at_least: false,
            judged: Judged::Max,
        })
    }
}

/// One measured figure: its values over the runs (or nodes).
#[derive(Debug, Clone)]
struct Figure {
    name: String,
    unit: &'static str,
    decimals: usize,
    values: Vec<f64>,
    /// What the values are one per: `runs`, `nodes`, `switchovers`.
    over: &'static str,
    target: Option<Target>,
}

impl Figure {
    fn new(name: impl Into<String>, unit: &'static str, decimals: usize) -> Figure {
        Figure {
            name: name.into(),
            unit,
            decimals,
            values: Vec::new(),
            over: "runs",
            target: None,
        }
    }

    fn target(mut self, target: Option<Target>) -> Figure {
        self.target = target;
        self
    }

    fn over(mut self, over: &'static str) -> Figure {
        self.over = over;
        self
    }

    fn median(&self) -> f64 {
        median(&mut self.values.clone())
    }

    fn max(&self) -> f64 {
        self.values.iter().copied().fold(f64::NAN, f64::max)
    }

    fn format(&self, v: f64) -> String {
        let d = self.decimals;
        if v.is_nan() {
            "—".into()
        } else if v >= 10_000.0 {
            // thousands apart, for requests per second
            let digits = (v.round() as u64).to_string();
            let groups: Vec<&str> = digits
                .as_bytes()
                .rchunks(3)
                .rev()
                .map(|g| std::str::from_utf8(g).expect("digits"))
                .collect();
            let out = groups.join(",");
            format!("{out} {}", self.unit)
        } else {
            format!("{v:.d$} {}", self.unit)
        }
    }

    /// `≤ 12 s (median)`, or `—` without a target.
    fn target_text(&self) -> String {
        let Some(t) = self.target else {
            return "—".into();
        };
        let judged = match t.judged {
            Judged::Median => "median",
            Judged::Max => "every node",
        };
        let sign = if t.at_least { "≥" } else { "≤" };
        format!("{sign} {} ({judged})", self.format(t.bound))
    }

    /// PASS, MISS, or empty without a target (or without values).
    fn verdict(&self) -> &'static str {
        let Some(t) = self.target else {
            return "";
        };
        let v = match t.judged {
            Judged::Median => self.median(),
            Judged::Max => self.max(),
        };
        if v.is_nan() {
            return "no value";
        }
        match (t.at_least, v >= t.bound, v <= t.bound) {
            (true, true, _) | (false, _, true) => "PASS",
            _ => "MISS",
        }
    }
}

/// The command line and what it implies.
struct Plan {
    args: BenchArgs,
    runs: usize,
    quick: bool,
    only: Vec<String>,
    health_window: Duration,
    idle_window: Duration,
    commit_seconds: u32,
}

impl Plan {
    fn from_command_line() -> Plan {
        let args = bench_args_with(
            "bench",
            0,
            &["--quick"],
            &[(
                "--only",
                "bootstrap,idle,health,switchover,failover,failover-ttl3,commit",
            )],
        );
        let quick = args.has("--quick");
        let only: Vec<String> = match args.value("--only") {
            None => BENCHMARKS.iter().map(|b| b.to_string()).collect(),
            Some(list) => list.split(',').map(|b| b.trim().to_string()).collect(),
        };
        if let Some(bad) = only.iter().find(|b| !BENCHMARKS.contains(&b.as_str())) {
            eprintln!(
                "bench: --only: {bad:?} is not one of {}",
                BENCHMARKS.join(", ")
            );
            std::process::exit(2);
        }
        let runs = match (args.runs, quick) {
            (0, true) => 1,
            (0, false) => 5,
            (n, _) => n,
        };
        Plan {
            runs,
            quick,
            only,
            health_window: Duration::from_secs(if quick { 3 } else { 10 }),
            idle_window: Duration::from_secs(if quick { 10 } else { 60 }),
            commit_seconds: if quick { 5 } else { 10 },
            args,
        }
    }

    fn runs(&self, name: &str) -> bool {
        self.only.iter().any(|b| b == name)
    }
}

fn main() {
    let plan = Plan::from_command_line();
    if !require_root("bench") {
        std::process::exit(1);
    }
    let started = Instant::now();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!(
        "pgwarden benchmark, {date}{}",
        if plan.quick {
            " — QUICK (one run, short windows: a smoke check, not figures to quote)"
        } else {
            ""
        }
    );
    let machine = machine::describe();
    for (key, value) in &machine {
        println!("  {key}: {value}");
    }
    println!("  agent: {}", pgwarden_bin().display());
    println!(
        "  runs: {}; defaults: ttl {}, loop_wait {}; benchmarks: {}",
        plan.runs,
        plan.args.ttl,
        plan.args.loop_wait,
        plan.only.join(", ")
    );
    let mut figures: Vec<Figure> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for name in BENCHMARKS.iter().filter(|b| plan.runs(b)) {
        println!("\n== {name} ==");
        let began = Instant::now();
        let measured = catch_unwind(AssertUnwindSafe(|| match *name {
            "bootstrap" => bootstrap(&plan),
            "idle" => idle(&plan),
            "health" => health(&plan),
            "switchover" => switchover(&plan),
            "failover" => failover(
                &plan,
                &plan.args.ttl,
                &plan.args.loop_wait,
                "defaults",
                12.0,
            ),
            "failover-ttl3" => failover(&plan, "3s", "500ms", "ttl 3s", 4.0),
            "commit" => commit(&plan),
            other => unreachable!("no benchmark {other}"),
        }));
        match measured {
            Ok((mut f, mut n)) => {
                figures.append(&mut f);
                notes.append(&mut n);
            }
            Err(_) => notes.push(format!(
                "{name}: FAILED (the panic above); its figures are missing"
            )),
        }
        println!("({name} took {:.0} s)", began.elapsed().as_secs_f64());
    }
    print_table(&plan, &figures, &notes, &date);
    println!(
        "\nload average at the end: {}; the whole benchmark took {:.1} min",
        machine::load_average(),
        started.elapsed().as_secs_f64() / 60.0
    );
}

/// What a benchmark returns: its figures, and notes for the summary.
type Measured = (Vec<Figure>, Vec<String>);

/// A three-node cluster at the defaults, started and streaming; its
/// primary's name.
fn streaming_cluster(plan: &Plan, root: &TestDir) -> (Cluster, String) {
    let mut c = Cluster::new(
        root.path(),
        &DATA,
        |_| false,
        &plan.args.ttl,
        &plan.args.loop_wait,
    );
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    (c, primary)
}

fn bootstrap(plan: &Plan) -> Measured {
    let mut f = Figure::new("three-node bootstrap, empty to all streaming", "s", 2)
        .target(Target::at_most(3.0));
    for run in 1..=plan.runs {
        let root = TestDir::new();
        // The machine-wide test slots first: a wait for another suite's
        // cluster is not start-up time.
        let slots = slots::for_this_test(DATA.len());
        let started = Instant::now();
        let (c, primary) = streaming_cluster(plan, &root);
        let took = started.elapsed().as_secs_f64();
        println!("run {run}: {primary} primary, all streaming after {took:.2} s");
        f.values.push(took);
        drop(c);
        drop(slots);
    }
    (vec![f], vec![])
}

fn idle(plan: &Plan) -> Measured {
    let root = TestDir::new();
    let (c, primary) = streaming_cluster(plan, &root);
    // past the bootstrap's own work (the first checkpoint, the clones' catch-up)
    std::thread::sleep(Duration::from_secs(5));
    let tick = machine::clock_ticks_per_second() as f64;
    let pids: Vec<(String, i32)> = c
        .nodes
        .iter()
        .filter_map(|n| Some((n.name.clone(), n.agent_pid()?)))
        .collect();
    let before: Vec<Option<u64>> = pids.iter().map(|(_, p)| machine::cpu_ticks(*p)).collect();
    let window_start = Instant::now();
    let mut rss_max = vec![0u64; pids.len()];
    while window_start.elapsed() < plan.idle_window {
        for (i, (_, pid)) in pids.iter().enumerate() {
            rss_max[i] = rss_max[i].max(machine::rss_kib(*pid).unwrap_or(0));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let window = window_start.elapsed().as_secs_f64();
    let mut rss = Figure::new("agent RSS (VmRSS, largest in the window)", "MiB", 1)
        .over("nodes")
        .target(Target::every_node_at_most(8.0));
    let mut cpu = Figure::new("agent idle CPU, % of one core", "%", 3)
        .over("nodes")
        .target(Target::every_node_at_most(0.1));
    for (i, (name, pid)) in pids.iter().enumerate() {
        let used = match (before[i], machine::cpu_ticks(*pid)) {
            (Some(b), Some(a)) => (a - b) as f64 / tick,
            _ => f64::NAN,
        };
        let percent = used / window * 100.0;
        let peak = machine::peak_rss_kib(*pid).unwrap_or(0);
        println!(
            "{name}{}: VmRSS up to {:.1} MiB (peak since start {:.1} MiB); CPU {used:.2} s in {window:.0} s = {percent:.3} % of one core",
            if *name == primary { " (primary)" } else { "" },
            rss_max[i] as f64 / 1024.0,
            peak as f64 / 1024.0,
        );
        rss.values.push(rss_max[i] as f64 / 1024.0);
        cpu.values.push(percent);
    }
    let note = format!(
        "idle: one {window:.0} s window on a settled cluster at the defaults, after 5 s; clock {tick} ticks/s, so a window's CPU is counted in steps of {:.3} %",
        100.0 / tick / window
    );
    (vec![rss, cpu], vec![note])
}

fn health(plan: &Plan) -> Measured {
    let mut notes = Vec::new();
    if !wrk_installed() {
        let note = "health: wrk is NOT installed (Debian: apt-get install wrk): \
                    the figures come from the in-process generator (tokio, raw HTTP/1.1 keep-alive), \
                    not from wrk"
            .to_string();
        println!("{note}");
        notes.push(note);
    }
    let root = TestDir::new();
    let (c, primary) = streaming_cluster(plan, &root);
    let port = c
        .nodes
        .iter()
        .find(|n| n.name == primary)
        .expect("primary")
        .api_port;
    let shape = LoadShape {
        threads: 2,
        connections: 16,
        duration: plan.health_window,
    };
    let mut rate =
        Figure::new("health checks, GET /primary", "req/s", 0).target(Target::at_least(50_000.0));
    let mut p99 = Figure::new("health check latency p99", "ms", 2).target(Target::at_most(2.0));
    let mut tool = String::new();
    for run in 1..=plan.runs {
        match load(port, "/primary", shape) {
            Ok(r) => {
                println!(
                    "run {run} ({}): {} requests, {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, {} not 200",
                    r.tool, r.requests, r.per_second, r.p50_ms, r.p99_ms, r.errors
                );
                if r.errors > 0 {
                    notes.push(format!(
                        "health run {run}: {} answers were not 200",
                        r.errors
                    ));
                }
                tool = r.tool;
                rate.values.push(r.per_second);
                p99.values.push(r.p99_ms);
            }
            Err(e) => {
                println!("run {run}: the load failed: {e}");
                notes.push(format!("health run {run}: the load failed: {e}"));
            }
        }
    }
    let still = c
        .nodes
        .iter()
        .find(|n| n.name == primary)
        .and_then(|n| n.status())
        .is_some_and(|d| d["role"] == "primary");
    notes.push(format!(
        "health: {tool}, {} threads, {} connections, {} s per run, against the primary's GET /primary on loopback, the load generator on the same 2 cores; {primary} {} primary afterwards",
        shape.threads,
        shape.connections,
        shape.duration.as_secs(),
        if still { "still" } else { "NO LONGER" }
    ));
    rate.name = format!("health checks, GET /primary ({tool})");
    (vec![rate, p99], notes)
}

fn switchover(plan: &Plan) -> Measured {
    let s = switchovers(plan.runs, &plan.args.ttl, &plan.args.loop_wait);
    let mut gap = Figure::new("switchover write gap", "s", 2)
        .over("switchovers")
        .target(Target::at_most(1.0));
    gap.values = s.windows;
    let mut answered =
        Figure::new("switchover: POST /switchover answered", "s", 2).over("switchovers");
    answered.values = s.answers;
    let note = format!(
        "switchover: acknowledged writes lost {} of {}; overlapping writable members {}; pg_rewind run by {:?}",
        s.missing.len(),
        s.acknowledged,
        s.overlaps,
        s.rewinds
    );
    println!("{note}");
    (vec![gap, answered], vec![note])
}

fn failover(plan: &Plan, ttl: &str, loop_wait: &str, label: &str, target: f64) -> Measured {
    let mut to_write = Figure::new(
        format!("unplanned failover ({label}): kill -9 of the primary node → new primary writes"),
        "s",
        2,
    )
    .target(Target::at_most(target));
    let mut to_stream = Figure::new(
        format!("old primary back streaming ({label}), from the kill"),
        "s",
        2,
    );
    let mut crash = Figure::new(
        format!("PostgreSQL crash → writable again ({label})"),
        "s",
        2,
    );
    let mut lost = Figure::new(
        format!("acknowledged writes lost ({label}, asynchronous)"),
        "",
        0,
    );
    for run in 1..=plan.runs {
        let r = failover_run(ttl, loop_wait, None);
        println!(
            "run {run}: {} killed; {} wrote after {:.2} s; {} of {} acknowledged writes lost; {} streaming after {:.2} s; PostgreSQL on {} killed, writable after {:.2} s",
            r.old, r.new, r.to_write_s, r.missing.len(), r.acknowledged, r.old, r.to_stream_s, r.crashed, r.crash_to_writable_s
        );
        to_write.values.push(r.to_write_s);
        to_stream.values.push(r.to_stream_s);
        crash.values.push(r.crash_to_writable_s);
        lost.values.push(r.missing.len() as f64);
    }
    (vec![to_write, to_stream, crash, lost], vec![])
}

fn commit(plan: &Plan) -> Measured {
    let load = Load {
        clients: 4,
        jobs: 2,
        seconds: plan.commit_seconds,
        scale: 1,
    };
    let mut avg: Vec<Figure> = Vec::new();
    let mut p99: Vec<Figure> = Vec::new();
    let mut tps: Vec<Figure> = Vec::new();
    for mode in SYNCHRONOUS_MODES {
        avg.push(Figure::new(
            format!("commit latency avg, synchronous = {mode}"),
            "ms",
            2,
        ));
        p99.push(Figure::new(
            format!("commit latency p99, synchronous = {mode}"),
            "ms",
            2,
        ));
        tps.push(Figure::new(
            format!("pgbench -N tps, synchronous = {mode}"),
            "tps",
            0,
        ));
    }
    for run in 1..=plan.runs {
        for (i, mode) in SYNCHRONOUS_MODES.iter().enumerate() {
            let m = run_mode(&plan.args.ttl, &plan.args.loop_wait, mode, &load);
            println!(
                "run {run}, synchronous = {mode}: {:.0} tps; latency avg {:.2} ms, median {:.2} ms, p99 {:.2} ms ({} transactions)",
                m.tps, m.avg_ms, m.p50_ms, m.p99_ms, m.transactions
            );
            avg[i].values.push(m.avg_ms);
            p99[i].values.push(m.p99_ms);
            tps[i].values.push(m.tps);
        }
    }
    let note = format!(
        "commit: pgbench -N -c {} -j {} -T {} (scale {}) on the primary, fsync = off, a fresh cluster per mode and run",
        load.clients, load.jobs, load.seconds, load.scale
    );
    let mut figures = Vec::new();
    for i in 0..SYNCHRONOUS_MODES.len() {
        figures.push(avg[i].clone());
        figures.push(p99[i].clone());
        figures.push(tps[i].clone());
    }
    (figures, vec![note])
}

/// The summary: a Markdown table of every figure, the misses, the notes.
fn print_table(plan: &Plan, figures: &[Figure], notes: &[String], date: &str) {
    println!(
        "\n== summary ({date}{}) ==\n",
        if plan.quick { ", QUICK" } else { "" }
    );
    println!("| figure | median | max | over | target (2 cores) | |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for f in figures {
        println!(
            "| {} | {} | {} | {} {} | {} | {} |",
            f.name,
            f.format(f.median()),
            f.format(f.max()),
            f.values.len(),
            f.over,
            f.target_text(),
            f.verdict()
        );
    }
    let misses: Vec<&str> = figures
        .iter()
        .filter(|f| f.verdict() == "MISS")
        .map(|f| f.name.as_str())
        .collect();
    println!();
    if misses.is_empty() {
        println!("every target met");
    } else {
        println!("missed ({}): {}", misses.len(), misses.join("; "));
    }
    for n in notes {
        println!("- {n}");
    }
}
