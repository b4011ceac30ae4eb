//! The chaos run: a real cluster in network namespaces, a writer that
//! remembers every acknowledged write, and a seeded schedule of faults
//! ([`schedule`]), one after the other. After each fault the run waits for
//! the cluster to converge and checks the invariants:
//!
//! - never two members accepting writes at once (the writers' per-member
//!   logs, from outside and from inside each member's namespace);
//! - in quorum mode no acknowledged write missing on the primary (in async
//!   mode the losses are counted);
//! - one running primary and every data member streaming within
//!   [`Options::converge_within`] of the fault's end, and a write through
//!   `/primary` soon after;
//! - no data directory deleted, no agent panic or unexpected exit, no 5xx
//!   but the health checks' 503, and an agent restart never stops
//!   PostgreSQL.
//!
//! The first violation ends the run: the cluster is then in a state no
//! later fault would make sense in, and the report names the seed and the
//! faults to replay it. `target/debug/chaos --help` is the command.

pub mod check;
pub mod inject;
pub mod schedule;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::netns::{sql, NetCluster};
use crate::writer::{
    present_ids, Ids, WriteLog, Writer, WriterOptions, WriterTarget, CREATE_TABLE,
};
use crate::{is_running_primary, is_streaming_replica, process_alive};
use check::{DataDirs, Prober};
use schedule::{Fault, Shape, Target};

/// A status document counts for convergence only when its HA loop
/// completed this long after the fault ended: the loop that completed
/// then began after it (loops take well under this on 2 cores).
const FRESH_AFTER: Duration = Duration::from_millis(500);

/// Set by [`request_stop`] (the command's SIGINT/SIGTERM handler): the
/// run ends after the fault under way, cleans up and reports.
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks a run to end after the fault under way. Async-signal-safe.
pub fn request_stop() {
    STOP.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn stop_requested() -> bool {
    STOP.load(std::sync::atomic::Ordering::Relaxed)
}

/// How a run goes.
#[derive(Debug, Clone)]
pub struct Options {
    /// The schedule's seed.
    pub seed: u64,
    /// How many faults.
    pub faults: usize,
    /// Two data members and a witness instead of three data members.
    pub witness: bool,
    /// `replication.synchronous = "quorum"` (else asynchronous).
    pub quorum: bool,
    /// `cluster.ttl`.
    pub ttl: Duration,
    /// `cluster.loop_wait`.
    pub loop_wait: Duration,
    /// The bound on convergence after a fault ends.
    pub converge_within: Duration,
    /// Only these kinds of fault (empty: all).
    pub kinds: Vec<String>,
    /// A line per fault on stderr.
    pub verbose: bool,
}

impl Options {
    /// The command line that runs the first `faults` faults of this run.
    pub fn replay(&self, faults: usize) -> String {
        let mut cmd = format!(
            "target/debug/chaos --seed {} --faults {faults} --ttl {}s --loop-wait {}ms --converge-within {}s",
            self.seed,
            self.ttl.as_secs_f64(),
            self.loop_wait.as_millis(),
            self.converge_within.as_secs()
        );
        if self.witness {
            cmd.push_str(" --witness");
        }
        if self.quorum {
            cmd.push_str(" --synchronous quorum");
        }
        if !self.kinds.is_empty() {
            let _ = write!(cmd, " --only {}", self.kinds.join(","));
        }
        cmd
    }

    fn shape(&self) -> Shape {
        Shape {
            witness: self.witness,
            ttl: self.ttl,
            kinds: self.kinds.clone(),
        }
    }
}

/// An invariant broken by the fault at `index` (0-based) of the schedule.
#[derive(Debug, Clone)]
pub struct Violation {
    /// Which fault.
    pub index: usize,
    /// The fault, as scheduled.
    pub fault: String,
    /// What was broken.
    pub what: String,
}

/// What a run did and found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The schedule drawn from the seed.
    pub schedule: Vec<Fault>,
    /// How many faults ran to their checks.
    pub done: usize,
    /// Faults done, by kind.
    pub by_kind: BTreeMap<&'static str, usize>,
    /// Operator requests the cluster refused (409/412/503), by kind.
    pub refused: BTreeMap<&'static str, usize>,
    /// The violations (the run stops at the first).
    pub violations: Vec<Violation>,
    /// Per fault: from its end to a converged cluster.
    pub convergence: Vec<Duration>,
    /// Acknowledged writes (routed and direct).
    pub acked: u64,
    /// Acknowledged writes missing on the primary at the end of their fault
    /// (asynchronous mode; in quorum mode each is a violation).
    pub lost: u64,
    /// Acknowledged writes that survived their fault but were gone at the end.
    pub lost_later: u64,
    /// Times a primary changed.
    pub failovers: u64,
    /// API answers the prober got.
    pub probed: u64,
    /// Notes (the slow link's qdisc, refusals), deduplicated.
    pub notes: Vec<String>,
    /// How long the run took.
    pub elapsed: Duration,
    /// The writers' account of the fault that broke an invariant.
    pub detail: String,
    /// Where the agents' logs were kept after a violation.
    pub logs: Option<std::path::PathBuf>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

impl Report {
    /// The summary the command prints.
    pub fn summary(&self, options: &Options) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "chaos: seed {}, {} of {} faults in {:.0} s; {} data members{}, {} replication, ttl {:?}, loop_wait {:?}",
            options.seed,
            self.done,
            self.schedule.len(),
            self.elapsed.as_secs_f64(),
            if options.witness { 2 } else { 3 },
            if options.witness { " + witness" } else { "" },
            if options.quorum { "quorum" } else { "asynchronous" },
            options.ttl,
            options.loop_wait,
        );
        let _ = writeln!(out, "faults by kind:");
        for (kind, n) in &self.by_kind {
            let refused = self.refused.get(kind).copied().unwrap_or(0);
            let _ = write!(out, "  {kind:<16} {n:>5}");
            if refused > 0 {
                let _ = write!(out, "  ({refused} refused by the cluster)");
            }
            out.push('\n');
        }
        let mut conv = self.convergence.clone();
        conv.sort();
        let _ = writeln!(
            out,
            "convergence after a fault ends: p50 {:.1} s, p99 {:.1} s, max {:.1} s (bound {} s)",
            percentile(&conv, 0.5).as_secs_f64(),
            percentile(&conv, 0.99).as_secs_f64(),
            conv.last().copied().unwrap_or_default().as_secs_f64(),
            options.converge_within.as_secs()
        );
        let _ = writeln!(
            out,
            "writes: {} acknowledged, {} lost at their fault, {} lost later; {} primary changes; {} API answers probed",
            self.acked, self.lost, self.lost_later, self.failovers, self.probed
        );
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        if self.violations.is_empty() {
            let _ = writeln!(out, "invariant violations: none");
        } else {
            let _ = writeln!(out, "invariant violations: {}", self.violations.len());
            for v in &self.violations {
                let _ = writeln!(out, "  fault #{} {}: {}", v.index + 1, v.fault, v.what);
            }
            let _ = writeln!(out, "the writers during that fault (times from its start):");
            for line in self.detail.lines() {
                let _ = writeln!(out, "  {line}");
            }
            let last = self.violations[0].index + 1;
            let _ = writeln!(out, "schedule up to the violation:");
            for (i, f) in self.schedule.iter().take(last).enumerate() {
                let _ = writeln!(out, "  #{:<4} {f}", i + 1);
            }
            let _ = writeln!(out, "replay: {}", options.replay(last));
            if let Some(logs) = &self.logs {
                let _ = writeln!(out, "the agents' logs: {}", logs.display());
            }
        }
        out
    }
}

/// The run's cluster and what it keeps across faults.
struct Run {
    c: NetCluster,
    data: Vec<String>,
    witnesses: Vec<String>,
    ids: std::sync::Arc<Ids>,
    primary: String,
    dirs: DataDirs,
    netem: bool,
    acked_ids: Vec<i64>,
    options: Options,
}

/// Runs `options`: builds the cluster, runs the schedule, and reports.
/// Errors only when the cluster cannot be built (not root, no namespaces,
/// no nftables); everything the cluster does wrong is in the report.
pub fn run(options: &Options) -> Result<Report, String> {
    let started = Instant::now();
    let schedule = schedule::schedule(options.seed, options.faults, &options.shape());
    let mut report = Report {
        schedule: schedule.clone(),
        ..Report::default()
    };
    let mut run = Run::start(options)?;
    for (index, fault) in schedule.iter().enumerate() {
        if stop_requested() {
            report
                .notes
                .push(format!("stopped by a signal after {index} faults"));
            break;
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| run.fault(fault, &mut report)));
        let broken = match outcome {
            Ok(broken) => broken,
            Err(panic) => vec![format!(
                "the harness gave up: {}",
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )],
        };
        report.done = index + 1;
        *report.by_kind.entry(fault.kind()).or_default() += 1;
        if !broken.is_empty() {
            report
                .violations
                .extend(broken.into_iter().map(|what| Violation {
                    index,
                    fault: fault.to_string(),
                    what,
                }));
            eprintln!("{}", run.c.logs_tail(100));
            report.logs = run.keep_logs();
            break;
        }
    }
    if report.violations.is_empty() {
        if let Err(e) = run.final_check(&mut report) {
            report.violations.push(Violation {
                index: report.done.saturating_sub(1),
                fault: "(the final check)".into(),
                what: e,
            });
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

impl Run {
    fn start(options: &Options) -> Result<Run, String> {
        let (names, witnesses): (Vec<&str>, Vec<&str>) = if options.witness {
            (vec!["pg1", "pg2", "w1"], vec!["w1"])
        } else {
            (vec!["pg1", "pg2", "pg3"], vec![])
        };
        let quorum = options.quorum;
        let ttl = format!("{}ms", options.ttl.as_millis());
        let loop_wait = format!("{}ms", options.loop_wait.as_millis());
        let mut c = NetCluster::build(&names, &witnesses, &ttl, &loop_wait, |node| {
            if quorum {
                node.replication_extra
                    .push("synchronous = \"quorum\"".into());
            }
        })?;
        inject::preflight(&c)?;
        let netem = inject::netem_available(&c.places[0]);
        eprintln!(
            "chaos: network {} on bridge {}; files in {}",
            c.net.cidr(),
            c.net.bridge,
            c.dir.path().display()
        );
        c.start_all();
        let data: Vec<String> = names
            .iter()
            .filter(|n| !witnesses.contains(n))
            .map(|n| n.to_string())
            .collect();
        let data_refs: Vec<&str> = data.iter().map(String::as_str).collect();
        let primary = c.wait_streaming(&data_refs, crate::SLOW);
        sql(c.node(&primary).pg_addr(), CREATE_TABLE)?;
        for n in &data {
            crate::wait_for(crate::SLOW, "the writers' table on every member", || {
                let rows = sql(
                    c.node(n).pg_addr(),
                    "SELECT to_regclass('writer_ids') IS NOT NULL",
                )
                .ok()?;
                (rows == [[Some("t".to_string())]]).then_some(())
            });
        }
        let mut dirs = DataDirs::default();
        dirs.check(&c.nodes);
        Ok(Run {
            c,
            data,
            witnesses: witnesses.iter().map(|w| w.to_string()).collect(),
            ids: Ids::shared(),
            primary,
            dirs,
            netem,
            acked_ids: Vec::new(),
            options: options.clone(),
        })
    }

    /// The member holding `target` now.
    fn resolve(&self, target: Target) -> String {
        match target {
            Target::Primary => self.primary.clone(),
            Target::Witness => self
                .witnesses
                .first()
                .cloned()
                .unwrap_or_else(|| self.primary.clone()),
            Target::Replica(n) => {
                let replicas: Vec<&String> =
                    self.data.iter().filter(|m| **m != self.primary).collect();
                replicas[n as usize % replicas.len()].clone()
            }
        }
    }

    fn index(&self, name: &str) -> usize {
        self.c
            .nodes
            .iter()
            .position(|n| n.name == name)
            .unwrap_or(0)
    }

    /// The primary, when the cluster is one running primary and every
    /// other data member a streaming replica, and every agent answers, as
    /// seen by HA loops that ran after `since` (a status document is the
    /// last loop's observation: right after a crash it still shows the
    /// PostgreSQL that was) and about the postmaster that runs now.
    fn converged(&self, since: Instant) -> Option<String> {
        let fresh = |doc: &serde_json::Value| {
            doc["agent"]["loop_last_ms_ago"]
                .as_u64()
                .and_then(|ms| Instant::now().checked_sub(Duration::from_millis(ms)))
                .is_some_and(|completed| completed > since + FRESH_AFTER)
        };
        let mut primary = None;
        for name in &self.data {
            let node = self.c.node(name);
            let doc = node.status().filter(fresh)?;
            let pid = doc["postgres"]["pid"].as_i64();
            if pid.is_none() || pid != node.postmaster_pid().map(i64::from) {
                return None;
            }
            if is_running_primary(&doc) {
                if primary.is_some() {
                    return None;
                }
                primary = Some(name.clone());
            } else if !is_streaming_replica(&doc) {
                return None;
            }
        }
        for w in &self.witnesses {
            self.c.node(w).status().filter(fresh)?;
        }
        primary
    }

    /// Waits for [`Run::converged`] since `since` up to the bound; how
    /// long it took from `since`.
    fn wait_converged(&mut self, since: Instant) -> Result<Duration, String> {
        let began = since;
        loop {
            if let Some(p) = self.converged(since) {
                self.primary = p;
                return Ok(began.elapsed());
            }
            if began.elapsed() > self.options.converge_within {
                let docs: Vec<String> = self
                    .c
                    .nodes
                    .iter()
                    .map(|n| {
                        format!(
                            "{}: {}",
                            n.name,
                            n.status()
                                .map(|d| format!(
                                    "role={} state={} receiver={} reason={}",
                                    d["role"], d["state"], d["wal_receiver"]["status"], d["reason"]
                                ))
                                .unwrap_or_else(|| "no answer".into())
                        )
                    })
                    .collect();
                return Err(format!(
                    "the cluster did not converge within {:?} of the fault's end: {}",
                    self.options.converge_within,
                    docs.join("; ")
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The writers of one fault: routed writes and direct checks from the
    /// root namespace, and direct checks from inside each data member's
    /// namespace (which still see a member its link cut off).
    fn writers(&self) -> Result<Vec<Writer>, String> {
        let targets: Vec<WriterTarget> = self
            .data
            .iter()
            .map(|n| WriterTarget::of(self.c.node(n)))
            .collect();
        let mut writers = vec![Writer::start_with(
            targets.clone(),
            WriterOptions {
                ids: Some(self.ids.clone()),
                ..WriterOptions::default()
            },
        )?];
        for t in targets {
            let netns = self.c.slot(&t.name).netns.clone();
            writers.push(Writer::start_with(
                vec![t],
                WriterOptions {
                    routed: false,
                    direct_every: Duration::from_millis(100),
                    netns: Some(netns),
                    ids: Some(self.ids.clone()),
                },
            )?);
        }
        Ok(writers)
    }

    /// One fault, from a converged cluster to a converged cluster; the
    /// invariants it broke.
    fn fault(&mut self, fault: &Fault, report: &mut Report) -> Vec<String> {
        let number = report.done + 1;
        let mut broken = Vec::new();
        // The previous fault left a converged cluster; make sure (an
        // operator action's effects may still be under way).
        if let Err(e) = self.wait_converged(Instant::now()) {
            return vec![format!("before the fault: {e}")];
        }
        let before = self.primary.clone();
        let writers = match self.writers() {
            Ok(w) => w,
            Err(e) => return vec![format!("starting the writers: {e}")],
        };
        if let Err(e) = self.wait_routed_write(&writers[0], Instant::now()) {
            return vec![format!("before the fault: {e}")];
        }
        let prober = Prober::start(
            self.c
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.api_addr()))
                .collect(),
        );
        let began = Instant::now();
        let injected = self.inject(fault);
        let ended = Instant::now();
        let (outcome_note, refused) = match injected {
            Ok(o) => (o.note, o.refused),
            Err(e) => {
                broken.push(e);
                (None, false)
            }
        };
        if refused {
            *report.refused.entry(fault.kind()).or_default() += 1;
        }
        if let Some(note) = outcome_note {
            let generic = note.split(':').next().unwrap_or("").to_string();
            if !report.notes.iter().any(|n| n.starts_with(&generic)) {
                report.notes.push(note);
            }
        }
        // A switchover the cluster took moves the primary; converging
        // before it did would measure nothing.
        if matches!(fault, Fault::Switchover { .. }) && !refused {
            let deadline = Instant::now() + self.options.converge_within;
            while self.converged(ended).as_deref() == Some(before.as_str())
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        match self.wait_converged(ended) {
            Ok(took) => report.convergence.push(took),
            Err(e) => broken.push(e),
        }
        if broken.is_empty() {
            if let Err(e) = self.wait_routed_write(&writers[0], Instant::now()) {
                broken.push(e);
            }
        }
        let (fivexx, probed) = prober.stop();
        report.probed += probed;
        broken.extend(fivexx);
        let log = writers
            .into_iter()
            .map(Writer::stop_log)
            .reduce(WriteLog::merged)
            .unwrap_or_default();
        let writes = log.report(began, Instant::now());
        for (a, a_last, b, b_first) in writes.overlaps() {
            broken.push(format!(
                "two members accepted writes at once: {a} still at +{:.3}s after {b} at +{:.3}s",
                a_last.saturating_duration_since(began).as_secs_f64(),
                b_first.saturating_duration_since(began).as_secs_f64(),
            ));
        }
        let ids: Vec<i64> = writes.acked.iter().map(|(id, _, _)| *id).collect();
        report.acked += ids.len() as u64;
        if self.primary != before {
            report.failovers += 1;
        }
        if broken.is_empty() {
            match self.present_on_primary(&ids) {
                Ok(present) => {
                    let missing: Vec<i64> = ids
                        .iter()
                        .copied()
                        .filter(|i| !present.contains(i))
                        .collect();
                    if !missing.is_empty() && self.options.quorum {
                        broken.push(format!(
                            "{} acknowledged writes missing on the primary {} in quorum mode: {:?}",
                            missing.len(),
                            self.primary,
                            &missing[..missing.len().min(20)]
                        ));
                    }
                    report.lost += missing.len() as u64;
                    let missing: HashSet<i64> = missing.into_iter().collect();
                    self.acked_ids
                        .extend(ids.iter().copied().filter(|i| !missing.contains(i)));
                }
                Err(e) => broken.push(format!("reading the acknowledged ids: {e}")),
            }
        }
        if !broken.is_empty() {
            report.detail = writes.summary();
        }
        broken.extend(self.dirs.check(&self.c.nodes));
        broken.extend(check::panics(&self.c.nodes));
        for n in &self.c.nodes {
            if !n.agent_pid().is_some_and(process_alive) {
                broken.push(format!("{}: the agent exited by itself", n.name));
            }
        }
        if self.options.verbose {
            let conv = report
                .convergence
                .last()
                .map(|d| format!("{:.1}s", d.as_secs_f64()))
                .unwrap_or_else(|| "-".into());
            eprintln!(
                "[{number}/{}] {fault}: {:.1}s, converged in {conv}, primary {} -> {}, {} acked{}{}",
                report.schedule.len(),
                (ended - began).as_secs_f64(),
                before,
                self.primary,
                ids.len(),
                if refused { ", refused" } else { "" },
                if broken.is_empty() { "" } else { ", VIOLATION" },
            );
        }
        broken
    }

    /// Which of `ids` the primary has. The primary may change once more
    /// right after the cluster converged (a member whose PostgreSQL
    /// crashed three times in a minute hands over as soon as a standby can
    /// take over): then the cluster converges again and the new primary is
    /// asked, up to three times.
    fn present_on_primary(&mut self, ids: &[i64]) -> Result<HashSet<i64>, String> {
        let mut last = String::new();
        for _ in 0..3 {
            match present_ids(self.c.node(&self.primary).pg_addr(), ids) {
                Ok(present) => return Ok(present),
                Err(e) => last = format!("{} (on {})", e, self.primary),
            }
            self.wait_converged(Instant::now())?;
        }
        Err(last)
    }

    /// Waits until the routed writer has a write acknowledged after `t`
    /// by the primary (30 s at most).
    fn wait_routed_write(&self, writer: &Writer, t: Instant) -> Result<(), String> {
        let deadline = t + Duration::from_secs(30);
        loop {
            if writer
                .snapshot()
                .acks
                .iter()
                .any(|a| a.id > 0 && a.member == self.primary && a.acked > t)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no write through /primary acknowledged by {} within 30 s",
                    self.primary
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Does `fault`; an error is a defect seen while doing it.
    fn inject(&mut self, fault: &Fault) -> Result<inject::Outcome, String> {
        match *fault {
            Fault::KillPostgres { target } => {
                let name = self.resolve(target);
                Ok(inject::kill_postgres(self.c.node(&name)))
            }
            Fault::KillAgent { target, down } | Fault::KillNode { target, down } => {
                let i = self.index(&self.resolve(target));
                let node_death = matches!(fault, Fault::KillNode { .. });
                Ok(inject::kill_and_restart(
                    &mut self.c.nodes[i],
                    node_death,
                    down,
                ))
            }
            Fault::FreezeAgent { target, length } => Ok(inject::freeze_agent(
                self.c.node(&self.resolve(target)),
                length,
            )),
            Fault::FreezePostgres { target, length } => Ok(inject::freeze_postgres(
                self.c.node(&self.resolve(target)),
                length,
            )),
            Fault::Isolate { target, length } => {
                inject::isolate(self.c.slot(&self.resolve(target)), length)
            }
            Fault::CutBetween { a, b, length } => {
                let (a, b) = (self.resolve(a), self.resolve(b));
                inject::cut_between(self.c.slot(&a), self.c.slot(&b), length)
            }
            Fault::OneWay {
                target,
                outgoing,
                length,
            } => inject::one_way(self.c.slot(&self.resolve(target)), outgoing, length),
            Fault::Lossy {
                target,
                percent,
                length,
            } => inject::lossy(self.c.slot(&self.resolve(target)), percent, length),
            Fault::Slow {
                target,
                delay,
                length,
            } => inject::slow(
                self.c.slot(&self.resolve(target)),
                delay,
                length,
                self.netem,
            ),
            Fault::Switchover { candidate } => {
                let leader = &self.primary;
                let body = match candidate {
                    Some(n) => format!(
                        r#"{{"leader": "{leader}", "candidate": "{}"}}"#,
                        self.resolve(Target::Replica(n))
                    ),
                    None => format!(r#"{{"leader": "{leader}"}}"#),
                };
                inject::operate(self.c.node(&self.primary), "POST", "/switchover", &body)
            }
            Fault::Restart { target } => {
                inject::operate(self.c.node(&self.resolve(target)), "POST", "/restart", "{}")
            }
            Fault::Reinit { replica } => inject::operate(
                self.c.node(&self.resolve(Target::Replica(replica))),
                "POST",
                "/reinitialize",
                "{}",
            ),
            Fault::Pause { length } => inject::pause(self.c.node(&self.primary), length),
            Fault::AgentRestart { target } => {
                let i = self.index(&self.resolve(target));
                inject::agent_restart(&mut self.c.nodes[i])
            }
        }
    }

    /// Copies every agent log of the run to a directory that outlives it
    /// (`/tmp/pgwarden-chaos-<seed>-<pid>/<member>/`).
    fn keep_logs(&self) -> Option<std::path::PathBuf> {
        let kept = std::env::temp_dir().join(format!(
            "pgwarden-chaos-{}-{}",
            self.options.seed,
            std::process::id()
        ));
        for n in &self.c.nodes {
            let to = kept.join(&n.name);
            std::fs::create_dir_all(&to).ok()?;
            for entry in std::fs::read_dir(&n.dir).ok()?.flatten() {
                let name = entry.file_name();
                if name.to_string_lossy().ends_with(".log") {
                    let _ = std::fs::copy(entry.path(), to.join(&name));
                }
            }
        }
        Some(kept)
    }

    /// After the last fault: every write acknowledged (and present after
    /// its own fault) is still on the primary.
    fn final_check(&mut self, report: &mut Report) -> Result<(), String> {
        self.wait_converged(Instant::now())?;
        let mut missing = 0u64;
        let acked = std::mem::take(&mut self.acked_ids);
        for chunk in acked.chunks(50_000) {
            let present = self.present_on_primary(chunk)?;
            missing += chunk.iter().filter(|i| !present.contains(i)).count() as u64;
        }
        report.lost_later = missing;
        if missing > 0 && self.options.quorum {
            return Err(format!(
                "{missing} acknowledged writes present after their fault are gone from the primary {} at the end",
                self.primary
            ));
        }
        Ok(())
    }
}
