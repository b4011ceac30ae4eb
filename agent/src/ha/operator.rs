//! Operator actions, decided purely: whether a switchover, a failover, a
//! restart or a reinitialisation can be done now, and to whom. The API
//! turns a refusal into its HTTP code; the runner carries the rest out.

use crate::pg::Lsn;
use crate::status_doc::Role;

use super::decide::Lease;
use super::situation::{PeerReport, Postgres, Situation};

/// Why an operator action is not done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The request went to a member that is not the one to carry it out
    /// (HTTP 503).
    NotHere(String),
    /// Not possible now (HTTP 412), and why.
    NotPossible(String),
    /// Another operation is in progress (HTTP 409).
    Busy(String),
}

impl Refusal {
    /// The reason, in words.
    pub fn reason(&self) -> &str {
        match self {
            Refusal::NotHere(r) | Refusal::NotPossible(r) | Refusal::Busy(r) => r,
        }
    }
}

fn not_possible(why: impl Into<String>) -> Refusal {
    Refusal::NotPossible(why.into())
}

/// This node is the primary: it holds the lease and PostgreSQL runs
/// read-write.
fn is_leader(s: &Situation, lease: &Lease) -> bool {
    lease.mine && s.postgres == (Postgres::Running { in_recovery: false })
}

/// How many bytes `peer` trails this primary's position.
fn lag_behind(s: &Situation, peer: &PeerReport) -> Option<u64> {
    if let Some((_, lag)) = s.sender_lag.iter().find(|(n, _)| *n == peer.name) {
        return Some(*lag);
    }
    let mine = s.position?;
    let theirs = peer.position?;
    (theirs.timeline == mine.timeline).then(|| mine.lsn.bytes_after(theirs.lsn))
}

/// The member a switchover hands the primary role to: `candidate` when
/// named (it must be a streaming replica within `max_lag`, and may fail
/// over), else the healthy standby furthest ahead. `leader` is the member
/// the request names as the current leader (as Patroni's body does).
pub fn switchover_target(
    s: &Situation,
    lease: &Lease,
    leader: &str,
    candidate: Option<&str>,
    nofailover: impl Fn(&str) -> bool,
    max_lag: u64,
) -> Result<String, Refusal> {
    if !is_leader(s, lease) {
        return Err(Refusal::NotHere(format!(
            "{} is not the leader{}: send the switchover to the leader",
            s.me,
            lease
                .holder
                .as_deref()
                .filter(|h| *h != s.me)
                .map(|h| format!(" ({h} is)"))
                .unwrap_or_default()
        )));
    }
    if leader != s.me {
        return Err(Refusal::NotHere(format!(
            "the request names {leader} as the leader, but {} is",
            s.me
        )));
    }
    if s.paused {
        return Err(not_possible(
            "the cluster is paused: `pgwarden resume` first",
        ));
    }
    let healthy =
        |p: &&PeerReport| p.streaming_replica() && p.system_identifier == s.system_identifier;
    let within = |p: &PeerReport| lag_behind(s, p).is_some_and(|lag| lag <= max_lag);
    match candidate {
        Some(name) if name == s.me => Err(not_possible(format!(
            "{name} is the primary already; name a standby"
        ))),
        Some(name) => {
            let Some(p) = s.peer(name) else {
                return Err(not_possible(format!("{name} is not a member of this cluster")));
            };
            if nofailover(name) {
                return Err(not_possible(format!("{name} is tagged nofailover")));
            }
            if !healthy(&p) {
                return Err(not_possible(format!(
                    "{name} is not a running replica that streams{}",
                    p.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
                )));
            }
            match lag_behind(s, p) {
                Some(lag) if lag <= max_lag => Ok(name.to_string()),
                Some(lag) => Err(not_possible(format!(
                    "{name} is {lag} bytes behind (max_lag_on_failover {max_lag})"
                ))),
                None => Err(not_possible(format!("{name}'s position is not known"))),
            }
        }
        None => s
            .peers
            .iter()
            .filter(healthy)
            .filter(|p| !nofailover(&p.name) && within(p))
            .max_by_key(|p| (p.position.map(|q| q.lsn), std::cmp::Reverse(p.name.clone())))
            .map(|p| p.name.clone())
            .ok_or_else(|| {
                not_possible(format!(
                    "no healthy standby to switch over to (a streaming replica within max_lag_on_failover {max_lag}, not nofailover)"
                ))
            }),
    }
}

/// Whether this member, named by an operator, may take over when there is
/// no healthy primary. Without `force` it must not lack data that a member
/// it can reach has.
pub fn failover_check(
    s: &Situation,
    lease: &Lease,
    candidate: &str,
    force: bool,
) -> Result<(), Refusal> {
    if candidate != s.me {
        return Err(Refusal::NotHere(format!(
            "this is {}, not {candidate}: send the failover to the candidate's agent",
            s.me
        )));
    }
    if s.paused {
        return Err(not_possible(
            "the cluster is paused: `pgwarden resume` first",
        ));
    }
    if let Some(p) = s.peers.iter().find(|p| p.fresh && p.running_primary) {
        return Err(not_possible(format!(
            "{} is a healthy primary: that is a switchover (`pgwarden switchover --candidate {candidate}`)",
            p.name
        )));
    }
    if is_leader(s, lease) {
        return Err(not_possible(format!("{candidate} is the primary already")));
    }
    if s.nofailover {
        return Err(not_possible(format!("{candidate} is tagged nofailover")));
    }
    if s.postgres != (Postgres::Running { in_recovery: true }) {
        return Err(not_possible(format!(
            "{candidate}'s PostgreSQL does not run as a standby: nothing to promote"
        )));
    }
    if force {
        return Ok(());
    }
    let mine = s.position;
    let ahead: Vec<String> = s
        .peers
        .iter()
        .filter(|p| p.fresh)
        .filter_map(|p| {
            let theirs = p.position?;
            let behind = match mine {
                Some(m) => (theirs.timeline, theirs.lsn) > (m.timeline, m.lsn),
                None => true,
            };
            behind.then(|| {
                format!(
                    "{} at {} on timeline {}",
                    p.name, theirs.lsn, theirs.timeline
                )
            })
        })
        .collect();
    if ahead.is_empty() {
        Ok(())
    } else {
        Err(not_possible(format!(
            "{candidate} lacks data that {} {} ({}); force it to lose that data",
            ahead.join(", "),
            if ahead.len() == 1 { "has" } else { "have" },
            mine.map(|m| format!("{candidate} is at {}", m.lsn))
                .unwrap_or_else(|| format!("{candidate}'s position is unknown"))
        )))
    }
}

/// Patroni's conditions on a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestartConditions {
    /// Only if a changed setting waits for a restart.
    pub restart_pending: bool,
    /// Only if this member has this role.
    pub role: Option<Role>,
    /// Only if the running server's version is below this (`server_version_num`).
    pub postgres_version: Option<u32>,
}

/// Whether PostgreSQL may be restarted now under `conditions`; returns
/// whether it comes back as a standby.
pub fn restart_check(
    s: &Situation,
    lease: &Lease,
    pending_restart: bool,
    version: Option<u32>,
    conditions: &RestartConditions,
) -> Result<bool, Refusal> {
    let in_recovery = match s.postgres {
        Postgres::Running { in_recovery } => in_recovery,
        _ => {
            return Err(not_possible(format!(
                "{}'s PostgreSQL is not running",
                s.me
            )))
        }
    };
    let role = if in_recovery {
        Role::Replica
    } else {
        Role::Primary
    };
    if conditions.restart_pending && !pending_restart {
        return Err(not_possible(
            "no setting waits for a restart (restart_pending)",
        ));
    }
    if let Some(wanted) = conditions.role {
        if wanted != role {
            return Err(not_possible(format!(
                "{} is a {}, not a {}",
                s.me,
                role_name(role),
                role_name(wanted)
            )));
        }
    }
    if let (Some(below), Some(running)) = (conditions.postgres_version, version) {
        if running >= below {
            return Err(not_possible(format!(
                "PostgreSQL {running} runs, not older than {below}"
            )));
        }
    }
    if !in_recovery && !lease.mine {
        return Err(not_possible(format!(
            "{} runs as primary without the leader lease: it is being fenced, not restarted",
            s.me
        )));
    }
    Ok(in_recovery)
}

/// Whether this member may be reinitialised (its data directory renamed
/// aside and cloned again): only a standby.
pub fn reinit_check(s: &Situation, lease: &Lease) -> Result<(), Refusal> {
    if lease.mine || s.may_be_writable() || !s.standby_signal {
        return Err(not_possible(format!(
            "{} is (or may be) the primary: reinitialize a standby, or switch over first",
            s.me
        )));
    }
    if s.data != crate::pg::files::DataDirState::Initialized {
        return Err(not_possible(format!(
            "{} has no cluster to reinitialize (it is cloning or empty already)",
            s.me
        )));
    }
    let leader = s.peers.iter().any(|p| p.fresh && p.running_primary);
    if !leader {
        return Err(not_possible(
            "no running primary to clone from: the data would be gone with nothing to replace it",
        ));
    }
    Ok(())
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Primary => "primary",
        Role::Replica => "replica",
        Role::Witness => "witness",
        Role::Uninitialized => "member without data",
    }
}

/// Whether a switchover's target has replayed everything the old primary
/// wrote: past the start of its shutdown checkpoint record.
pub fn caught_up(target: &PeerReport, final_lsn: Lsn) -> bool {
    target.position.is_some_and(|p| p.lsn > final_lsn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha::candidate::Candidacy;
    use crate::ha::situation::CrashLoop;
    use crate::pg::files::DataDirState;
    use crate::status_doc::{Position, State};
    use std::time::Duration;

    fn at(lsn: u64) -> Option<Position> {
        Some(Position {
            timeline: 1,
            lsn: Lsn(lsn),
        })
    }

    fn replica(name: &str, lsn: u64) -> PeerReport {
        PeerReport {
            name: name.into(),
            fresh: true,
            role: Some(Role::Replica),
            state: Some(State::Running),
            system_identifier: Some("7311".into()),
            position: at(lsn),
            streaming: true,
            ..PeerReport::default()
        }
    }

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
            promoting: false,
            position: at(1000),
            role_ensured: true,
            timeline_diverged: false,
            rewind_needed: false,
            fenced_in_term: None,
            writable_in_term: Some(3),
            handover: None,
            sender_lag: Vec::new(),
            system_identifier: Some("7311".into()),
            crash_loop: CrashLoop::No,
            bootstrap_allowed: false,
            join_blocker: None,
            clone_source: None,
            clone_retry_in: None,
            candidacy: Candidacy::NotBest("primary".into()),
            ranking: None,
            slot: Some("pg1".into()),
            replicatefrom: None,
            peers: vec![replica("pg2", 1000), replica("pg3", 900)],
        }
    }

    fn held() -> Lease {
        Lease {
            mine: true,
            holder: Some("pg1".into()),
            term: 3,
            remaining: Duration::from_secs(9),
            since: None,
        }
    }

    fn standby() -> Situation {
        Situation {
            me: "pg2".into(),
            standby_signal: true,
            postgres: Postgres::Running { in_recovery: true },
            position: at(1000),
            peers: vec![replica("pg3", 900)],
            ..primary()
        }
    }

    const MB: u64 = 1 << 20;

    #[test]
    fn a_switchover_goes_to_the_named_standby_or_the_one_furthest_ahead() {
        let none = |_: &str| false;
        assert_eq!(
            switchover_target(&primary(), &held(), "pg1", Some("pg3"), none, MB),
            Ok("pg3".into())
        );
        assert_eq!(
            switchover_target(&primary(), &held(), "pg1", None, none, MB),
            Ok("pg2".into())
        );
    }

    #[test]
    fn the_primarys_own_walsender_lag_wins_over_a_standbys_older_report() {
        let none = |_: &str| false;
        let mut s = primary();
        s.position = Some(Position {
            timeline: 1,
            lsn: Lsn(1000 + 16 * MB),
        });
        assert!(switchover_target(&s, &held(), "pg1", Some("pg3"), none, MB).is_err());
        s.sender_lag = vec![("pg3".into(), 4096)];
        assert_eq!(
            switchover_target(&s, &held(), "pg1", Some("pg3"), none, MB),
            Ok("pg3".into())
        );
        s.sender_lag = vec![("pg3".into(), 2 * MB)];
        assert!(switchover_target(&s, &held(), "pg1", Some("pg3"), none, MB).is_err());
    }

    #[test]
    fn a_switchover_is_refused_with_the_reason() {
        let none = |_: &str| false;
        type Case = (
            &'static str,
            Situation,
            Lease,
            &'static str,
            Option<&'static str>,
            u64,
            Refusal,
        );
        let cases: Vec<Case> = vec![
            (
                "not the leader",
                standby(),
                Lease::default(),
                "pg1",
                None,
                MB,
                Refusal::NotHere("pg2 is not the leader: send the switchover to the leader".into()),
            ),
            (
                "the named leader is another",
                primary(),
                held(),
                "pg2",
                None,
                MB,
                Refusal::NotHere("the request names pg2 as the leader, but pg1 is".into()),
            ),
            (
                "paused",
                Situation { paused: true, ..primary() },
                held(),
                "pg1",
                None,
                MB,
                not_possible("the cluster is paused: `pgwarden resume` first"),
            ),
            (
                "a lagging candidate",
                primary(),
                held(),
                "pg1",
                Some("pg3"),
                10,
                not_possible("pg3 is 100 bytes behind (max_lag_on_failover 10)"),
            ),
            (
                "a candidate that does not stream",
                Situation { peers: vec![PeerReport { streaming: false, ..replica("pg2", 1000) }], ..primary() },
                held(),
                "pg1",
                Some("pg2"),
                MB,
                not_possible("pg2 is not a running replica that streams"),
            ),
            (
                "an unknown member",
                primary(),
                held(),
                "pg1",
                Some("pg9"),
                MB,
                not_possible("pg9 is not a member of this cluster"),
            ),
            (
                "no healthy standby",
                Situation { peers: vec![], ..primary() },
                held(),
                "pg1",
                None,
                MB,
                not_possible("no healthy standby to switch over to (a streaming replica within max_lag_on_failover 1048576, not nofailover)"),
            ),
        ];
        for (name, s, lease, leader, candidate, lag, expected) in cases {
            assert_eq!(
                switchover_target(&s, &lease, leader, candidate, none, lag),
                Err(expected),
                "{name}"
            );
        }
        let tagged = |n: &str| n == "pg2";
        assert_eq!(
            switchover_target(&primary(), &held(), "pg1", Some("pg2"), tagged, MB),
            Err(not_possible("pg2 is tagged nofailover"))
        );
        assert_eq!(
            switchover_target(&primary(), &held(), "pg1", None, tagged, MB),
            Ok("pg3".into()),
            "an unnamed switchover skips nofailover members"
        );
    }

    #[test]
    fn a_failover_needs_no_primary_and_no_member_ahead_unless_forced() {
        let lonely = Situation {
            peers: vec![replica("pg3", 900)],
            ..standby()
        };
        assert_eq!(
            failover_check(&lonely, &Lease::default(), "pg2", false),
            Ok(())
        );
        let behind = Situation {
            position: at(800),
            ..lonely.clone()
        };
        let refused = failover_check(&behind, &Lease::default(), "pg2", false).unwrap_err();
        assert!(
            refused.reason().contains("lacks data that pg3 at 0/384"),
            "{refused:?}"
        );
        assert_eq!(
            failover_check(&behind, &Lease::default(), "pg2", true),
            Ok(())
        );
        let with_primary = Situation {
            peers: vec![PeerReport {
                running_primary: true,
                ..replica("pg1", 1000)
            }],
            ..standby()
        };
        assert!(matches!(
            failover_check(&with_primary, &Lease::default(), "pg2", true),
            Err(Refusal::NotPossible(r)) if r.contains("is a healthy primary")
        ));
        assert!(matches!(
            failover_check(&lonely, &Lease::default(), "pg3", false),
            Err(Refusal::NotHere(_))
        ));
    }

    #[test]
    fn restarts_follow_patronis_conditions() {
        let c = |pending: bool, role: Option<Role>, version: Option<u32>| RestartConditions {
            restart_pending: pending,
            role,
            postgres_version: version,
        };
        assert_eq!(
            restart_check(
                &primary(),
                &held(),
                false,
                Some(150018),
                &c(false, None, None)
            ),
            Ok(false)
        );
        assert_eq!(
            restart_check(
                &standby(),
                &Lease::default(),
                false,
                None,
                &c(false, None, None)
            ),
            Ok(true)
        );
        assert!(restart_check(&primary(), &held(), false, None, &c(true, None, None)).is_err());
        assert!(restart_check(&primary(), &held(), true, None, &c(true, None, None)).is_ok());
        assert!(restart_check(
            &primary(),
            &held(),
            false,
            None,
            &c(false, Some(Role::Replica), None)
        )
        .is_err());
        assert!(restart_check(
            &primary(),
            &held(),
            false,
            Some(150018),
            &c(false, None, Some(150000))
        )
        .is_err());
        assert!(restart_check(
            &primary(),
            &held(),
            false,
            Some(150018),
            &c(false, None, Some(160000))
        )
        .is_ok());
        let stopped = Situation {
            postgres: Postgres::NotRunning {
                crash_backoff: false,
            },
            ..primary()
        };
        assert!(restart_check(&stopped, &held(), false, None, &c(false, None, None)).is_err());
    }

    #[test]
    fn only_a_standby_with_a_primary_to_clone_from_is_reinitialized() {
        let with_primary = Situation {
            peers: vec![PeerReport {
                running_primary: true,
                ..replica("pg1", 1000)
            }],
            ..standby()
        };
        assert_eq!(reinit_check(&with_primary, &Lease::default()), Ok(()));
        assert!(reinit_check(&primary(), &held()).is_err());
        assert!(
            reinit_check(&standby(), &Lease::default()).is_err(),
            "no primary to clone from"
        );
    }

    #[test]
    fn a_target_has_caught_up_once_past_the_shutdown_checkpoint() {
        assert!(!caught_up(&replica("pg2", 100), Lsn(100)));
        assert!(caught_up(&replica("pg2", 101), Lsn(100)));
    }
}
