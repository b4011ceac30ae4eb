//! The HA loop, every `loop_wait`, in six steps:
//!
//! 1. **observe** the local PostgreSQL (the executor) and the other
//!    members (their status documents);
//! 2. compute the **situation** ([`situation`], pure);
//! 3. update the **lease**, asking for it when [`wants_lease`] says so;
//! 4. **decide** the one action ([`decide`], pure);
//! 5. **act**: the fence guard first ([`guard::before`]), the action, the
//!    guard again from what PostgreSQL is now ([`guard::after`]);
//! 6. **publish** the view the API serves.
//!
//! The loop is the only writer of the view. What it remembers between
//! iterations — back-offs, the term it fenced itself in, the primary's last
//! position — is in [`Memory`].
//!
//! **Long actions run beside the loop.** An action is a task that owns the
//! local PostgreSQL ([`LocalPostgres`], behind a mutex) while it runs; the
//! loop waits for it one `loop_wait` at most. A clone of a big database, a
//! long rewind or an initdb goes on in the background, and meanwhile every
//! `loop_wait` the loop still refreshes the peers, keeps the lease (while
//! the action may make PostgreSQL writable) or lets it go, pushes the fence
//! guard with the lease, publishes what runs and since when, and pings
//! systemd's watchdog — which therefore proves that the loop is alive, not
//! that an action is short. A stuck action is aborted at its time limit.
//!
//! **Operator requests** (switchover, failover, restart, reinitialize,
//! pause) arrive as [`Control::Operate`] between iterations; `operate.rs`
//! checks them against the last situation and carries them through the
//! same six steps (a switchover is a handover phase in the situation, a
//! restart is the action of the iteration).

mod operate;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio::task::JoinHandle;

use crate::config::{Config, WatchdogMode};
use crate::lease::{LeaseClient, LeaseStatus};
use crate::notify::Notifier;
use crate::peers::Peers;
use crate::pg::diagnose::ReceiverProblem;
use crate::pg::fence_guard::{Deadlines, FenceGuard};
use crate::pg::files::DataDirState;
use crate::status_doc::{MembershipDoc, Position, SynchronousDoc};
use crate::sync_report::SyncPlan;
use crate::view::{LeaderView, NodeView, PostgresView, Role, State};
use crate::watchdog::Watchdog;

use super::backoff::Backoff;
use super::decide::{decide, stream_source, wants_lease, Action, Lease};
use super::executor::{LocalPostgres, Observed, PostmasterState};
use super::guard::{self, GuardCommand};
use super::operation::{Operations, Reply, Request};
use super::reclone::{self, WalRemovedWatch};
use super::situation::{Local, PeerReport, Postgres, Settings, Situation};
use super::slot_plan::MemberSeen;

/// Messages from the rest of the agent to the loop.
#[derive(Debug)]
pub enum Control {
    /// SIGHUP or `POST /reload`: a new, validated configuration; the
    /// sender, if any, gets what was applied, in words.
    Reload(Box<Config>, Option<oneshot::Sender<String>>),
    /// An operator's request (the API), answered when it is over.
    Operate(Request, oneshot::Sender<Reply>),
    /// Another member waits for this one: iterate now.
    Wake,
    /// SIGINT (`systemctl stop`): stop PostgreSQL, then release the
    /// lease, then answer.
    Shutdown(oneshot::Sender<()>),
    /// SIGTERM (`systemctl restart`, an upgrade): leave PostgreSQL, the
    /// fence guard and the lease as they are for the next agent, then answer.
    Detach(oneshot::Sender<()>),
}

/// First restart delay after a crash; doubles with every crash in a row.
const CRASH_BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));
/// First retry delay after a failed clone; doubles up to the second.
const CLONE_BACKOFF: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(60));
/// Running this long without a crash forgets earlier crashes.
const CRASH_FORGET_AFTER: Duration = Duration::from_secs(60);
/// How often the primary's last position is written to `pgwarden.state`.
const REMEMBER_EVERY: Duration = Duration::from_secs(5);
/// How often an empty member waiting to join looks again.
const JOIN_POLL: Duration = Duration::from_millis(200);
/// A clone whose progress did not move for this long is stuck.
const CLONE_STALL: Duration = Duration::from_secs(600);
/// The loop's period while a switchover or failover is under way, here or
/// towards this member: each step waits for a report from the other side.
const HURRY: Duration = Duration::from_millis(100);

/// The longest an action may run before it is aborted as stuck (a clone is
/// judged by its progress instead, see [`CLONE_STALL`]).
fn time_limit(action: &Action) -> Option<Duration> {
    match action {
        Action::Clone { .. } => None,
        Action::Rewind { .. } => Some(Duration::from_secs(3600)),
        Action::Bootstrap => Some(Duration::from_secs(1800)),
        _ => Some(Duration::from_secs(300)),
    }
}

/// What a finished action reports: its result, and PostgreSQL after it.
type JobOutcome = (Result<(), String>, Observed);

/// An action running beside the loop.
struct Job {
    action: Action,
    /// The lease's term when it started.
    term: u64,
    /// This node held that lease when it started.
    holding: bool,
    started: Instant,
    handle: JoinHandle<JobOutcome>,
    /// A clone's last progress, and when it last moved.
    progress: (Option<u8>, Instant),
}

/// What the loop remembers between iterations.
#[derive(Debug)]
pub struct Memory {
    /// PostgreSQL's crashes in a row and when to restart it.
    crash: Backoff,
    /// Failed clones in a row and when to try again.
    clone: Backoff,
    /// The term this node fenced itself in, and why.
    fence: Option<(u64, String)>,
    /// The last position the primary was seen at.
    last_leader: Option<Position>,
    /// When it was last written to `pgwarden.state`, and what.
    remembered: Option<(Instant, Position)>,
    /// The lease term in which PostgreSQL here was last writable, or in
    /// which this member made the cluster.
    writable_in_term: Option<u64>,
    /// How long the standby's receiver has been failing on removed WAL.
    wal_removed: WalRemovedWatch,
    /// When this node's current holding of the lease began (the round
    /// that won it returned): positions observed since include every
    /// commit the old primary acknowledged.
    held_since: Option<Instant>,
}

impl Memory {
    fn new(last_leader: Option<Position>) -> Memory {
        Memory {
            crash: Backoff::new(CRASH_BACKOFF.0, CRASH_BACKOFF.1),
            clone: Backoff::new(CLONE_BACKOFF.0, CLONE_BACKOFF.1),
            fence: None,
            last_leader,
            remembered: None,
            writable_in_term: None,
            wal_removed: WalRemovedWatch::default(),
            held_since: None,
        }
    }
}

/// The loop's parts.
pub struct Runner<L: LeaseClient> {
    cfg: Config,
    settings: Settings,
    local: Option<Arc<Mutex<LocalPostgres>>>,
    /// The fence guard of this node's data directory (a data member).
    guard: Option<FenceGuard>,
    /// The action running beside the loop, if any.
    job: Option<Job>,
    /// A reload's configuration, for the executor once the job is done.
    pending_reload: Option<Config>,
    /// The last iteration's action changed the node and succeeded.
    progressed: bool,
    /// An empty member is waiting to join.
    joining: bool,
    lease: L,
    view: watch::Sender<NodeView>,
    notifier: Notifier,
    last_action: Option<Action>,
    last_error: Option<String>,
    last_lease: LeaseStatus,
    peers: Peers,
    memory: Memory,
    watchdog: Watchdog,
    watchdog_blocker: Option<String>,
    /// Operator requests: in progress, scheduled, and the pause flag.
    ops: Operations,
    /// The last iteration's situation and lease, which requests are
    /// checked against.
    last_seen: Option<(Situation, Lease)>,
    /// A switchover or failover is under way: loop every [`HURRY`].
    hurry: bool,
    /// `synchronous_standby_names` as planned this loop.
    sync_plan: Option<SyncPlan>,
    /// This standby just won the lease: its next loop comes soon, to
    /// compare positions observed since ([`Memory::held_since`]).
    compare_again: bool,
    /// The fence under way is the hand-over a crash loop asked for
    /// ([`CrashLoop::handed_over`]): once done, the crash count starts over.
    crash_handover: bool,
    /// Members to wake once this iteration's view is published.
    wake: Vec<String>,
}

impl<L: LeaseClient> Runner<L> {
    /// A loop for this node; `local` is `None` on a witness; `tls` is what
    /// the requests to the peers trust and present.
    pub fn new(
        cfg: Config,
        local: Option<LocalPostgres>,
        lease: L,
        view: watch::Sender<NodeView>,
        notifier: Notifier,
        tls: &crate::tls::ClientTls,
    ) -> Self {
        let peer_timeout = cfg
            .cluster
            .loop_wait
            .clamp(Duration::from_millis(200), Duration::from_secs(2));
        let peers = Peers::new(&cfg.node.name, &cfg.cluster.members, peer_timeout, tls);
        let watchdog = Watchdog::new(
            if local.is_some() {
                cfg.node.watchdog
            } else {
                WatchdogMode::Off
            },
            &cfg.node.watchdog_device,
            Watchdog::timeout_for(cfg.cluster.ttl, cfg.cluster.loop_wait),
        );
        let mut local = local;
        if let Some(local) = &mut local {
            let view_tx = view.clone();
            local.set_progress_reporter(std::sync::Arc::new(move |pct| {
                view_tx.send_modify(|v| {
                    v.progress_pct = pct;
                    if pct.is_some() {
                        v.state = State::Cloning;
                    }
                });
            }));
        }
        let memory = Memory::new(local.as_ref().and_then(|l| l.remembered_leader_position()));
        let ops = operate::initial_operations(&cfg);
        let guard = local.as_ref().map(|_| FenceGuard::new(&cfg.node.data_dir));
        Runner {
            settings: Settings::from_config(&cfg),
            cfg,
            local: local.map(|l| Arc::new(Mutex::new(l))),
            guard,
            job: None,
            pending_reload: None,
            progressed: false,
            joining: false,
            lease,
            view,
            notifier,
            last_action: None,
            last_error: None,
            last_lease: LeaseStatus::default(),
            peers,
            memory,
            watchdog,
            watchdog_blocker: None,
            ops,
            last_seen: None,
            hurry: false,
            sync_plan: None,
            compare_again: false,
            crash_handover: false,
            wake: Vec::new(),
        }
    }

    /// Runs until a shutdown request has been carried out.
    pub async fn run(mut self, mut control: mpsc::Receiver<Control>) {
        loop {
            let began = Instant::now();
            self.iterate().await;
            let took = began.elapsed();
            crate::telemetry::loop_duration(took);
            if took > (self.cfg.cluster.loop_wait * 2).max(Duration::from_secs(2)) {
                // Long actions (initdb, a clone, a rewind) are expected to;
                // anything else here is worth an operator's attention.
                tracing::warn!(
                    "an HA loop iteration took {took:?} (loop_wait {:?}); last action: {:?}",
                    self.cfg.cluster.loop_wait,
                    self.last_action
                );
            }
            // After a step that changed things (initdb done, a clone done, a
            // rewind done), take the next one at once rather than a loop
            // later: a new cluster is up in seconds, not in loop_waits.
            let pause = if std::mem::take(&mut self.progressed) {
                Duration::from_millis(20)
            } else if self.hurry || std::mem::take(&mut self.compare_again) {
                HURRY
            } else if std::mem::take(&mut self.joining) {
                // An empty member waiting for a primary to clone from looks
                // more often: a new member is streaming sooner.
                self.cfg.cluster.loop_wait.min(JOIN_POLL)
            } else {
                self.cfg.cluster.loop_wait
            };
            // A lease this node waits for may come free before the next
            // period: ask then (at least a few ms on, never a busy loop).
            let pause = match self.lease.retry_at() {
                Some(at) => pause.min(
                    at.saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(10)),
                ),
                None => pause,
            };
            let sleep = tokio::time::sleep(pause);
            tokio::pin!(sleep);
            tokio::select! {
                _ = &mut sleep => {}
                msg = control.recv() => match msg {
                    Some(Control::Reload(cfg, reply)) => {
                        let applied = self.reload(*cfg).await;
                        if let Some(reply) = reply {
                            let _ = reply.send(applied);
                        }
                    }
                    Some(Control::Operate(request, reply)) => self.operate(request, reply).await,
                    Some(Control::Wake) => {}
                    Some(Control::Shutdown(done)) => {
                        self.shutdown().await;
                        let _ = done.send(());
                        return;
                    }
                    Some(Control::Detach(done)) => {
                        self.detach().await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.shutdown().await;
                        return;
                    }
                },
            }
        }
    }

    /// One iteration: observe, situation, lease, decide, act, publish —
    /// or, while an action runs beside the loop, what the loop still does.
    pub async fn iterate(&mut self) {
        if let Some(job) = self.job.take() {
            if !job.handle.is_finished() {
                self.job = Some(job);
                self.busy_iteration().await;
                return;
            }
            let status = self.lease.current();
            let joined = job.handle.await;
            let (observed, status) = self
                .finish(&job.action, (job.term, job.holding), joined, status)
                .await;
            let view = self.build_view(observed.as_ref(), &status, &Action::Healthy);
            self.view.send_replace(view);
        }
        if let (Some(cfg), Some(local)) = (self.pending_reload.take(), &self.local) {
            if let Err(e) = local.lock().await.reload(cfg).await {
                tracing::error!("reload failed: {e}");
            }
        }
        // 1. observe (and under which held lease: a writable server seen
        // before this node won the lease says nothing about this term)
        let held = self.lease.current();
        let observed_in = held.mine.then_some(held.term);
        let observed = match &self.local {
            Some(local) => Some(local.lock().await.observe().await),
            None => None,
        };
        if let Some(o) = &observed {
            self.note_postmaster(o);
            let replayed = o.observation.as_ref().and_then(|obs| obs.replayed_lsn);
            self.memory
                .wal_removed
                .observe(o.receiver_problem.as_ref(), replayed);
        }
        self.peers.refresh().await;
        self.plan_synchronous().await;
        let reports = self.peer_reports();
        self.adopt_pause(&reports);
        // 2. situation (and how far an operator's request has come in it)
        let situation = self.situation_of(observed.as_ref(), &reports);
        let situation = if self.advance_operation(&situation) {
            self.situation_of(observed.as_ref(), &reports)
        } else {
            situation
        };
        // 3. lease
        self.watchdog_check();
        let want = wants_lease(
            &situation,
            &lease_view(&self.lease.current(), Instant::now()),
        ) && self.watchdog_blocker.is_none();
        let status = self.lease.update(want).await;
        self.log_lease_change(&status);
        let mut lease = lease_view(&status, Instant::now());
        let won = lease.mine && self.memory.held_since.is_none();
        self.memory.held_since = match self.memory.held_since {
            Some(t) if lease.mine => Some(t),
            _ => lease.mine.then(Instant::now),
        };
        lease.since = self.memory.held_since;
        if won && situation.postgres == (Postgres::Running { in_recovery: true }) {
            // A standby that won the lease promotes on positions observed
            // after it won: ask the others to look now.
            for p in self.peers.views() {
                self.wake.push(p.name.clone());
            }
        }
        // 4. decide (an operator's restart or reinit when nothing else is due)
        let action = self.operation_action(&situation, &lease, decide(&situation, &lease));
        // Holding the lease, waiting for positions observed since: soon again.
        self.compare_again = lease.mine
            && matches!(action, Action::Wait { .. })
            && situation.postgres == (Postgres::Running { in_recovery: true });
        // (or a re-clone of a standby whose primary removed the WAL it needs)
        let action = reclone::instead_of(action, &situation, &lease, &self.memory.wal_removed);
        self.log_decision(&action);
        self.joining =
            situation.data == DataDirState::Empty && matches!(action, Action::Wait { .. });
        // 5. act
        let (observed, status) = self
            .act(&situation, &lease, status, &action, (observed, observed_in))
            .await;
        let promoted = observed
            .as_ref()
            .and_then(|o| o.observation.as_ref())
            .is_some_and(|obs| !obs.in_recovery);
        if matches!(action, Action::Promote { .. }) && promoted {
            // The standbys re-point on their next loop; until one does, a
            // synchronous primary's commits wait: ask them to look now.
            for p in self.peers.views() {
                self.wake.push(p.name.clone());
            }
        }
        self.remember_leader_position(&situation, &status, observed.as_ref());
        self.keep_slots(&status, observed.as_ref()).await;
        self.hurry = self.in_a_hurry(&situation);
        self.last_seen = Some((situation, lease));
        // 6. publish
        let view = self.build_view(observed.as_ref(), &status, &action);
        if view.state == State::Running || view.role == Role::Witness {
            self.notifier.ready();
        }
        self.notifier.status(&status_line(&view));
        self.notifier.watchdog();
        log_writes_blocked(
            self.view.borrow().synchronous.as_ref(),
            view.synchronous.as_ref(),
        );
        self.view.send_replace(view);
        for name in std::mem::take(&mut self.wake) {
            self.peers.wake(&name);
        }
    }

    /// The cluster secret, with which this member wakes others.
    pub fn set_cluster_secret(&mut self, secret: String) {
        self.peers.set_secret(secret);
    }

    /// Step 5: the guard, the action, the guard again. Returns what
    /// PostgreSQL and the lease are after it; an action still running after
    /// one `loop_wait` goes on beside the loop ([`Job`]).
    async fn act(
        &mut self,
        situation: &Situation,
        lease: &Lease,
        status: LeaseStatus,
        action: &Action,
        (observed, observed_in): (Option<Observed>, Option<u64>),
    ) -> (Option<Observed>, LeaseStatus) {
        let Some(local) = self.local.clone() else {
            return (observed, status);
        };
        local
            .lock()
            .await
            .set_leader_source(stream_source(situation, lease));
        // Say what is about to happen before it starts: a primary being
        // fenced is no longer a primary for the load balancers.
        if let Some(state) = announced_state(action) {
            let mut view = self.view.borrow().clone();
            view.state = state;
            view.progress_pct = (state == State::Cloning).then_some(0);
            if let Action::Fence { reason } = action {
                view.reason = Some(reason.clone());
            }
            self.view.send_replace(view);
        }
        let lease_end = status.expires_at.filter(|_| status.mine);
        if let Some(command) = guard::before(action, lease_end) {
            self.apply_guard(command);
        }
        if matches!(action, Action::Healthy | Action::Wait { .. }) {
            if let Some(o) = &observed {
                self.guard_after(o, &status, observed_in);
            }
            return (observed, status);
        }
        self.crash_handover = situation.crash_loop.handed_over(action);
        let job_action = action.clone();
        let mut handle = tokio::spawn(async move {
            let mut local = local.lock_owned().await;
            let result = local.execute(&job_action).await.map_err(|e| e.to_string());
            let observed = local.observe().await;
            (result, observed)
        });
        match tokio::time::timeout(self.cfg.cluster.loop_wait, &mut handle).await {
            Ok(joined) => {
                self.finish(action, (lease.term, lease.mine), joined, status)
                    .await
            }
            Err(_) => {
                tracing::info!(
                    "{} goes on beside the loop; the loop keeps the lease, the guard and the status up to date",
                    what(action)
                );
                self.job = Some(Job {
                    action: action.clone(),
                    term: lease.term,
                    holding: lease.mine,
                    started: Instant::now(),
                    handle,
                    progress: (None, Instant::now()),
                });
                (observed, status)
            }
        }
    }

    /// An action is done: what it means for the loop's memory, the lease
    /// (renewed after a long action) and the guard.
    async fn finish(
        &mut self,
        action: &Action,
        (term, decided_holding): (u64, bool),
        joined: Result<JobOutcome, tokio::task::JoinError>,
        status: LeaseStatus,
    ) -> (Option<Observed>, LeaseStatus) {
        let (result, observed) = match joined {
            Ok(outcome) => outcome,
            Err(e) => {
                let why = if e.is_cancelled() {
                    "it was stopped (stuck, or the agent is stopping)".to_string()
                } else {
                    format!("it failed unexpectedly: {e}")
                };
                let observed = match &self.local {
                    Some(local) => local.lock().await.observe().await,
                    None => return (None, status),
                };
                (
                    Err(format!("{} did not finish: {why}", what(action))),
                    observed,
                )
            }
        };
        self.note_postmaster(&observed);
        let now = Instant::now();
        match (&result, action) {
            // A fence sticks to this member's own holding of the lease. Under
            // another's lease there is nothing to stick to, and its term
            // number says nothing: ballot numbers are per proposer, so a
            // later holding of this member's can carry the same one (the
            // simulator's seed 729509: a member fenced under "16.m2" then
            // won "16.m3" and would never promote in it).
            (_, Action::Fence { reason }) if decided_holding => {
                self.memory.fence = Some((term, reason.clone()));
            }
            (Err(e), Action::Clone { .. }) => {
                let delay = self.memory.clone.failed(now);
                tracing::error!(
                    "clone failed (attempt {}), retrying in {delay:?}: {e}",
                    self.memory.clone.failures()
                );
            }
            (Ok(()), Action::Clone { .. }) => self.memory.clone.reset(),
            (Ok(()), Action::Reclone { .. }) => {
                self.memory.wal_removed = WalRemovedWatch::default()
            }
            (_, Action::Restart { .. } | Action::Reinit | Action::HandOver { .. }) => {
                self.operation_done(action, &result).await;
            }
            // The cluster it made is its own to start in this term.
            (Ok(()), Action::Bootstrap) => self.memory.writable_in_term = Some(term),
            // Writable again in a fresh term: the fence is over.
            (Ok(()), Action::Start { as_standby: false } | Action::Promote { .. })
                if self.memory.fence.as_ref().is_some_and(|(t, _)| *t != term) =>
            {
                self.memory.fence = None;
            }
            _ => {}
        }
        if result.is_ok() && std::mem::take(&mut self.crash_handover) {
            tracing::info!(
                "handed over after {} crashes of PostgreSQL in a row: the count starts over",
                self.memory.crash.failures()
            );
            self.memory.crash.reset();
        }
        if result.is_ok() && matches!(action, Action::Rewind { .. } | Action::Clone { .. }) {
            // The directory is its source's now, `pgwarden.state` too. The
            // position remembered on the branch left behind must go: on a
            // timeline of the same number (promotions on both sides of a
            // partition pick the same one) it would read as far ahead and
            // keep every member "too far behind" to lead (simulator, seed
            // 283735).
            self.memory.last_leader = match &self.local {
                Some(local) => local.lock().await.remembered_leader_position(),
                None => None,
            };
            self.memory.remembered = None;
        }
        self.progressed = result.is_ok()
            && matches!(
                action,
                Action::Bootstrap
                    | Action::Clone { .. }
                    | Action::Rewind { .. }
                    | Action::RenameAside
                    | Action::Start { .. }
                    | Action::Promote { .. }
                    | Action::Restart { .. }
                    | Action::Reinit
                    | Action::Reclone { .. }
            );
        match result {
            Ok(()) => self.last_error = None,
            Err(text) => {
                if self.last_error.as_deref() != Some(&text)
                    && !matches!(action, Action::Clone { .. })
                {
                    tracing::error!("{action:?} failed: {text}");
                }
                self.last_error = Some(text);
            }
        }
        // A long action (initdb, a start with crash recovery, a promotion)
        // may have used up much of the lease: renew it before the guard is
        // pushed to its end, or the guard would stop a healthy primary.
        let status = if status.mine && !matches!(action, Action::Follow { .. }) {
            let renewed = self.lease.update(true).await;
            self.log_lease_change(&renewed);
            renewed
        } else {
            status
        };
        // Observed after an action decided under `term`, which is still held
        // when the status says so: the lease was held throughout.
        let observed_in = Some(term).filter(|_| decided_holding);
        self.guard_after(&observed, &status, observed_in);
        (Some(observed), status)
    }

    /// The guard from what PostgreSQL is now ([`guard::after`]), and the
    /// machine's watchdog with it.
    /// `observed_in`: the term of the lease held when `o` was taken.
    fn guard_after(&mut self, o: &Observed, status: &LeaseStatus, observed_in: Option<u64>) {
        let facts = local_postgres(o, &self.memory, Instant::now());
        if status.mine
            && observed_in == Some(status.term)
            && facts == (Postgres::Running { in_recovery: false })
        {
            self.memory.writable_in_term = Some(status.term);
        }
        let lease_end = status.expires_at.filter(|_| status.mine);
        let command = guard::after(&facts, o.standby_signal, o.promotion_pending, lease_end);
        self.apply_guard(command);
        if matches!(command, GuardCommand::Arm(_)) {
            self.watchdog.keepalive();
        } else {
            self.watchdog.disarm();
        }
    }

    /// Tells the fence guard: writable until a margin before the lease's
    /// end, as it is, or not at all.
    fn apply_guard(&mut self, command: GuardCommand) {
        let margin = guard_margin(&self.cfg);
        let Some(guard) = &mut self.guard else {
            return;
        };
        match command {
            GuardCommand::Arm(end) => {
                if let Err(e) = guard.arm(Deadlines::before(end, margin)) {
                    tracing::error!("{e}");
                }
            }
            GuardCommand::Keep => {}
            GuardCommand::Disarm => guard.disarm(),
        }
    }

    /// An iteration while an action runs beside the loop: the peers, the
    /// lease (kept only while the action may make PostgreSQL writable), the
    /// guard with it, a time limit, the view and systemd's watchdog.
    async fn busy_iteration(&mut self) {
        self.peers.refresh().await;
        let Some(job) = &self.job else {
            return;
        };
        let leading = matches!(
            job.action,
            Action::Bootstrap
                | Action::Start { as_standby: false }
                | Action::Promote { .. }
                | Action::Restart { as_standby: false }
                | Action::HandOver { .. }
        );
        let keep = leading && self.lease.current().mine;
        let status = self.lease.update(keep).await;
        self.log_lease_change(&status);
        let Some(job) = &mut self.job else {
            return;
        };
        let now = Instant::now();
        let progress = self.view.borrow().progress_pct;
        if progress != job.progress.0 {
            job.progress = (progress, now);
        }
        let ran = now.saturating_duration_since(job.started);
        let stuck = match (&job.action, time_limit(&job.action)) {
            (Action::Clone { .. }, _) => {
                now.saturating_duration_since(job.progress.1) > CLONE_STALL
            }
            (_, Some(limit)) => ran > limit,
            (_, None) => false,
        };
        if stuck {
            tracing::error!("{} is stuck after {ran:?}: stopping it", what(&job.action));
            job.handle.abort();
        }
        let running = what(&job.action);
        let makes_writable = job.action.makes_writable() || leading;
        if makes_writable {
            if let Some(end) = status.expires_at.filter(|_| status.mine) {
                self.apply_guard(GuardCommand::Arm(end));
                self.watchdog.keepalive();
            }
        }
        let mut view = self.view.borrow().clone();
        view.loop_last = Some(now);
        view.peers = self.peers.views().cloned().collect();
        view.holds_lease = status.mine;
        view.leader = match (&status.holder, status.expires_at) {
            (Some(name), Some(expires_at)) => Some(LeaderView {
                name: name.clone(),
                term: status.term,
                expires_at,
            }),
            _ => None,
        };
        view.reason = Some(format!("{running}, running for {} s", ran.as_secs()));
        self.notifier.status(&status_line(&view));
        self.notifier.watchdog();
        self.view.send_replace(view);
    }

    /// The replication slots, after the action ([`super::slot_plan`]): on
    /// a primary holding the lease and on a standby; not while an action
    /// runs beside the loop (it owns PostgreSQL), nor while paused.
    async fn keep_slots(&mut self, status: &LeaseStatus, observed: Option<&Observed>) {
        if self.job.is_some() || self.ops.pause.paused {
            return;
        }
        let (Some(local), Some(obs)) = (&self.local, observed.and_then(|o| o.observation.as_ref()))
        else {
            return;
        };
        if !obs.in_recovery && !lease_view(status, Instant::now()).mine {
            return;
        }
        let streaming: Vec<&str> = obs
            .wal_senders
            .iter()
            .filter(|w| w.state.as_deref() == Some("streaming"))
            .filter_map(|w| w.application_name.as_deref())
            .collect();
        let peers: Vec<MemberSeen> = self
            .peers
            .views()
            .map(|p| {
                // Before its first loop an agent knows nothing of its node.
                let doc = p.fresh_doc().filter(|d| d.agent.loop_last_ms_ago.is_some());
                MemberSeen {
                    name: p.name.clone(),
                    answers: doc.is_some(),
                    replayed: doc
                        .and_then(|d| d.wal.as_ref())
                        .and_then(|w| w.replayed_lsn.or(w.lsn)),
                    streams_here: streaming.contains(&p.name.as_str()),
                }
            })
            .collect();
        local
            .lock()
            .await
            .keep_slots(obs, &peers, Instant::now())
            .await;
    }

    /// `synchronous_standby_names` covering the member list of every member
    /// (as each last reported it), handed to the executor before it acts.
    async fn plan_synchronous(&mut self) {
        let seen: Vec<MembershipDoc> = self
            .peers
            .views()
            .filter_map(|p| p.last.as_ref().and_then(|(_, d)| d.membership.clone()))
            .collect();
        // Members tagged nosync, as each last reported its tags (this
        // node's own tag matters only to the primary it may follow).
        let nosync: Vec<String> = self
            .peers
            .views()
            // A cascading standby (replicatefrom) does not stream from the
            // primary, so it could not acknowledge anyway: left out alike.
            .filter(|p| {
                p.last
                    .as_ref()
                    .is_some_and(|(_, d)| d.tags.nosync || d.tags.replicatefrom.is_some())
            })
            .map(|p| p.name.clone())
            .collect();
        let plan = SyncPlan::of(&self.cfg, &seen).map(|p| p.without_nosync(&nosync));
        if let Some(local) = &self.local {
            if let Err(e) = local.lock().await.set_sync_plan(plan.clone()).await {
                tracing::warn!("synchronous_standby_names not updated yet: {e}");
            }
        }
        let kept = |p: &Option<SyncPlan>| {
            p.as_ref()
                .map(|p| p.nosync_kept.clone())
                .unwrap_or_default()
        };
        if kept(&plan) != kept(&self.sync_plan) && !kept(&plan).is_empty() {
            tracing::warn!(
                "nosync ignored for {}: without them fewer than k standbys would acknowledge commits",
                kept(&plan).join(", ")
            );
        }
        self.sync_plan = plan;
    }

    /// What the other members said this loop, typed.
    fn peer_reports(&self) -> Vec<PeerReport> {
        self.peers
            .views()
            .map(|p| PeerReport::new(&p.name, p.fresh_doc(), p.error.clone()).asked_at(p.asked_at))
            .collect()
    }

    /// Counts a crash (the executor saw the postmaster exit unasked), or
    /// forgets earlier ones once PostgreSQL has run long enough.
    fn note_postmaster(&mut self, o: &Observed) {
        match &o.postmaster {
            PostmasterState::Exited { .. } => {
                let delay = self.memory.crash.failed(Instant::now());
                tracing::warn!(
                    "PostgreSQL exited unexpectedly: restarting in {delay:?} unless the situation says otherwise ({} crashes in a row)",
                    self.memory.crash.failures()
                );
            }
            PostmasterState::Running { age, .. }
                if *age > CRASH_FORGET_AFTER && o.observation.is_some() =>
            {
                self.memory.crash.reset();
            }
            _ => {}
        }
    }

    /// The local facts for the situation, from what the executor observed
    /// and what the loop remembers.
    fn local_facts(&self, o: &Observed, now: Instant) -> Local {
        Local {
            data: o.data,
            standby_signal: o.standby_signal,
            postgres: local_postgres(o, &self.memory, now),
            promoting: o.promotion_pending,
            position: o.observation.as_ref().and_then(|obs| obs.position()),
            system_identifier: o.system_identifier.clone(),
            timeline_diverged: matches!(
                o.receiver_problem,
                Some(ReceiverProblem::TimelineDiverged { .. })
            ),
            rewind_needed: o.rewind_needed,
            crashes_in_a_row: self.memory.crash.failures(),
            role_ensured: o.role_ensured,
            fenced_in_term: self.memory.fence.as_ref().map(|(t, _)| *t),
            last_leader: self.memory.last_leader,
            clone_retry_in: self.memory.clone.wait_left(now),
            handover: self.ops.handover(),
            designated: self.ops.designated(),
            sender_lag: sender_lag(o),
            writable_in_term: self.memory.writable_in_term,
        }
    }

    /// Keeps the primary's last position, from the lease holder's report
    /// or, on the primary, its own; writes it to `pgwarden.state` now and then.
    fn remember_leader_position(
        &mut self,
        situation: &Situation,
        status: &LeaseStatus,
        observed: Option<&Observed>,
    ) {
        let own = observed
            .and_then(|o| o.observation.as_ref())
            .filter(|obs| status.mine && !obs.in_recovery)
            .and_then(|obs| obs.position());
        let holder = status
            .holder
            .as_deref()
            .and_then(|h| situation.peer(h))
            .filter(|p| p.fresh && p.running_primary)
            .and_then(|p| p.position);
        let Some(position) = own.or(holder) else {
            return;
        };
        self.memory.last_leader = Some(position);
        let now = Instant::now();
        let due = self
            .memory
            .remembered
            .is_none_or(|(at, pos)| pos != position && now.duration_since(at) >= REMEMBER_EVERY);
        // Not while an action owns the data directory: next time.
        if let (true, Some(mut local)) = (due, self.local.as_ref().and_then(|l| l.try_lock().ok()))
        {
            local.remember_leader_position(position);
            self.memory.remembered = Some((now, position));
        }
    }

    fn watchdog_check(&mut self) {
        let blocker = self.watchdog.blocker();
        if blocker != self.watchdog_blocker {
            if let Some(b) = &blocker {
                tracing::error!("{b}");
            }
            self.watchdog_blocker = blocker;
        }
    }

    /// One log line whenever this node gains or loses the lease, or the
    /// holder it knows of changes.
    fn log_lease_change(&mut self, lease: &LeaseStatus) {
        let before = &self.last_lease;
        let first = self.last_action.is_none();
        if lease.mine && !before.mine && first {
            tracing::info!(
                "holds the leader lease of term {} (kept across the agent's restart, or just won)",
                lease.term
            );
        } else if lease.mine && !before.mine {
            tracing::info!("acquired the leader lease in term {}", lease.term);
        } else if !lease.mine && before.mine {
            let overdue = before
                .expires_at
                .map(|t| Instant::now().saturating_duration_since(t))
                .unwrap_or_default();
            let why = if overdue > self.cfg.cluster.loop_wait * 2 {
                format!("it expired {overdue:?} ago while this agent could not renew it (was it stopped or starved?)")
            } else {
                "it could not be renewed with a majority of members, or was given up".to_string()
            };
            match &lease.holder {
                Some(h) => tracing::warn!(
                    "lost the leader lease of term {}: {why}; {h} holds it now (term {})",
                    before.term,
                    lease.term
                ),
                None => tracing::warn!("lost the leader lease of term {}: {why}", before.term),
            }
        } else if !lease.mine && lease.holder != before.holder {
            match &lease.holder {
                Some(h) if lease.term > 0 => {
                    tracing::info!("{h} holds the leader lease (term {})", lease.term)
                }
                Some(h) => tracing::info!("{h} holds the leader lease"),
                None => tracing::info!("no member holds the leader lease"),
            }
        }
        self.last_lease = lease.clone();
    }

    /// Logs a new decision once, in words and with the fields a log
    /// pipeline reads (`log.format = "json"`): `member`, `term` (when a
    /// lease term is known), `action` (a stable name) and `reason`.
    fn log_decision(&mut self, action: &Action) {
        if self.last_action.as_ref() == Some(action) {
            return;
        }
        let at = |s: &crate::pg::conf::StandbySource| format!("{}:{}", s.host, s.port);
        let (name, reason) = match action {
            Action::Healthy => ("healthy", "nothing to do".to_string()),
            Action::Wait { reason } => ("wait", reason.clone()),
            Action::RenameAside => (
                "rename_aside",
                "the data directory holds something that is not a PostgreSQL cluster".into(),
            ),
            Action::Bootstrap => ("bootstrap", "no cluster yet: this member creates it".into()),
            Action::Start { as_standby } => (
                "start",
                format!(
                    "PostgreSQL is not running: start it as {}",
                    if *as_standby {
                        "a standby"
                    } else {
                        "the primary"
                    }
                ),
            ),
            Action::EnsureReplicationRole => (
                "ensure_replication_role",
                "the replication role or slots need creating or repair".into(),
            ),
            Action::Promote { reason } => ("promote", reason.clone()),
            Action::Rewind { source } => {
                ("rewind", format!("rejoin as a standby of {}", at(source)))
            }
            Action::Clone { source } => (
                "clone",
                format!("copy the data directory from {}", at(source)),
            ),
            Action::Follow { source } => (
                "follow",
                format!("stream from the primary at {}", at(source)),
            ),
            Action::Fence { reason } => ("fence", reason.clone()),
            Action::Restart { .. } => ("restart", "an operator asked for a restart".into()),
            Action::Reinit => ("reinit", "an operator asked for a reinitialisation".into()),
            Action::Reclone { reason } => ("reclone", reason.clone()),
            Action::HandOver { to } => ("hand_over", format!("switchover to {to}")),
        };
        let message = match action {
            Action::Healthy => "healthy: nothing to do".to_string(),
            Action::Wait { reason } => format!("waiting: {reason}"),
            other => format!("decided: {other:?}"),
        };
        let member = self.cfg.node.name.as_str();
        let term = Some(self.last_lease.term).filter(|t| *t > 0);
        tracing::info!(member, term, action = name, reason, "{message}");
        self.last_action = Some(action.clone());
    }

    fn build_view(
        &self,
        observed: Option<&Observed>,
        lease: &LeaseStatus,
        action: &Action,
    ) -> NodeView {
        let cfg = &self.cfg;
        let mut view = NodeView::initial(
            &cfg.node.name,
            &cfg.cluster.name,
            self.local.is_none(),
            cfg.cluster.ttl,
            cfg.replication.max_lag_on_failover.bytes(),
        );
        view.agent_started = self.view.borrow().agent_started;
        view.membership = Some(MembershipDoc::of(cfg));
        view.tags = cfg.node.tags.clone();
        view.api_url = Some(cfg.api_advertise_url());
        view.loop_last = Some(Instant::now());
        view.paused = self.ops.pause.paused;
        view.pause_version = self.ops.pause.version;
        view.handover_to = self.ops.handover_to();
        view.designated = self.ops.designated();
        view.scheduled_switchover =
            self.ops
                .switchover_at
                .as_ref()
                .map(|d| crate::view::PendingSwitchover {
                    at: d.at,
                    from: d.what.0.clone(),
                    to: d.what.1.clone(),
                });
        // Patroni's dcs_last_seen: a valid lease is known now, or as of when it last was.
        view.lease_seen_at = if lease.expires_at.is_some_and(|t| t > Instant::now()) {
            Some(std::time::SystemTime::now())
        } else {
            self.view.borrow().lease_seen_at
        };
        view.peers = self.peers.views().cloned().collect();
        let holder = lease
            .holder
            .as_deref()
            .and_then(|h| self.peers.get(h))
            .and_then(|p| p.fresh_doc());
        view.leader_lsn = holder.and_then(|d| d.position()).map(|p| p.lsn);
        view.holds_lease = lease.mine;
        view.last_leader_position = self.memory.last_leader;
        // Another holder's term as it reports it itself: an acceptor only
        // sees renewal ballots, whose counters grow with every renewal.
        let reported_term = holder
            .filter(|_| !lease.mine)
            .and_then(|d| d.leader.as_ref())
            .map(|l| l.term);
        view.leader = match (&lease.holder, lease.expires_at) {
            (Some(name), Some(expires_at)) => Some(LeaderView {
                name: name.clone(),
                term: reported_term.unwrap_or(lease.term),
                expires_at,
            }),
            _ => None,
        };
        view.reason = match action {
            Action::Wait { reason } | Action::Fence { reason } => Some(reason.clone()),
            _ => None,
        };
        if let Some(e) = &self.last_error {
            view.reason = Some(e.clone());
        }
        // The watchdog is why this node will not lead: say that rather
        // than "waiting for the lease".
        if let Some(b) = &self.watchdog_blocker {
            view.reason = Some(b.clone());
        }
        let (Some(o), Some(local)) = (observed, &self.local) else {
            view.state = State::Running;
            view.reason = None;
            return view;
        };
        let observation = o.observation.clone();
        view.role = match (&observation, o.data) {
            (Some(obs), _) if obs.in_recovery => Role::Replica,
            (Some(_), _) => Role::Primary,
            (None, DataDirState::Initialized) if o.standby_signal => Role::Replica,
            (None, DataDirState::Initialized) => Role::Primary,
            (None, _) => Role::Uninitialized,
        };
        let postmaster_runs = matches!(o.postmaster, PostmasterState::Running { .. });
        view.state = if observation.is_some() {
            State::Running
        } else if postmaster_runs {
            State::Starting
        } else if self.memory.fence.is_some() {
            State::Fenced
        } else if self.memory.crash.wait_left(Instant::now()).is_some() {
            State::Crashed
        } else {
            State::Stopped
        };
        if view.state == State::Fenced {
            let why = self.memory.fence.as_ref().map(|(_, r)| r.as_str());
            view.reason = match (why, &view.reason) {
                (Some(why), Some(now)) if now.as_str() != why => {
                    Some(format!("fenced ({why}); now {now}"))
                }
                (Some(why), _) => Some(format!("fenced ({why})")),
                (None, now) => now.clone(),
            };
        }
        view.wal_receiver_problem = o.receiver_problem.as_ref().map(|p| p.to_string());
        view.renamed_aside = o.renamed_aside;
        if view.role == Role::Primary {
            if let (Some(obs), Some(plan)) = (&observation, &self.sync_plan) {
                view.synchronous = Some(crate::sync_report::report(plan, &obs.wal_senders));
            }
        }
        view.history = match local.try_lock() {
            Ok(local) => local.history().to_vec(),
            Err(_) => self.view.borrow().history.clone(),
        };
        view.postgres = Some(PostgresView {
            pid: match o.postmaster {
                PostmasterState::Running { pid, .. } => Some(pid),
                _ => None,
            },
            host: cfg.pg_advertise_host(),
            port: cfg.postgresql.port,
            observed_at: observation.as_ref().map(|_| o.at),
            observation,
        });
        view
    }

    /// Applies a new configuration; returns what happened, in words.
    async fn reload(&mut self, new: Config) -> String {
        let plan = crate::config::reload_plan(&self.cfg, &new);
        if plan.is_empty() {
            tracing::info!("reload: the configuration did not change");
            return "the configuration did not change".into();
        }
        let mut summary = format!(
            "applied {}{}",
            if plan.applied.is_empty() {
                "nothing now".to_string()
            } else {
                plan.applied.join(", ")
            },
            if plan.postgres_restart.is_empty() {
                String::new()
            } else {
                format!(
                    "; written for PostgreSQL, in effect at its next restart (pending_restart; `pgwarden restart --pending`): {}",
                    plan.postgres_restart.join(", ")
                )
            }
        );
        tracing::info!("reload: {summary}");
        if !plan.agent_restart.is_empty() {
            let kept = format!(
                "kept at their running values until the agent restarts: {} (restart the members one at a time: `systemctl restart pgwarden` leaves PostgreSQL running)",
                plan.agent_restart.join(", ")
            );
            tracing::warn!("reload: {kept}");
            summary = format!("{summary}; {kept}");
        }
        let applied = crate::config::to_apply(&self.cfg, &new);
        // The executor takes it now, or once the running action is done.
        self.pending_reload = self.local.is_some().then(|| applied.clone());
        if plan.postgres_restart.is_empty() && plan.applied.is_empty() {
            self.pending_reload = None;
        }
        if plan.applied.contains(&"cluster.members") {
            self.peers
                .set_members(&self.cfg.node.name, &applied.cluster.members);
            tracing::info!(
                "cluster.members changed: peers and pg_hba follow now; the leader lease keeps its voting membership until each agent restarts (restart them one at a time)"
            );
        }
        self.cfg = applied;
        self.settings = Settings::from_config(&self.cfg);
        self.settings.paused = self.ops.pause.paused;
        self.iterate().await;
        summary
    }

    /// Stops an action running beside the loop (the agent is stopping).
    async fn abort_job(&mut self) {
        if let Some(job) = self.job.take() {
            tracing::warn!(
                "stopping {} (it ran for {:?}): the agent is stopping",
                what(&job.action),
                job.started.elapsed()
            );
            job.handle.abort();
            let _ = job.handle.await;
        }
    }

    /// Exits the loop leaving everything to the next agent: PostgreSQL runs
    /// on, the fence guard keeps its deadline (it stops a primary whose
    /// lease is not renewed in time), the lease notes keep the lease.
    async fn detach(&mut self) {
        self.abort_job().await;
        self.notifier.stopping();
        // The guard covers the gap; a watchdog left open would reboot the
        // machine if the next agent took longer than its timeout.
        self.watchdog.disarm();
        tracing::info!(
            "detached: PostgreSQL{} keeps running; the next agent adopts it and resumes the lease",
            if self.last_lease.mine {
                " (the primary, guarded until its lease ends)"
            } else {
                ""
            }
        );
    }

    async fn shutdown(&mut self) {
        tracing::info!(
            "shutting down: stopping PostgreSQL (fast), then releasing the leader lease"
        );
        self.notifier.stopping();
        self.abort_job().await;
        // PostgreSQL first: once the lease is released another member may
        // promote, and this one must not be writable by then.
        if let Some(local) = &self.local {
            if let Err(e) = local.lock().await.shutdown().await {
                tracing::error!(
                    "stopping PostgreSQL failed: {e}; keeping the lease until it expires"
                );
                return;
            }
            self.apply_guard(GuardCommand::Disarm);
        }
        self.watchdog.disarm();
        self.lease.release().await;
    }
}

/// Says once when commits start and stop waiting for standbys, naming the
/// missing ones: without it an operator sees only hanging commits.
fn log_writes_blocked(before: Option<&SynchronousDoc>, now: Option<&SynchronousDoc>) {
    let was = before.is_some_and(|s| s.writes_blocked);
    match now {
        Some(s) if s.writes_blocked && (!was || before.is_some_and(|b| b.missing != s.missing)) => {
            tracing::warn!(
                "writes blocked: synchronous = {:?} needs {} standby(s) to acknowledge each commit and {} count ({}); missing: {}",
                s.mode,
                s.k,
                s.standbys.len(),
                if s.standbys.is_empty() {
                    "none".to_string()
                } else {
                    s.standbys.join(", ")
                },
                if s.missing.is_empty() {
                    "none (connected but not streaming yet)".to_string()
                } else {
                    s.missing.join(", ")
                }
            );
        }
        Some(s) if was && !s.writes_blocked => {
            tracing::info!(
                "writes unblocked: {} standby(s) acknowledge commits again ({})",
                s.standbys.len(),
                s.standbys.join(", ")
            );
        }
        _ => {}
    }
}

/// How far each standby's flushed WAL trails this primary, by member
/// (its `application_name`), from the primary's own `pg_stat_replication`.
fn sender_lag(o: &Observed) -> Vec<(String, u64)> {
    let Some(obs) = o.observation.as_ref().filter(|obs| !obs.in_recovery) else {
        return Vec::new();
    };
    let Some(current) = obs.current_lsn else {
        return Vec::new();
    };
    obs.wal_senders
        .iter()
        .filter_map(|w| {
            let name = w.application_name.clone()?;
            let flushed = w
                .other
                .get("flush_lsn")
                .and_then(|v| v.as_str())
                .and_then(|v| v.parse::<crate::pg::Lsn>().ok());
            let lag = match flushed {
                Some(f) => current.bytes_after(f),
                None => w.lag_bytes?,
            };
            Some((name, lag))
        })
        .collect()
}

/// The postmaster as the decision sees it.
fn local_postgres(o: &Observed, memory: &Memory, now: Instant) -> Postgres {
    match (&o.postmaster, &o.observation) {
        (PostmasterState::Running { .. }, Some(obs)) => Postgres::Running {
            in_recovery: obs.in_recovery,
        },
        (PostmasterState::Running { .. }, None) => Postgres::Starting,
        (PostmasterState::None | PostmasterState::Exited { .. }, _) => Postgres::NotRunning {
            crash_backoff: memory.crash.wait_left(now).is_some(),
        },
    }
}

/// A witness's "local" facts: no data, nothing running.
fn witness_local() -> Local {
    Local {
        data: DataDirState::Empty,
        standby_signal: false,
        postgres: Postgres::NotRunning {
            crash_backoff: false,
        },
        promoting: false,
        position: None,
        system_identifier: None,
        timeline_diverged: false,
        rewind_needed: false,
        crashes_in_a_row: 0,
        role_ensured: false,
        fenced_in_term: None,
        last_leader: None,
        clone_retry_in: None,
        handover: None,
        designated: false,
        sender_lag: Vec::new(),
        writable_in_term: None,
    }
}

/// The lease as decisions see it at `now`.
fn lease_view(status: &LeaseStatus, now: Instant) -> Lease {
    let remaining = status.remaining(now);
    Lease {
        mine: status.mine && !remaining.is_zero(),
        holder: status.holder.clone(),
        term: status.term,
        remaining: if status.mine {
            remaining
        } else {
            Duration::ZERO
        },
        since: None,
    }
}

/// An action in words, for the log and `/status`.
fn what(action: &Action) -> String {
    match action {
        Action::Bootstrap => "initdb".into(),
        Action::Clone { source } => format!("the clone from {}:{}", source.host, source.port),
        Action::Rewind { source } => {
            format!("the rejoin of {}:{} (pg_rewind)", source.host, source.port)
        }
        Action::Start { as_standby: true } => "the start of PostgreSQL as a standby".into(),
        Action::Start { as_standby: false } => "the start of PostgreSQL as primary".into(),
        Action::Promote { .. } => "the promotion".into(),
        Action::Fence { .. } => "the fence".into(),
        other => format!("{other:?}"),
    }
}

/// The state published before an action begins.
fn announced_state(action: &Action) -> Option<State> {
    match action {
        Action::Fence { .. } => Some(State::Fencing),
        Action::Bootstrap => Some(State::Bootstrapping),
        Action::Clone { .. } => Some(State::Cloning),
        Action::Rewind { .. } => Some(State::Rewinding),
        _ => None,
    }
}

/// The fence guard acts this long before the lease ends: inside the
/// agent's own fence margin, so it only fires when the agent did not.
fn guard_margin(cfg: &Config) -> Duration {
    (cfg.cluster.ttl / 5).max(Duration::from_millis(200))
}

/// The one-line `STATUS=` for systemd.
fn status_line(view: &NodeView) -> String {
    let name = |v: serde_json::Result<serde_json::Value>| {
        v.ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let role = name(serde_json::to_value(view.role));
    let state = name(serde_json::to_value(view.state));
    match &view.reason {
        Some(r) => format!("{role}, {state}: {r}"),
        None => format!("{role}, {state}"),
    }
}

/// How long ago the loop last ran, for `/liveness`.
pub fn loop_age(view: &NodeView, now: Instant) -> Option<Duration> {
    view.loop_last.map(|t| now.saturating_duration_since(t))
}
