//! The decision: a pure function from what the node sees to the one thing
//! it should do now. No I/O, no clock: every branch is a row in the tables
//! of tests below (the house rule "decide purely, act separately").

use std::time::Duration;

use crate::pg::conf::StandbySource;
use crate::pg::files::DataDirState;

/// The local PostgreSQL, as the loop found it this iteration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Postgres {
    /// No postmaster runs.
    NotRunning {
        /// It exited without being asked to, and a restart is not due yet.
        crash_backoff: bool,
    },
    /// A postmaster runs but does not accept connections (yet).
    Starting,
    /// It answers queries.
    Running {
        /// `pg_is_in_recovery()`.
        in_recovery: bool,
    },
}

/// Everything a decision depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Situation {
    /// This node runs no PostgreSQL.
    pub witness: bool,
    /// The cluster has no data members at all (a lease-only cluster): then
    /// a witness may hold the lease, there being no primary to protect.
    pub no_data_members: bool,
    /// The operator paused automatic actions.
    pub paused: bool,
    /// What the data directory holds.
    pub data: DataDirState,
    /// `standby.signal` exists.
    pub standby_signal: bool,
    /// The postmaster.
    pub postgres: Postgres,
    /// This node holds the leader lease.
    pub lease_mine: bool,
    /// Who does, when someone does.
    pub lease_holder: Option<String>,
    /// A new cluster may be created here (every data member reachable and
    /// empty; trivially true for a one-member cluster).
    pub bootstrap_allowed: bool,
    /// The replication role was ensured since PostgreSQL last started as primary.
    pub role_ensured: bool,
    /// Where an empty member clones from: the running primary holding the
    /// lease, or a running member tagged `clonefrom`.
    pub clone_source: Option<StandbySource>,
    /// Why an empty member can neither bootstrap nor clone, in words.
    pub join_blocker: Option<String>,
    /// Where a standby streams from: the lease holder's PostgreSQL.
    pub leader_source: Option<StandbySource>,
    /// The lease holder belongs to another cluster (different system
    /// identifier): following it is refused, with this reason.
    pub foreign_leader: Option<String>,
    /// Time left on this node's lease (zero when it holds none).
    pub lease_remaining: Duration,
    /// A primary whose lease has less than this left stops PostgreSQL.
    pub fence_margin: Duration,
    /// This standby is the best candidate to promote (with the reason),
    /// when no primary is alive.
    pub best_candidate: Option<String>,
    /// Another member holds the lease or runs as primary.
    pub leader_alive: bool,
    /// This standby's timeline diverged from its upstream's.
    pub timeline_diverged: bool,
    /// PostgreSQL keeps crashing: this node gives its lease up.
    pub crash_loop: bool,
    /// Tagged `nofailover`: never primary, not even to bootstrap.
    pub nofailover: bool,
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
    /// Create or repair the replication role.
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
    /// Stop PostgreSQL: it runs as primary without the lease.
    Fence {
        /// Why.
        reason: String,
    },
}

/// Whether this node should ask for (or renew) the lease this iteration.
pub fn wants_lease(s: &Situation) -> bool {
    if s.paused || s.nofailover {
        return false;
    }
    if s.witness {
        // A witness votes; it holds the lease only where no member could
        // use it, so that it never keeps a data member from becoming primary.
        return s.no_data_members;
    }
    match s.data {
        DataDirState::Empty | DataDirState::Foreign => s.bootstrap_allowed,
        // A primary's data directory keeps (or regains) its lease, unless
        // its PostgreSQL keeps crashing; a standby asks only when no primary
        // is alive and it is the best candidate it can see.
        DataDirState::Initialized if s.crash_loop => false,
        DataDirState::Initialized if !s.standby_signal => true,
        DataDirState::Initialized => !s.leader_alive && s.best_candidate.is_some(),
    }
}

/// The one thing to do now.
pub fn decide(s: &Situation) -> Action {
    if s.witness {
        return Action::Healthy;
    }
    if s.paused {
        return Action::Wait {
            reason: "paused: the agent changes nothing until `pgwarden resume`".into(),
        };
    }
    match s.data {
        DataDirState::Foreign => return Action::RenameAside,
        DataDirState::Empty => return decide_empty(s),
        DataDirState::Initialized => {}
    }
    if let Some(reason) = &s.foreign_leader {
        if !s.lease_mine {
            return Action::Wait {
                reason: reason.clone(),
            };
        }
    }
    match &s.postgres {
        Postgres::NotRunning { crash_backoff: true } => Action::Wait {
            reason: "PostgreSQL exited unexpectedly; restarting after a backoff".into(),
        },
        Postgres::NotRunning { crash_backoff: false } => {
            if s.lease_mine {
                // Restart in place; a standby's directory starts as a
                // standby and is promoted once running.
                return Action::Start {
                    as_standby: s.standby_signal,
                };
            }
            if s.standby_signal {
                return Action::Start { as_standby: true };
            }
            // A former primary: rejoin the new leader (rewinding what
            // diverged), or wait for the lease when there is no leader.
            match &s.leader_source {
                Some(source) if s.leader_alive => Action::Rewind { source: source.clone() },
                _ => Action::Wait {
                    reason: "a primary's data directory without the leader lease: waiting for the lease or for a new primary to rejoin".into(),
                },
            }
        }
        Postgres::Starting => Action::Wait {
            reason: "PostgreSQL is starting and does not accept connections yet".into(),
        },
        Postgres::Running { in_recovery: false } if s.lease_mine => {
            if s.lease_remaining < s.fence_margin {
                Action::Fence {
                    reason: format!(
                        "the leader lease could not be renewed and ends in {} ms",
                        s.lease_remaining.as_millis()
                    ),
                }
            } else if s.role_ensured {
                Action::Healthy
            } else {
                Action::EnsureReplicationRole
            }
        }
        Postgres::Running { in_recovery: false } => Action::Fence {
            reason: match &s.lease_holder {
                Some(h) => format!("running as primary, but {h} holds the leader lease"),
                None => "running as primary without the leader lease".into(),
            },
        },
        Postgres::Running { in_recovery: true } if s.lease_mine => Action::Promote {
            reason: s
                .best_candidate
                .clone()
                .unwrap_or_else(|| "this member holds the leader lease".into()),
        },
        Postgres::Running { in_recovery: true } => match (&s.lease_holder, &s.leader_source) {
            (Some(_), Some(source)) if s.timeline_diverged => Action::Rewind { source: source.clone() },
            (Some(_), Some(source)) => Action::Follow { source: source.clone() },
            (Some(h), None) => Action::Wait {
                reason: format!("standby: {h} holds the leader lease but its PostgreSQL address is not known yet"),
            },
            (None, _) => Action::Wait {
                reason: "standby without a leader: no member holds the leader lease".into(),
            },
        },
    }
}

fn decide_empty(s: &Situation) -> Action {
    if let Some(source) = &s.clone_source {
        return Action::Clone {
            source: source.clone(),
        };
    }
    if !s.bootstrap_allowed {
        return Action::Wait {
            reason: s.join_blocker.clone().unwrap_or_else(|| {
                "empty data directory: waiting until every data member is reachable and empty before a new cluster is made".into()
            }),
        };
    }
    if s.lease_mine {
        Action::Bootstrap
    } else {
        Action::Wait {
            reason: match &s.lease_holder {
                Some(h) => format!(
                    "empty data directory: {h} holds the leader lease and bootstraps the cluster"
                ),
                None => "empty data directory: waiting for the leader lease to bootstrap".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running_primary_with_lease() -> Situation {
        Situation {
            witness: false,
            no_data_members: false,
            paused: false,
            data: DataDirState::Initialized,
            standby_signal: false,
            postgres: Postgres::Running { in_recovery: false },
            lease_mine: true,
            lease_holder: Some("pg1".into()),
            bootstrap_allowed: true,
            role_ensured: true,
            clone_source: None,
            join_blocker: None,
            leader_source: None,
            foreign_leader: None,
            lease_remaining: Duration::from_secs(9),
            fence_margin: Duration::from_secs(2),
            best_candidate: None,
            leader_alive: false,
            timeline_diverged: false,
            crash_loop: false,
            nofailover: false,
        }
    }

    fn pg2() -> StandbySource {
        StandbySource {
            host: "10.0.0.2".into(),
            port: 5432,
            slot: Some("pg1".into()),
        }
    }

    /// Each row: a change to the healthy primary's situation, and the action.
    fn table() -> Vec<(&'static str, Situation, Action)> {
        let base = running_primary_with_lease();
        let empty = Situation {
            data: DataDirState::Empty,
            postgres: Postgres::NotRunning {
                crash_backoff: false,
            },
            ..base.clone()
        };
        vec![
            ("healthy primary holding the lease", base.clone(), Action::Healthy),
            ("witness does nothing", Situation { witness: true, ..base.clone() }, Action::Healthy),
            (
                "fresh primary gets its replication role",
                Situation { role_ensured: false, ..base.clone() },
                Action::EnsureReplicationRole,
            ),
            ("empty dir with the lease bootstraps", empty.clone(), Action::Bootstrap),
            (
                "empty dir without the lease waits",
                Situation { lease_mine: false, lease_holder: Some("pg2".into()), ..empty.clone() },
                Action::Wait {
                    reason: "empty data directory: pg2 holds the leader lease and bootstraps the cluster".into(),
                },
            ),
            (
                "empty dir while a member is missing waits",
                Situation { bootstrap_allowed: false, ..empty.clone() },
                Action::Wait {
                    reason: "empty data directory: waiting until every data member is reachable and empty before a new cluster is made".into(),
                },
            ),
            (
                "foreign files are renamed aside",
                Situation { data: DataDirState::Foreign, ..empty.clone() },
                Action::RenameAside,
            ),
            (
                "stopped primary with the lease starts as standby first when standby.signal exists",
                Situation {
                    postgres: Postgres::NotRunning { crash_backoff: false },
                    standby_signal: true,
                    ..base.clone()
                },
                Action::Start { as_standby: true },
            ),
            (
                "stopped primary with the lease starts as primary",
                Situation { postgres: Postgres::NotRunning { crash_backoff: false }, ..base.clone() },
                Action::Start { as_standby: false },
            ),
            (
                "a former primary without the lease and no leader waits",
                Situation {
                    postgres: Postgres::NotRunning { crash_backoff: false },
                    lease_mine: false,
                    lease_holder: None,
                    ..base.clone()
                },
                Action::Wait {
                    reason: "a primary's data directory without the leader lease: waiting for the lease or for a new primary to rejoin".into(),
                },
            ),
            (
                "a former primary rejoins a new leader by rewind",
                Situation {
                    postgres: Postgres::NotRunning { crash_backoff: false },
                    lease_mine: false,
                    lease_holder: Some("pg2".into()),
                    leader_source: Some(pg2()),
                    leader_alive: true,
                    ..base.clone()
                },
                Action::Rewind { source: pg2() },
            ),
            (
                "a stopped standby without the lease starts as a standby",
                Situation {
                    postgres: Postgres::NotRunning { crash_backoff: false },
                    standby_signal: true,
                    lease_mine: false,
                    lease_holder: None,
                    ..base.clone()
                },
                Action::Start { as_standby: true },
            ),
            (
                "a primary whose lease runs out fences itself before it ends",
                Situation {
                    lease_remaining: Duration::from_millis(1500),
                    ..base.clone()
                },
                Action::Fence {
                    reason: "the leader lease could not be renewed and ends in 1500 ms".into(),
                },
            ),
            (
                "a standby whose timeline diverged is rewound",
                Situation {
                    postgres: Postgres::Running { in_recovery: true },
                    lease_mine: false,
                    lease_holder: Some("pg2".into()),
                    leader_source: Some(pg2()),
                    timeline_diverged: true,
                    ..base.clone()
                },
                Action::Rewind { source: pg2() },
            ),
            (
                "crashed postgres waits for its backoff",
                Situation { postgres: Postgres::NotRunning { crash_backoff: true }, ..base.clone() },
                Action::Wait {
                    reason: "PostgreSQL exited unexpectedly; restarting after a backoff".into(),
                },
            ),
            (
                "starting postgres is waited for",
                Situation { postgres: Postgres::Starting, ..base.clone() },
                Action::Wait {
                    reason: "PostgreSQL is starting and does not accept connections yet".into(),
                },
            ),
            (
                "primary without the lease is fenced",
                Situation { lease_mine: false, lease_holder: Some("pg2".into()), ..base.clone() },
                Action::Fence {
                    reason: "running as primary, but pg2 holds the leader lease".into(),
                },
            ),
            (
                "standby holding the lease is promoted",
                Situation {
                    postgres: Postgres::Running { in_recovery: true },
                    best_candidate: Some("highest WAL position among pg1=0/5".into()),
                    ..base.clone()
                },
                Action::Promote {
                    reason: "highest WAL position among pg1=0/5".into(),
                },
            ),
            (
                "standby keeps following the leader",
                Situation {
                    postgres: Postgres::Running { in_recovery: true },
                    lease_mine: false,
                    lease_holder: Some("pg2".into()),
                    leader_source: Some(pg2()),
                    ..base.clone()
                },
                Action::Follow { source: pg2() },
            ),
            (
                "standby whose leader's address is unknown waits",
                Situation {
                    postgres: Postgres::Running { in_recovery: true },
                    lease_mine: false,
                    lease_holder: Some("pg2".into()),
                    ..base.clone()
                },
                Action::Wait {
                    reason: "standby: pg2 holds the leader lease but its PostgreSQL address is not known yet".into(),
                },
            ),
            (
                "empty member joining a running cluster clones",
                Situation {
                    lease_mine: false,
                    lease_holder: Some("pg2".into()),
                    bootstrap_allowed: false,
                    clone_source: Some(pg2()),
                    ..empty.clone()
                },
                Action::Clone { source: pg2() },
            ),
            (
                "empty member with a member down waits and says who",
                Situation {
                    lease_mine: false,
                    lease_holder: None,
                    bootstrap_allowed: false,
                    join_blocker: Some("pg3 is not reachable".into()),
                    ..empty.clone()
                },
                Action::Wait {
                    reason: "pg3 is not reachable".into(),
                },
            ),
            (
                "a leader of another cluster is not followed",
                Situation {
                    postgres: Postgres::Running { in_recovery: true },
                    lease_mine: false,
                    lease_holder: Some("pg2".into()),
                    leader_source: Some(pg2()),
                    foreign_leader: Some("pg2 belongs to another cluster".into()),
                    ..base.clone()
                },
                Action::Wait {
                    reason: "pg2 belongs to another cluster".into(),
                },
            ),
            (
                "paused agent changes nothing",
                Situation { paused: true, lease_mine: false, ..base.clone() },
                Action::Wait {
                    reason: "paused: the agent changes nothing until `pgwarden resume`".into(),
                },
            ),
        ]
    }

    #[test]
    fn every_situation_in_the_table_gets_its_action() {
        for (name, situation, expected) in table() {
            assert_eq!(decide(&situation), expected, "{name}");
        }
    }

    #[test]
    fn who_asks_for_the_lease() {
        let base = running_primary_with_lease();
        assert!(wants_lease(&base));
        assert!(!wants_lease(&Situation {
            witness: true,
            ..base.clone()
        }));
        assert!(!wants_lease(&Situation {
            paused: true,
            ..base.clone()
        }));
        let empty = Situation {
            data: DataDirState::Empty,
            ..base.clone()
        };
        assert!(wants_lease(&empty));
        assert!(!wants_lease(&Situation {
            bootstrap_allowed: false,
            ..empty
        }));
        let standby = Situation {
            standby_signal: true,
            postgres: Postgres::Running { in_recovery: true },
            lease_mine: false,
            ..base.clone()
        };
        assert!(
            !wants_lease(&standby),
            "a standby that is not the best candidate does not ask"
        );
        let best = Situation {
            best_candidate: Some("best".into()),
            ..standby.clone()
        };
        assert!(
            wants_lease(&best),
            "the best standby asks when no primary is alive"
        );
        assert!(
            !wants_lease(&Situation {
                leader_alive: true,
                ..best
            }),
            "never while a primary is alive"
        );
        assert!(
            !wants_lease(&Situation {
                crash_loop: true,
                ..base.clone()
            }),
            "a crash loop gives the lease up"
        );
        assert!(
            !wants_lease(&Situation {
                nofailover: true,
                data: DataDirState::Empty,
                ..base.clone()
            }),
            "a nofailover member never leads, not even to bootstrap"
        );
    }
}
