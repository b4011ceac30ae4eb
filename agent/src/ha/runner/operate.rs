//! The runner's side of operator requests: accepting them between
//! iterations (checked against the last situation), carrying them through
//! the loop's steps, and answering once they are over.

use std::time::{Duration, Instant, SystemTime};

use tokio::sync::oneshot;

use crate::config::Config;
use crate::lease::LeaseClient;

use super::super::decide::{Action, Lease};
use super::super::executor::Observed;
use super::super::operation::{
    answer, load_pause, next_step, pause_file, store_pause, Active, Operations, Progress, Reply,
    ReplyTo, Request, Scheduled, Switchover, SwitchoverStep,
};
use super::super::operator::{
    failover_check, reinit_check, restart_check, switchover_target, Refusal, RestartConditions,
};
use super::super::situation::{situation, HandoverPhase, PeerReport, Postgres, Situation};
use super::{witness_local, Runner};

/// A scheduled time this close is "now".
const NOW_ENOUGH: Duration = Duration::from_secs(1);

/// The operations at the agent's start: nothing in progress or scheduled
/// (those live in memory only), the pause flag as last written.
pub(super) fn initial_operations(cfg: &Config) -> Operations {
    let pause = match pause_file(&cfg.node.data_dir) {
        Some(path) => match load_pause(&path) {
            Ok(flag) => {
                if flag.paused {
                    tracing::warn!(
                        "the cluster was paused when this agent last ran ({}): no automatic actions until `pgwarden resume`",
                        path.display()
                    );
                }
                flag
            }
            Err(e) => {
                tracing::error!("{e}; starting unpaused (the other members' newer flag wins)");
                Default::default()
            }
        },
        None => Default::default(),
    };
    Operations {
        pause,
        ..Default::default()
    }
}

fn refused(r: Refusal) -> Reply {
    Reply::Refused(r)
}

impl<L: LeaseClient> Runner<L> {
    /// The situation from what was observed, with the operator's requests.
    pub(super) fn situation_of(
        &self,
        observed: Option<&Observed>,
        reports: &[PeerReport],
    ) -> Situation {
        let local = observed
            .map(|o| self.local_facts(o, Instant::now()))
            .unwrap_or_else(witness_local);
        situation(&local, reports, &self.settings)
    }

    /// Takes the newest pause flag among this member's and its peers'.
    pub(super) fn adopt_pause(&mut self, reports: &[PeerReport]) {
        let mut flag = self.ops.pause;
        for p in reports.iter().filter(|p| p.fresh) {
            flag = flag.newer(p.pause);
        }
        if flag != self.ops.pause {
            tracing::warn!(
                "the cluster is {} (learned from another member)",
                if flag.paused {
                    "paused: no automatic actions until `pgwarden resume`"
                } else {
                    "resumed: automatic actions again"
                }
            );
            self.set_pause(flag);
        }
        self.settings.paused = self.ops.pause.paused;
    }

    fn set_pause(&mut self, flag: super::super::operation::PauseFlag) {
        self.ops.pause = flag;
        self.settings.paused = flag.paused;
        if let Some(path) = pause_file(&self.cfg.node.data_dir) {
            if let Err(e) = store_pause(&path, flag) {
                tracing::error!("{e}: the pause flag holds until this agent restarts");
            }
        }
    }

    /// A switchover or failover is under way here, or towards this member.
    pub(super) fn in_a_hurry(&self, s: &Situation) -> bool {
        matches!(
            self.ops.active,
            Some(Active::Switchover(_) | Active::Failover { .. })
        ) || s
            .peers
            .iter()
            .any(|p| p.fresh && (p.handover_to.as_deref() == Some(s.me.as_str()) || p.designated))
    }

    /// Steps an operation in progress, and starts a scheduled one that is
    /// due. Returns whether the situation must be computed again (the
    /// handover changed).
    pub(super) fn advance_operation(&mut self, s: &Situation) -> bool {
        let lease = super::lease_view(&self.lease.current(), Instant::now());
        self.start_due(s, &lease);
        let holding = lease.mine;
        match self.ops.active.take() {
            Some(Active::Switchover(mut sw)) => {
                let progress = Progress {
                    target: s.peer(&sw.to).filter(|p| p.fresh),
                    holding,
                    running_primary: s.postgres == (Postgres::Running { in_recovery: false }),
                    running: matches!(s.postgres, Postgres::Running { .. } | Postgres::Starting),
                    elapsed: sw.since.elapsed(),
                };
                match next_step(&sw, progress) {
                    SwitchoverStep::Stay => {
                        self.ops.active = Some(Active::Switchover(sw));
                        false
                    }
                    SwitchoverStep::Enter(phase) => {
                        tracing::info!(
                            "switchover to {}: {}",
                            sw.to,
                            match phase {
                                HandoverPhase::Stop => "stopping".to_string(),
                                HandoverPhase::Wait => format!(
                                    "stopped at {}; waiting for {} to replay past it",
                                    sw.final_lsn.map(|l| l.to_string()).unwrap_or_default(),
                                    sw.to
                                ),
                                HandoverPhase::Release => format!(
                                    "{} has all of this primary's WAL: releasing the leader lease",
                                    sw.to
                                ),
                                HandoverPhase::Abort => format!(
                                    "{} did not catch up in time: calling it off, starting this primary again",
                                    sw.to
                                ),
                            }
                        );
                        sw.phase = phase;
                        sw.since = Instant::now();
                        // The target's next step waits for this one.
                        self.wake.push(sw.to.clone());
                        self.ops.active = Some(Active::Switchover(sw));
                        true
                    }
                    SwitchoverStep::End(result) => {
                        let reply = match result {
                            Ok(message) => {
                                let mut fields = serde_json::Map::new();
                                fields.insert("leader".into(), sw.to.clone().into());
                                fields.insert("candidate".into(), sw.to.clone().into());
                                Reply::Done { message, fields }
                            }
                            Err(why) => Reply::Failed(why),
                        };
                        answer(sw.reply, "switchover", reply);
                        true
                    }
                }
            }
            Some(Active::Failover { until, reply }) => {
                if holding && s.postgres == (Postgres::Running { in_recovery: false }) {
                    answer(
                        reply,
                        "failover",
                        Reply::done_with(
                            format!("failed over: {} is the primary", s.me),
                            "leader",
                            s.me.clone(),
                        ),
                    );
                    true
                } else if Instant::now() > until {
                    answer(
                        reply,
                        "failover",
                        Reply::Failed(format!(
                            "{} did not become primary in time; last state: {}",
                            s.me,
                            s.candidacy.reason()
                        )),
                    );
                    true
                } else {
                    self.ops.active = Some(Active::Failover { until, reply });
                    false
                }
            }
            other => {
                self.ops.active = other;
                false
            }
        }
    }

    /// A scheduled switchover or restart whose time has come starts now
    /// (checked again: the cluster may have changed since).
    fn start_due(&mut self, s: &Situation, lease: &Lease) {
        if self.ops.active.is_some() || self.job.is_some() {
            return;
        }
        let now = SystemTime::now();
        if let Some(due) = self.ops.switchover_at.take_if(|d| d.at <= now) {
            let (leader, candidate) = due.what;
            tracing::info!("the scheduled switchover is due");
            if let Err(reply) = self.start_switchover(s, lease, &leader, candidate.as_deref(), None)
            {
                answer(None, "scheduled switchover", reply);
            }
            return;
        }
        if let Some(due) = self.ops.restart_at.take_if(|d| d.at <= now) {
            tracing::info!("the scheduled restart is due");
            match self.check_restart(s, lease, &due.what) {
                Ok(as_standby) => {
                    self.ops.active = Some(Active::Restart {
                        as_standby,
                        conditions: due.what,
                        reply: None,
                    })
                }
                Err(r) => answer(None, "scheduled restart", refused(r)),
            }
        }
    }

    fn check_restart(
        &self,
        s: &Situation,
        lease: &Lease,
        conditions: &RestartConditions,
    ) -> Result<bool, Refusal> {
        let view = self.view.borrow();
        let obs = view.postgres.as_ref().and_then(|p| p.observation.as_ref());
        restart_check(
            s,
            lease,
            obs.is_some_and(|o| o.pending_restart),
            obs.map(|o| o.version_num),
            conditions,
        )
    }

    fn start_switchover(
        &mut self,
        s: &Situation,
        lease: &Lease,
        leader: &str,
        candidate: Option<&str>,
        reply: ReplyTo,
    ) -> Result<(), Reply> {
        let settings = &self.settings;
        let nofailover =
            |name: &str| settings.never_primary(name, s.peers.iter().find(|p| p.name == name));
        let to = switchover_target(
            s,
            lease,
            leader,
            candidate,
            nofailover,
            self.settings.max_lag,
        )
        .map_err(refused)?;
        tracing::info!(
            "switchover from {} to {to}: CHECKPOINT, fast stop, wait for {to} to replay everything, release the leader lease",
            s.me
        );
        self.wake.push(to.clone());
        self.ops.active = Some(Active::Switchover(Switchover {
            to,
            phase: HandoverPhase::Stop,
            since: Instant::now(),
            final_lsn: None,
            reply,
        }));
        Ok(())
    }

    /// An operator's restart or reinitialisation replaces the loop's own
    /// action when that is only to keep things as they are; otherwise the
    /// request ends, saying what the node must do first.
    pub(super) fn operation_action(
        &mut self,
        s: &Situation,
        lease: &Lease,
        action: Action,
    ) -> Action {
        if !matches!(
            self.ops.active,
            Some(Active::Restart { .. } | Active::Reinit { .. })
        ) {
            return action;
        }
        let quiet = matches!(
            action,
            Action::Healthy | Action::Follow { .. } | Action::Wait { .. }
        );
        match self.ops.active.take() {
            Some(Active::Restart {
                conditions, reply, ..
            }) => {
                if !quiet {
                    answer(
                        reply,
                        "restart",
                        Reply::Failed(format!("not now: the agent must first {action:?}")),
                    );
                    return action;
                }
                match self.check_restart(s, lease, &conditions) {
                    Ok(as_standby) => {
                        self.ops.active = Some(Active::Restart {
                            as_standby,
                            conditions,
                            reply,
                        });
                        Action::Restart { as_standby }
                    }
                    Err(r) => {
                        answer(reply, "restart", refused(r));
                        action
                    }
                }
            }
            Some(Active::Reinit { reply }) => {
                if !quiet {
                    answer(
                        reply,
                        "reinitialize",
                        Reply::Failed(format!("not now: the agent must first {action:?}")),
                    );
                    return action;
                }
                match reinit_check(s, lease) {
                    Ok(()) => {
                        self.ops.active = Some(Active::Reinit { reply });
                        Action::Reinit
                    }
                    Err(r) => {
                        answer(reply, "reinitialize", refused(r));
                        action
                    }
                }
            }
            other => {
                self.ops.active = other;
                action
            }
        }
    }

    /// An operator's action finished (or failed): answer, or step on.
    pub(super) async fn operation_done(&mut self, action: &Action, result: &Result<(), String>) {
        match (action, self.ops.active.take()) {
            (Action::HandOver { .. }, Some(Active::Switchover(mut sw))) => {
                let handed_over_at = match &self.local {
                    Some(local) => local.lock().await.take_handed_over_at(),
                    None => None,
                };
                match (result, handed_over_at) {
                    (Ok(()), Some(lsn)) => sw.final_lsn = Some(lsn),
                    (Err(e), _) => tracing::error!(
                        "switchover to {}: stopping failed ({e}); calling it off",
                        sw.to
                    ),
                    (Ok(()), None) => {}
                }
                if result.is_err() {
                    sw.phase = HandoverPhase::Abort;
                    sw.since = Instant::now();
                }
                self.wake.push(sw.to.clone());
                self.ops.active = Some(Active::Switchover(sw));
            }
            (Action::Restart { as_standby }, Some(Active::Restart { reply: to, .. })) => {
                let reply = match result {
                    Ok(()) => Reply::done(format!(
                        "restarted PostgreSQL as {}",
                        if *as_standby {
                            "a standby"
                        } else {
                            "the primary"
                        }
                    )),
                    Err(e) => Reply::Failed(format!("restart failed: {e}")),
                };
                answer(to, "restart", reply);
            }
            (Action::Reinit, Some(Active::Reinit { reply: to })) => {
                let reply = match result {
                    Ok(()) => Reply::done(
                        "the data directory was renamed aside (nothing deleted); cloning from the primary",
                    ),
                    Err(e) => Reply::Failed(format!("reinitialize failed: {e}")),
                };
                answer(to, "reinitialize", reply);
            }
            (_, other) => self.ops.active = other,
        }
    }

    /// A request from the API, between iterations. Answered at once when
    /// refused, scheduled or immediate (pause); otherwise once it is over.
    pub(super) async fn operate(&mut self, request: Request, reply: oneshot::Sender<Reply>) {
        let reply = Some(reply);
        match request {
            Request::Pause { paused } => {
                let flag = self.ops.pause.set(paused);
                tracing::warn!(
                    "an operator {} the cluster",
                    if paused { "paused" } else { "resumed" }
                );
                self.set_pause(flag);
                answer(
                    reply,
                    if paused { "pause" } else { "resume" },
                    Reply::done_with(
                        if paused {
                            "paused: no automatic promotion, fence, restart or rewind anywhere in the cluster until `pgwarden resume` (every member learns it within a loop)"
                        } else {
                            "resumed: the agents act again"
                        },
                        "paused",
                        paused,
                    ),
                );
                self.iterate().await;
                return;
            }
            Request::CancelSwitchover => {
                let r = cancel(self.ops.switchover_at.take(), "switchover");
                return answer(reply, "cancel switchover", r);
            }
            Request::CancelRestart => {
                let r = cancel(self.ops.restart_at.take(), "restart");
                return answer(reply, "cancel restart", r);
            }
            _ => {}
        }
        let what = request_name(&request);
        // Judged on a fresh look at the node and the peers, not on what the
        // last iteration saw up to a loop ago.
        if self.ops.active.is_none() && self.job.is_none() {
            self.iterate().await;
        }
        if let Some(active) = &self.ops.active {
            return answer(reply, what, refused(Refusal::Busy(active.describe())));
        }
        if let Some(job) = &self.job {
            return answer(
                reply,
                what,
                refused(Refusal::Busy(format!(
                    "{} is running",
                    super::what(&job.action)
                ))),
            );
        }
        let Some((s, lease)) = self.last_seen.clone() else {
            return answer(
                reply,
                what,
                refused(Refusal::NotPossible(
                    "the agent has not looked at the cluster yet; try again in a moment".into(),
                )),
            );
        };
        let now = SystemTime::now();
        let later = |at: Option<SystemTime>| at.filter(|t| *t > now + NOW_ENOUGH);
        match request {
            Request::Switchover {
                leader,
                candidate,
                at,
            } => {
                // Checked now as well as when due: a request that cannot
                // work is refused while the operator is still there.
                let settings = &self.settings;
                let nofailover = |name: &str| {
                    settings.never_primary(name, s.peers.iter().find(|p| p.name == name))
                };
                if let Err(r) = switchover_target(
                    &s,
                    &lease,
                    &leader,
                    candidate.as_deref(),
                    nofailover,
                    self.settings.max_lag,
                ) {
                    return answer(reply, what, refused(r));
                }
                if let Some(at) = later(at) {
                    return self.schedule_switchover(at, leader, candidate, reply);
                }
                match self.start_switchover(&s, &lease, &leader, candidate.as_deref(), reply) {
                    // The requester is answered when it is over.
                    Ok(()) => self.iterate().await,
                    Err(r) => answer(None, what, r),
                }
            }
            Request::Failover { candidate, force } => {
                match failover_check(&s, &lease, &candidate, force) {
                    Ok(()) => {
                        tracing::warn!(
                            "failover to {candidate} requested by an operator{}",
                            if force {
                                " (forced: it may lose data other members have)"
                            } else {
                                ""
                            }
                        );
                        let until =
                            Instant::now() + self.cfg.cluster.ttl * 2 + Duration::from_secs(30);
                        self.ops.active = Some(Active::Failover { until, reply });
                        self.iterate().await;
                    }
                    Err(r) => answer(reply, what, refused(r)),
                }
            }
            Request::Restart { conditions, at } => {
                let as_standby = match self.check_restart(&s, &lease, &conditions) {
                    Ok(as_standby) => as_standby,
                    // A scheduled restart's conditions are judged at its time.
                    Err(_) if later(at).is_some() => true,
                    Err(r) => return answer(reply, what, refused(r)),
                };
                if let Some(at) = later(at) {
                    if let Some(d) = &self.ops.restart_at {
                        let busy = format!(
                            "a restart is scheduled at {} already: cancel it first (DELETE /restart)",
                            crate::rfc3339::format(d.at)
                        );
                        return answer(reply, what, refused(Refusal::Busy(busy)));
                    }
                    self.ops.restart_at = Some(Scheduled {
                        at,
                        what: conditions,
                    });
                    let when = crate::rfc3339::format(at);
                    return answer(
                        reply,
                        what,
                        Reply::Scheduled {
                            message: format!("restart scheduled at {when}"),
                            at: when,
                        },
                    );
                }
                self.ops.active = Some(Active::Restart {
                    as_standby,
                    conditions,
                    reply,
                });
                self.iterate().await;
            }
            Request::Reinit => match reinit_check(&s, &lease) {
                Ok(()) => {
                    self.ops.active = Some(Active::Reinit { reply });
                    self.iterate().await;
                }
                Err(r) => answer(reply, what, refused(r)),
            },
            Request::Pause { .. } | Request::CancelSwitchover | Request::CancelRestart => {}
        }
    }

    fn schedule_switchover(
        &mut self,
        at: SystemTime,
        leader: String,
        candidate: Option<String>,
        reply: ReplyTo,
    ) {
        if let Some(d) = &self.ops.switchover_at {
            let busy = format!(
                "a switchover is scheduled at {} already: cancel it first (DELETE /switchover)",
                crate::rfc3339::format(d.at)
            );
            return answer(reply, "switchover", refused(Refusal::Busy(busy)));
        }
        let when = crate::rfc3339::format(at);
        let message = format!(
            "switchover from {leader} to {} scheduled at {when}",
            candidate.as_deref().unwrap_or("the best standby")
        );
        self.ops.switchover_at = Some(Scheduled {
            at,
            what: (leader, candidate),
        });
        answer(reply, "switchover", Reply::Scheduled { message, at: when });
    }
}

/// The answer to cancelling `scheduled`.
fn cancel<T>(scheduled: Option<Scheduled<T>>, what: &str) -> Reply {
    match scheduled {
        Some(d) => Reply::done(format!(
            "the {what} scheduled at {} is cancelled",
            crate::rfc3339::format(d.at)
        )),
        None => Reply::NothingScheduled(format!("no {what} is scheduled here")),
    }
}

fn request_name(r: &Request) -> &'static str {
    match r {
        Request::Switchover { .. } => "switchover",
        Request::CancelSwitchover => "cancel switchover",
        Request::Failover { .. } => "failover",
        Request::Restart { .. } => "restart",
        Request::CancelRestart => "cancel restart",
        Request::Reinit => "reinitialize",
        Request::Pause { paused: true } => "pause",
        Request::Pause { paused: false } => "resume",
    }
}
