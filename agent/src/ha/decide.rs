//! The decision: a pure function from the situation and the lease to the
//! one thing this node should do now. No I/O, no clock: every branch is a
//! row in the tables of tests below (the house rule "decide purely, act
//! separately").
//!
//! The rules that keep "never two writable PostgreSQL servers":
//! - only the lease holder makes PostgreSQL writable (a read-write start,
//!   a promotion, a bootstrap), and only with more than the fence margin
//!   of lease left, and never in a term in which it fenced itself;
//! - a primary without the lease, or with less than the margin left, or
//!   one that may no longer lead, is fenced — also when it does not answer
//!   its probe, since it may still take writes on open sessions;
//! - a primary's data directory without the lease starts as a standby (to
//!   learn how far its WAL goes) and asks for the lease only as the best
//!   candidate ([`super::candidate`]), like any standby.

use std::time::{Duration, Instant};

use crate::pg::conf::StandbySource;
use crate::pg::files::DataDirState;

use super::candidate::Candidacy;
use super::situation::{CrashLoop, HandoverPhase, PeerReport, Postgres, Situation};

/// The lease as this node sees it in this iteration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lease {
    /// This node holds it.
    pub mine: bool,
    /// Who does, when someone does.
    pub holder: Option<String>,
    /// Its term.
    pub term: u64,
    /// Time left on this node's lease (zero when it holds none).
    pub remaining: Duration,
    /// When this node's holding began (its lease round returned), on its
    /// clock; `None` when it holds none.
    pub since: Option<Instant>,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing: all is as it should be.
    Healthy,
    /// Nothing can be done yet; the reason is shown in `/status` and logged.
    Wait {
        /// Why.
        reason: String,
    },
    /// The data directory holds something that is not a cluster: rename it
    /// aside (never delete) before anything is made there.
    RenameAside,
    /// Create a new cluster here: `initdb`, managed files, start as primary.
    Bootstrap,
    /// Start the postmaster.
    Start {
        /// With `standby.signal`.
        as_standby: bool,
    },
    /// Create or repair the replication role and slots.
    EnsureReplicationRole,
    /// Promote the standby: this node holds the lease.
    Promote {
        /// Why this member (the positions compared).
        reason: String,
    },
    /// Rejoin as a standby of `source`: `pg_rewind` from it when the
    /// timelines diverged, then start as a standby.
    Rewind {
        /// The new primary.
        source: StandbySource,
    },
    /// Copy the data directory from a running member (`pg_basebackup`).
    Clone {
        /// The member to copy from.
        source: StandbySource,
    },
    /// Keep a running standby streaming from the leader: re-point it (a
    /// reload) when the leader moved.
    Follow {
        /// The leader's PostgreSQL.
        source: StandbySource,
    },
    /// Stop PostgreSQL at once: it may take writes it must not.
    Fence {
        /// Why.
        reason: String,
    },
    /// An operator's restart of PostgreSQL (fast stop, start).
    Restart {
        /// It comes back as a standby.
        as_standby: bool,
    },
    /// An operator's reinitialisation: stop, rename the data directory
    /// aside; the member then clones afresh.
    Reinit,
    /// The same, by the agent itself: the primary removed WAL this standby
    /// needs (decided by [`super::reclone`], not by [`decide`]).
    Reclone {
        /// Why, for the log and the history.
        reason: String,
    },
    /// A switchover's first half on the primary: CHECKPOINT, fast stop,
    /// `standby.signal`; the lease is released once `to` has everything.
    HandOver {
        /// The member taking over.
        to: String,
    },
}

impl Action {
    /// Whether carrying it out can make PostgreSQL writable: the fence
    /// guard is armed with the lease's end before it starts.
    pub fn makes_writable(&self) -> bool {
        matches!(
            self,
            Action::Bootstrap
                | Action::Promote { .. }
                | Action::Start { as_standby: false }
                | Action::Restart { as_standby: false }
        )
    }
}

/// The leader: the lease holder this node knows of, else a member whose
/// own document says it holds the lease.
fn leader<'a>(s: &'a Situation, lease: &'a Lease) -> Option<&'a str> {
    match &lease.holder {
        Some(h) => Some(h.as_str()),
        None => s
            .peers
            .iter()
            .find(|p| p.fresh && p.claims_leadership)
            .map(|p| p.name.as_str()),
    }
}

/// The leader's report, when it is another member.
fn leader_peer<'a>(s: &'a Situation, lease: &'a Lease) -> Option<&'a PeerReport> {
    leader(s, lease)
        .filter(|n| *n != s.me)
        .and_then(|n| s.peer(n))
}

/// Where a standby streams from: the leader's running PostgreSQL.
pub fn leader_source(s: &Situation, lease: &Lease) -> Option<StandbySource> {
    leader_peer(s, lease)
        .filter(|p| p.fresh && p.running_primary)
        .and_then(|p| s.source_of(p))
}

/// Where a running standby streams from: the member its `replicatefrom`
/// tag names while that one streams (cascading), else the leader.
pub fn stream_source(s: &Situation, lease: &Lease) -> Option<StandbySource> {
    let leader = leader_source(s, lease)?;
    Some(s.cascade_source().unwrap_or(leader))
}

/// Another member holds the lease or runs as primary.
fn leader_alive(s: &Situation, lease: &Lease) -> bool {
    lease.holder.as_deref().is_some_and(|h| h != s.me)
        || s.peers.iter().any(|p| p.fresh && p.running_primary)
}

/// The leader leads another cluster (its system identifier differs).
fn foreign_leader(s: &Situation, lease: &Lease) -> Option<String> {
    let p = leader_peer(s, lease)?;
    let (theirs, ours) = (
        p.system_identifier.as_deref()?,
        s.system_identifier.as_deref()?,
    );
    (s.data == DataDirState::Initialized && theirs != ours).then(|| format!(
        "refusing to follow {}: it leads a different cluster (system identifier {theirs}, this data directory has {ours}); \
         check cluster.members, or move this data directory aside so that the member clones afresh",
        p.name
    ))
}

/// Why this node, holding the lease, must not (go on) lead.
fn must_step_down(s: &Situation) -> Option<String> {
    if s.nofailover {
        return Some("tagged nofailover: stepping down".into());
    }
    if let CrashLoop::GiveUp { to, crashes } = &s.crash_loop {
        return Some(format!(
            "PostgreSQL crashed {crashes} times in a row: handing over to {to}"
        ));
    }
    None
}

/// Whether this node may make PostgreSQL writable now.
fn may_lead(s: &Situation, lease: &Lease) -> Result<(), String> {
    if !lease.mine {
        return Err("this member does not hold the leader lease".into());
    }
    if lease.remaining <= s.fence_margin {
        return Err(format!(
            "the leader lease has {} ms left, not more than the fence margin ({} ms)",
            lease.remaining.as_millis(),
            s.fence_margin.as_millis()
        ));
    }
    if s.fenced_in_term == Some(lease.term) {
        return Err(format!(
            "fenced in term {}: waits for a new term of the lease",
            lease.term
        ));
    }
    match must_step_down(s) {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

/// Whether this node should ask for (or renew) the lease this iteration.
pub fn wants_lease(s: &Situation, lease: &Lease) -> bool {
    if s.paused {
        // Paused: a holder keeps its lease, nobody new asks.
        return lease.mine;
    }
    if s.witness {
        // A witness votes; it holds the lease only where no member could
        // use it, so that it never keeps a data member from becoming primary.
        return s.no_data_members;
    }
    if let Some(h) = &s.handover {
        // A switchover's primary keeps its lease until the target has
        // everything, then lets it go at once (not at its end).
        return lease.mine && h.phase != HandoverPhase::Release;
    }
    if s.may_be_writable() {
        // A holder whose PostgreSQL may take writes keeps the lease until
        // it stopped: the fence comes before the release.
        if lease.mine {
            return true;
        }
        // A running primary without the lease (its agent restarted without
        // usable lease notes) asks to go on leading, unless it must step
        // down or another member is a primary, or ahead on a newer timeline
        // (then this one is stale, and is fenced).
        let mine = s.position.map(|p| p.timeline);
        let stale = s.peers.iter().any(|p| {
            p.fresh
                && (p.running_primary || p.position.map(|q| q.timeline) > mine && mine.is_some())
        });
        return !s.standby_signal && must_step_down(s).is_none() && !stale;
    }
    if s.nofailover || matches!(s.crash_loop, CrashLoop::GiveUp { .. }) {
        return false;
    }
    match s.data {
        DataDirState::Unreadable => false,
        DataDirState::Empty | DataDirState::Foreign => s.bootstrap_allowed,
        DataDirState::Initialized if !s.standby_signal => {
            // A primary's directory keeps a lease it holds through a
            // restart of PostgreSQL (not one it fenced itself in); the only
            // data member has nobody to compare with and may take it as it is.
            (lease.mine && s.fenced_in_term != Some(lease.term))
                || s.solo_data_member
                || (s.candidacy.is_best() && !leader_alive(s, lease))
        }
        DataDirState::Initialized => s.candidacy.is_best() && !leader_alive(s, lease),
    }
}

/// The one thing to do now.
pub fn decide(s: &Situation, lease: &Lease) -> Action {
    if s.witness {
        return Action::Healthy;
    }
    if s.paused {
        return Action::Wait {
            reason: "paused: the agent changes nothing until `pgwarden resume`".into(),
        };
    }
    match s.data {
        DataDirState::Foreign => Action::RenameAside,
        DataDirState::Empty => decide_empty(s, lease),
        DataDirState::Initialized => decide_initialized(s, lease),
        DataDirState::Unreadable => Action::Wait {
            reason: "the data directory cannot be read (see the agent's log; fix its owner or permissions): nothing is made or moved there until it can".into(),
        },
    }
}

fn decide_initialized(s: &Situation, lease: &Lease) -> Action {
    if s.may_be_writable() {
        return decide_writable(s, lease);
    }
    if let Some(reason) = foreign_leader(s, lease) {
        return Action::Wait { reason };
    }
    match &s.postgres {
        Postgres::NotRunning {
            crash_backoff: true,
        } => Action::Wait {
            reason: match &s.crash_loop {
                CrashLoop::KeepTrying { crashes } => format!(
                    "PostgreSQL crashed {crashes} times in a row and no other member can take over: restarting it after a backoff"
                ),
                CrashLoop::GiveUp { to, crashes } => format!(
                    "PostgreSQL crashed {crashes} times in a row: handing over to {to}, then rejoining as a standby"
                ),
                CrashLoop::No => "PostgreSQL exited unexpectedly; restarting after a backoff".into(),
            },
        },
        Postgres::NotRunning {
            crash_backoff: false,
        } => decide_stopped(s, lease),
        Postgres::Starting => Action::Wait {
            reason: "PostgreSQL (a standby) is starting and does not answer yet".into(),
        },
        Postgres::Running { .. } => decide_standby(s, lease),
    }
}

/// PostgreSQL runs as a primary, or does not answer with a primary's
/// directory: it may take writes.
fn decide_writable(s: &Situation, lease: &Lease) -> Action {
    if !lease.mine {
        return Action::Fence {
            reason: match (&lease.holder, &s.postgres) {
                _ if s.promoting => format!(
                    "a promotion asked for before may still finish, and {} holds the leader lease",
                    lease.holder.as_deref().unwrap_or("no member")
                ),
                (Some(h), _) => format!("running as primary, but {h} holds the leader lease"),
                (None, Postgres::Starting) => {
                    "PostgreSQL does not answer and may be taking writes without the leader lease"
                        .into()
                }
                (None, _) => "running as primary without the leader lease".into(),
            },
        };
    }
    if lease.remaining < s.fence_margin {
        return Action::Fence {
            reason: format!(
                "the leader lease could not be renewed and ends in {} ms",
                lease.remaining.as_millis()
            ),
        };
    }
    if let Some(why) = must_step_down(s) {
        return Action::Fence { reason: why };
    }
    // Asked before (by this agent, or by its previous run), and still in
    // recovery or not answering: ask again while it is still the best
    // candidate (an agent may have died between noting the promotion and
    // asking for it); once a reached member shows more WAL, stop it
    // rather than let the promotion finish and lose that WAL.
    if s.promoting && s.postgres != (Postgres::Running { in_recovery: false }) {
        return match &s.candidacy {
            Candidacy::Best(_) => Action::Promote {
                reason:
                    "finishing the promotion asked for before (PostgreSQL is still in recovery)"
                        .into(),
            },
            Candidacy::NotBest(why) => Action::Fence {
                reason: format!(
                    "stopping the promotion asked for before: no longer the best candidate ({why})"
                ),
            },
        };
    }
    if let Some(h) = s
        .handover
        .as_ref()
        .filter(|h| h.phase == HandoverPhase::Stop)
    {
        if s.postgres == (Postgres::Running { in_recovery: false }) {
            return Action::HandOver { to: h.to.clone() };
        }
    }
    match s.postgres {
        Postgres::Starting => Action::Wait {
            reason: "PostgreSQL (the primary) does not answer the agent's probe".into(),
        },
        _ if s.role_ensured => Action::Healthy,
        _ => Action::EnsureReplicationRole,
    }
}

/// No postmaster runs (and no crash restart is pending).
fn decide_stopped(s: &Situation, lease: &Lease) -> Action {
    match s.handover.as_ref().map(|h| (h.phase, h.to.as_str())) {
        Some((HandoverPhase::Stop | HandoverPhase::Wait, to)) if lease.mine => {
            return Action::Wait {
                reason: format!(
                    "switchover to {to}: stopped; keeping the leader lease until {to} has replayed all of this primary's WAL"
                ),
            };
        }
        // The target did not catch up: this primary goes on in its term,
        // on its timeline, as if nothing had happened.
        Some((HandoverPhase::Abort, _)) if lease.mine && s.writable_in_term == Some(lease.term) => {
            return match may_lead(s, lease) {
                Ok(()) => Action::Start { as_standby: false },
                Err(why) => Action::Wait {
                    reason: format!("will not start the primary again: {why}"),
                },
            };
        }
        _ => {}
    }
    if s.standby_signal && s.rewind_needed {
        // Once a primary's: rewound against a live leader before it runs
        // again, or started as a standby (no upstream: it only shows its
        // position) when there is none.
        return match leader_source(s, lease) {
            Some(source) if leader_alive(s, lease) && !lease.mine => Action::Rewind { source },
            _ => Action::Start { as_standby: true },
        };
    }
    if s.standby_signal {
        return Action::Start { as_standby: true };
    }
    // A primary's data directory. Restarted read-write only within the
    // holding it was writable in (a crash restart in place) or by the lone
    // data member; a lease won since (after a pause, an agent restart) does
    // not say its WAL is the newest: it starts as a standby, shows its
    // position and competes like any standby.
    if lease.mine && (s.solo_data_member || s.writable_in_term == Some(lease.term)) {
        return match may_lead(s, lease) {
            Ok(()) => Action::Start { as_standby: false },
            Err(why) => Action::Wait {
                reason: format!("will not start the primary: {why}"),
            },
        };
    }
    if lease.mine {
        return Action::Start { as_standby: true };
    }
    match leader_source(s, lease) {
        Some(source) if leader_alive(s, lease) => Action::Rewind { source },
        // Without a leader, run it as a standby: its recovery shows how far
        // its WAL goes, and it becomes a candidate like any standby.
        _ if s.solo_data_member => Action::Wait {
            reason: "a primary's data directory without the leader lease: waiting for it".into(),
        },
        _ => Action::Start { as_standby: true },
    }
}

/// PostgreSQL runs in recovery.
fn decide_standby(s: &Situation, lease: &Lease) -> Action {
    if lease.mine {
        if !s.candidacy.is_best() {
            return Action::Wait {
                reason: format!(
                    "holding the leader lease but not the candidate to promote ({}); letting it go",
                    s.candidacy.reason()
                ),
            };
        }
        // Positions observed before this member won the lease may predate
        // the old primary's last acknowledged commit: promote on those
        // observed since (the lease is kept meanwhile).
        let since = s.candidacy_since(lease.since);
        if !since.is_best() {
            return Action::Wait {
                reason: format!(
                    "holding the leader lease, not promoting yet: {}",
                    since.reason()
                ),
            };
        }
        return match may_lead(s, lease) {
            Ok(()) => Action::Promote {
                reason: since.reason().to_string(),
            },
            Err(why) => Action::Wait {
                reason: format!("will not promote: {why}"),
            },
        };
    }
    match (leader(s, lease), leader_source(s, lease)) {
        (Some(_), Some(source)) if s.timeline_diverged || s.rewind_needed => {
            Action::Rewind { source }
        }
        (Some(_), Some(source)) => Action::Follow {
            source: stream_source(s, lease).unwrap_or(source),
        },
        (Some(h), None) => Action::Wait {
            reason: format!(
                "standby: {h} holds the leader lease but its PostgreSQL does not run as primary yet"
            ),
        },
        (None, _) => Action::Wait {
            reason: format!(
                "standby without a leader: no member holds the leader lease ({})",
                s.candidacy.reason()
            ),
        },
    }
}

fn decide_empty(s: &Situation, lease: &Lease) -> Action {
    if let Some(source) = &s.clone_source {
        return match s.clone_retry_in {
            Some(left) => Action::Wait {
                reason: format!(
                    "empty data directory: the last clone failed; trying again in {} s",
                    left.as_secs() + 1
                ),
            },
            None => Action::Clone {
                source: source.clone(),
            },
        };
    }
    if !s.bootstrap_allowed {
        return Action::Wait {
            reason: s.join_blocker.clone().unwrap_or_else(|| {
                "empty data directory: waiting until every data member is reachable and empty before a new cluster is made".into()
            }),
        };
    }
    if lease.mine {
        return match may_lead(s, lease) {
            Ok(()) => Action::Bootstrap,
            Err(why) => Action::Wait {
                reason: format!("will not bootstrap: {why}"),
            },
        };
    }
    Action::Wait {
        reason: match &lease.holder {
            Some(h) => format!(
                "empty data directory: {h} holds the leader lease and bootstraps the cluster"
            ),
            None => "empty data directory: waiting for the leader lease to bootstrap".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha::candidate::Candidacy;
    use crate::status_doc::{Position, Role, State};

    fn primary() -> Situation {
        Situation {
            me: "pg1".into(),
            witness: false,
            no_data_members: false,
            solo_data_member: false,
            paused: false,
            nofailover: false,
            fence_margin: Duration::from_secs(2),
            data: DataDirState::Initialized,
            standby_signal: false,
            postgres: Postgres::Running { in_recovery: false },
            position: Some(Position {
                timeline: 1,
                lsn: crate::pg::Lsn(7),
            }),
            promoting: false,
            role_ensured: true,
            timeline_diverged: false,
            rewind_needed: false,
            fenced_in_term: None,
            writable_in_term: Some(4),
            handover: None,
            sender_lag: Vec::new(),
            system_identifier: Some("7311".into()),
            crash_loop: CrashLoop::No,
            bootstrap_allowed: false,
            join_blocker: None,
            clone_source: None,
            clone_retry_in: None,
            candidacy: Candidacy::NotBest("pg2 reports a running primary".into()),
            ranking: None,
            slot: Some("pg1".into()),
            replicatefrom: None,
            peers: vec![],
        }
    }

    fn standby() -> Situation {
        Situation {
            standby_signal: true,
            postgres: Postgres::Running { in_recovery: true },
            candidacy: Candidacy::Best("highest".into()),
            ..primary()
        }
    }

    fn held() -> Lease {
        Lease {
            mine: true,
            holder: Some("pg1".into()),
            term: 4,
            remaining: Duration::from_secs(9),
            since: None,
        }
    }

    fn none() -> Lease {
        Lease::default()
    }

    fn by_pg2() -> Lease {
        Lease {
            mine: false,
            holder: Some("pg2".into()),
            term: 5,
            remaining: Duration::ZERO,
            since: None,
        }
    }

    fn pg2_primary() -> PeerReport {
        PeerReport {
            name: "pg2".into(),
            fresh: true,
            role: Some(Role::Primary),
            state: Some(State::Running),
            running_primary: true,
            claims_leadership: true,
            leader_term: Some(5),
            system_identifier: Some("7311".into()),
            position: Some(Position {
                timeline: 2,
                lsn: crate::pg::Lsn(9),
            }),
            pg: Some(("10.0.0.2".into(), 5432)),
            ..PeerReport::default()
        }
    }

    fn pg2() -> StandbySource {
        StandbySource {
            host: "10.0.0.2".into(),
            port: 5432,
            slot: Some("pg1".into()),
        }
    }

    fn stopped(s: Situation) -> Situation {
        Situation {
            postgres: Postgres::NotRunning {
                crash_backoff: false,
            },
            ..s
        }
    }

    fn wait(reason: &str) -> Action {
        Action::Wait {
            reason: reason.into(),
        }
    }

    fn empty() -> Situation {
        Situation {
            data: DataDirState::Empty,
            postgres: Postgres::NotRunning {
                crash_backoff: false,
            },
            system_identifier: None,
            bootstrap_allowed: true,
            ..primary()
        }
    }

    /// Each row: a situation, the lease, and the action.
    fn table() -> Vec<(&'static str, Situation, Lease, Action)> {
        let with_pg2 = |s: Situation| Situation {
            peers: vec![pg2_primary()],
            ..s
        };
        vec![
            ("healthy primary holding the lease", primary(), held(), Action::Healthy),
            ("witness does nothing", Situation { witness: true, ..primary() }, none(), Action::Healthy),
            (
                "fresh primary gets its replication role",
                Situation { role_ensured: false, ..primary() },
                held(),
                Action::EnsureReplicationRole,
            ),
            (
                "a primary whose lease runs out fences itself before it ends",
                primary(),
                Lease { remaining: Duration::from_millis(1500), ..held() },
                Action::Fence { reason: "the leader lease could not be renewed and ends in 1500 ms".into() },
            ),
            (
                "primary without the lease is fenced",
                primary(),
                by_pg2(),
                Action::Fence { reason: "running as primary, but pg2 holds the leader lease".into() },
            ),
            (
                "a primary that does not answer and holds no lease is fenced: it may take writes",
                Situation { postgres: Postgres::Starting, ..primary() },
                none(),
                Action::Fence {
                    reason: "PostgreSQL does not answer and may be taking writes without the leader lease".into(),
                },
            ),
            (
                "a primary that does not answer but holds the lease waits, guarded",
                Situation { postgres: Postgres::Starting, ..primary() },
                held(),
                wait("PostgreSQL (the primary) does not answer the agent's probe"),
            ),
            (
                "a crash-looping primary hands over when another member can take over",
                Situation { crash_loop: CrashLoop::GiveUp { to: "pg2".into(), crashes: 3 }, ..primary() },
                held(),
                Action::Fence { reason: "PostgreSQL crashed 3 times in a row: handing over to pg2".into() },
            ),
            (
                "a primary tagged nofailover by a reload steps down",
                Situation { nofailover: true, ..primary() },
                held(),
                Action::Fence { reason: "tagged nofailover: stepping down".into() },
            ),
            (
                "a crashed primary with nobody to take over keeps restarting",
                Situation {
                    postgres: Postgres::NotRunning { crash_backoff: true },
                    crash_loop: CrashLoop::KeepTrying { crashes: 5 },
                    ..primary()
                },
                held(),
                wait("PostgreSQL crashed 5 times in a row and no other member can take over: restarting it after a backoff"),
            ),
            ("stopped primary with the lease starts as primary", stopped(primary()), held(), Action::Start { as_standby: false }),
            (
                "no read-write start with less than the fence margin left",
                stopped(primary()),
                Lease { remaining: Duration::from_secs(2), ..held() },
                wait("will not start the primary: the leader lease has 2000 ms left, not more than the fence margin (2000 ms)"),
            ),
            (
                "a lease won after this member was last writable starts it as a standby first",
                Situation { writable_in_term: Some(2), ..stopped(primary()) },
                held(),
                Action::Start { as_standby: true },
            ),
            (
                "a fence sticks for the rest of its term",
                Situation { fenced_in_term: Some(4), ..stopped(primary()) },
                held(),
                wait("will not start the primary: fenced in term 4: waits for a new term of the lease"),
            ),
            (
                "a fenced node may lead again in a new term",
                Situation { fenced_in_term: Some(3), ..stopped(primary()) },
                held(),
                Action::Start { as_standby: false },
            ),
            (
                "a stopped standby starts as a standby, lease or not",
                stopped(standby()),
                none(),
                Action::Start { as_standby: true },
            ),
            (
                "a former primary rejoins a new leader by rewind",
                with_pg2(stopped(primary())),
                by_pg2(),
                Action::Rewind { source: pg2() },
            ),
            (
                "a former primary already started as a standby is still rewound before it runs under a leader",
                Situation { rewind_needed: true, ..with_pg2(stopped(standby())) },
                by_pg2(),
                Action::Rewind { source: pg2() },
            ),
            (
                "a former primary started as a standby, with no leader, starts as a standby to show its position",
                Situation { rewind_needed: true, ..stopped(standby()) },
                none(),
                Action::Start { as_standby: true },
            ),
            (
                "a former primary without a leader runs as a standby to become a candidate",
                stopped(primary()),
                none(),
                Action::Start { as_standby: true },
            ),
            (
                "the only data member's stopped primary waits for the lease",
                Situation { solo_data_member: true, ..stopped(primary()) },
                none(),
                wait("a primary's data directory without the leader lease: waiting for it"),
            ),
            (
                "a crash-looping stopped primary says it hands over",
                Situation {
                    postgres: Postgres::NotRunning { crash_backoff: true },
                    crash_loop: CrashLoop::GiveUp { to: "pg2".into(), crashes: 3 },
                    ..primary()
                },
                none(),
                wait("PostgreSQL crashed 3 times in a row: handing over to pg2, then rejoining as a standby"),
            ),
            (
                "crashed postgres waits for its backoff",
                Situation { postgres: Postgres::NotRunning { crash_backoff: true }, ..primary() },
                held(),
                wait("PostgreSQL exited unexpectedly; restarting after a backoff"),
            ),
            (
                "a starting standby is waited for",
                Situation { postgres: Postgres::Starting, ..standby() },
                none(),
                wait("PostgreSQL (a standby) is starting and does not answer yet"),
            ),
            (
                "standby holding the lease is promoted",
                standby(),
                held(),
                Action::Promote { reason: "highest".into() },
            ),
            (
                "no promotion with less than the fence margin left",
                standby(),
                Lease { remaining: Duration::from_millis(1999), ..held() },
                wait("will not promote: the leader lease has 1999 ms left, not more than the fence margin (2000 ms)"),
            ),
            (
                "a standby holding the lease that is no longer the best lets it go",
                Situation { candidacy: Candidacy::NotBest("pg3 is ahead".into()), ..standby() },
                held(),
                wait("holding the leader lease but not the candidate to promote (pg3 is ahead); letting it go"),
            ),
            ("standby keeps following the leader", with_pg2(standby()), by_pg2(), Action::Follow { source: pg2() }),
            (
                "a standby whose timeline diverged is rewound",
                Situation { timeline_diverged: true, ..with_pg2(standby()) },
                by_pg2(),
                Action::Rewind { source: pg2() },
            ),
            (
                "a running former primary is rewound before it follows, even when PostgreSQL sees no divergence",
                Situation { rewind_needed: true, ..with_pg2(standby()) },
                by_pg2(),
                Action::Rewind { source: pg2() },
            ),
            (
                "standby whose leader does not run as primary yet waits",
                standby(),
                by_pg2(),
                wait("standby: pg2 holds the leader lease but its PostgreSQL does not run as primary yet"),
            ),
            (
                "a standby follows the member that claims the lease when its own acceptor knows no holder",
                with_pg2(standby()),
                none(),
                Action::Follow { source: pg2() },
            ),
            (
                "a leader of another cluster is not followed",
                Situation {
                    peers: vec![PeerReport { system_identifier: Some("9999".into()), ..pg2_primary() }],
                    ..standby()
                },
                by_pg2(),
                wait("refusing to follow pg2: it leads a different cluster (system identifier 9999, this data directory has 7311); check cluster.members, or move this data directory aside so that the member clones afresh"),
            ),
            ("empty dir with the lease bootstraps", empty(), held(), Action::Bootstrap),
            (
                "no bootstrap with less than the fence margin left",
                empty(),
                Lease { remaining: Duration::from_secs(1), ..held() },
                wait("will not bootstrap: the leader lease has 1000 ms left, not more than the fence margin (2000 ms)"),
            ),
            (
                "empty dir without the lease waits",
                empty(),
                by_pg2(),
                wait("empty data directory: pg2 holds the leader lease and bootstraps the cluster"),
            ),
            (
                "empty member with a member down waits and says who",
                Situation { bootstrap_allowed: false, join_blocker: Some("pg3 is not reachable".into()), ..empty() },
                none(),
                wait("pg3 is not reachable"),
            ),
            (
                "empty member joining a running cluster clones",
                Situation { bootstrap_allowed: false, clone_source: Some(pg2()), ..empty() },
                by_pg2(),
                Action::Clone { source: pg2() },
            ),
            (
                "a failed clone is retried after its back-off",
                Situation {
                    bootstrap_allowed: false,
                    clone_source: Some(pg2()),
                    clone_retry_in: Some(Duration::from_millis(3500)),
                    ..empty()
                },
                by_pg2(),
                wait("empty data directory: the last clone failed; trying again in 4 s"),
            ),
            (
                "foreign files are renamed aside",
                Situation { data: DataDirState::Foreign, ..empty() },
                none(),
                Action::RenameAside,
            ),
            (
                "a data directory that cannot be read is not empty: nothing is made there",
                Situation { data: DataDirState::Unreadable, ..empty() },
                held(),
                wait("the data directory cannot be read (see the agent's log; fix its owner or permissions): nothing is made or moved there until it can"),
            ),
            (
                "paused agent changes nothing",
                Situation { paused: true, ..primary() },
                by_pg2(),
                wait("paused: the agent changes nothing until `pgwarden resume`"),
            ),
            (
                "a standby asked to promote before, still in recovery, asks again while it holds the lease",
                Situation { promoting: true, ..standby() },
                held(),
                Action::Promote { reason: "finishing the promotion asked for before (PostgreSQL is still in recovery)".into() },
            ),
            (
                "a standby asked to promote before is stopped once a reached member shows more WAL",
                Situation { promoting: true, candidacy: Candidacy::NotBest("pg2 is ahead".into()), ..standby() },
                held(),
                Action::Fence { reason: "stopping the promotion asked for before: no longer the best candidate (pg2 is ahead)".into() },
            ),
            (
                "a standby asked to promote before is fenced once the lease is another's",
                Situation { promoting: true, ..standby() },
                by_pg2(),
                Action::Fence { reason: "a promotion asked for before may still finish, and pg2 holds the leader lease".into() },
            ),
            (
                "a standby asked to promote before is fenced when the lease runs short",
                Situation { promoting: true, ..standby() },
                Lease { remaining: Duration::from_secs(1), ..held() },
                Action::Fence { reason: "the leader lease could not be renewed and ends in 1000 ms".into() },
            ),
        ]
    }

    #[test]
    fn every_situation_in_the_table_gets_its_action() {
        for (name, situation, lease, expected) in table() {
            assert_eq!(decide(&situation, &lease), expected, "{name}");
        }
    }

    #[test]
    fn nothing_becomes_writable_without_the_lease_and_the_margin() {
        for (name, situation, lease, action) in table() {
            if action.makes_writable() {
                assert!(
                    lease.mine && lease.remaining > situation.fence_margin,
                    "{name}"
                );
                assert_ne!(situation.fenced_in_term, Some(lease.term), "{name}");
            }
        }
    }

    #[test]
    fn who_asks_for_the_lease() {
        let rows: Vec<(&str, Situation, Lease, bool)> = vec![
            ("a holding primary renews", primary(), held(), true),
            (
                "a running primary whose agent restarted without its lease asks to go on",
                Situation {
                    candidacy: Candidacy::NotBest("pg2 is equal and first".into()),
                    ..primary()
                },
                none(),
                true,
            ),
            (
                "a running primary behind a member on a newer timeline does not",
                Situation {
                    peers: vec![PeerReport {
                        running_primary: false,
                        ..pg2_primary()
                    }],
                    ..primary()
                },
                none(),
                false,
            ),
            (
                "a witness does not",
                Situation {
                    witness: true,
                    ..primary()
                },
                none(),
                false,
            ),
            (
                "a witness of a lease-only cluster does",
                Situation {
                    witness: true,
                    no_data_members: true,
                    ..primary()
                },
                none(),
                true,
            ),
            (
                "a paused holder keeps it",
                Situation {
                    paused: true,
                    ..primary()
                },
                held(),
                true,
            ),
            (
                "nobody new asks while paused",
                Situation {
                    paused: true,
                    ..standby()
                },
                none(),
                false,
            ),
            (
                "an empty member allowed to bootstrap asks",
                empty(),
                none(),
                true,
            ),
            (
                "an empty member waiting for others does not",
                Situation {
                    bootstrap_allowed: false,
                    ..empty()
                },
                none(),
                false,
            ),
            (
                "the best standby asks when no primary is alive",
                standby(),
                none(),
                true,
            ),
            (
                "a standby that is not the best does not",
                Situation {
                    candidacy: Candidacy::NotBest("x".into()),
                    ..standby()
                },
                none(),
                false,
            ),
            (
                "never while another member holds the lease",
                standby(),
                by_pg2(),
                false,
            ),
            (
                "never while another member runs as primary",
                Situation {
                    peers: vec![pg2_primary()],
                    ..standby()
                },
                none(),
                false,
            ),
            (
                "a crash loop gives the lease up once PostgreSQL stopped",
                Situation {
                    postgres: Postgres::NotRunning {
                        crash_backoff: true,
                    },
                    crash_loop: CrashLoop::GiveUp {
                        to: "pg2".into(),
                        crashes: 3,
                    },
                    ..primary()
                },
                held(),
                false,
            ),
            (
                "a crash-looping primary keeps the lease until it stopped",
                Situation {
                    crash_loop: CrashLoop::GiveUp {
                        to: "pg2".into(),
                        crashes: 3,
                    },
                    ..primary()
                },
                held(),
                true,
            ),
            (
                "a primary restarting PostgreSQL after a crash keeps its lease",
                Situation {
                    postgres: Postgres::NotRunning {
                        crash_backoff: true,
                    },
                    candidacy: Candidacy::NotBest("position unknown".into()),
                    ..primary()
                },
                held(),
                true,
            ),
            (
                "a primary that fenced itself gives the lease of that term up",
                Situation {
                    fenced_in_term: Some(4),
                    ..stopped(primary())
                },
                held(),
                false,
            ),
            (
                "a crash loop with nobody to take over keeps asking",
                Situation {
                    postgres: Postgres::NotRunning {
                        crash_backoff: true,
                    },
                    crash_loop: CrashLoop::KeepTrying { crashes: 3 },
                    candidacy: Candidacy::NotBest("position unknown".into()),
                    solo_data_member: true,
                    ..primary()
                },
                none(),
                true,
            ),
            (
                "a nofailover member never asks, not even to bootstrap",
                Situation {
                    nofailover: true,
                    ..empty()
                },
                none(),
                false,
            ),
            (
                "a nofailover primary keeps its lease until it stopped taking writes",
                Situation {
                    nofailover: true,
                    ..primary()
                },
                held(),
                true,
            ),
            (
                "a primary's stopped directory with others to compare with does not ask",
                Situation {
                    candidacy: Candidacy::NotBest("unknown".into()),
                    ..stopped(primary())
                },
                none(),
                false,
            ),
            (
                "the only data member's stopped primary asks",
                Situation {
                    solo_data_member: true,
                    ..stopped(primary())
                },
                none(),
                true,
            ),
            (
                "a standby asked to promote keeps the lease it holds (no release before it is read-only)",
                Situation {
                    promoting: true,
                    candidacy: Candidacy::NotBest("pg2 is equal and first".into()),
                    ..standby()
                },
                held(),
                true,
            ),
            (
                "a standby asked to promote does not ask for a lease it lost: it is fenced",
                Situation {
                    promoting: true,
                    ..standby()
                },
                none(),
                false,
            ),
        ];
        for (name, s, lease, expected) in rows {
            assert_eq!(wants_lease(&s, &lease), expected, "{name}");
        }
    }

    #[test]
    fn a_standby_tagged_replicatefrom_streams_from_that_member_while_it_streams() {
        let pg3 = |streaming: bool, replicatefrom: Option<&str>| PeerReport {
            name: "pg3".into(),
            fresh: true,
            role: Some(Role::Replica),
            state: Some(State::Running),
            streaming,
            system_identifier: Some("7311".into()),
            pg: Some(("10.0.0.3".into(), 5432)),
            tags: crate::config::Tags {
                replicatefrom: replicatefrom.map(str::to_string),
                ..Default::default()
            },
            ..PeerReport::default()
        };
        let cascading = |up: PeerReport| Situation {
            replicatefrom: Some("pg3".into()),
            peers: vec![pg2_primary(), up],
            ..standby()
        };
        let from_pg3 = StandbySource {
            host: "10.0.0.3".into(),
            ..pg2()
        };
        let follow = |s: &Situation| decide(s, &by_pg2());
        assert_eq!(
            follow(&cascading(pg3(true, None))),
            Action::Follow {
                source: from_pg3.clone()
            }
        );
        // pg3 does not stream (yet, or any more): from the primary.
        assert_eq!(
            follow(&cascading(pg3(false, None))),
            Action::Follow { source: pg2() }
        );
        // pg3 streams from this member: a cycle, so from the primary.
        assert_eq!(
            follow(&cascading(pg3(true, Some("pg1")))),
            Action::Follow { source: pg2() }
        );
        // pg3 belongs to another cluster.
        let foreign = PeerReport {
            system_identifier: Some("9".into()),
            ..pg3(true, None)
        };
        assert_eq!(
            follow(&cascading(foreign)),
            Action::Follow { source: pg2() }
        );
        // Untagged: the primary, as always.
        let plain = Situation {
            replicatefrom: None,
            ..cascading(pg3(true, None))
        };
        assert_eq!(follow(&plain), Action::Follow { source: pg2() });
    }
}
