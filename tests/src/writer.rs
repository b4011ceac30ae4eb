//! The writer: a client that keeps writing through a failover and remembers
//! what it was told, so that a test can ask afterwards what a real
//! application would have lost or seen twice.
//!
//! Two kinds of writes run side by side, on one thread with its own tokio
//! runtime (so the tests stay synchronous):
//!
//! - **Routed writes** go where a load balancer would send them: to the first
//!   member whose agent answers `GET /primary` with 200. Ids come from one
//!   increasing counter (1, 2, 3, …). An insert that returns OK is
//!   *acknowledged*: the new primary must have it after a failover
//!   ([`WriterReport::missing_on`]). Like a client with a pooled connection,
//!   the writer stays on a member while its writes succeed and asks
//!   `/primary` again only after a failure: the harshest client for fencing,
//!   since every write an old primary still accepts is acknowledged.
//! - **Direct checks** try one insert on *every* member every
//!   [`DIRECT_CHECK_EVERY`], whatever the agents say, with negative ids so
//!   they never collide with routed ones. They show when each member
//!   accepted or refused writes, which is what proves that an old primary
//!   stopped accepting writes before a new one started
//!   ([`WriterReport::overlaps`]).
//!
//! Every network step is bounded by a timeout, so a frozen or partitioned
//! member delays the writer by at most a couple of seconds and never stalls
//! it; every retry waits, so nothing spins; and everything stops at
//! [`Writer::stop`] or after [`MAX_RUN`].
//!
//! Members may be on any address ([`WriterTarget`]), and a writer may run
//! inside a network namespace ([`WriterOptions::netns`]): a partition test
//! writes from outside through the bridge and from inside the cut-off
//! member's namespace at once, the writers sharing one [`Ids`] so that
//! their ids never collide, and merges their [`WriteLog`]s. Each write's
//! log entry keeps when it was sent as well as when it was acknowledged:
//! the commit happened in between, which is what proves one member's last
//! write came before another's first.

use std::collections::{BTreeMap, HashSet};
use std::fmt::{self, Write as _};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::{loopback, Node};

/// The superuser's password: what [`Node::new`] writes into
/// `secrets/postgres.pass`, which the agent sets at initdb.
pub const SUPERUSER_PASSWORD: &str = "super-pass";

/// How long one `GET /primary` may take: a frozen agent is not a primary
/// the writer can wait for.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(1);

/// How long connecting (TCP and authentication) to PostgreSQL may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one statement may take before it counts as refused.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(2);

/// Pause between two acknowledged routed writes: about a hundred writes a
/// second is fine-grained enough for failover timings and keeps the id lists
/// small on a loaded 2-core machine.
pub const WRITE_PAUSE: Duration = Duration::from_millis(10);

/// Pause after a failed routed write, or when no member is the primary,
/// before asking `/primary` again.
pub const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How often each member gets a direct write.
pub const DIRECT_CHECK_EVERY: Duration = Duration::from_millis(200);

/// The writer stops by itself after this long, should a test forget to.
pub const MAX_RUN: Duration = Duration::from_secs(600);

/// The table every writer inserts into; a writer with its own ids creates
/// it, writers sharing [`Ids`] need it to exist.
pub const CREATE_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS writer_ids (id bigint PRIMARY KEY, at timestamptz DEFAULT now())";
const INSERT: &str = "INSERT INTO writer_ids (id) VALUES ($1)";

/// A cluster member as the writer sees it: its agent's API and its
/// PostgreSQL, on any address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterTarget {
    /// The member's name, as used in the report.
    pub name: String,
    /// The agent's API (`GET /primary`).
    pub api: SocketAddr,
    /// PostgreSQL.
    pub pg: SocketAddr,
}

impl WriterTarget {
    /// The target for a harness node, at its placement's address.
    pub fn of(node: &Node) -> WriterTarget {
        WriterTarget {
            name: node.name.clone(),
            api: node.api_addr(),
            pg: node.pg_addr(),
        }
    }

    /// A member on 127.0.0.1 with these ports.
    pub fn on_loopback(name: &str, api_port: u16, pg_port: u16) -> WriterTarget {
        WriterTarget {
            name: name.to_string(),
            api: loopback(api_port),
            pg: loopback(pg_port),
        }
    }
}

/// The ids writers hand out: routed writes count up, direct checks down,
/// so the two never collide. Shared ([`Ids::shared`]) by the writers of one
/// test that run side by side (in different namespaces), so that they never
/// insert the same id either.
#[derive(Debug)]
pub struct Ids {
    routed: AtomicI64,
    direct: AtomicI64,
}

impl Ids {
    /// Fresh counters for an empty `writer_ids`, to share among writers:
    /// routed ids from 1 up, direct ones from -1 down.
    pub fn shared() -> Arc<Ids> {
        Arc::new(Ids {
            routed: AtomicI64::new(1),
            direct: AtomicI64::new(-1),
        })
    }

    /// Continues after the largest (`max`) and smallest (`min`) ids already
    /// in the table.
    fn continue_after(&self, max: i64, min: i64) {
        self.routed.store(max + 1, Ordering::SeqCst);
        self.direct.store(min.min(0) - 1, Ordering::SeqCst);
    }

    fn next_routed(&self) -> i64 {
        self.routed.fetch_add(1, Ordering::SeqCst)
    }

    fn next_direct(&self) -> i64 {
        self.direct.fetch_sub(1, Ordering::SeqCst)
    }
}

/// How a writer runs; [`WriterOptions::default`] is [`Writer::start`]'s.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Routed writes through `/primary` besides the direct checks.
    pub routed: bool,
    /// How often each member gets a direct write.
    pub direct_every: Duration,
    /// The network namespace the writer's connections come from; `None`:
    /// the test's own.
    pub netns: Option<String>,
    /// Ids shared with the test's other writers; the table must then exist
    /// ([`CREATE_TABLE`]) before the writers start, and direct checks begin
    /// at once. `None`: the writer's own ids, continued from the table that
    /// its routed writes create on the first primary (direct checks wait
    /// for it: before that, an insert would fail for want of a table, which
    /// says nothing about the member).
    pub ids: Option<Arc<Ids>>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            routed: true,
            direct_every: DIRECT_CHECK_EVERY,
            netns: None,
            ids: None,
        }
    }
}

/// A running writer; [`Writer::stop`] ends it and gives the report.
/// Dropping it stops it too (the report is lost).
pub struct Writer {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    log: SharedLog,
    started: Instant,
}

impl Writer {
    /// Starts writing to `members` on a thread of its own, from the test's
    /// own namespace, with the default [`WriterOptions`].
    ///
    /// The table `writer_ids` is created on the first primary found. One
    /// writer per cluster at a time: ids continue after the largest
    /// (routed) and smallest (direct) already in the table, so a second
    /// writer after a first one does not collide with it.
    pub fn start(members: Vec<WriterTarget>) -> Writer {
        Writer::start_with(members, WriterOptions::default()).expect("start the writer")
    }

    /// Starts writing to `members` as `options` say. Fails when the
    /// namespace cannot be entered, or when direct checks alone are asked
    /// for without shared ids (nobody would create the table).
    pub fn start_with(
        members: Vec<WriterTarget>,
        options: WriterOptions,
    ) -> Result<Writer, String> {
        if !options.routed && options.ids.is_none() {
            return Err("a writer with direct checks only needs shared ids and the table".into());
        }
        let netns = options
            .netns
            .as_deref()
            .map(|ns| crate::netns::open_netns(ns).map(|handle| (handle, ns.to_string())))
            .transpose()?;
        let (stop, stop_rx) = watch::channel(false);
        let (entered, entered_rx) = std::sync::mpsc::channel();
        let log = SharedLog::default();
        let started = Instant::now();
        let thread_log = log.clone();
        let thread = std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || {
                let in_place = netns
                    .as_ref()
                    .map(|(handle, ns)| crate::netns::enter_netns(handle, ns))
                    .unwrap_or(Ok(()));
                let failed = in_place.is_err();
                let _ = entered.send(in_place);
                if failed {
                    return;
                }
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the writer's tokio runtime");
                let stop = Stop {
                    flag: stop_rx,
                    deadline: tokio::time::Instant::now() + MAX_RUN,
                };
                runtime.block_on(run(members, options, thread_log, stop));
                // Connection tasks still alive are dropped here; nothing
                // blocking runs, the bound is only a safety net.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|e| format!("spawn the writer thread: {e}"))?;
        let writer = Writer {
            stop,
            thread: Some(thread),
            log,
            started,
        };
        entered_rx
            .recv()
            .map_err(|_| "the writer thread died".to_string())??;
        Ok(writer)
    }

    /// What it saw so far.
    pub fn snapshot(&self) -> WriteLog {
        self.log.lock().clone()
    }

    /// Waits (up to `limit`) until `member` acknowledged a routed write
    /// sent through `/primary` after `t`; returns when it did.
    pub fn wait_routed_accept(&self, member: &str, t: Instant, limit: Duration) -> Instant {
        crate::wait_for(
            limit,
            &format!("the writer to write through {member}"),
            || {
                self.log
                    .lock()
                    .acks
                    .iter()
                    .find(|a| a.id > 0 && a.member == member && a.acked > t)
                    .map(|a| a.acked)
            },
        )
    }

    /// Stops writing, waits for the thread, and reports. Writes in flight
    /// are abandoned: they are neither acknowledged nor refused.
    pub fn stop(self) -> WriterReport {
        let started = self.started;
        self.stop_log().report(started, Instant::now())
    }

    /// [`Writer::stop`], giving the log itself (to merge with another
    /// writer's, say).
    pub fn stop_log(mut self) -> WriteLog {
        self.join();
        std::mem::take(&mut *self.log.lock())
    }

    fn join(&mut self) {
        self.stop.send_replace(true);
        if let Some(thread) = self.thread.take() {
            if let Err(panic) = thread.join() {
                if !std::thread::panicking() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }
}

impl Drop for Writer {
    /// A test that fails before `stop` leaves no writer behind.
    fn drop(&mut self) {
        self.join();
    }
}

/// What the writer saw. Times are the client's: an accept is the moment the
/// writer received OK (the commit happened between sending and then, well
/// under a millisecond apart on loopback unless the machine is loaded).
#[derive(Debug, Clone)]
pub struct WriterReport {
    /// When the writer started.
    pub started: Instant,
    /// When it stopped.
    pub stopped: Instant,
    /// Every acknowledged id, in time order: routed writes (positive ids)
    /// and direct checks (negative ids), with the member that acknowledged.
    pub acked: Vec<(i64, String, Instant)>,
    /// Per member, in time order, the moments it acknowledged a write of
    /// either kind.
    pub accepts: BTreeMap<String, Vec<Instant>>,
    /// Per member, in time order, the moments a write of either kind (or a
    /// connection for one) failed there, and why.
    pub refusals: BTreeMap<String, Vec<(Instant, String)>>,
    /// The moments the routed writer connected to a member `/primary` named.
    pub routes: Vec<(Instant, String)>,
}

impl WriterReport {
    /// The acknowledged routed ids (the ones a new primary must have), in
    /// time order.
    pub fn routed_ids(&self) -> Vec<i64> {
        self.acked
            .iter()
            .filter(|(id, _, _)| *id > 0)
            .map(|(id, _, _)| *id)
            .collect()
    }

    /// The first time `member` accepted a write.
    pub fn first_accept(&self, member: &str) -> Option<Instant> {
        self.accepts.get(member)?.first().copied()
    }

    /// The last time `member` accepted a write.
    pub fn last_accept(&self, member: &str) -> Option<Instant> {
        self.accepts.get(member)?.last().copied()
    }

    /// The first time `member` accepted a write strictly after `t`.
    pub fn first_accept_after(&self, member: &str, t: Instant) -> Option<Instant> {
        self.accepts.get(member)?.iter().copied().find(|a| *a > t)
    }

    /// The first time a write on `member` failed, and why.
    pub fn first_refusal(&self, member: &str) -> Option<(Instant, String)> {
        self.refusals.get(member)?.first().cloned()
    }

    /// The first time a write on `member` failed strictly after `t`, and why.
    pub fn first_refusal_after(&self, member: &str, t: Instant) -> Option<(Instant, String)> {
        self.refusals
            .get(member)?
            .iter()
            .find(|(at, _)| *at > t)
            .cloned()
    }

    /// The acknowledged routed ids that the member whose PostgreSQL listens
    /// on `pg_port` lacks: data lost across a failover when it is the new
    /// primary. Retries connecting for up to 30 s (a just-promoted member may
    /// be restarting), then panics with the reason: a test must not read
    /// "nothing missing" from a member it could not ask.
    pub fn missing_on(&self, pg_port: u16) -> Vec<i64> {
        self.missing_at(loopback(pg_port))
    }

    /// [`WriterReport::missing_on`] for PostgreSQL at `pg`, on any address.
    pub fn missing_at(&self, pg: SocketAddr) -> Vec<i64> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.try_missing_at(pg) {
                Ok(missing) => return missing,
                Err(e) if Instant::now() >= deadline => {
                    panic!("cannot ask PostgreSQL on {pg} which acknowledged ids it lacks: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    /// One attempt at [`WriterReport::missing_on`].
    pub fn try_missing_on(&self, pg_port: u16) -> Result<Vec<i64>, String> {
        self.try_missing_at(loopback(pg_port))
    }

    /// One attempt at [`WriterReport::missing_at`].
    pub fn try_missing_at(&self, pg: SocketAddr) -> Result<Vec<i64>, String> {
        let ids = self.routed_ids();
        let present = present_ids(pg, &ids)?;
        Ok(ids
            .iter()
            .copied()
            .filter(|id| !present.contains(id))
            .collect())
    }

    /// Each member's *reigns*, in time order of their first accept.
    ///
    /// A reign is a maximal run of one member's accepts (of either kind)
    /// with none of that member's refusals between them; it stands for "this
    /// member was writable from the reign's first accept to its last". A
    /// refusal ends a reign because it is evidence the member was not
    /// writable then; another member's accept does not, because that is
    /// exactly the overlap [`WriterReport::overlaps`] looks for.
    pub fn reigns(&self) -> Vec<Reign> {
        let mut reigns = Vec::new();
        for (member, accepts) in &self.accepts {
            let refusals = self.refusals.get(member).map(Vec::as_slice).unwrap_or(&[]);
            let mut next_refusal = 0;
            let mut current: Option<Reign> = None;
            for &at in accepts {
                // Any refusal between the previous accept and this one ends
                // the current reign.
                let mut interrupted = false;
                while next_refusal < refusals.len() && refusals[next_refusal].0 < at {
                    interrupted = true;
                    next_refusal += 1;
                }
                match current.as_mut() {
                    Some(reign) if !interrupted => reign.last = at,
                    _ => {
                        reigns.extend(current.take());
                        current = Some(Reign {
                            member: member.clone(),
                            first: at,
                            last: at,
                        });
                    }
                }
            }
            reigns.extend(current);
        }
        reigns.sort_by_key(|r| r.first);
        reigns
    }

    /// Evidence that two members were writable at overlapping times: for
    /// every two reigns (see [`WriterReport::reigns`]) of different members
    /// whose intervals `[first, last]` intersect, one entry
    /// `(earlier, earlier_last, later, later_first)`: the member whose reign
    /// began first and its last accept in that reign, and the other member
    /// and its first accept in its reign. Since the reigns intersect,
    /// `earlier_last >= later_first`: the earlier member still accepted a
    /// write after the later one had accepted one. Empty is the invariant a
    /// correct failover keeps.
    pub fn overlaps(&self) -> Vec<(String, Instant, String, Instant)> {
        let reigns = self.reigns();
        let mut found = Vec::new();
        for (i, later) in reigns.iter().enumerate() {
            for earlier in &reigns[..i] {
                // `earlier.first <= later.first` by the sort, so the two
                // intersect exactly when `earlier` lasts until `later` began.
                if earlier.member != later.member && earlier.last >= later.first {
                    found.push((
                        earlier.member.clone(),
                        earlier.last,
                        later.member.clone(),
                        later.first,
                    ));
                }
            }
        }
        found
    }

    /// A few lines for a test's log: counts, each member's accepts and
    /// refusals with times relative to the start, where the routed writer
    /// went, and any overlaps. (Data loss needs a member to ask: see
    /// [`WriterReport::missing_on`].)
    pub fn summary(&self) -> String {
        let rel = |t: Instant| {
            format!(
                "+{:.3}s",
                t.saturating_duration_since(self.started).as_secs_f64()
            )
        };
        let routed = self.acked.iter().filter(|(id, _, _)| *id > 0).count();
        let mut out = format!(
            "writer ran {:.1}s: {} acknowledged ({routed} routed, {} direct)\n",
            self.stopped
                .saturating_duration_since(self.started)
                .as_secs_f64(),
            self.acked.len(),
            self.acked.len() - routed,
        );
        let members: std::collections::BTreeSet<&String> =
            self.accepts.keys().chain(self.refusals.keys()).collect();
        for member in members {
            let accepts = self.accepts.get(member).map(Vec::as_slice).unwrap_or(&[]);
            let refusals = self.refusals.get(member).map(Vec::as_slice).unwrap_or(&[]);
            let _ = write!(out, "  {member}: {} accepts", accepts.len());
            if let (Some(first), Some(last)) = (accepts.first(), accepts.last()) {
                let _ = write!(out, " ({} .. {})", rel(*first), rel(*last));
            }
            let _ = write!(out, ", {} refusals", refusals.len());
            if let (Some((first, why)), Some((last, _))) = (refusals.first(), refusals.last()) {
                let _ = write!(out, " ({} .. {}; first: {why})", rel(*first), rel(*last));
            }
            out.push('\n');
        }
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|(at, member)| format!("{member} at {}", rel(*at)))
            .collect();
        let _ = writeln!(
            out,
            "  routed to: {}",
            if routes.is_empty() {
                "nobody".into()
            } else {
                routes.join(", ")
            }
        );
        let overlaps = self.overlaps();
        if overlaps.is_empty() {
            out.push_str("  overlaps: none\n");
        }
        for (a, a_last, b, b_first) in overlaps {
            let _ = writeln!(
                out,
                "  OVERLAP: {a} still accepted at {} after {b} accepted at {}",
                rel(a_last),
                rel(b_first)
            );
        }
        out
    }
}

/// A maximal run of one member's accepts with no refusal of that member in
/// between: see [`WriterReport::reigns`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reign {
    /// The member.
    pub member: String,
    /// Its first accept in the run.
    pub first: Instant,
    /// Its last accept in the run.
    pub last: Instant,
}

/// One acknowledged write. The commit happened between `sent` and `acked`:
/// `acked` is an upper bound of its time, `sent` a lower bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The id inserted (routed > 0, direct < 0).
    pub id: i64,
    /// The member that acknowledged it.
    pub member: String,
    /// When the INSERT was sent.
    pub sent: Instant,
    /// When the OK came back.
    pub acked: Instant,
}

/// One failed write (or failed connection for one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The member.
    pub member: String,
    /// When the failure was seen.
    pub at: Instant,
    /// The error.
    pub why: String,
}

/// What one or more writers saw, as recorded: the raw material of a
/// [`WriterReport`], with the time each write was sent.
#[derive(Debug, Clone, Default)]
pub struct WriteLog {
    /// Acknowledged writes, in the order they were acknowledged.
    pub acks: Vec<Ack>,
    /// Failed writes, in time order.
    pub refusals: Vec<Refusal>,
    /// The moments the routed writer connected to the member `/primary` named.
    pub routes: Vec<(Instant, String)>,
}

impl WriteLog {
    /// Both logs in one, in time order.
    pub fn merged(mut self, other: WriteLog) -> WriteLog {
        self.acks.extend(other.acks);
        self.refusals.extend(other.refusals);
        self.routes.extend(other.routes);
        self.acks.sort_by_key(|a| a.acked);
        self.refusals.sort_by_key(|r| r.at);
        self.routes.sort_by_key(|(at, _)| *at);
        self
    }

    /// `member`'s acknowledged writes, in time order.
    pub fn acks_of<'a>(&'a self, member: &'a str) -> impl Iterator<Item = &'a Ack> + 'a {
        self.acks.iter().filter(move |a| a.member == member)
    }

    /// `member`'s last acknowledged write.
    pub fn last_ack(&self, member: &str) -> Option<&Ack> {
        self.acks
            .iter()
            .filter(|a| a.member == member)
            .max_by_key(|a| a.acked)
    }

    /// `member`'s first acknowledged write (by the time it was sent).
    pub fn first_ack(&self, member: &str) -> Option<&Ack> {
        self.acks
            .iter()
            .filter(|a| a.member == member)
            .min_by_key(|a| a.sent)
    }

    /// `member`'s first refusal strictly after `t`.
    pub fn first_refusal_after(&self, member: &str, t: Instant) -> Option<&Refusal> {
        self.refusals
            .iter()
            .find(|r| r.member == member && r.at > t)
    }

    /// The log as a [`WriterReport`] (accepts at acknowledgement time), for
    /// its reigns, overlaps and summary.
    pub fn report(&self, started: Instant, stopped: Instant) -> WriterReport {
        let mut report = WriterReport {
            started,
            stopped,
            acked: self
                .acks
                .iter()
                .map(|a| (a.id, a.member.clone(), a.acked))
                .collect(),
            accepts: BTreeMap::new(),
            refusals: BTreeMap::new(),
            routes: self.routes.clone(),
        };
        for a in &self.acks {
            report
                .accepts
                .entry(a.member.clone())
                .or_default()
                .push(a.acked);
        }
        for r in &self.refusals {
            report
                .refusals
                .entry(r.member.clone())
                .or_default()
                .push((r.at, r.why.clone()));
        }
        // Several tasks record for the same member; sorting makes "first"
        // and "last" mean what they say.
        report.acked.sort_by_key(|(_, _, at)| *at);
        for accepts in report.accepts.values_mut() {
            accepts.sort();
        }
        for refusals in report.refusals.values_mut() {
            refusals.sort_by_key(|(at, _)| *at);
        }
        report
    }
}

/// The writer's [`WriteLog`], behind one lock held only to push.
#[derive(Clone, Default)]
struct SharedLog(Arc<Mutex<WriteLog>>);

impl SharedLog {
    fn lock(&self) -> MutexGuard<'_, WriteLog> {
        // A panic while pushing leaves the vectors intact; keep recording.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn accepted(&self, id: i64, member: &str, sent: Instant) {
        let acked = Instant::now();
        self.lock().acks.push(Ack {
            id,
            member: member.to_string(),
            sent,
            acked,
        });
    }

    fn refused(&self, member: &str, why: String) {
        let at = Instant::now();
        self.lock().refusals.push(Refusal {
            member: member.to_string(),
            at,
            why,
        });
    }

    fn routed(&self, member: &str) {
        let at = Instant::now();
        self.lock().routes.push((at, member.to_string()));
    }
}

/// The stop signal as the tasks see it: [`Writer::stop`], the writer being
/// dropped, or [`MAX_RUN`] passing.
#[derive(Clone)]
struct Stop {
    flag: watch::Receiver<bool>,
    deadline: tokio::time::Instant,
}

impl Stop {
    async fn requested(&mut self) {
        let deadline = self.deadline;
        tokio::select! {
            // An error means the sender is gone: nobody can stop us any
            // more, so stop now.
            _ = self.flag.wait_for(|stop| *stop) => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Why a write (or the connection for one) failed.
#[derive(Debug)]
pub(crate) enum Failure {
    Postgres(tokio_postgres::Error),
    TimedOut { what: &'static str, after: Duration },
}

impl Failure {
    /// A standby's refusal leaves the session usable; anything else may not.
    fn keeps_connection(&self) -> bool {
        matches!(self, Failure::Postgres(e) if e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Postgres(e) => f.write_str(&chain(e)),
            Failure::TimedOut { what, after } => write!(f, "{what} timed out after {after:?}"),
        }
    }
}

/// An error with its causes: tokio-postgres keeps the interesting part
/// ("ERROR: cannot execute INSERT in a read-only transaction") in `source`.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let _ = write!(text, ": {c}");
        cause = c.source();
    }
    text
}

/// `work`, failed as [`Failure::TimedOut`] after `limit`.
pub(crate) async fn bounded<T>(
    limit: Duration,
    what: &'static str,
    work: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, Failure> {
    match timeout(limit, work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::Postgres(e)),
        Err(_) => Err(Failure::TimedOut { what, after: limit }),
    }
}

/// Runs `work` to completion on a current-thread runtime on a thread of
/// its own: usable from a plain test and from inside a runtime alike.
pub(crate) fn block_on<T: Send>(work: impl Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime")
                    .block_on(work)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Which of `ids` the table `writer_ids` on PostgreSQL at `pg` holds, asked
/// from the calling thread's namespace.
pub fn present_ids(pg: SocketAddr, ids: &[i64]) -> Result<HashSet<i64>, String> {
    block_on(async {
        let client = connect(pg).await.map_err(|e| e.to_string())?;
        let rows = bounded(
            Duration::from_secs(30),
            "SELECT of the acknowledged ids",
            client.query("SELECT id FROM writer_ids WHERE id = ANY($1)", &[&ids]),
        )
        .await
        .map_err(|e| e.to_string())?;
        rows.iter()
            .map(|r| r.try_get::<_, i64>(0).map_err(|e| chain(&e)))
            .collect()
    })
}

/// A superuser session on PostgreSQL at `pg`, from the calling thread's
/// namespace.
pub(crate) async fn connect(pg: SocketAddr) -> Result<Client, Failure> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(pg.ip().to_string())
        .port(pg.port())
        .user("postgres")
        .password(SUPERUSER_PASSWORD)
        .dbname("postgres")
        .application_name("pgwarden-tests-writer")
        .connect_timeout(CONNECT_TIMEOUT);
    let (client, connection) =
        bounded(CONNECT_TIMEOUT, "connecting", config.connect(NoTls)).await?;
    // The connection's own error, if any, reaches us through the client's
    // next statement; nothing to do with it here.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Whether the agent at `api` answers `GET /primary` with 200 within
/// [`HTTP_TIMEOUT`]. Not the harness's `http`: that one blocks and waits up
/// to 10 s for a frozen agent.
async fn answers_primary(api: SocketAddr) -> bool {
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(api).await?;
        stream
            .write_all(
                format!(
                    "GET /primary HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    api.ip()
                )
                .as_bytes(),
            )
            .await?;
        // The status document is small; the bound only guards against a
        // misbehaving server.
        let mut answer = Vec::new();
        stream.take(1 << 20).read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    match timeout(HTTP_TIMEOUT, ask).await {
        Ok(Ok(answer)) => String::from_utf8_lossy(&answer)
            .split_whitespace()
            .nth(1)
            .is_some_and(|code| code == "200"),
        _ => false,
    }
}

/// The first member, in the given order, whose agent says it is the primary.
/// All are asked at once, so frozen agents cost one timeout, not one each.
async fn find_primary(targets: &[WriterTarget]) -> Option<&WriterTarget> {
    let asks: Vec<_> = targets
        .iter()
        .map(|t| tokio::spawn(answers_primary(t.api)))
        .collect();
    let mut found = None;
    for (target, ask) in targets.iter().zip(asks) {
        if ask.await.unwrap_or(false) && found.is_none() {
            found = Some(target);
        }
    }
    found
}

/// The writer's tasks, until stopped.
async fn run(targets: Vec<WriterTarget>, options: WriterOptions, log: SharedLog, stop: Stop) {
    // With shared ids the table exists already; with its own, the writer
    // creates it and learns where ids continue.
    let shared = options.ids.is_some();
    let ids = options.ids.unwrap_or_else(Ids::shared);
    let (table_ready, table_ready_rx) = watch::channel(shared);
    let mut tasks = JoinSet::new();
    if options.routed {
        tasks.spawn(until_stopped(
            stop.clone(),
            routed_writes(targets.clone(), log.clone(), table_ready, ids.clone()),
        ));
    }
    for target in targets {
        tasks.spawn(until_stopped(
            stop.clone(),
            direct_checks(
                target,
                options.direct_every,
                log.clone(),
                table_ready_rx.clone(),
                ids.clone(),
            ),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

/// Runs `work` until it ends or a stop is requested, whichever comes first.
/// Dropping `work` mid-statement is fine: that write is neither
/// acknowledged nor refused, which is what stopping means.
async fn until_stopped(mut stop: Stop, work: impl Future<Output = ()>) {
    tokio::select! {
        biased;
        _ = stop.requested() => {}
        _ = work => {}
    }
}

/// Creates the table and returns the largest and smallest ids already in it.
async fn set_up_table(client: &Client) -> Result<(i64, i64), Failure> {
    bounded(
        STATEMENT_TIMEOUT,
        "CREATE TABLE",
        client.batch_execute(CREATE_TABLE),
    )
    .await?;
    let row = bounded(
        STATEMENT_TIMEOUT,
        "SELECT of the id range",
        client.query_one(
            "SELECT coalesce(max(id), 0), coalesce(min(id), 0) FROM writer_ids",
            &[],
        ),
    )
    .await?;
    let max: i64 = row.try_get(0).map_err(Failure::Postgres)?;
    let min: i64 = row.try_get(1).map_err(Failure::Postgres)?;
    Ok((max, min))
}

/// Routed writes: find the primary, stay on it while it acknowledges, find
/// it again after a failure. Never returns; [`until_stopped`] ends it.
async fn routed_writes(
    targets: Vec<WriterTarget>,
    log: SharedLog,
    table_ready: watch::Sender<bool>,
    ids: Arc<Ids>,
) {
    let mut set_up = *table_ready.borrow();
    loop {
        let Some(target) = find_primary(&targets).await else {
            sleep(RETRY_PAUSE).await;
            continue;
        };
        let client = match connect(target.pg).await {
            Ok(client) => client,
            Err(e) => {
                log.refused(&target.name, format!("routed write: {e}"));
                sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        if !set_up {
            match set_up_table(&client).await {
                Ok((max, min)) => {
                    ids.continue_after(max, min);
                    table_ready.send_replace(true);
                    set_up = true;
                }
                Err(e) => {
                    log.refused(&target.name, format!("creating writer_ids: {e}"));
                    sleep(RETRY_PAUSE).await;
                    continue;
                }
            }
        }
        log.routed(&target.name);
        loop {
            // An id whose insert failed is never reused: it may have
            // committed anyway (a timeout), and a retry would then collide.
            let id = ids.next_routed();
            let sent = Instant::now();
            match bounded(STATEMENT_TIMEOUT, "INSERT", client.execute(INSERT, &[&id])).await {
                Ok(_) => {
                    log.accepted(id, &target.name, sent);
                    sleep(WRITE_PAUSE).await;
                }
                Err(e) => {
                    log.refused(&target.name, format!("routed write of id {id}: {e}"));
                    break;
                }
            }
        }
        sleep(RETRY_PAUSE).await;
    }
}

/// Direct checks on one member: an insert every `every`, whatever its
/// agent says. Never returns; [`until_stopped`] ends it.
async fn direct_checks(
    target: WriterTarget,
    every: Duration,
    log: SharedLog,
    mut table_ready: watch::Receiver<bool>,
    ids: Arc<Ids>,
) {
    if table_ready.wait_for(|ready| *ready).await.is_err() {
        // The routed task is gone, so the writer is stopping.
        return;
    }
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut session: Option<Client> = None;
    loop {
        tick.tick().await;
        let client = match session.take() {
            Some(client) if !client.is_closed() => client,
            _ => match connect(target.pg).await {
                Ok(client) => client,
                Err(e) => {
                    log.refused(&target.name, format!("direct check: {e}"));
                    continue;
                }
            },
        };
        let id = ids.next_direct();
        let sent = Instant::now();
        match bounded(STATEMENT_TIMEOUT, "INSERT", client.execute(INSERT, &[&id])).await {
            Ok(_) => {
                log.accepted(id, &target.name, sent);
                session = Some(client);
            }
            Err(e) => {
                log.refused(&target.name, format!("direct check of id {id}: {e}"));
                if e.keeps_connection() {
                    session = Some(client);
                }
            }
        }
    }
}
