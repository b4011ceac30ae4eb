//! The candidate rule: one rule for every would-be leader — a standby, and
//! just as much a primary's data directory coming back. A member asks for
//! the leader lease only when it is the best member it can see, having
//! compared positions with enough data members to be sure. Pure: positions
//! in, a verdict with its reason out.
//!
//! A member is *ahead* of another when it is on a newer timeline, or on the
//! same timeline at a higher LSN (ties: the higher `failover_priority`,
//! then the first name: only the order among equals changes, never whether
//! a member behind may lead). Enough members:
//! `N − k` data members, itself included, where `N` is the number of data
//! members and `k = max(1, N − M)` with `M` the majority of the lease's
//! voters ([`members_to_compare`]). Every set of members that can elect a
//! leader then shares a member with every set of `k` standbys plus the
//! primary — the overlap that quorum commit builds on — and for three or
//! more data members it is simply a majority of them. With two data
//! members and a witness, `N − k = 1`: the survivor may promote alone.

use crate::config::SyncMode;
use crate::status_doc::Position;

/// One member as far as the choice goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contender {
    /// Member name.
    pub name: String,
    /// Its position, when known.
    pub position: Option<Position>,
    /// Its cluster's system identifier, when known.
    pub system_identifier: Option<String>,
    /// It runs PostgreSQL read-write right now.
    pub running_primary: bool,
    /// Tagged `nofailover` (or `failover_priority = 0`): never promoted,
    /// and not a rival either.
    pub nofailover: bool,
    /// `failover_priority`: among members at the same position, the
    /// higher goes first (then the first name).
    pub priority: u32,
    /// The last position it saw the primary at.
    pub last_leader: Option<Position>,
    /// It answered and has no data at all: behind everyone, it counts as
    /// compared with (a new cluster's first primary compares with members
    /// that are still empty).
    pub empty: bool,
    /// Its position was observed recently enough (within the fence margin)
    /// to count as compared with: an older one may predate the last
    /// commit acknowledged before the old primary stopped. An older one
    /// that is ahead still rules this member out.
    pub recent: bool,
}

/// Whether this member should ask for the lease, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidacy {
    /// The best member it can see.
    Best(String),
    /// Someone else is better, or something rules it out.
    NotBest(String),
}

impl Candidacy {
    /// True for [`Candidacy::Best`].
    pub fn is_best(&self) -> bool {
        matches!(self, Candidacy::Best(_))
    }

    /// The reason, either way.
    pub fn reason(&self) -> &str {
        match self {
            Candidacy::Best(r) | Candidacy::NotBest(r) => r,
        }
    }
}

/// How many data members (itself included) a candidate must have compared
/// positions with: `N − k`, `k = max(1, N − M)`, `M = voters / 2 + 1`
/// ([`SyncMode::acks`]; `k = 1` in mode `"on"`).
pub fn members_to_compare(mode: SyncMode, data_members: usize, voters: usize) -> usize {
    data_members
        .saturating_sub(mode.acks(data_members, voters))
        .max(1)
}

/// Whether `a` is ahead of `b` (newer timeline, or same timeline and
/// higher LSN).
pub fn ahead(a: Position, b: Position) -> bool {
    (a.timeline, a.lsn) > (b.timeline, b.lsn)
}

/// The rule. `me` and the data `peers` that answered this loop; `needed`
/// from [`members_to_compare`]; `max_lag` is `max_lag_on_failover` in
/// bytes, measured against the newest last-primary position that any of
/// them knows.
pub fn judge(me: &Contender, peers: &[Contender], needed: usize, max_lag: u64) -> Candidacy {
    judge_in(SyncMode::Off, me, peers, needed, max_lag)
}

/// [`judge`] in replication mode `mode`: the rule is the same; in the
/// synchronous modes a member that reached too few says so in the words
/// of quorum commit, since that is what an operator will look up.
pub fn judge_in(
    mode: SyncMode,
    me: &Contender,
    peers: &[Contender],
    needed: usize,
    max_lag: u64,
) -> Candidacy {
    if me.nofailover {
        return Candidacy::NotBest(format!("{} is tagged nofailover", me.name));
    }
    let Some(mine) = me.position else {
        return Candidacy::NotBest(format!(
            "{}'s WAL position is unknown (PostgreSQL does not answer)",
            me.name
        ));
    };
    if let Some(p) = peers.iter().find(|p| p.running_primary) {
        return Candidacy::NotBest(format!("{} reports a running primary", p.name));
    }
    if let Some(p) = peers.iter().find(|p| {
        p.system_identifier.is_some()
            && me.system_identifier.is_some()
            && p.system_identifier != me.system_identifier
    }) {
        return Candidacy::NotBest(format!(
            "{} belongs to another cluster (system identifier {})",
            p.name,
            p.system_identifier.as_deref().unwrap_or("?")
        ));
    }
    let known: Vec<(&str, Position)> = peers
        .iter()
        .filter_map(|p| Some((p.name.as_str(), p.position?)))
        .collect();
    let reached = 1 + peers
        .iter()
        .filter(|p| p.recent && (p.position.is_some() || p.empty))
        .count();
    if reached < needed {
        return Candidacy::NotBest(match mode {
            SyncMode::Off => format!(
                "waiting: needs the WAL positions of {needed} data members, reached {reached}"
            ),
            SyncMode::Quorum => format!(
                "waiting: quorum mode needs LSNs from {needed} data members, reached {reached}"
            ),
            SyncMode::On => format!(
                "waiting: synchronous mode \"on\" needs LSNs from {needed} data members, reached {reached}"
            ),
        });
    }
    for (name, theirs) in &known {
        let nofailover = peers.iter().any(|p| p.name == *name && p.nofailover);
        let rival = if nofailover {
            // Never promoted, so never a rival for the lease; but one that
            // is further ahead than max_lag_on_failover holds data that
            // promoting here would lose (and it may never lead to fix it).
            theirs.timeline > mine.timeline
                || (theirs.timeline == mine.timeline && theirs.lsn.bytes_after(mine.lsn) > max_lag)
        } else {
            let priority = peers
                .iter()
                .find(|p| p.name == *name)
                .map_or(crate::config::DEFAULT_FAILOVER_PRIORITY, |p| p.priority);
            ahead(*theirs, mine)
                || (*theirs == mine
                    && (priority, std::cmp::Reverse(*name))
                        > (me.priority, std::cmp::Reverse(me.name.as_str())))
        };
        if rival {
            let why = if ahead(*theirs, mine) {
                "is ahead"
            } else {
                "is equal and goes first (failover_priority, then name)"
            };
            return Candidacy::NotBest(format!(
                "{name} {why} ({} on timeline {} vs {} on timeline {})",
                theirs.lsn, theirs.timeline, mine.lsn, mine.timeline
            ));
        }
    }
    let last_leader = std::iter::once(me)
        .chain(peers)
        .filter_map(|c| c.last_leader)
        .max_by_key(|p| (p.timeline, p.lsn));
    if let Some(leader) = last_leader.filter(|l| l.timeline == mine.timeline) {
        let lag = leader.lsn.bytes_after(mine.lsn);
        if lag > max_lag {
            return Candidacy::NotBest(format!(
                "{} is {lag} bytes behind the primary's last known position {} (max_lag_on_failover {max_lag})",
                me.name, leader.lsn
            ));
        }
    }
    let compared: Vec<String> = std::iter::once(format!("{}={}", me.name, mine.lsn))
        .chain(known.iter().map(|(n, p)| format!("{n}={}", p.lsn)))
        .collect();
    Candidacy::Best(format!(
        "highest WAL position on timeline {} among {}",
        mine.timeline,
        compared.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::Lsn;

    fn at(timeline: u32, lsn: u64) -> Option<Position> {
        Some(Position {
            timeline,
            lsn: Lsn(lsn),
        })
    }

    fn m(name: &str, lsn: u64) -> Contender {
        Contender {
            name: name.into(),
            position: at(1, lsn),
            system_identifier: Some("7311".into()),
            running_primary: false,
            nofailover: false,
            priority: crate::config::DEFAULT_FAILOVER_PRIORITY,
            last_leader: None,
            empty: false,
            recent: true,
        }
    }

    #[test]
    fn how_many_members_a_candidate_compares_with() {
        // (data members, voters) -> members to compare with, itself included
        for (n, voters, needed) in [
            (1, 1, 1),
            (2, 3, 1),
            (3, 3, 2),
            (4, 4, 3),
            (5, 5, 3),
            (1, 3, 1),
        ] {
            for mode in [SyncMode::Off, SyncMode::Quorum] {
                assert_eq!(
                    members_to_compare(mode, n, voters),
                    needed,
                    "N={n}, voters={voters}, {mode:?}"
                );
            }
        }
        // "on": one synchronous standby, so every other member but one.
        for (n, voters, needed) in [(2, 3, 1), (3, 3, 2), (4, 4, 3), (5, 5, 4)] {
            assert_eq!(members_to_compare(SyncMode::On, n, voters), needed);
        }
    }

    #[test]
    fn every_electing_set_overlaps_every_acknowledging_set() {
        // The safety argument, checked by brute force: the primary is gone;
        // any k of the other N − 1 data members acknowledged the last
        // commit; any N − k of them (the candidate included) elect. They
        // must share a member, or the winner may lack that commit.
        for n in 2..=7usize {
            for witnesses in 0..=1 {
                let voters = n + witnesses;
                for mode in [SyncMode::On, SyncMode::Quorum] {
                    let k = mode.acks(n, voters);
                    let compared = members_to_compare(mode, n, voters);
                    let survivors = n - 1;
                    assert!(
                        k + compared > survivors,
                        "N={n}, voters={voters}, {mode:?}: k={k}, compared={compared}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_quorum_candidate_says_how_many_positions_it_needs() {
        let v = judge_in(
            SyncMode::Quorum,
            &m("pg2", 100),
            &[m("pg3", 50)],
            3,
            1 << 20,
        );
        assert_eq!(
            v.reason(),
            "waiting: quorum mode needs LSNs from 3 data members, reached 2"
        );
        assert!(judge_in(
            SyncMode::Quorum,
            &m("pg2", 100),
            &[m("pg3", 50)],
            2,
            1 << 20
        )
        .is_best());
    }

    #[test]
    fn the_member_with_the_highest_position_is_best() {
        let v = judge(&m("pg2", 200), &[m("pg3", 100)], 2, 1 << 20);
        assert!(v.is_best(), "{v:?}");
        assert!(
            v.reason().contains("pg2=0/C8") && v.reason().contains("pg3=0/64"),
            "{v:?}"
        );
    }

    #[test]
    fn an_old_position_rules_out_when_ahead_but_never_counts_as_compared() {
        let old = |lsn| Contender {
            recent: false,
            ..m("pg3", lsn)
        };
        let v = judge(&m("pg2", 200), &[old(100)], 2, 1 << 20);
        assert_eq!(
            v.reason(),
            "waiting: needs the WAL positions of 2 data members, reached 1"
        );
        assert!(!judge(&m("pg2", 200), &[old(300)], 1, 1 << 20).is_best());
        assert!(judge(&m("pg2", 200), &[old(100)], 1, 1 << 20).is_best());
    }

    #[test]
    fn a_member_behind_another_withdraws() {
        assert!(!judge(&m("pg2", 100), &[m("pg3", 200)], 2, 1 << 20).is_best());
    }

    #[test]
    fn a_newer_timeline_is_ahead_whatever_the_lsn() {
        let newer = Contender {
            position: at(2, 50),
            ..m("pg3", 0)
        };
        let v = judge(&m("pg1", 5_000), &[newer], 2, u64::MAX);
        assert!(!v.is_best() && v.reason().contains("pg3"), "{v:?}");
    }

    #[test]
    fn ties_go_to_the_first_name() {
        assert!(judge(&m("pg2", 100), &[m("pg3", 100)], 2, 1 << 20).is_best());
        assert!(!judge(&m("pg3", 100), &[m("pg2", 100)], 2, 1 << 20).is_best());
    }

    #[test]
    fn a_live_primary_rules_everyone_out() {
        let primary = Contender {
            running_primary: true,
            ..m("pg1", 50)
        };
        assert!(!judge(&m("pg2", 100), &[primary], 2, 1 << 20).is_best());
    }

    #[test]
    fn too_few_members_compared_is_not_enough() {
        let v = judge(&m("pg2", 100), &[], 2, 1 << 20);
        assert_eq!(
            v.reason(),
            "waiting: needs the WAL positions of 2 data members, reached 1"
        );
        let unknown = Contender {
            position: None,
            ..m("pg3", 0)
        };
        assert!(!judge(&m("pg2", 100), &[unknown], 2, 1 << 20).is_best());
        assert!(
            judge(&m("pg2", 100), &[], 1, 1 << 20).is_best(),
            "two data members and a witness"
        );
        let empty = Contender {
            position: None,
            empty: true,
            ..m("pg3", 0)
        };
        assert!(
            judge(&m("pg2", 100), &[empty], 2, 1 << 20).is_best(),
            "a member without data is compared with: it has nothing"
        );
    }

    #[test]
    fn the_lag_rule_uses_the_newest_primary_position_any_member_knows() {
        let me = m("pg2", 100);
        let knows = Contender {
            last_leader: at(1, 100 + (2 << 20)),
            ..m("pg3", 50)
        };
        let v = judge(&me, &[knows], 2, 1 << 20);
        assert!(v.reason().contains("max_lag_on_failover"), "{v:?}");
        assert!(
            judge(&me, &[m("pg3", 50)], 2, 1 << 20).is_best(),
            "nobody knows better"
        );
        let older_timeline = Contender {
            last_leader: at(0, u64::MAX),
            ..m("pg3", 50)
        };
        assert!(judge(&me, &[older_timeline], 2, 1 << 20).is_best());
    }

    #[test]
    fn nofailover_members_never_try_and_block_only_when_further_ahead_than_max_lag() {
        let tagged = Contender {
            nofailover: true,
            priority: crate::config::DEFAULT_FAILOVER_PRIORITY,
            ..m("pg2", 300)
        };
        assert!(!judge(&tagged, &[m("pg3", 100)], 2, 1 << 20).is_best());
        assert!(judge(&m("pg3", 100), std::slice::from_ref(&tagged), 2, 1 << 20).is_best());
        assert!(!judge(&m("pg3", 100), std::slice::from_ref(&tagged), 2, 100).is_best());
        let newer = Contender {
            position: at(2, 0),
            ..tagged
        };
        assert!(!judge(&m("pg3", 100), &[newer], 2, 1 << 20).is_best());
    }

    #[test]
    fn a_member_of_another_cluster_rules_out_the_choice() {
        let other = Contender {
            system_identifier: Some("9999".into()),
            ..m("pg3", 10)
        };
        assert!(!judge(&m("pg2", 100), &[other], 2, 1 << 20).is_best());
    }

    #[test]
    fn an_unknown_own_position_is_never_best() {
        let me = Contender {
            position: None,
            ..m("pg2", 0)
        };
        assert!(!judge(&me, &[], 1, 1 << 20).is_best());
    }

    #[test]
    fn failover_priority_orders_equals_and_never_a_member_behind() {
        // Equal positions: the higher priority goes first, whatever the names.
        let me = m("pg1", 100);
        let preferred = Contender {
            priority: 2,
            ..m("pg2", 100)
        };
        let verdict = judge(&me, std::slice::from_ref(&preferred), 2, 1 << 20);
        assert!(!verdict.is_best(), "{verdict:?}");
        assert!(
            verdict.reason().contains("failover_priority"),
            "{verdict:?}"
        );
        let me_preferred = Contender {
            priority: 2,
            ..m("pg2", 100)
        };
        assert!(judge(&me_preferred, &[m("pg1", 100)], 2, 1 << 20).is_best());
        // Equal priorities: the first name, as before.
        assert!(judge(&me, &[m("pg2", 100)], 2, 1 << 20).is_best());
        // A higher priority never makes a member behind the best.
        let behind = Contender {
            priority: 9,
            ..m("pg2", 99)
        };
        assert!(!judge(&behind, &[m("pg1", 100)], 2, 1 << 20).is_best());
        assert!(judge(&m("pg1", 100), &[behind], 2, 1 << 20).is_best());
    }
}
