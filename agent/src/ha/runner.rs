//! The HA loop: every `loop_wait`, observe, update the lease, decide, act,
//! publish the view. It is the only writer of the node's view.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{Config, WatchdogMode};
use crate::notify::Notifier;
use crate::view::{LeaderView, NodeView, PgState, PostgresView, Role};
use crate::watchdog::Watchdog;

use super::decide::{decide, wants_lease, Action, Postgres, Situation};
use super::executor::{LocalPostgres, Observed};
use crate::lease::{LeaseClient, LeaseStatus};
use crate::peers::{PeerView, Peers};
use crate::pg::conf::StandbySource;
use crate::pg::files::DataDirState;
use crate::pg::Lsn;

use super::candidate::{judge, MemberPosition};

/// Messages from the rest of the agent to the loop.
#[derive(Debug)]
pub enum Control {
    /// SIGHUP: a new, validated configuration.
    Reload(Box<Config>),
    /// SIGTERM: release the lease, stop PostgreSQL, then answer.
    Shutdown(oneshot::Sender<()>),
}

/// The loop's parts.
pub struct Runner<L: LeaseClient> {
    cfg: Config,
    local: Option<LocalPostgres>,
    lease: L,
    view: watch::Sender<NodeView>,
    notifier: Notifier,
    last_action: Option<Action>,
    last_error: Option<String>,
    last_lease: LeaseStatus,
    peers: Peers,
    last_leader_lsn: Option<Lsn>,
    watchdog: Watchdog,
    watchdog_blocker: Option<String>,
}

/// What the other members' documents say about joining and following.
#[derive(Debug, Default)]
struct Membership {
    bootstrap_allowed: bool,
    clone_source: Option<StandbySource>,
    join_blocker: Option<String>,
    leader_source: Option<StandbySource>,
    leader_name: Option<String>,
    foreign_leader: Option<String>,
    leader_alive: bool,
}

impl<L: LeaseClient> Runner<L> {
    /// A loop for this node; `local` is `None` on a witness.
    pub fn new(
        cfg: Config,
        local: Option<LocalPostgres>,
        lease: L,
        view: watch::Sender<NodeView>,
        notifier: Notifier,
    ) -> Self {
        let peer_timeout = cfg
            .cluster
            .loop_wait
            .clamp(Duration::from_millis(200), Duration::from_secs(2));
        let peers = Peers::new(&cfg.node.name, &cfg.cluster.members, peer_timeout);
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
                        v.state = PgState::Cloning;
                    }
                });
            }));
        }
        Runner {
            cfg,
            local,
            lease,
            view,
            notifier,
            last_action: None,
            last_error: None,
            last_lease: LeaseStatus::default(),
            peers,
            last_leader_lsn: None,
            watchdog,
            watchdog_blocker: None,
        }
    }

    /// Runs until a shutdown request has been carried out.
    pub async fn run(mut self, mut control: mpsc::Receiver<Control>) {
        loop {
            let began = Instant::now();
            self.iterate().await;
            let took = began.elapsed();
            if took > (self.cfg.cluster.loop_wait * 2).max(Duration::from_secs(2)) {
                // Long actions (initdb, a clone, a rewind) are expected to;
                // anything else here is worth an operator's attention.
                tracing::warn!(
                    "an HA loop iteration took {took:?} (loop_wait {:?}); last action: {:?}",
                    self.cfg.cluster.loop_wait,
                    self.last_action
                );
            }
            let sleep = tokio::time::sleep(self.cfg.cluster.loop_wait);
            tokio::pin!(sleep);
            tokio::select! {
                _ = &mut sleep => {}
                msg = control.recv() => match msg {
                    Some(Control::Reload(cfg)) => self.reload(*cfg).await,
                    Some(Control::Shutdown(done)) => {
                        self.shutdown().await;
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

    /// One iteration: observe, lease, decide, act, publish.
    pub async fn iterate(&mut self) {
        let observed = match &mut self.local {
            Some(local) => Some(local.observe().await),
            None => None,
        };
        self.peers.refresh().await;
        let mut situation = self.situation(observed.as_ref(), &LeaseStatus::default());
        let blocker = self.watchdog.blocker();
        if blocker != self.watchdog_blocker {
            if let Some(b) = &blocker {
                tracing::error!("{b}");
            }
            self.watchdog_blocker = blocker;
        }
        let want = wants_lease(&situation) && self.watchdog_blocker.is_none();
        let lease = self.lease.update(want).await;
        situation = self.situation(observed.as_ref(), &lease);
        self.log_lease_change(&lease);
        if let Some(local) = &mut self.local {
            local.set_leader_source(situation.leader_source.clone());
        }
        let action = decide(&situation);
        self.log_decision(&action);
        if matches!(action, Action::Bootstrap | Action::Clone { .. }) {
            let mut view = self.build_view(observed.as_ref(), &lease, &action);
            view.state = if matches!(action, Action::Bootstrap) {
                PgState::Bootstrapping
            } else {
                PgState::Cloning
            };
            if view.state == PgState::Cloning {
                view.progress_pct = Some(0);
            }
            self.view.send_replace(view);
        }
        if let Some(local) = &mut self.local {
            match local.execute(&action).await {
                Ok(()) => self.last_error = None,
                Err(e) => {
                    let text = e.to_string();
                    if self.last_error.as_deref() != Some(&text) {
                        tracing::error!("{action:?} failed: {text}");
                    }
                    self.last_error = Some(text);
                }
            }
        }
        // After an action that changed things, look again so that the view
        // shows the result rather than the situation before it.
        let observed = match (&mut self.local, &action) {
            (
                Some(local),
                Action::Bootstrap
                | Action::Start { .. }
                | Action::Promote { .. }
                | Action::Rewind { .. }
                | Action::Fence { .. }
                | Action::RenameAside,
            ) => Some(local.observe().await),
            _ => observed,
        };
        if let Some(lsn) = lease
            .holder
            .as_deref()
            .and_then(|h| self.peers.get(h))
            .filter(|p| p.is_running_primary())
            .and_then(PeerView::lsn)
        {
            self.last_leader_lsn = Some(lsn);
        }
        // A long action (initdb, a start with crash recovery, a promotion)
        // may have used up much of the lease: renew it before the guard is
        // armed with its end, or the guard would stop a healthy primary.
        let lease = if lease.mine
            && !matches!(
                action,
                Action::Healthy | Action::Wait { .. } | Action::Follow { .. }
            ) {
            self.lease.update(true).await
        } else {
            lease
        };
        if let (Some(local), Some(o)) = (&mut self.local, &observed) {
            let primary = o.postgres == Postgres::Running { in_recovery: false };
            let end = lease.expires_at.filter(|_| lease.mine);
            local.guard_until(end, primary, guard_margin(&self.cfg));
            if primary && end.is_some() {
                self.watchdog.keepalive();
            } else {
                self.watchdog.disarm();
            }
        }
        let view = self.build_view(observed.as_ref(), &lease, &action);
        if view.state == PgState::Running || view.role == Role::Witness {
            self.notifier.ready();
        }
        self.notifier.status(&status_line(&view));
        self.notifier.watchdog();
        self.view.send_replace(view);
    }

    fn situation(&self, observed: Option<&Observed>, lease: &LeaseStatus) -> Situation {
        let no_data_members = self.cfg.data_members().next().is_none();
        match (observed, &self.local) {
            (Some(o), Some(local)) => {
                let m = self.membership(o, lease);
                Situation {
                    witness: false,
                    no_data_members,
                    paused: false,
                    data: o.data,
                    standby_signal: o.standby_signal,
                    postgres: o.postgres.clone(),
                    lease_mine: lease.mine,
                    lease_holder: lease.holder.clone().or(m.leader_name.clone()),
                    bootstrap_allowed: m.bootstrap_allowed,
                    role_ensured: local.role_ensured(),
                    clone_source: m.clone_source,
                    join_blocker: m.join_blocker,
                    leader_source: m.leader_source,
                    foreign_leader: m.foreign_leader,
                    lease_remaining: lease.remaining(Instant::now()),
                    fence_margin: self.fence_margin(),
                    best_candidate: self.best_candidate(o),
                    leader_alive: m.leader_alive,
                    timeline_diverged: o.receiver_problem_kind == Some("timeline_diverged"),
                    crash_loop: local.crashes_in_a_row() >= CRASH_LOOP,
                    nofailover: self.cfg.me().is_some_and(|m| m.nofailover),
                }
            }
            _ => Situation {
                witness: true,
                no_data_members,
                paused: false,
                data: DataDirState::Empty,
                standby_signal: false,
                postgres: Postgres::NotRunning {
                    crash_backoff: false,
                },
                lease_mine: lease.mine,
                lease_holder: lease.holder.clone(),
                bootstrap_allowed: false,
                role_ensured: false,
                clone_source: None,
                join_blocker: None,
                leader_source: None,
                foreign_leader: None,
                lease_remaining: lease.remaining(Instant::now()),
                fence_margin: self.fence_margin(),
                best_candidate: None,
                leader_alive: false,
                timeline_diverged: false,
                crash_loop: false,
                nofailover: false,
            },
        }
    }

    /// Reads the other members' documents: may a new cluster be made, who
    /// leads, where to clone from and stream from.
    fn membership(&self, o: &Observed, lease: &LeaseStatus) -> Membership {
        let cfg = &self.cfg;
        let me = cfg.node.name.as_str();
        let data_peers: Vec<&PeerView> = cfg
            .data_members()
            .filter(|m| m.name != me)
            .filter_map(|m| self.peers.get(&m.name))
            .collect();
        // The leader: the lease holder this node knows of, else a member
        // whose own fresh document says it holds the lease.
        let leader_name = lease.holder.clone().or_else(|| {
            self.peers
                .views()
                .find(|p| {
                    let d = p.fresh_doc();
                    d.is_some_and(|d| {
                        d["leader"]["name"] == p.name.as_str() && d["role"] == "primary"
                    })
                })
                .map(|p| p.name.clone())
        });
        let leader_peer = leader_name
            .as_deref()
            .filter(|n| *n != me)
            .and_then(|n| self.peers.get(n));
        let slot = cfg.replication.slots.then(|| me.to_string());
        let source_of = |p: &PeerView| {
            p.pg_endpoint().map(|(host, port)| StandbySource {
                host,
                port,
                slot: slot.clone(),
            })
        };
        let leader_source = leader_peer
            .filter(|p| p.is_running_primary())
            .and_then(&source_of);
        let clone_source = if o.data == DataDirState::Empty {
            leader_source.clone().or_else(|| {
                cfg.data_members()
                    .filter(|m| m.clonefrom && m.name != me)
                    .filter_map(|m| self.peers.get(&m.name))
                    .find(|p| {
                        p.fresh_str("state") == Some("running") && p.system_identifier().is_some()
                    })
                    .and_then(&source_of)
            })
        } else {
            None
        };
        let solo = cfg.cluster.members.len() == 1;
        let all_empty = data_peers.iter().all(|p| p.is_uninitialized());
        let bootstrap_allowed = o.data != DataDirState::Initialized
            && (solo || (data_peers.len() == cfg.data_members().count() - 1 && all_empty));
        let join_blocker = if o.data == DataDirState::Initialized
            || bootstrap_allowed
            || clone_source.is_some()
        {
            None
        } else {
            let unreachable: Vec<String> = data_peers
                .iter()
                .filter(|p| p.fresh_doc().is_none())
                .map(|p| {
                    format!(
                        "{} ({})",
                        p.name,
                        p.error.as_deref().unwrap_or("no answer yet")
                    )
                })
                .collect();
            let with_data: Vec<&str> = data_peers
                .iter()
                .filter(|p| p.fresh_doc().is_some() && !p.is_uninitialized())
                .map(|p| p.name.as_str())
                .collect();
            Some(if !unreachable.is_empty() {
                format!(
                    "empty data directory: waiting for every data member before a new cluster is made; not reachable: {}",
                    unreachable.join(", ")
                )
            } else if !with_data.is_empty() {
                format!(
                    "empty data directory: {} {} data, but no running primary holding the leader lease to clone from yet",
                    with_data.join(", "),
                    if with_data.len() == 1 { "has" } else { "have" }
                )
            } else {
                "empty data directory: waiting for the leader lease to bootstrap".to_string()
            })
        };
        let own_sysid = o
            .observation
            .as_ref()
            .map(|obs| obs.system_identifier.clone())
            .or_else(|| {
                crate::state::AgentState::load(&cfg.node.data_dir)
                    .ok()?
                    .system_identifier
            });
        let foreign_leader = match (leader_peer.and_then(|p| p.system_identifier()), own_sysid, o.data) {
            (Some(theirs), Some(ours), DataDirState::Initialized) if theirs != ours => Some(format!(
                "refusing to follow {}: it leads a different cluster (system identifier {theirs}, this data directory has {ours}); \
                 check cluster.members, or move this data directory aside so that the member clones afresh",
                leader_name.as_deref().unwrap_or("?")
            )),
            _ => None,
        };
        let leader_alive = lease.holder.as_deref().is_some_and(|h| h != me)
            || self.peers.views().any(|p| p.is_running_primary());
        Membership {
            bootstrap_allowed,
            clone_source,
            join_blocker,
            leader_source,
            leader_name,
            foreign_leader,
            leader_alive,
        }
    }

    /// A primary stops PostgreSQL when its lease has less than this left:
    /// two loops, or a quarter of the lease, whichever is longer.
    fn fence_margin(&self) -> Duration {
        (self.cfg.cluster.loop_wait * 2).max(self.cfg.cluster.ttl / 4)
    }

    /// Whether this standby is the best candidate, and why (`None`: not).
    fn best_candidate(&self, o: &Observed) -> Option<String> {
        let obs = o.observation.as_ref().filter(|obs| obs.in_recovery)?;
        let me = self.cfg.me()?;
        let position = |received: Option<Lsn>, replayed: Option<Lsn>| received.max(replayed);
        let mine = MemberPosition {
            name: me.name.clone(),
            lsn: position(obs.received_lsn, obs.replayed_lsn),
            system_identifier: Some(obs.system_identifier.clone()),
            running_primary: false,
            nofailover: me.nofailover,
        };
        let lsn_field = |d: &serde_json::Value, f: &str| {
            d["wal"][f].as_str().and_then(|s| s.parse::<Lsn>().ok())
        };
        let peers: Vec<MemberPosition> = self
            .cfg
            .data_members()
            .filter(|m| m.name != me.name)
            .filter_map(|m| {
                let p = self.peers.get(&m.name)?;
                let d = p.fresh_doc()?;
                Some(MemberPosition {
                    name: m.name.clone(),
                    lsn: position(lsn_field(d, "received_lsn"), lsn_field(d, "replayed_lsn"))
                        .or(lsn_field(d, "lsn")),
                    system_identifier: p.system_identifier().map(str::to_string),
                    running_primary: p.is_running_primary(),
                    nofailover: m.nofailover,
                })
            })
            .collect();
        let verdict = judge(
            &mine,
            &peers,
            self.last_leader_lsn,
            self.cfg.replication.max_lag_on_failover.bytes(),
        );
        if verdict.is_best() {
            Some(verdict.reason().to_string())
        } else {
            tracing::debug!("not a candidate: {}", verdict.reason());
            None
        }
    }

    /// One log line whenever this node gains or loses the lease, or the
    /// holder it knows of changes.
    fn log_lease_change(&mut self, lease: &LeaseStatus) {
        let before = &self.last_lease;
        if lease.mine && !before.mine {
            tracing::info!("acquired the leader lease in term {}", lease.term);
        } else if !lease.mine && before.mine {
            let overdue = before
                .expires_at
                .map(|t| Instant::now().saturating_duration_since(t))
                .unwrap_or_default();
            let why = if overdue > self.cfg.cluster.loop_wait * 2 {
                format!("it expired {overdue:?} ago while this agent could not renew it (was it stopped or starved?)")
            } else {
                "it could not be renewed with a majority of members".to_string()
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

    fn log_decision(&mut self, action: &Action) {
        if self.last_action.as_ref() == Some(action) {
            return;
        }
        match action {
            Action::Healthy => tracing::info!("healthy: nothing to do"),
            Action::Wait { reason } => tracing::info!("waiting: {reason}"),
            other => tracing::info!("decided: {other:?}"),
        }
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
        if let Some(previous) = Some(self.view.borrow().agent_started) {
            view.agent_started = previous;
        }
        view.loop_last = Some(Instant::now());
        view.peers = self.peers.views().cloned().collect();
        view.leader_lsn = lease
            .holder
            .as_deref()
            .and_then(|h| self.peers.get(h))
            .and_then(PeerView::lsn);
        view.holds_lease = lease.mine;
        // Another holder's term as it reports it itself: an acceptor only
        // sees renewal ballots, whose counters grow with every renewal.
        let reported_term = lease
            .holder
            .as_deref()
            .filter(|_| !lease.mine)
            .and_then(|h| self.peers.get(h))
            .and_then(|p| p.fresh_doc())
            .and_then(|d| d["leader"]["term"].as_u64());
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
            view.state = PgState::Running;
            view.reason = None;
            return view;
        };
        let observation = o.observation.clone();
        view.role = match (&observation, o.data) {
            (Some(obs), _) => {
                if obs.in_recovery {
                    Role::Replica
                } else {
                    Role::Primary
                }
            }
            (None, crate::pg::files::DataDirState::Initialized) => {
                if o.standby_signal {
                    Role::Replica
                } else {
                    Role::Primary
                }
            }
            (None, _) => Role::Uninitialized,
        };
        view.state = if observation.is_some() {
            PgState::Running
        } else if local.fenced().is_some() {
            PgState::Fenced
        } else if local.in_crash_backoff() {
            PgState::Crashed
        } else if local.pid().is_some() {
            PgState::Starting
        } else {
            PgState::Stopped
        };
        if view.state == PgState::Fenced {
            view.reason = match (local.fenced(), &view.reason) {
                (Some(why), Some(now)) => Some(format!("fenced ({why}); now {now}")),
                (Some(why), None) => Some(format!("fenced ({why})")),
                (None, now) => now.clone(),
            };
        }
        view.wal_receiver_problem = o.receiver_problem.clone();
        view.history = local.history().to_vec();
        view.postgres = Some(PostgresView {
            pid: local.pid(),
            host: cfg.pg_advertise_host(),
            port: cfg.postgresql.port,
            observation,
        });
        view
    }

    async fn reload(&mut self, cfg: Config) {
        tracing::info!("SIGHUP: applying the new configuration");
        let mut restart = Vec::new();
        if let Some(local) = &mut self.local {
            match local.reload(cfg.clone()).await {
                Ok(r) => restart = r,
                Err(e) => tracing::error!("reload failed: {e}"),
            }
        }
        if cfg.cluster.members != self.cfg.cluster.members {
            self.peers
                .set_members(&self.cfg.node.name, &cfg.cluster.members);
            tracing::info!(
                "cluster.members changed: peers and pg_hba follow now; the leader lease keeps its voting membership until each agent restarts (restart them one at a time)"
            );
        }
        if !restart.is_empty() {
            tracing::warn!(
                "these changes need an agent restart to take effect: {}",
                restart.join(", ")
            );
        }
        let node = self.cfg.node.clone();
        let listen = self.cfg.api.listen;
        self.cfg = cfg;
        self.cfg.node = node;
        self.cfg.api.listen = listen;
        self.iterate().await;
    }

    async fn shutdown(&mut self) {
        tracing::info!(
            "shutting down: stopping PostgreSQL (fast), then releasing the leader lease"
        );
        self.notifier.stopping();
        // PostgreSQL first: once the lease is released another member may
        // promote, and this one must not be writable by then.
        if let Some(local) = &mut self.local {
            if let Err(e) = local.shutdown().await {
                tracing::error!(
                    "stopping PostgreSQL failed: {e}; keeping the lease until it expires"
                );
                return;
            }
            local.guard_until(None, false, Duration::ZERO);
        }
        self.watchdog.disarm();
        self.lease.release().await;
    }
}

/// The fence guard acts this long before the lease ends: inside the
/// agent's own fence margin, so it only fires when the agent did not.
fn guard_margin(cfg: &Config) -> Duration {
    (cfg.cluster.ttl / 5).max(Duration::from_millis(200))
}

/// Crashes in a row after which a primary gives its lease up.
const CRASH_LOOP: u32 = 3;

/// The one-line `STATUS=` for systemd.
fn status_line(view: &NodeView) -> String {
    let role = serde_json::to_value(view.role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let state = serde_json::to_value(view.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    match &view.reason {
        Some(r) => format!("{role}, {state}: {r}"),
        None => format!("{role}, {state}"),
    }
}

/// How long ago the loop last ran, for `/liveness`.
pub fn loop_age(view: &NodeView, now: Instant) -> Option<Duration> {
    view.loop_last.map(|t| now.saturating_duration_since(t))
}
