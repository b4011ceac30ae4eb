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

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::future::Future;
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

use crate::Node;

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

const CREATE_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS writer_ids (id bigint PRIMARY KEY, at timestamptz DEFAULT now())";
const INSERT: &str = "INSERT INTO writer_ids (id) VALUES ($1)";

/// A cluster member as the writer sees it: its agent's API and its
/// PostgreSQL, both on 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterTarget {
    /// The member's name, as used in the report.
    pub name: String,
    /// The agent's API port (`GET /primary`).
    pub api_port: u16,
    /// PostgreSQL's port.
    pub pg_port: u16,
}

impl WriterTarget {
    /// The target for a harness node.
    pub fn of(node: &Node) -> WriterTarget {
        WriterTarget {
            name: node.name.clone(),
            api_port: node.api_port,
            pg_port: node.pg_port,
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
    /// Starts writing to `members` on a thread of its own.
    ///
    /// The table `writer_ids` is created on the first primary found; direct
    /// checks begin once it exists (before that, an insert would fail for
    /// want of a table, which says nothing about the member). One writer per
    /// cluster at a time: ids continue after the largest (routed) and
    /// smallest (direct) already in the table, so a second writer after a
    /// first one does not collide with it.
    pub fn start(members: Vec<WriterTarget>) -> Writer {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the writer's tokio runtime");
        let (stop, stop_rx) = watch::channel(false);
        let log = SharedLog::default();
        let started = Instant::now();
        let thread_log = log.clone();
        let thread = std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || {
                let stop = Stop {
                    flag: stop_rx,
                    deadline: tokio::time::Instant::now() + MAX_RUN,
                };
                runtime.block_on(run(members, thread_log, stop));
                // Connection tasks still alive are dropped here; nothing
                // blocking runs, the bound is only a safety net.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("spawn the writer thread");
        Writer {
            stop,
            thread: Some(thread),
            log,
            started,
        }
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
                    .acked
                    .iter()
                    .find(|(id, m, at)| *id > 0 && m == member && *at > t)
                    .map(|(_, _, at)| *at)
            },
        )
    }

    /// Stops writing, waits for the thread, and reports. Writes in flight
    /// are abandoned: they are neither acknowledged nor refused.
    pub fn stop(mut self) -> WriterReport {
        self.join();
        let log = std::mem::take(&mut *self.log.lock());
        WriterReport::from_log(log, self.started, Instant::now())
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
    fn from_log(mut log: Log, started: Instant, stopped: Instant) -> WriterReport {
        // Two tasks record for the same member; sorting makes "first" and
        // "last" mean what they say.
        log.acked.sort_by_key(|(_, _, at)| *at);
        for accepts in log.accepts.values_mut() {
            accepts.sort();
        }
        for refusals in log.refusals.values_mut() {
            refusals.sort_by_key(|(at, _)| *at);
        }
        WriterReport {
            started,
            stopped,
            acked: log.acked,
            accepts: log.accepts,
            refusals: log.refusals,
            routes: log.routes,
        }
    }

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
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.try_missing_on(pg_port) {
                Ok(missing) => return missing,
                Err(e) if Instant::now() >= deadline => {
                    panic!("cannot ask PostgreSQL on 127.0.0.1:{pg_port} which acknowledged ids it lacks: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    /// One attempt at [`WriterReport::missing_on`].
    pub fn try_missing_on(&self, pg_port: u16) -> Result<Vec<i64>, String> {
        let ids = self.routed_ids();
        // A thread of its own, so that this works from inside a tokio
        // runtime as well as from a plain test.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("tokio runtime: {e}"))?;
                    runtime.block_on(async {
                        let client = connect(pg_port).await.map_err(|e| e.to_string())?;
                        let rows = bounded(
                            Duration::from_secs(30),
                            "SELECT of the acknowledged ids",
                            client.query("SELECT id FROM writer_ids WHERE id = ANY($1)", &[&ids]),
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                        let mut present = std::collections::HashSet::with_capacity(rows.len());
                        for row in rows {
                            present.insert(row.try_get::<_, i64>(0).map_err(|e| chain(&e))?);
                        }
                        Ok(ids
                            .iter()
                            .copied()
                            .filter(|id| !present.contains(id))
                            .collect())
                    })
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
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

/// What the tasks record, behind one lock held only to push.
#[derive(Default)]
struct Log {
    acked: Vec<(i64, String, Instant)>,
    accepts: BTreeMap<String, Vec<Instant>>,
    refusals: BTreeMap<String, Vec<(Instant, String)>>,
    routes: Vec<(Instant, String)>,
}

#[derive(Clone, Default)]
struct SharedLog(Arc<Mutex<Log>>);

impl SharedLog {
    fn lock(&self) -> MutexGuard<'_, Log> {
        // A panic while pushing leaves the vectors intact; keep recording.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn accepted(&self, id: i64, member: &str) {
        let at = Instant::now();
        let mut log = self.lock();
        log.acked.push((id, member.to_string(), at));
        log.accepts.entry(member.to_string()).or_default().push(at);
    }

    fn refused(&self, member: &str, why: String) {
        let at = Instant::now();
        self.lock()
            .refusals
            .entry(member.to_string())
            .or_default()
            .push((at, why));
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
enum Failure {
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
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let _ = write!(text, ": {c}");
        cause = c.source();
    }
    text
}

async fn bounded<T>(
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

/// A superuser session on 127.0.0.1:`pg_port`.
async fn connect(pg_port: u16) -> Result<Client, Failure> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(pg_port)
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

/// Whether the agent on `api_port` answers `GET /primary` with 200 within
/// [`HTTP_TIMEOUT`]. Not the harness's `http`: that one blocks and waits up
/// to 10 s for a frozen agent.
async fn answers_primary(api_port: u16) -> bool {
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", api_port)).await?;
        stream
            .write_all(b"GET /primary HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
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
        .map(|t| tokio::spawn(answers_primary(t.api_port)))
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
async fn run(targets: Vec<WriterTarget>, log: SharedLog, stop: Stop) {
    let (table_ready, table_ready_rx) = watch::channel(false);
    let direct_ids = Arc::new(AtomicI64::new(-1));
    let mut tasks = JoinSet::new();
    tasks.spawn(until_stopped(
        stop.clone(),
        routed_writes(
            targets.clone(),
            log.clone(),
            table_ready,
            direct_ids.clone(),
        ),
    ));
    for target in targets {
        tasks.spawn(until_stopped(
            stop.clone(),
            direct_checks(
                target,
                log.clone(),
                table_ready_rx.clone(),
                direct_ids.clone(),
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
    direct_ids: Arc<AtomicI64>,
) {
    let mut next_id: i64 = 1;
    let mut set_up = false;
    loop {
        let Some(target) = find_primary(&targets).await else {
            sleep(RETRY_PAUSE).await;
            continue;
        };
        let client = match connect(target.pg_port).await {
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
                    next_id = max + 1;
                    direct_ids.store(min.min(0) - 1, Ordering::SeqCst);
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
            let id = next_id;
            next_id += 1;
            match bounded(STATEMENT_TIMEOUT, "INSERT", client.execute(INSERT, &[&id])).await {
                Ok(_) => {
                    log.accepted(id, &target.name);
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

/// Direct checks on one member: an insert every [`DIRECT_CHECK_EVERY`],
/// whatever its agent says. Never returns; [`until_stopped`] ends it.
async fn direct_checks(
    target: WriterTarget,
    log: SharedLog,
    mut table_ready: watch::Receiver<bool>,
    ids: Arc<AtomicI64>,
) {
    if table_ready.wait_for(|ready| *ready).await.is_err() {
        // The routed task is gone, so the writer is stopping.
        return;
    }
    let mut tick = tokio::time::interval(DIRECT_CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut session: Option<Client> = None;
    loop {
        tick.tick().await;
        let client = match session.take() {
            Some(client) if !client.is_closed() => client,
            _ => match connect(target.pg_port).await {
                Ok(client) => client,
                Err(e) => {
                    log.refused(&target.name, format!("direct check: {e}"));
                    continue;
                }
            },
        };
        let id = ids.fetch_sub(1, Ordering::SeqCst);
        match bounded(STATEMENT_TIMEOUT, "INSERT", client.execute(INSERT, &[&id])).await {
            Ok(_) => {
                log.accepted(id, &target.name);
                session = Some(client);
            }
            Err(e) => {
                log.refused(&target.name, format!("direct check: {e}"));
                if e.keeps_connection() {
                    session = Some(client);
                }
            }
        }
    }
}
