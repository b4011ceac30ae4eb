//! The executor: the local PostgreSQL as the HA loop drives it. It
//! observes (data directory, postmaster, probe) and carries out one
//! [`Action`] at a time, and tells the fence guard what [`super::guard`]
//! decided. Every choice was made elsewhere ([`super::decide`],
//! [`super::guard`], the runner's back-offs); what stays here is how to do
//! a thing, and how to clean up when doing it failed (a partial copy is
//! renamed aside, never used and never deleted).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::config::{read_secret, Config, ParamValue, SecretError};
use crate::pg::binaries::Binaries;
use crate::pg::conf::{self as pgconf, StandbySource};
use crate::pg::ctl::{self, BasebackupOptions, CtlError, InitdbOptions};
use crate::pg::diagnose::ReceiverProblem;
use crate::pg::files::{self, DataDirState, FileError, ManagedFiles};
use crate::pg::postmaster::{AdoptRefusal, Postmaster, PostmasterError, StopMode};
use crate::pg::probe::{Observation, Probe, ProbeError};
use crate::pg::roles;
use crate::pg::runas::{RunAs, RunAsError};
use crate::state::{AgentState, HistoryEntry, PromotionRequest, StateError, HISTORY_LIMIT};
use crate::status_doc::Position;
use crate::sync_report::SyncPlan;

use super::decide::Action;
use super::slot_plan::{MemberSeen, SlotFacts, SlotKeeper, SlotRole, SlotStep};

/// How long a fast shutdown may take before it escalates to immediate.
const FAST_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the executor waits for a freshly started postmaster to accept
/// connections before it hands control back to the loop.
const START_WAIT: Duration = Duration::from_secs(5);

/// An action could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A secret file could not be read.
    #[error("{key}: {source}")]
    Secret {
        /// The configuration key naming the file.
        key: &'static str,
        /// What went wrong.
        source: SecretError,
    },
    /// A required secret file is not configured.
    #[error("{0} is not set: a data member needs it (see docs/configuration.md)")]
    MissingSecret(&'static str),
    /// Preparing directories or ownership failed.
    #[error(transparent)]
    RunAs(#[from] RunAsError),
    /// A tool failed.
    #[error(transparent)]
    Ctl(#[from] CtlError),
    /// A managed file could not be written.
    #[error(transparent)]
    File(#[from] FileError),
    /// The postmaster could not be started or stopped.
    #[error(transparent)]
    Postmaster(#[from] PostmasterError),
    /// A query failed.
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// The state file failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A running postmaster could not be adopted.
    #[error("will not start PostgreSQL: {0}")]
    Adopt(#[from] AdoptRefusal),
    /// The step before the tool failed; retried later.
    #[error("{0}")]
    Retry(String),
}

/// Where the executor reports a clone's progress (percent; `None` when done).
pub type ProgressReporter = std::sync::Arc<dyn Fn(Option<u8>) + Send + Sync>;

/// The postmaster as found this iteration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostmasterState {
    /// None runs.
    None,
    /// One runs, for this long (since this agent started or adopted it).
    Running {
        /// Its pid.
        pid: i32,
        /// How long it has run.
        age: Duration,
    },
    /// The one that ran exited without being asked to, just now.
    Exited {
        /// How.
        how: String,
    },
}

/// In a data directory: this primary's directory was started as a
/// standby and has not been rewound against a leader since; it is rewound
/// (a no-op when it did not diverge) before it follows anyone.
pub const REWIND_MARKER: &str = "pgwarden.rewind-before-following";

const REWIND_MARKER_TEXT: &str = "This directory ran as a primary and was started as a standby; \
pgwarden runs pg_rewind against the leader before it follows one (removed after a rewind).\n";

/// Removes [`REWIND_MARKER`] (absent is fine).
fn remove_rewind_marker(data_dir: &std::path::Path) -> Result<(), FileError> {
    let path = data_dir.join(REWIND_MARKER);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(FileError { path, source }),
    }
}

/// A standby without a running WAL receiver: its timeline from its
/// history files at its position, not the last restartpoint's, which may
/// be many timelines old (see [`crate::pg::history`]).
fn with_replay_timeline(mut obs: Observation, data_dir: &std::path::Path) -> Observation {
    let receiving = obs
        .wal_receiver
        .as_ref()
        .is_some_and(|r| r.received_tli.is_some());
    if obs.in_recovery && !receiving {
        if let Some(lsn) = obs.position().map(|p| p.lsn) {
            if let Some(tli) = crate::pg::history::replay_timeline(data_dir, lsn) {
                obs.timeline = Some(tli);
            }
        }
    }
    obs
}

/// What the executor found this iteration: plain data.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The data directory.
    pub data: DataDirState,
    /// `standby.signal` exists.
    pub standby_signal: bool,
    /// [`REWIND_MARKER`] exists: a primary's directory started as a
    /// standby, not rewound against a leader since.
    pub rewind_needed: bool,
    /// The postmaster.
    pub postmaster: PostmasterState,
    /// A promotion this agent asked for may still be under way.
    pub promotion_pending: bool,
    /// The probe's answer, when PostgreSQL answered.
    pub observation: Option<Observation>,
    /// Why the probe got no answer, when a postmaster runs.
    pub probe_error: Option<String>,
    /// Why a standby does not stream, from its server log.
    pub receiver_problem: Option<ReceiverProblem>,
    /// The replication role was ensured since PostgreSQL last started as primary.
    pub role_ensured: bool,
    /// The cluster's system identifier, from PostgreSQL or the state file.
    pub system_identifier: Option<String>,
    /// When it was observed (just before the probe): a peer comparing
    /// positions needs to know how old this one is.
    pub at: Instant,
    /// No data here, and a directory renamed aside beside it.
    pub renamed_aside: bool,
}

/// The local PostgreSQL under the agent's care.
pub struct LocalPostgres {
    cfg: Config,
    /// `synchronous_standby_names` as the runner planned it last.
    sync_plan: Option<SyncPlan>,
    bins: Binaries,
    runas: RunAs,
    postmaster: Option<Postmaster>,
    probe: Probe,
    role_ensured: bool,
    adopted_logged: bool,
    unreadable_logged: bool,
    follow: Option<StandbySource>,
    progress: Option<ProgressReporter>,
    history: Vec<HistoryEntry>,
    /// A hand-over's final position: the start of the shutdown checkpoint.
    handed_over_at: Option<crate::pg::Lsn>,
    /// The postmaster asked to promote and not yet seen promoted
    /// (`promotion_requested` in `pgwarden.state`).
    promoting: Option<i32>,
    /// The replication slots' memory: who was away since when, which
    /// slots wait for their member, which slots are the agent's.
    slots: SlotKeeper,
    /// The slot names last written to `pgwarden.state`.
    slots_saved: Vec<String>,
    /// The last failure of a slot step, logged once until it changes.
    slot_error: Option<String>,
}

impl LocalPostgres {
    /// Takes charge of the data directory of `cfg`.
    pub fn new(cfg: Config, bins: Binaries, runas: RunAs) -> LocalPostgres {
        let state = AgentState::load(&cfg.node.data_dir).unwrap_or_default();
        let promoting = state
            .promotion_requested
            .filter(|asked| asked.member == cfg.node.name)
            .map(|asked| asked.postmaster_pid);
        let history = state.history;
        let slots_saved = state.member_slots;
        let probe = Probe::new(
            &cfg.postgresql.socket_dir,
            cfg.postgresql.port,
            Duration::from_secs(3),
        );
        LocalPostgres {
            sync_plan: crate::sync_report::SyncPlan::of(&cfg, &[]),
            cfg,
            bins,
            runas,
            postmaster: None,
            probe,
            role_ensured: false,
            adopted_logged: false,
            unreadable_logged: false,
            follow: None,
            progress: None,
            history,
            handed_over_at: None,
            promoting,
            slots: SlotKeeper::new(slots_saved.iter().cloned()),
            slots_saved,
            slot_error: None,
        }
    }

    /// Whether a promotion asked of this postmaster may still be under
    /// way: it runs and does not answer, or answers in recovery. Evidence
    /// that it is over (promoted, or another postmaster, or none) forgets it.
    fn promotion_pending(
        &mut self,
        postmaster: &PostmasterState,
        observation: Option<&Observation>,
    ) -> bool {
        let Some(asked) = self.promoting else {
            return false;
        };
        let pending = match postmaster {
            PostmasterState::Running { pid, .. } if *pid == asked => {
                observation.is_none_or(|o| o.in_recovery)
            }
            _ => false,
        };
        if !pending {
            if let Err(e) = self.note_promotion(None) {
                tracing::warn!("cannot forget the finished promotion: {e}");
            }
        }
        pending
    }

    /// Writes (or clears) the promotion asked of postmaster `pid` in
    /// `pgwarden.state`, before PostgreSQL is asked: it outlives the agent.
    fn note_promotion(&mut self, pid: Option<i32>) -> Result<(), StateError> {
        self.promoting = pid;
        let data_dir = self.cfg.node.data_dir.clone();
        let mut state = AgentState::load(&data_dir)?;
        state.promotion_requested = pid.map(|postmaster_pid| PromotionRequest {
            member: self.cfg.node.name.clone(),
            postmaster_pid,
        });
        state.save(&data_dir, &self.runas)
    }

    /// The final position of the last hand-over (taken once).
    pub fn take_handed_over_at(&mut self) -> Option<crate::pg::Lsn> {
        self.handed_over_at.take()
    }

    /// Role changes recorded in this data directory.
    pub fn history(&self) -> &[HistoryEntry] {
        &self.history
    }

    /// Remembers the last position the primary was seen at, in
    /// `pgwarden.state`, for `max_lag_on_failover` after a restart.
    pub fn remember_leader_position(&mut self, position: Position) {
        let data_dir = self.cfg.node.data_dir.clone();
        if files::data_dir_state(&data_dir) != DataDirState::Initialized {
            return;
        }
        let mut state = AgentState::load(&data_dir).unwrap_or_default();
        state.last_leader_position = Some(position);
        if let Err(e) = state.save(&data_dir, &self.runas) {
            tracing::warn!("cannot remember the primary's position: {e}");
        }
    }

    /// The last primary position remembered in `pgwarden.state`.
    pub fn remembered_leader_position(&self) -> Option<Position> {
        AgentState::load(&self.cfg.node.data_dir)
            .ok()?
            .last_leader_position
    }

    /// Appends a role change to the history in `pgwarden.state`.
    fn record(
        &mut self,
        reason: String,
        timeline: Option<u32>,
        lsn: Option<String>,
        new_leader: Option<&str>,
    ) {
        let entry = HistoryEntry {
            timeline,
            lsn,
            reason,
            at: now_rfc3339(),
            new_leader: new_leader.unwrap_or_default().to_string(),
        };
        let data_dir = self.cfg.node.data_dir.clone();
        let mut state = AgentState::load(&data_dir).unwrap_or_default();
        // pg_rewind and pg_basebackup bring the source's state file: keep
        // the longer history of the two.
        if state.history.len() < self.history.len() {
            state.history = self.history.clone();
        }
        state.history.push(entry);
        crate::telemetry::role_change();
        let excess = state.history.len().saturating_sub(HISTORY_LIMIT);
        state.history.drain(..excess);
        self.history = state.history.clone();
        if let Err(e) = state.save(&data_dir, &self.runas) {
            tracing::error!("cannot record the role change: {e}");
        }
    }

    /// The leader's PostgreSQL, when known: where a standby started now
    /// streams from. An unknown leader keeps the last known source.
    pub fn set_leader_source(&mut self, source: Option<StandbySource>) {
        if source.is_some() {
            self.follow = source;
        }
    }

    /// Where clone progress goes.
    pub fn set_progress_reporter(&mut self, reporter: ProgressReporter) {
        self.progress = Some(reporter);
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The postmaster's pid, when one runs.
    pub fn pid(&self) -> Option<i32> {
        self.postmaster.as_ref().map(Postmaster::pid)
    }

    /// Looks at the data directory, the postmaster and the server.
    pub async fn observe(&mut self) -> Observed {
        let at = Instant::now();
        let data_dir = self.cfg.node.data_dir.clone();
        let data = files::data_dir_state(&data_dir);
        let renamed_aside =
            data != DataDirState::Initialized && files::renamed_aside_beside(&data_dir);
        let unreadable = data == DataDirState::Unreadable;
        if unreadable && !self.unreadable_logged {
            let why = std::fs::read_dir(&data_dir)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            tracing::error!(
                "cannot read the data directory {}: {why}",
                data_dir.display()
            );
        }
        self.unreadable_logged = unreadable;
        let standby_signal = data_dir.join("standby.signal").exists();
        let rewind_needed = data_dir.join(REWIND_MARKER).exists();
        let mut exited = None;
        if let Some(pm) = &mut self.postmaster {
            if let Some(exit) = pm.poll_exit() {
                let pid = pm.pid();
                self.postmaster = None;
                self.role_ensured = false;
                self.probe
                    .reset(&self.cfg.postgresql.socket_dir, self.cfg.postgresql.port);
                tracing::error!(pid, exit = %exit.how, "PostgreSQL exited unexpectedly ({})", exit.how);
                exited = Some(exit.how.to_string());
            }
        }
        if self.postmaster.is_none() && data == DataDirState::Initialized {
            // A postmaster the agent did not start (an agent restart, an
            // operator's pg_ctl): take it over rather than start a second one.
            match Postmaster::adopt(&data_dir) {
                Ok(Some(pm)) => {
                    tracing::info!(pid = pm.pid(), "adopted the running postmaster {} (postmaster.pid checked: live postgres in {})", pm.pid(), data_dir.display());
                    self.postmaster = Some(pm);
                    self.adopted_logged = false;
                }
                Ok(None) => {}
                Err(refusal) => {
                    if !self.adopted_logged {
                        tracing::error!("{refusal}");
                        self.adopted_logged = true;
                    }
                }
            }
        }
        let mut observation = None;
        let mut probe_error = None;
        let postmaster = match (&self.postmaster, exited) {
            (_, Some(how)) => PostmasterState::Exited { how },
            (None, None) => PostmasterState::None,
            (Some(pm), None) => {
                let (pid, age) = (pm.pid(), pm.age());
                let port = files_port(&data_dir).unwrap_or(self.cfg.postgresql.port);
                self.probe.reset_port_if_changed(port);
                match self.probe.observe().await {
                    Ok(obs) => observation = Some(with_replay_timeline(obs, &data_dir)),
                    Err(e) => {
                        tracing::debug!("probe: {e}");
                        probe_error = Some(e.to_string());
                    }
                }
                PostmasterState::Running { pid, age }
            }
        };
        let promotion_pending = self.promotion_pending(&postmaster, observation.as_ref());
        let receiver_problem = observation
            .as_ref()
            .filter(|obs| obs.in_recovery && obs.receiver_status() != Some("streaming"))
            .and_then(|obs| {
                let tail =
                    crate::pg::diagnose::read_log_tail(&files::server_log(&data_dir), 64 * 1024)
                        .unwrap_or_default();
                crate::pg::diagnose::diagnose(&tail, obs.receiver_status())
            });
        let system_identifier = observation
            .as_ref()
            .map(|obs| obs.system_identifier.clone())
            .or_else(|| AgentState::load(&data_dir).ok()?.system_identifier);
        Observed {
            data,
            standby_signal,
            rewind_needed,
            postmaster,
            promotion_pending,
            observation,
            probe_error,
            receiver_problem,
            role_ensured: self.role_ensured,
            system_identifier,
            at,
            renamed_aside,
        }
    }

    /// Carries out one action.
    pub async fn execute(&mut self, action: &Action) -> Result<(), ExecError> {
        match action {
            Action::Healthy | Action::Wait { .. } => Ok(()),
            Action::RenameAside => {
                let moved = files::rename_aside(&self.cfg.node.data_dir, "foreign")?;
                tracing::warn!(
                    "{} held files but no PostgreSQL cluster (an interrupted initdb?): renamed it to {} (nothing deleted)",
                    self.cfg.node.data_dir.display(),
                    moved.display()
                );
                Ok(())
            }
            Action::Bootstrap => self.bootstrap().await,
            Action::Start { as_standby } => self.start(*as_standby).await,
            Action::EnsureReplicationRole => self.prepare_primary().await,
            Action::Clone { source } => self.clone_from(source).await,
            Action::Follow { source } => self.follow(source).await,
            Action::Promote { reason } => self.promote(reason).await,
            Action::Rewind { source } => self.rewind(source).await,
            Action::Restart { as_standby } => {
                tracing::info!(
                    "restarting PostgreSQL (an operator's request): fast stop, then start"
                );
                self.stop(StopMode::Fast, FAST_STOP_TIMEOUT).await?;
                self.start(*as_standby).await
            }
            Action::Reinit => {
                if self.postmaster.is_some() {
                    self.stop(StopMode::Fast, FAST_STOP_TIMEOUT).await?;
                }
                let moved = files::rename_aside(&self.cfg.node.data_dir, "reinit")?;
                tracing::warn!(
                    "reinitializing (an operator's request): {} renamed to {} (nothing deleted); this member clones afresh",
                    self.cfg.node.data_dir.display(),
                    moved.display()
                );
                self.record(
                    format!(
                        "reinitialized: the old data directory is {}",
                        moved.display()
                    ),
                    None,
                    None,
                    None,
                );
                Ok(())
            }
            Action::Reclone { reason } => {
                if self.postmaster.is_some() {
                    self.stop(StopMode::Fast, FAST_STOP_TIMEOUT).await?;
                }
                let moved = files::rename_aside(&self.cfg.node.data_dir, "reclone")?;
                tracing::warn!(
                    "re-cloning: {reason}; {} renamed to {} (nothing deleted: remove it once this member streams again); this member clones afresh from the primary",
                    self.cfg.node.data_dir.display(),
                    moved.display()
                );
                self.record(
                    format!(
                        "re-cloned by the agent ({reason}); the old data directory is {}",
                        moved.display()
                    ),
                    None,
                    None,
                    None,
                );
                Ok(())
            }
            Action::HandOver { to } => self.hand_over(to).await,
            Action::Fence { reason } => {
                tracing::error!("fencing: {reason}; stopping PostgreSQL (fast, then immediate)");
                crate::telemetry::fence();
                // Fast gets half a second: no session may commit once the
                // lease ends, and immediate is safe (crash recovery later).
                self.stop(StopMode::Fast, Duration::from_millis(500))
                    .await?;
                self.record(format!("fenced: {reason}"), None, None, None);
                Ok(())
            }
        }
    }

    /// A switchover's first half: no transaction may commit here after
    /// this. CHECKPOINT (so that the shutdown is quick), a fast stop (the
    /// walsenders send everything up to the shutdown checkpoint to the
    /// standbys before they exit), then `standby.signal`, so that this
    /// member comes back as a standby. The final position is kept for the
    /// runner, which releases the lease once `to` has replayed past it.
    async fn hand_over(&mut self, to: &str) -> Result<(), ExecError> {
        tracing::info!("switchover to {to}: CHECKPOINT, then a fast stop; no transaction commits here after this");
        if let Err(e) = self.probe.execute("CHECKPOINT").await {
            tracing::warn!("CHECKPOINT before the switchover failed ({e}); stopping anyway");
        }
        self.stop(StopMode::Fast, FAST_STOP_TIMEOUT).await?;
        let data_dir = self.cfg.node.data_dir.clone();
        let control = ctl::controldata(&self.bins, &self.runas, &data_dir).await?;
        files::write_atomic(&data_dir.join("standby.signal"), b"", 0o600, &self.runas)?;
        tracing::info!(
            "switchover to {to}: PostgreSQL stopped ({}), last checkpoint {} on timeline {}",
            control.state,
            control.checkpoint,
            control.timeline
        );
        self.handed_over_at = Some(control.checkpoint);
        Ok(())
    }

    /// `initdb`, managed files, start as primary, the replication role.
    async fn bootstrap(&mut self) -> Result<(), ExecError> {
        let data_dir = self.cfg.node.data_dir.clone();
        let superuser_password = self.secret(
            "replication.superuser_password_file",
            self.cfg.replication.superuser_password_file.clone(),
        )?;
        if self.runas.ensure_dir(&data_dir, 0o700)? {
            tracing::info!(
                "created {} (mode 0700, owner {})",
                data_dir.display(),
                self.runas.user
            );
        }
        if self.runas.switch {
            tracing::info!(
                "running as root: initdb, postgres and every PostgreSQL tool run as {} (uid {}), the owner of {}",
                self.runas.user,
                self.runas.uid,
                data_dir.display()
            );
        }
        tracing::info!(
            "bootstrapping a new cluster in {} with initdb (data checksums, SCRAM)",
            data_dir.display()
        );
        let no_sync = self.no_sync();
        let bins = self.bins.clone();
        let runas = self.runas.clone();
        let result = {
            let data_dir = data_dir.clone();
            let password = superuser_password;
            tokio::task::spawn_blocking(move || {
                ctl::initdb(
                    &bins,
                    &runas,
                    &InitdbOptions {
                        data_dir: &data_dir,
                        superuser_password: &password,
                        no_sync,
                    },
                )
            })
            .await
            .unwrap_or_else(|e| {
                Err(CtlError::Temp {
                    what: "initdb",
                    source: std::io::Error::other(e.to_string()),
                })
            })
        };
        if let Err(e) = result {
            if files::data_dir_state(&data_dir) != DataDirState::Empty {
                let moved = files::rename_aside(&data_dir, "failed-initdb")?;
                tracing::error!(
                    "initdb failed; its partial directory was renamed to {} (nothing deleted)",
                    moved.display()
                );
            }
            return Err(e.into());
        }
        // Started by the next loop, as a primary's directory is: with the
        // fence guard armed first and a fresh look at the lease.
        self.write_managed_files()?;
        tracing::info!(
            "initdb done: {} holds a new cluster, to be started as primary",
            data_dir.display()
        );
        Ok(())
    }

    /// The first time a new cluster runs as primary: record its system
    /// identifier and who made it.
    async fn record_bootstrap(&mut self) -> Result<(), ExecError> {
        let data_dir = self.cfg.node.data_dir.clone();
        if AgentState::load(&data_dir)
            .ok()
            .and_then(|s| s.system_identifier)
            .is_some()
        {
            return Ok(());
        }
        let obs = self.probe.observe().await?;
        let state = AgentState {
            system_identifier: Some(obs.system_identifier.clone()),
            initialized_by: Some(self.cfg.node.name.clone()),
            initialized_at: Some(now_rfc3339()),
            ..AgentState::default()
        };
        state.save(&data_dir, &self.runas)?;
        let me = self.cfg.node.name.clone();
        self.history.clear();
        self.record(
            "initialized a new cluster with initdb".into(),
            obs.timeline,
            obs.current_lsn.map(|l| l.to_string()),
            Some(&me),
        );
        tracing::info!(
            system_identifier = %obs.system_identifier,
            "bootstrap done: new cluster {} is primary on timeline {}",
            self.cfg.cluster.name,
            obs.timeline.unwrap_or(1)
        );
        Ok(())
    }

    /// Writes the managed files and starts the postmaster.
    async fn start(&mut self, as_standby: bool) -> Result<(), ExecError> {
        let data_dir = self.cfg.node.data_dir.clone();
        self.runas
            .ensure_dir(&self.cfg.postgresql.socket_dir, 0o2775)?;
        self.write_managed_files()?;
        let signal = data_dir.join("standby.signal");
        if as_standby && !signal.exists() {
            // A primary's directory (crashed, fenced, or only stopped)
            // becoming a standby: its WAL may go past the point where the
            // next leader's timeline forked, and PostgreSQL does not always
            // see that (after a crash it replays the leader's WAL over its
            // own pages: "will not overwrite a used ItemId", the chaos run,
            // seed 1003). The marker has it rewound before it follows.
            files::write_atomic(
                &data_dir.join(REWIND_MARKER),
                REWIND_MARKER_TEXT.as_bytes(),
                0o600,
                &self.runas,
            )?;
            files::write_atomic(&signal, b"", 0o600, &self.runas)?;
        } else if !as_standby && signal.exists() {
            std::fs::remove_file(&signal).map_err(|source| FileError {
                path: signal.clone(),
                source,
            })?;
        }
        if !as_standby {
            remove_rewind_marker(&data_dir)?;
        }
        let pm = Postmaster::spawn(&self.bins, &self.runas, &data_dir)?;
        tracing::info!(
            pid = pm.pid(),
            "started PostgreSQL {} as {} (pid {}){}",
            self.bins.major,
            if as_standby { "a standby" } else { "primary" },
            pm.pid(),
            if self.runas.switch {
                format!(", running as {}", self.runas.user)
            } else {
                String::new()
            }
        );
        self.postmaster = Some(pm);
        self.role_ensured = false;
        self.probe
            .reset(&self.cfg.postgresql.socket_dir, self.cfg.postgresql.port);
        let accepting = self.wait_until_accepting(START_WAIT).await;
        if accepting && !as_standby {
            // A primary is ready when its replication role and slots are;
            // if this fails, the loop asks again (EnsureReplicationRole).
            if let Err(e) = self.prepare_primary().await {
                tracing::warn!("the new primary is not ready for standbys yet: {e}");
            }
        }
        Ok(())
    }

    /// Waits up to `limit` for the postmaster to answer; false when it
    /// exited or did not answer in time.
    async fn wait_until_accepting(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self
                .postmaster
                .as_mut()
                .is_none_or(|p| p.poll_exit().is_some())
            {
                return false;
            }
            if self.probe.observe().await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Promotes this standby (it holds the lease) and records why.
    async fn promote(&mut self, reason: &str) -> Result<(), ExecError> {
        let before = self.probe.observe().await.ok();
        tracing::info!(
            "promoting {}: {reason}; replayed up to {}",
            self.cfg.node.name,
            before
                .as_ref()
                .and_then(|o| o.replayed_lsn)
                .map(|l| l.to_string())
                .unwrap_or_else(|| "?".into())
        );
        // Noted first: once asked, PostgreSQL finishes the promotion even
        // if this agent dies, and "in recovery" no longer means read-only.
        if let Some(pid) = self.pid() {
            self.note_promotion(Some(pid))?;
        }
        // A primary's directory needs no rewind marker; left there, clones
        // and rewinds from it would copy it.
        remove_rewind_marker(&self.cfg.node.data_dir)?;
        // Within the probe's timeout; if it takes longer, the next loop sees
        // it still promoting and asks again (the guard is armed already).
        self.probe
            .execute("SELECT pg_promote(wait => true, wait_seconds => 2)")
            .await?;
        self.role_ensured = false;
        let after = self.probe.observe().await.ok();
        if after.as_ref().is_some_and(|o| o.in_recovery) {
            return Err(ExecError::Retry(
                "the promotion did not finish within 2 s; looking again next loop".into(),
            ));
        }
        if let Err(e) = self.prepare_primary().await {
            tracing::warn!("the new primary is not ready for standbys yet: {e}");
        }
        let me = self.cfg.node.name.clone();
        self.record(
            format!("promoted: {reason}"),
            after.as_ref().and_then(|o| o.timeline),
            after
                .as_ref()
                .and_then(|o| o.current_lsn)
                .map(|l| l.to_string()),
            Some(&me),
        );
        Ok(())
    }

    /// Rejoins as a standby of `source`: stop, CHECKPOINT on the source,
    /// `pg_rewind`, re-render the managed files, `standby.signal`. A failed
    /// rewind renames the data directory aside; the member then re-clones.
    async fn rewind(&mut self, source: &StandbySource) -> Result<(), ExecError> {
        let data_dir = self.cfg.node.data_dir.clone();
        if self.postmaster.is_some() {
            self.stop(StopMode::Fast, FAST_STOP_TIMEOUT).await?;
        }
        self.follow = Some(source.clone());
        self.write_passfile()?;
        let superuser = self.secret(
            "replication.superuser_password_file",
            self.cfg.replication.superuser_password_file.clone(),
        )?;
        if let Err(e) = ctl::remote_checkpoint(&source.host, source.port, &superuser).await {
            return Err(ExecError::Retry(format!("before pg_rewind: {e}")));
        }
        tracing::info!(
            "rejoining {}:{} as a standby: pg_rewind of {}",
            source.host,
            source.port,
            data_dir.display()
        );
        let passfile = files::passfile(&data_dir);
        let no_sync = self.no_sync();
        let result = ctl::rewind(
            &self.bins,
            &self.runas,
            &data_dir,
            &source.host,
            source.port,
            &passfile,
            no_sync,
        )
        .await;
        match result {
            Ok(output) => {
                let summary = output
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("done")
                    .to_string();
                tracing::info!("pg_rewind: {summary}");
                files::write_atomic(&data_dir.join("standby.signal"), b"", 0o600, &self.runas)?;
                remove_rewind_marker(&data_dir)?;
                // pg_rewind copied the source's configuration files.
                self.write_managed_files()?;
                self.record(
                    format!(
                        "rejoined {}:{} as a standby after pg_rewind ({summary})",
                        source.host, source.port
                    ),
                    None,
                    None,
                    None,
                );
                Ok(())
            }
            Err(e) => {
                let moved = files::rename_aside(&data_dir, "diverged")?;
                tracing::error!(
                    "pg_rewind failed ({e}); {} renamed to {} (nothing deleted); this member clones afresh",
                    data_dir.display(),
                    moved.display()
                );
                Err(e.into())
            }
        }
    }

    /// What a fresh primary needs: the replication role, and one physical
    /// slot per other data member when `replication.slots` is on — before
    /// any standby is pointed here (a standby's agent re-points once this
    /// member reports a running primary, after this). A slot dropped
    /// because its member was away past `member_slot_ttl` waits for the
    /// member ([`Self::keep_slots`]).
    async fn prepare_primary(&mut self) -> Result<(), ExecError> {
        self.record_bootstrap().await?;
        self.ensure_replication_role().await?;
        if self.cfg.replication.slots {
            let names: Vec<String> = self
                .cfg
                .data_members()
                .filter(|m| m.name != self.cfg.node.name && !self.slots.is_withheld(&m.name))
                .map(|m| m.name.clone())
                .collect();
            if !names.is_empty() {
                let sql = slots_sql(&names);
                self.probe.execute(&sql).await?;
                tracing::info!("replication slots ensured for {}", names.join(", "));
            }
        }
        self.role_ensured = true;
        Ok(())
    }

    /// Keeps the replication slots (see [`super::slot_plan`]): plans from
    /// `obs`, the slots as probed this loop, and `peers`, the other members
    /// as this loop saw them; carries each step out on its own, so that one
    /// failure does not hold back the others (a failed step is planned
    /// again next loop). Runs on a primary holding the lease and on a
    /// standby, never while the cluster is paused.
    pub async fn keep_slots(&mut self, obs: &Observation, peers: &[MemberSeen], now: Instant) {
        if !self.cfg.replication.slots {
            return;
        }
        let me = self.cfg.node.name.clone();
        let members: Vec<MemberSeen> = self
            .cfg
            .data_members()
            .filter(|m| m.name != me)
            .map(|m| {
                peers
                    .iter()
                    .find(|p| p.name == m.name)
                    .cloned()
                    .unwrap_or_else(|| MemberSeen {
                        name: m.name.clone(),
                        answers: false,
                        replayed: None,
                        streams_here: false,
                    })
            })
            .collect();
        let configured: Vec<String> = self
            .cfg
            .cluster
            .members
            .iter()
            .map(|m| m.name.clone())
            .collect();
        let role = if obs.in_recovery {
            SlotRole::Standby {
                replayed: obs.replayed_lsn,
            }
        } else {
            SlotRole::Primary
        };
        let steps = self.slots.plan(&SlotFacts {
            role,
            members: &members,
            configured: &configured,
            slots: &obs.slots,
            ttl: self.cfg.replication.member_slot_ttl,
            now,
        });
        for step in &steps {
            let (slot, sql) = match step {
                SlotStep::Create { slot, .. } => (slot, slots_sql(std::slice::from_ref(slot))),
                SlotStep::Drop { slot, .. } => (slot, drop_slot_sql(slot)),
                SlotStep::Recreate { slot, .. } => (
                    slot,
                    format!(
                        "{}; {}",
                        drop_slot_sql(slot),
                        slots_sql(std::slice::from_ref(slot))
                    ),
                ),
                SlotStep::Advance { slot, to, .. } => (slot, advance_slot_sql(slot, *to)),
            };
            if let Err(e) = self.probe.execute(&sql).await {
                let text = format!("replication slot {slot}: {e}; trying again next loop");
                if self.slot_error.as_deref() != Some(text.as_str()) {
                    tracing::warn!("{text}");
                    self.slot_error = Some(text);
                }
                continue;
            }
            self.slot_error = None;
            match step {
                SlotStep::Create { slot, why } => {
                    tracing::info!(
                    "replication slot {slot} created on this {}, reserving WAL from now on: {why}",
                    if obs.in_recovery { "standby" } else { "primary" }
                )
                }
                SlotStep::Drop { slot, why } => {
                    tracing::warn!("replication slot {slot} dropped: {why}")
                }
                SlotStep::Recreate { slot, why } => {
                    tracing::warn!("replication slot {slot} dropped and created again: {why}")
                }
                SlotStep::Advance { slot, from, to } => {
                    tracing::debug!("replication slot {slot} advanced from {from} to {to}")
                }
            }
        }
        self.save_member_slots();
    }

    /// Writes the slot names the agent made to `pgwarden.state` when they changed.
    fn save_member_slots(&mut self) {
        let names: Vec<String> = self.slots.managed().iter().cloned().collect();
        if names == self.slots_saved {
            return;
        }
        let data_dir = self.cfg.node.data_dir.clone();
        let mut state = match AgentState::load(&data_dir) {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!("cannot note the replication slots made: {e}");
                return;
            }
        };
        state.member_slots = names.clone();
        match state.save(&data_dir, &self.runas) {
            Ok(()) => self.slots_saved = names,
            Err(e) => tracing::warn!("cannot note the replication slots made: {e}"),
        }
    }

    /// Keeps a running standby pointed at `source`: rewrites the standby
    /// settings and reloads (PostgreSQL 13+ re-points without a restart).
    async fn follow(&mut self, source: &StandbySource) -> Result<(), ExecError> {
        let moved = self.follow.as_ref() != Some(source);
        self.follow = Some(source.clone());
        let changed = self.write_managed_files()?;
        if changed {
            self.probe.execute("SELECT pg_reload_conf()").await?;
            if moved {
                tracing::info!(
                    "standby now streams from {}:{} (slot {}): settings rewritten, PostgreSQL reloaded",
                    source.host,
                    source.port,
                    source.slot.as_deref().unwrap_or("none")
                );
            }
        }
        Ok(())
    }

    /// Copies the data directory from `source` with `pg_basebackup`;
    /// a failure renames the partial copy aside and backs off.
    async fn clone_from(&mut self, source: &StandbySource) -> Result<(), ExecError> {
        let data_dir = self.cfg.node.data_dir.clone();
        self.runas.ensure_dir(&data_dir, 0o700)?;
        self.follow = Some(source.clone());
        self.write_passfile()?;
        tracing::info!(
            "cloning from {}:{} with pg_basebackup (checkpoint fast, WAL streamed)",
            source.host,
            source.port
        );
        let report = self.progress.clone();
        let last_log = std::sync::Mutex::new(Instant::now());
        let on_progress = move |pct: u8| {
            if let Some(r) = &report {
                r(Some(pct));
            }
            let mut last = last_log.lock().unwrap_or_else(|p| p.into_inner());
            if last.elapsed() >= Duration::from_secs(5) {
                tracing::info!("cloning: {pct}% copied");
                *last = Instant::now();
            }
        };
        let passfile = files::passfile(&data_dir);
        // Not the member's own name: under quorum commit the copy's WAL
        // stream would count as that standby's acknowledgement, and a
        // clone that fails is renamed aside with what it acknowledged.
        let application_name = format!("pgwarden_clone_{}", self.cfg.node.name);
        let opts = BasebackupOptions {
            data_dir: &data_dir,
            host: &source.host,
            port: source.port,
            user: &self.cfg.replication.user,
            application_name: &application_name,
            passfile: &passfile,
            no_sync: self.no_sync(),
            max_rate_kb: self
                .cfg
                .replication
                .clone_max_rate
                .map(|rate| rate.bytes() / 1024),
        };
        let marker = files::clone_marker(&data_dir);
        files::write_atomic(&marker, b"", 0o600, &self.runas)?;
        let result = ctl::basebackup(&self.bins, &self.runas, &opts, &on_progress).await;
        if let Some(r) = &self.progress {
            r(None);
        }
        if let Err(e) = result {
            // A partial copy is never started, and never deleted.
            if files::data_dir_state(&data_dir) != DataDirState::Empty {
                let moved = files::rename_aside(&data_dir, "failed-clone")?;
                tracing::error!(
                    "the partial copy was renamed to {} (nothing deleted)",
                    moved.display()
                );
            }
            let _ = std::fs::remove_file(&marker);
            return Err(e.into());
        }
        // The copy carries the source's managed files: make them this member's.
        files::write_atomic(&data_dir.join("standby.signal"), b"", 0o600, &self.runas)?;
        remove_rewind_marker(&data_dir)?;
        self.write_managed_files()?;
        std::fs::remove_file(&marker).map_err(|source| FileError {
            path: marker.clone(),
            source,
        })?;
        tracing::info!(
            "clone done: {} is a copy of {}:{}; starting it as a standby",
            data_dir.display(),
            source.host,
            source.port
        );
        Ok(())
    }

    /// The replication password in the passfile a standby streams with.
    fn write_passfile(&self) -> Result<(), ExecError> {
        let password = self.secret(
            "replication.password_file",
            self.cfg.replication.password_file.clone(),
        )?;
        // pg_rewind connects to the new primary as the superuser.
        let superuser = self
            .cfg
            .replication
            .superuser_password_file
            .as_deref()
            .and_then(|p| read_secret(p).ok());
        let mut entries = vec![(self.cfg.replication.user.as_str(), password.as_str())];
        if let Some(pw) = &superuser {
            entries.push((pgconf::SUPERUSER, pw.as_str()));
        }
        let text = pgconf::render_passfile(&entries);
        let path = files::passfile(&self.cfg.node.data_dir);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            files::write_atomic(&path, text.as_bytes(), 0o600, &self.runas)?;
        }
        Ok(())
    }

    async fn ensure_replication_role(&mut self) -> Result<(), ExecError> {
        let password = self.secret(
            "replication.password_file",
            self.cfg.replication.password_file.clone(),
        )?;
        roles::ensure_replication_role(&mut self.probe, &self.cfg.replication.user, &password)
            .await?;
        tracing::info!(
            "replication role {} ensured: REPLICATION LOGIN, not superuser",
            self.cfg.replication.user
        );
        Ok(())
    }

    /// Stops PostgreSQL in `mode`, escalating after `timeout`.
    pub async fn stop(&mut self, mode: StopMode, timeout: Duration) -> Result<(), ExecError> {
        if let Some(mut pm) = self.postmaster.take() {
            let pid = pm.pid();
            let exit = pm.stop(mode, timeout).await?;
            tracing::info!(
                pid,
                "PostgreSQL stopped ({mode:?} shutdown asked, escalated if it took too long): {}",
                exit.how
            );
        }
        self.role_ensured = false;
        Ok(())
    }

    /// Stops PostgreSQL for the agent's own shutdown: fast, escalating to
    /// immediate after [`FAST_STOP_TIMEOUT`].
    pub async fn shutdown(&mut self) -> Result<(), ExecError> {
        self.stop(StopMode::Fast, FAST_STOP_TIMEOUT).await
    }

    /// Takes the runner's plan for `synchronous_standby_names`; when it
    /// changed, rewrites the managed files and has a running PostgreSQL
    /// reload them (a standby keeps it for the day it is promoted).
    pub async fn set_sync_plan(&mut self, plan: Option<SyncPlan>) -> Result<(), ExecError> {
        if plan == self.sync_plan {
            return Ok(());
        }
        let before = self.sync_plan.as_ref().map_or(0, |p| p.k);
        let previous = std::mem::replace(&mut self.sync_plan, plan);
        if let Some(p) = self.sync_plan.as_ref().filter(|p| p.raised || p.k < before) {
            tracing::warn!(
                "synchronous_standby_names = '{}' (k {}, was {before}): {}",
                p.setting(),
                p.k,
                if p.raised {
                    "raised because a member runs with another member list; a commit must reach every set a candidate on either list would compare with (a membership change is under way)"
                } else {
                    "every member runs with this member list again"
                }
            );
        }
        let applied = if files::data_dir_state(&self.cfg.node.data_dir) != DataDirState::Initialized
        {
            Ok(())
        } else {
            match self.write_managed_files() {
                // Reloaded even when the file was already written: a
                // reload that failed before left it unread.
                Ok(_) if self.postmaster.is_some() => self
                    .probe
                    .execute("SELECT pg_reload_conf()")
                    .await
                    .map_err(ExecError::from),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            }
        };
        if applied.is_err() {
            // Not in effect: the next loop tries again.
            self.sync_plan = previous;
        }
        applied
    }

    /// Takes the configuration a reload applies (`config::to_apply`:
    /// what needs an agent restart is already kept at its running value),
    /// re-renders the managed files and asks a running PostgreSQL to reload.
    pub async fn reload(&mut self, applied: Config) -> Result<(), ExecError> {
        self.cfg = applied;
        self.role_ensured = false;
        if files::data_dir_state(&self.cfg.node.data_dir) == DataDirState::Initialized {
            let changed = self.write_managed_files()?;
            if self.postmaster.is_some() {
                self.probe.execute("SELECT pg_reload_conf()").await?;
                tracing::info!(
                    "configuration reloaded{}; PostgreSQL asked to reload (pending_restart in /status tells what needs a restart)",
                    if changed { ", managed files rewritten" } else { "" }
                );
            }
        }
        Ok(())
    }

    /// Renders and writes the managed files; a standby's (`standby.signal`
    /// present) include where it streams from. Returns whether anything changed.
    fn write_managed_files(&self) -> Result<bool, ExecError> {
        let data_dir = &self.cfg.node.data_dir;
        // A directory to be rewound streams from nobody until it is: it
        // only shows its position (see `REWIND_MARKER`).
        let streams = !data_dir.join(REWIND_MARKER).exists();
        let standby = if data_dir.join("standby.signal").exists() {
            match self.follow.as_ref().filter(|_| streams) {
                Some(source) => {
                    self.write_passfile()?;
                    Some(pgconf::standby_parameters(
                        &self.cfg,
                        source,
                        &files::passfile(data_dir),
                    ))
                }
                None => None,
            }
        } else {
            None
        };
        let files = ManagedFiles::render(
            &self.cfg,
            self.bins.major,
            &self.runas,
            standby.as_ref(),
            self.sync_plan.as_ref().map(SyncPlan::setting),
        );
        Ok(files.write(data_dir, &self.runas)?)
    }

    fn secret(&self, key: &'static str, path: Option<PathBuf>) -> Result<String, ExecError> {
        let path = path.ok_or(ExecError::MissingSecret(key))?;
        read_secret(&path).map_err(|source| ExecError::Secret { key, source })
    }

    /// Durability was switched off for PostgreSQL (`fsync = off`): the tools
    /// may skip their syncs too.
    fn no_sync(&self) -> bool {
        matches!(
            self.cfg.postgresql.parameters.get("fsync"),
            Some(ParamValue::Bool(false))
        ) || matches!(
            self.cfg.postgresql.parameters.get("fsync"),
            Some(ParamValue::Text(t)) if matches!(t.as_str(), "off" | "false" | "0" | "no")
        )
    }
}

/// Creates the missing physical slots for `names` (idempotent), each
/// reserving WAL at once: a slot made for a member that is not streaming
/// yet (or, on a standby, for the day it is promoted) keeps WAL from now on.
fn slots_sql(names: &[String]) -> String {
    let list = names
        .iter()
        .map(|n| roles::quote_literal(n))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT pg_create_physical_replication_slot(n, true) FROM unnest(ARRAY[{list}]::text[]) AS n \
         WHERE n NOT IN (SELECT slot_name FROM pg_replication_slots)"
    )
}

/// Drops the slot `name` unless a walsender uses it (its member came back
/// between the probe and now): then nothing happens.
fn drop_slot_sql(name: &str) -> String {
    format!(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
         WHERE slot_name = {} AND NOT active",
        roles::quote_literal(name)
    )
}

/// Advances the slot `name` to `to`, only forwards and only while unused
/// (PostgreSQL refuses both, and caps `to` at its replay position).
fn advance_slot_sql(name: &str, to: crate::pg::Lsn) -> String {
    format!(
        "SELECT pg_replication_slot_advance(slot_name, '{to}'::pg_lsn) FROM pg_replication_slots \
         WHERE slot_name = {} AND NOT active AND restart_lsn < '{to}'::pg_lsn",
        roles::quote_literal(name)
    )
}

/// The port the running postmaster listens on, from `postmaster.pid`
/// (after a port change it differs from the configuration until a restart).
fn files_port(data_dir: &std::path::Path) -> Option<u16> {
    crate::pg::postmaster::read_pid_file(data_dir)
        .map(|p| p.port)
        .filter(|p| *p != 0)
}

/// Now as RFC 3339 UTC, to the second.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_created_only_when_missing() {
        let sql = slots_sql(&["pg2".into(), "o'brien".into()]);
        assert!(sql.contains("'pg2', 'o''brien'"), "{sql}");
        assert!(
            sql.contains("NOT IN (SELECT slot_name FROM pg_replication_slots)"),
            "{sql}"
        );
        assert!(
            sql.contains("pg_create_physical_replication_slot(n, true)"),
            "reserving WAL at once: {sql}"
        );
    }

    #[test]
    fn slots_are_dropped_and_advanced_only_while_unused_and_only_forwards() {
        let drop = drop_slot_sql("pg3");
        assert!(drop.contains("slot_name = 'pg3' AND NOT active"), "{drop}");
        let advance = advance_slot_sql("pg3", crate::pg::Lsn(0x5000148));
        assert!(
            advance.contains("pg_replication_slot_advance(slot_name, '0/5000148'::pg_lsn)")
                && advance.contains("NOT active AND restart_lsn < '0/5000148'::pg_lsn"),
            "{advance}"
        );
    }
}
