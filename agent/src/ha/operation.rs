//! Operator requests as the HA loop carries them out: what was asked,
//! what is scheduled, the one operation in progress and how far it has
//! come, and the cluster-wide pause flag.
//!
//! The checks of whether a request may be done now are in `operator.rs`
//! (pure, against the situation); this module keeps the state between
//! loop iterations and decides the next step of a switchover from what
//! the target reports. The runner owns one [`Operations`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::pg::Lsn;

use super::operator::{caught_up, Refusal, RestartConditions};
use super::situation::{Handover, HandoverPhase, PeerReport};

/// What an operator asked for (the API has checked the body's shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Hand the primary role over (on the leader).
    Switchover {
        /// The member the operator believes leads.
        leader: String,
        /// The member to hand over to; the best standby when `None`.
        candidate: Option<String>,
        /// Not before this time.
        at: Option<SystemTime>,
    },
    /// Forget a scheduled switchover.
    CancelSwitchover,
    /// Make this member the primary when there is none.
    Failover {
        /// This member's name, as the operator wrote it.
        candidate: String,
        /// Even if another reachable member has more WAL.
        force: bool,
    },
    /// Restart PostgreSQL here.
    Restart {
        /// Patroni's conditions.
        conditions: RestartConditions,
        /// Not before this time.
        at: Option<SystemTime>,
    },
    /// Forget a scheduled restart.
    CancelRestart,
    /// Rename the data directory aside and clone again (a standby).
    Reinit,
    /// Pause (or resume) automatic actions, cluster-wide.
    Pause {
        /// Paused after this.
        paused: bool,
    },
}

/// How a request ended, for the API to answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Done (HTTP 200): a message and fields for scripts.
    Done {
        /// For a person.
        message: String,
        /// Extra fields of the answer (`leader`, `paused`, ...).
        fields: serde_json::Map<String, serde_json::Value>,
    },
    /// Scheduled (HTTP 202).
    Scheduled {
        /// For a person.
        message: String,
        /// When, RFC 3339 in UTC.
        at: String,
    },
    /// Not done, and why (412, 409 or 503).
    Refused(Refusal),
    /// Nothing to cancel (HTTP 404).
    NothingScheduled(String),
    /// Begun but did not succeed (HTTP 503): what happened, in words.
    Failed(String),
}

impl Reply {
    /// Done, with a message only.
    pub fn done(message: impl Into<String>) -> Reply {
        Reply::Done {
            message: message.into(),
            fields: serde_json::Map::new(),
        }
    }

    /// Done, with one extra field.
    pub fn done_with(
        message: impl Into<String>,
        key: &str,
        value: impl Into<serde_json::Value>,
    ) -> Reply {
        let mut fields = serde_json::Map::new();
        fields.insert(key.to_string(), value.into());
        Reply::Done {
            message: message.into(),
            fields,
        }
    }
}

/// Where a reply goes (none for a scheduled operation that came due: its
/// requester had its 202 long ago; the outcome is logged).
pub type ReplyTo = Option<oneshot::Sender<Reply>>;

/// Sends `reply` to whoever waits for it, and logs it either way.
pub fn answer(to: ReplyTo, what: &str, reply: Reply) {
    match &reply {
        Reply::Done { message, .. } => tracing::info!("{what}: {message}"),
        Reply::Scheduled { message, .. } => tracing::info!("{what}: {message}"),
        Reply::Refused(r) => tracing::warn!("{what} refused: {}", r.reason()),
        Reply::NothingScheduled(m) => tracing::info!("{what}: {m}"),
        Reply::Failed(m) => tracing::error!("{what} failed: {m}"),
    }
    if let Some(to) = to {
        // The requester may have given up waiting (its HTTP request timed
        // out): the operation still happened, and was logged.
        let _ = to.send(reply);
    }
}

/// The operation in progress.
#[derive(Debug)]
pub enum Active {
    /// A switchover on the old primary.
    Switchover(Switchover),
    /// A failover to this member: it counts as the best candidate until it
    /// is primary or `until` passes.
    Failover {
        /// When the attempt is given up.
        until: Instant,
        /// The requester.
        reply: ReplyTo,
    },
    /// A restart of PostgreSQL, to be carried out by the next action.
    Restart {
        /// As checked: it comes back as a standby.
        as_standby: bool,
        /// The conditions, checked again just before.
        conditions: RestartConditions,
        /// The requester.
        reply: ReplyTo,
    },
    /// A reinitialisation, to be carried out by the next action.
    Reinit {
        /// The requester.
        reply: ReplyTo,
    },
}

impl Active {
    /// In words, for a 409.
    pub fn describe(&self) -> String {
        match self {
            Active::Switchover(s) => format!("a switchover to {} is in progress", s.to),
            Active::Failover { .. } => "a failover to this member is in progress".into(),
            Active::Restart { .. } => "a restart of PostgreSQL is in progress".into(),
            Active::Reinit { .. } => "a reinitialisation is in progress".into(),
        }
    }
}

/// A switchover on the old primary.
#[derive(Debug)]
pub struct Switchover {
    /// The member taking over.
    pub to: String,
    /// Where it stands.
    pub phase: HandoverPhase,
    /// When the current phase began.
    pub since: Instant,
    /// The start of the old primary's shutdown checkpoint record: the
    /// target has everything once it has replayed past it.
    pub final_lsn: Option<Lsn>,
    /// The requester.
    pub reply: ReplyTo,
}

/// How long the target may take to replay the old primary's last WAL
/// before the switchover is called off (the old primary goes on).
pub const CATCH_UP_LIMIT: Duration = Duration::from_secs(30);
/// How long after the release the target may take to become primary
/// before the requester is told it did not (the cluster's ordinary
/// failover rules take over from there).
pub const TAKE_OVER_LIMIT: Duration = Duration::from_secs(60);

/// What a switchover does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchoverStep {
    /// Nothing changes this iteration.
    Stay,
    /// Into this phase.
    Enter(HandoverPhase),
    /// Over: answer this.
    End(Result<String, String>),
}

/// What the old primary knows this iteration, for [`next_step`].
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// The target's fresh report, if any.
    pub target: Option<&'a PeerReport>,
    /// This member holds the lease.
    pub holding: bool,
    /// PostgreSQL here runs read-write.
    pub running_primary: bool,
    /// PostgreSQL here runs (as anything).
    pub running: bool,
    /// Since the current phase began.
    pub elapsed: Duration,
}

/// The next step of switchover `s` given `p`.
pub fn next_step(s: &Switchover, p: Progress<'_>) -> SwitchoverStep {
    use HandoverPhase::*;
    let to = s.to.as_str();
    match s.phase {
        Stop if !p.holding => SwitchoverStep::End(Err(format!(
            "lost the leader lease before stopping for the switchover to {to}"
        ))),
        // The HandOver action records the final position when it stopped.
        Stop if s.final_lsn.is_some() && !p.running => SwitchoverStep::Enter(Wait),
        Stop if p.elapsed > CATCH_UP_LIMIT => SwitchoverStep::Enter(Abort),
        Stop => SwitchoverStep::Stay,
        Wait if !p.holding => SwitchoverStep::End(Err(format!(
            "lost the leader lease while {to} caught up; the cluster's failover rules decide the primary now"
        ))),
        Wait => match (s.final_lsn, p.target) {
            (Some(lsn), Some(t)) if caught_up(t, lsn) => SwitchoverStep::Enter(Release),
            _ if p.elapsed > CATCH_UP_LIMIT => SwitchoverStep::Enter(Abort),
            _ => SwitchoverStep::Stay,
        },
        Release => match p.target {
            Some(t) if t.fresh && t.running_primary => {
                SwitchoverStep::End(Ok(format!("switched over: {to} is the primary")))
            }
            _ if p.elapsed > TAKE_OVER_LIMIT => SwitchoverStep::End(Err(format!(
                "released the leader lease, but {to} did not become primary within {} s; the cluster's failover rules decide the primary now",
                TAKE_OVER_LIMIT.as_secs()
            ))),
            _ => SwitchoverStep::Stay,
        },
        Abort if p.running_primary => SwitchoverStep::End(Err(format!(
            "{to} did not replay this primary's last WAL within {} s: the switchover was called off and this member is the primary again (no transaction lost)",
            CATCH_UP_LIMIT.as_secs()
        ))),
        Abort if !p.holding => SwitchoverStep::End(Err(format!(
            "the switchover to {to} was called off and the leader lease was lost meanwhile; the cluster's failover rules decide the primary now"
        ))),
        Abort => SwitchoverStep::Stay,
    }
}

impl Switchover {
    /// The handover as the situation sees it.
    pub fn handover(&self) -> Handover {
        Handover {
            to: self.to.clone(),
            phase: self.phase,
        }
    }
}

/// A request that waits for its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled<T> {
    /// When.
    pub at: SystemTime,
    /// What.
    pub what: T,
}

/// The cluster-wide pause: the flag and a version that only grows, so
/// that every member adopts the latest decision whichever member it was
/// made on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PauseFlag {
    /// Paused.
    pub paused: bool,
    /// Bumped with every change.
    pub version: u64,
}

impl PauseFlag {
    /// The flag after an operator set it here to `paused`.
    pub fn set(self, paused: bool) -> PauseFlag {
        PauseFlag {
            paused,
            version: self.version + 1,
        }
    }

    /// The newer of two flags; at the same version (two members changed
    /// it at once) paused wins, the careful choice.
    pub fn newer(self, other: PauseFlag) -> PauseFlag {
        match other.version.cmp(&self.version) {
            std::cmp::Ordering::Greater => other,
            std::cmp::Ordering::Equal if other.paused => other,
            _ => self,
        }
    }
}

/// Where the pause flag is kept across agent restarts: beside the data
/// directory (like the lease notes), `None` without one.
pub fn pause_file(data_dir: &Path) -> Option<PathBuf> {
    let name = data_dir.file_name()?;
    let mut file = name.to_os_string();
    file.push(".pause");
    Some(data_dir.with_file_name(file))
}

/// The flag as last written; unset when there is no file. A damaged file
/// says so: the flag starts unpaused and the peers' newer flag wins.
pub fn load_pause(path: &Path) -> Result<PauseFlag, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: not a pause flag ({e})", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PauseFlag::default()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes the flag (a new file renamed over the old: never half written).
pub fn store_pause(path: &Path, flag: PauseFlag) -> Result<(), String> {
    let tmp = path.with_extension("pause.tmp");
    let body = serde_json::to_vec(&flag).map_err(|e| e.to_string())?;
    std::fs::write(&tmp, body)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Everything the runner keeps about operator requests.
#[derive(Debug, Default)]
pub struct Operations {
    /// The operation in progress.
    pub active: Option<Active>,
    /// A switchover waiting for its time: (leader, candidate).
    pub switchover_at: Option<Scheduled<(String, Option<String>)>>,
    /// A restart waiting for its time.
    pub restart_at: Option<Scheduled<RestartConditions>>,
    /// The cluster-wide pause.
    pub pause: PauseFlag,
}

impl Operations {
    /// The handover the situation should see.
    pub fn handover(&self) -> Option<Handover> {
        match &self.active {
            Some(Active::Switchover(s)) => Some(s.handover()),
            _ => None,
        }
    }

    /// This member was chosen by an operator to take over.
    pub fn designated(&self) -> bool {
        matches!(self.active, Some(Active::Failover { .. }))
    }

    /// The switchover target others should see in this member's status.
    pub fn handover_to(&self) -> Option<String> {
        match &self.active {
            Some(Active::Switchover(s)) if s.phase != HandoverPhase::Abort => Some(s.to.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status_doc::Position;

    fn target(lsn: u64, primary: bool) -> PeerReport {
        PeerReport {
            name: "pg2".into(),
            fresh: true,
            running_primary: primary,
            position: Some(Position {
                timeline: 1,
                lsn: Lsn(lsn),
            }),
            ..Default::default()
        }
    }

    fn switchover(phase: HandoverPhase, final_lsn: Option<u64>) -> Switchover {
        Switchover {
            to: "pg2".into(),
            phase,
            since: Instant::now(),
            final_lsn: final_lsn.map(Lsn),
            reply: None,
        }
    }

    fn progress(t: Option<&PeerReport>, holding: bool, running: bool, secs: u64) -> Progress<'_> {
        Progress {
            target: t,
            holding,
            running_primary: running,
            running,
            elapsed: Duration::from_secs(secs),
        }
    }

    #[test]
    fn a_switchover_goes_stop_wait_release_done() {
        use HandoverPhase::*;
        let behind = target(100, false);
        let past = target(201, false);
        let promoted = target(300, true);
        let at_checkpoint = target(200, false);
        let cases: &[(&str, Switchover, Progress, SwitchoverStep)] = &[
            (
                "still running: stay",
                switchover(Stop, None),
                progress(Some(&behind), true, true, 0),
                SwitchoverStep::Stay,
            ),
            (
                "stopped with the final position: wait",
                switchover(Stop, Some(200)),
                progress(Some(&behind), true, false, 1),
                SwitchoverStep::Enter(Wait),
            ),
            (
                "target at the checkpoint record's start: not yet",
                switchover(Wait, Some(200)),
                progress(Some(&at_checkpoint), true, false, 1),
                SwitchoverStep::Stay,
            ),
            (
                "target past it: release",
                switchover(Wait, Some(200)),
                progress(Some(&past), true, false, 1),
                SwitchoverStep::Enter(Release),
            ),
            (
                "target behind for too long: abort",
                switchover(Wait, Some(200)),
                progress(Some(&behind), true, false, 31),
                SwitchoverStep::Enter(Abort),
            ),
            (
                "released, target promoted: done",
                switchover(Release, Some(200)),
                progress(Some(&promoted), false, false, 1),
                SwitchoverStep::End(Ok("switched over: pg2 is the primary".into())),
            ),
            (
                "released, target not primary yet",
                switchover(Release, Some(200)),
                progress(Some(&past), false, false, 5),
                SwitchoverStep::Stay,
            ),
        ];
        for (what, s, p, want) in cases {
            assert_eq!(&next_step(s, *p), want, "{what}");
        }
    }

    #[test]
    fn a_lost_lease_or_a_timeout_ends_it_with_the_reason() {
        use HandoverPhase::*;
        let behind = target(100, false);
        for (s, p, needle) in [
            (
                switchover(Stop, None),
                progress(Some(&behind), false, true, 0),
                "lost the leader lease before stopping",
            ),
            (
                switchover(Wait, Some(200)),
                progress(Some(&behind), false, false, 0),
                "lost the leader lease while pg2 caught up",
            ),
            (
                switchover(Release, Some(200)),
                progress(Some(&behind), false, false, 61),
                "did not become primary within 60 s",
            ),
            (
                switchover(Abort, Some(200)),
                progress(None, true, true, 0),
                "this member is the primary again",
            ),
        ] {
            match next_step(&s, p) {
                SwitchoverStep::End(Err(e)) => assert!(e.contains(needle), "{e}"),
                other => panic!("{needle}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_latest_pause_decision_wins_and_paused_wins_a_tie() {
        let a = PauseFlag::default().set(true);
        let b = a.set(false);
        assert_eq!(a.newer(b), b);
        assert_eq!(b.newer(a), b);
        let tie = PauseFlag {
            paused: false,
            version: a.version,
        };
        assert_eq!(tie.newer(a), a);
        assert_eq!(a.newer(tie), a);
    }

    #[test]
    fn the_pause_flag_survives_a_restart_and_a_damaged_file_says_so() {
        let dir = std::env::temp_dir().join(format!("pgwarden-pause-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = pause_file(&dir.join("data")).unwrap();
        assert_eq!(path, dir.join("data.pause"));
        assert_eq!(load_pause(&path).unwrap(), PauseFlag::default());
        let flag = PauseFlag::default().set(true);
        store_pause(&path, flag).unwrap();
        assert_eq!(load_pause(&path).unwrap(), flag);
        std::fs::write(&path, b"{half").unwrap();
        assert!(load_pause(&path).unwrap_err().contains("not a pause flag"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
