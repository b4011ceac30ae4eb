//! When a standby re-clones by itself: the primary has removed WAL it
//! needs (its slot was dropped after `member_slot_ttl`, or PostgreSQL
//! reported it lost under `max_slot_wal_keep_size`), so it can never stream
//! again from what it has. The runner then replaces the loop's quiet
//! action with [`Action::Reclone`]: the data directory is renamed aside
//! (never deleted) and the member clones afresh, as an operator's
//! `pgwarden reinit` would — under the same conditions
//! ([`operator::reinit_check`]), plus a few of its own:
//!
//! - the evidence persisted: [`RECLONE_AFTER`] loops in a row, with the
//!   replay position standing still (a standby that fetches WAL from an
//!   archive in between moves on, and is left alone);
//! - the primary it would clone from runs and holds the leader lease, and
//!   is a copy of the same cluster;
//! - the cluster is not paused, and the loop had nothing else to do.

use crate::pg::diagnose::ReceiverProblem;
use crate::pg::Lsn;

use super::decide::{Action, Lease};
use super::operator;
use super::situation::{Postgres, Situation};

/// Loops in a row the removed WAL must be seen before the member re-clones:
/// one message is no proof (a standby may have just been pointed at a
/// primary that lacks the WAL another one had).
pub const RECLONE_AFTER: u32 = 5;

/// How long this standby's WAL receiver has been failing on removed WAL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalRemovedWatch {
    /// Loops in a row it was seen.
    loops: u32,
    /// The segment PostgreSQL asked for, as last seen.
    segment: String,
    /// The replay position when it was first seen.
    replayed: Option<Lsn>,
}

impl WalRemovedWatch {
    /// Takes this loop's diagnosis of the receiver and the replay
    /// position; anything but removed WAL at a standing replay position
    /// starts the count again.
    pub fn observe(&mut self, problem: Option<&ReceiverProblem>, replayed: Option<Lsn>) {
        match problem {
            Some(ReceiverProblem::WalRemoved { segment })
                if self.loops > 0 && self.replayed == replayed =>
            {
                self.loops += 1;
                self.segment = segment.clone();
            }
            Some(ReceiverProblem::WalRemoved { segment }) => {
                *self = WalRemovedWatch {
                    loops: 1,
                    segment: segment.clone(),
                    replayed,
                }
            }
            _ => *self = WalRemovedWatch::default(),
        }
    }

    /// Loops in a row the removed WAL was seen.
    pub fn loops(&self) -> u32 {
        self.loops
    }
}

/// Why this standby must re-clone now, or `None`.
pub fn must_reclone(s: &Situation, lease: &Lease, watch: &WalRemovedWatch) -> Option<String> {
    if watch.loops < RECLONE_AFTER || s.paused {
        return None;
    }
    if s.postgres != (Postgres::Running { in_recovery: true }) {
        return None;
    }
    // An operator's reinit would be refused: so is this one.
    operator::reinit_check(s, lease).ok()?;
    let holder = lease.holder.as_deref()?;
    let primary = s.peer(holder).filter(|p| p.fresh && p.running_primary)?;
    if let (Some(theirs), Some(ours)) = (&primary.system_identifier, &s.system_identifier) {
        if theirs != ours {
            return None;
        }
    }
    Some(format!(
        "the primary {holder} has already removed WAL this standby needs (segment {}; seen {} loops in a row, replay standing at {}): it can never stream from what it has",
        watch.segment,
        watch.loops,
        s.position
            .map(|p| p.lsn.to_string())
            .unwrap_or_else(|| "?".into())
    ))
}

/// The loop's action, or a re-clone in its place when one is due and the
/// loop had nothing else to do (a standby following its primary, waiting).
pub fn instead_of(action: Action, s: &Situation, lease: &Lease, watch: &WalRemovedWatch) -> Action {
    let quiet = matches!(
        action,
        Action::Healthy | Action::Follow { .. } | Action::Wait { .. }
    );
    if !quiet {
        return action;
    }
    match must_reclone(s, lease, watch) {
        Some(reason) => Action::Reclone { reason },
        None => action,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha::candidate::Candidacy;
    use crate::ha::situation::{CrashLoop, PeerReport};
    use crate::pg::conf::StandbySource;
    use crate::pg::files::DataDirState;
    use crate::status_doc::{Position, Role, State};
    use std::time::Duration;

    fn at(lsn: u64) -> Option<Position> {
        Some(Position {
            timeline: 1,
            lsn: Lsn(lsn),
        })
    }

    fn pg1_primary() -> PeerReport {
        PeerReport {
            name: "pg1".into(),
            fresh: true,
            role: Some(Role::Primary),
            state: Some(State::Running),
            running_primary: true,
            claims_leadership: true,
            system_identifier: Some("7311".into()),
            position: at(0x9000000),
            pg: Some(("10.0.0.1".into(), 5432)),
            ..PeerReport::default()
        }
    }

    /// pg3, a standby of pg1 whose receiver fails on removed WAL.
    fn standby() -> Situation {
        Situation {
            me: "pg3".into(),
            witness: false,
            no_data_members: false,
            solo_data_member: false,
            paused: false,
            nofailover: false,
            fence_margin: Duration::from_secs(2),
            data: DataDirState::Initialized,
            standby_signal: true,
            postgres: Postgres::Running { in_recovery: true },
            promoting: false,
            position: at(0x3000000),
            role_ensured: false,
            timeline_diverged: false,
            rewind_needed: false,
            fenced_in_term: None,
            writable_in_term: None,
            handover: None,
            sender_lag: Vec::new(),
            system_identifier: Some("7311".into()),
            crash_loop: CrashLoop::No,
            bootstrap_allowed: false,
            join_blocker: None,
            clone_source: None,
            clone_retry_in: None,
            candidacy: Candidacy::NotBest("pg1 reports a running primary".into()),
            ranking: None,
            slot: Some("pg3".into()),
            replicatefrom: None,
            peers: vec![pg1_primary()],
        }
    }

    fn by_pg1() -> Lease {
        Lease {
            mine: false,
            holder: Some("pg1".into()),
            term: 4,
            remaining: Duration::ZERO,
            since: None,
        }
    }

    fn removed() -> ReceiverProblem {
        ReceiverProblem::WalRemoved {
            segment: "000000010000000000000003".into(),
        }
    }

    fn seen(loops: u32) -> WalRemovedWatch {
        let mut w = WalRemovedWatch::default();
        for _ in 0..loops {
            w.observe(Some(&removed()), Some(Lsn(0x3000000)));
        }
        w
    }

    fn follow() -> Action {
        Action::Follow {
            source: StandbySource {
                host: "10.0.0.1".into(),
                port: 5432,
                slot: Some("pg3".into()),
            },
        }
    }

    fn is_reclone(a: &Action) -> bool {
        matches!(a, Action::Reclone { .. })
    }

    #[test]
    fn given_removed_wal_for_a_few_loops_when_following_a_primary_that_holds_the_lease_then_it_reclones(
    ) {
        let a = instead_of(follow(), &standby(), &by_pg1(), &seen(RECLONE_AFTER));
        let Action::Reclone { reason } = &a else {
            panic!("{a:?}");
        };
        assert!(
            reason.contains("pg1") && reason.contains("000000010000000000000003"),
            "{reason}"
        );
    }

    /// Each row: what, the situation, the lease, the watch, the action the
    /// loop had: and no re-clone.
    #[test]
    fn every_row_keeps_the_loops_action() {
        let without_primary = Situation {
            peers: vec![PeerReport {
                running_primary: false,
                ..pg1_primary()
            }],
            ..standby()
        };
        let other_cluster = Situation {
            peers: vec![PeerReport {
                system_identifier: Some("9999".into()),
                ..pg1_primary()
            }],
            ..standby()
        };
        let rows: Vec<(&str, Situation, Lease, WalRemovedWatch, Action)> = vec![
            (
                "one message is no proof",
                standby(),
                by_pg1(),
                seen(1),
                follow(),
            ),
            (
                "a few are not yet",
                standby(),
                by_pg1(),
                seen(RECLONE_AFTER - 1),
                follow(),
            ),
            (
                "paused: the agent changes nothing",
                Situation {
                    paused: true,
                    ..standby()
                },
                by_pg1(),
                seen(RECLONE_AFTER),
                follow(),
            ),
            (
                "the primary does not run",
                without_primary,
                by_pg1(),
                seen(RECLONE_AFTER),
                follow(),
            ),
            (
                "nobody holds the lease",
                standby(),
                Lease::default(),
                seen(RECLONE_AFTER),
                Action::Wait {
                    reason: "no leader".into(),
                },
            ),
            (
                "the running primary is not the lease holder",
                standby(),
                Lease {
                    holder: Some("pg2".into()),
                    ..by_pg1()
                },
                seen(RECLONE_AFTER),
                follow(),
            ),
            (
                "the primary is another cluster",
                other_cluster,
                by_pg1(),
                seen(RECLONE_AFTER),
                follow(),
            ),
            (
                "this member holds the lease itself",
                standby(),
                Lease {
                    mine: true,
                    holder: Some("pg3".into()),
                    ..by_pg1()
                },
                seen(RECLONE_AFTER),
                follow(),
            ),
            (
                "PostgreSQL is not running as a standby",
                Situation {
                    postgres: Postgres::Starting,
                    ..standby()
                },
                by_pg1(),
                seen(RECLONE_AFTER),
                Action::Wait {
                    reason: "starting".into(),
                },
            ),
            (
                "the loop has something else to do first",
                Situation {
                    timeline_diverged: true,
                    ..standby()
                },
                by_pg1(),
                seen(RECLONE_AFTER),
                Action::Rewind {
                    source: StandbySource {
                        host: "10.0.0.1".into(),
                        port: 5432,
                        slot: None,
                    },
                },
            ),
        ];
        for (what, s, lease, watch, action) in rows {
            let got = instead_of(action.clone(), &s, &lease, &watch);
            assert!(!is_reclone(&got), "{what}: {got:?}");
            assert_eq!(got, action, "{what}");
        }
    }

    #[test]
    fn the_count_starts_again_on_any_other_news_or_when_replay_moves() {
        let mut w = seen(3);
        w.observe(None, Some(Lsn(0x3000000)));
        assert_eq!(w.loops(), 0, "streaming again, or no diagnosis");
        let mut w = seen(3);
        w.observe(
            Some(&ReceiverProblem::PrimaryUnreachable {
                detail: "refused".into(),
            }),
            Some(Lsn(0x3000000)),
        );
        assert_eq!(w.loops(), 0);
        let mut w = seen(3);
        w.observe(Some(&removed()), Some(Lsn(0x3000100)));
        assert_eq!(w.loops(), 1, "replay moved: WAL arrives from somewhere");
        w.observe(Some(&removed()), Some(Lsn(0x3000100)));
        assert_eq!(w.loops(), 2);
    }
}
