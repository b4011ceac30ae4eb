//! Which physical replication slots this node should create, drop,
//! recreate or advance now: a pure function of the slots PostgreSQL
//! reports, the other members as this loop saw them, and what the keeper
//! remembers between loops. The executor carries the steps out
//! ([`super::executor::LocalPostgres::keep_slots`]).
//!
//! The rules (docs/operations.md, "Replication slots"):
//!
//! - every data member keeps one physical slot per *other* data member,
//!   named after it: on the primary its standbys stream from them; on a
//!   standby they wait for the day it is promoted, so that the members find
//!   their slots there at once, at a position no later than they need;
//! - on a standby each slot is advanced to the member's reported replay
//!   position, but never past this standby's own replay position and never
//!   backwards (PostgreSQL refuses both); a slot that reserves nothing, or
//!   starts ahead of this standby's replay (kept from before a rewind), is
//!   made again;
//! - a slot whose member is away for `replication.member_slot_ttl` is
//!   dropped: it would otherwise keep WAL without bound. Away means, on a
//!   primary, that the slot is inactive (no walsender uses it); on a
//!   standby, where nobody streams, that the member's agent does not answer.
//!   The clock is this agent's memory: it starts again when the agent
//!   restarts. A slot so dropped is not recreated until its member is back
//!   (its agent answers, or a walsender here streams to it);
//! - a slot of a former member (no longer in `cluster.members`) is dropped
//!   after the same TTL; a slot the agent never made (a backup tool's) is
//!   never touched;
//! - a slot PostgreSQL reports `lost` (it invalidated it under
//!   `max_slot_wal_keep_size`, which the agent never overrides) is dropped
//!   and recreated: its member must re-clone, and streams from the new one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::pg::Lsn;
use crate::status_doc::ReplicationSlot;

/// What this node's PostgreSQL is, as far as its slots are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRole {
    /// A primary: its standbys stream from the slots; PostgreSQL moves them.
    Primary,
    /// A standby: the slots wait for a promotion; the agent moves them.
    Standby {
        /// `pg_last_wal_replay_lsn()`: no slot is advanced past it.
        replayed: Option<Lsn>,
    },
}

/// Another data member, as this loop saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSeen {
    /// Its name, which is its slot's name.
    pub name: String,
    /// Its agent answered `/status` this loop (after its first loop).
    pub answers: bool,
    /// How far it has replayed, as it reported this loop (a primary: its
    /// written position). It needs no WAL before this from anyone.
    pub replayed: Option<Lsn>,
    /// A walsender of this node streams to it (by `application_name`).
    pub streams_here: bool,
}

/// Everything one plan depends on.
#[derive(Debug, Clone)]
pub struct SlotFacts<'a> {
    /// This node's role.
    pub role: SlotRole,
    /// The other data members: one slot each.
    pub members: &'a [MemberSeen],
    /// Every member name in `cluster.members` (this one and witnesses
    /// too): slots by those names are the agent's to manage.
    pub configured: &'a [String],
    /// The physical slots PostgreSQL reports.
    pub slots: &'a [ReplicationSlot],
    /// `replication.member_slot_ttl`.
    pub ttl: Duration,
    /// Now, on the loop's clock.
    pub now: Instant,
}

/// One change to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotStep {
    /// Create the slot, reserving WAL from now on.
    Create {
        /// The slot (member) name.
        slot: String,
        /// Why, for the log.
        why: String,
    },
    /// Drop the slot (unless a walsender took it meanwhile).
    Drop {
        /// The slot name.
        slot: String,
        /// Why, for the log.
        why: String,
    },
    /// Drop and create again, reserving WAL from now on.
    Recreate {
        /// The slot name.
        slot: String,
        /// Why, for the log.
        why: String,
    },
    /// `pg_replication_slot_advance` (a standby's slot).
    Advance {
        /// The slot name.
        slot: String,
        /// Where it is.
        from: Lsn,
        /// Where it goes (later than `from`).
        to: Lsn,
    },
}

/// What the agent remembers about slots between loops (in memory only,
/// except [`SlotKeeper::managed`], which the executor keeps in
/// `pgwarden.state`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotKeeper {
    /// Since when each slot's member has been away, by slot name.
    away_since: BTreeMap<String, Instant>,
    /// Slots dropped because their member was away: not recreated until it
    /// is back.
    withheld: BTreeSet<String>,
    /// Slot names the agent made for members: a former member's slot is
    /// recognised by it after the member left `cluster.members`.
    managed: BTreeSet<String>,
}

impl SlotKeeper {
    /// A keeper that knows the slot names it made before (`pgwarden.state`).
    pub fn new(managed: impl IntoIterator<Item = String>) -> SlotKeeper {
        SlotKeeper {
            managed: managed.into_iter().collect(),
            ..SlotKeeper::default()
        }
    }

    /// The slot names the agent made, to be remembered across restarts.
    pub fn managed(&self) -> &BTreeSet<String> {
        &self.managed
    }

    /// Whether `slot` was dropped for absence and waits for its member.
    pub fn is_withheld(&self, slot: &str) -> bool {
        self.withheld.contains(slot)
    }

    /// The steps to take now; remembers what they mean for the next loop.
    /// A step that fails is simply planned again next loop: every rule
    /// looks at the slots PostgreSQL reports, not at what was asked before.
    pub fn plan(&mut self, f: &SlotFacts<'_>) -> Vec<SlotStep> {
        let mut steps = Vec::new();
        self.managed
            .extend(f.members.iter().map(|m| m.name.clone()));
        let member = |name: &str| f.members.iter().find(|m| m.name == name);
        for slot in f.slots {
            let own = self.managed.contains(&slot.name) || f.configured.contains(&slot.name);
            if !own {
                continue;
            }
            let wanted = member(&slot.name);
            let present = slot.active
                || match f.role {
                    SlotRole::Primary => false,
                    SlotRole::Standby { .. } => wanted.is_some_and(|m| m.answers),
                };
            let since = if present {
                self.away_since.remove(&slot.name);
                f.now
            } else {
                *self.away_since.entry(slot.name.clone()).or_insert(f.now)
            };
            let away = f.now.saturating_duration_since(since);
            if !present && away >= f.ttl {
                if let Some(m) = wanted.filter(|m| m.answers || m.streams_here) {
                    // Its agent is there, its PostgreSQL does not stream
                    // (it cannot, or it is cloning): the old slot goes, a
                    // new one waits for it, with a fresh clock.
                    self.away_since.insert(slot.name.clone(), f.now);
                    steps.push(SlotStep::Recreate {
                        slot: slot.name.clone(),
                        why: format!(
                            "nothing streamed from it for {} (replication.member_slot_ttl = {}) although {}'s agent answers: the old position is given up; the new slot keeps WAL from now on (if {} needs older WAL, it re-clones)",
                            human(away),
                            human(f.ttl),
                            m.name,
                            m.name
                        ),
                    });
                    continue;
                }
                let why = match wanted {
                    Some(_) => {
                        self.withheld.insert(slot.name.clone());
                        format!(
                            "{} has been away for {} (replication.member_slot_ttl = {}): the slot no longer keeps WAL for it; it is created again when {} is back, which may then have to re-clone",
                            slot.name,
                            human(away),
                            human(f.ttl),
                            slot.name
                        )
                    }
                    None => format!(
                        "{} is not a data member of this cluster (any more) and the slot was unused for {} (replication.member_slot_ttl = {})",
                        slot.name,
                        human(away),
                        human(f.ttl)
                    ),
                };
                steps.push(SlotStep::Drop {
                    slot: slot.name.clone(),
                    why,
                });
                continue;
            }
            let Some(m) = wanted else {
                continue;
            };
            if slot.active {
                continue;
            }
            if slot.wal_status.as_deref() == Some("lost") {
                steps.push(SlotStep::Recreate {
                    slot: slot.name.clone(),
                    why: format!(
                        "PostgreSQL reports it lost: it removed WAL the slot reserved (max_slot_wal_keep_size); {} can no longer stream from where it stopped and must re-clone (its agent does so by itself once it sees the WAL is gone); the new slot keeps WAL from now on",
                        m.name
                    ),
                });
                continue;
            }
            let SlotRole::Standby { replayed: mine } = f.role else {
                continue;
            };
            let Some(from) = slot.restart_lsn else {
                // Made without reserving WAL (by an older agent, as a
                // primary): it could not be advanced, and would keep nothing
                // if this member were promoted.
                steps.push(SlotStep::Recreate {
                    slot: slot.name.clone(),
                    why: "it reserves no WAL; made again reserving WAL from now on, so that it keeps what the member needs if this standby is promoted".into(),
                });
                continue;
            };
            if mine.is_some_and(|mine| from > mine) {
                // Only a slot kept from before a rewind (made on the old
                // timeline) is ahead of this standby's replay: promoted
                // now, it would keep less than its member needs.
                steps.push(SlotStep::Recreate {
                    slot: slot.name.clone(),
                    why: format!(
                        "it starts at {from}, ahead of this standby's replay position (a slot from before a rewind); made again from this standby's last restart point, so that it keeps what {} needs if this standby is promoted",
                        m.name
                    ),
                });
                continue;
            }
            let (Some(theirs), Some(mine)) = (m.replayed.filter(|_| m.answers), mine) else {
                continue;
            };
            let to = theirs.min(mine);
            if to > from {
                steps.push(SlotStep::Advance {
                    slot: slot.name.clone(),
                    from,
                    to,
                });
            }
        }
        for m in f.members {
            if f.slots.iter().any(|s| s.name == m.name) {
                continue;
            }
            let why = if self.withheld.contains(&m.name) {
                if !(m.answers || m.streams_here) {
                    continue;
                }
                format!(
                    "{} is back after its slot was dropped; the new slot keeps WAL from now on (if it needs older WAL, it re-clones)",
                    m.name
                )
            } else {
                match f.role {
                    SlotRole::Primary => format!("one physical slot per data member ({} has none)", m.name),
                    SlotRole::Standby { .. } => format!(
                        "kept on this standby too, so that {} finds its slot here at once if this member is promoted",
                        m.name
                    ),
                }
            };
            self.withheld.remove(&m.name);
            steps.push(SlotStep::Create {
                slot: m.name.clone(),
                why,
            });
        }
        // Forget what no longer exists: clocks of slots that are gone,
        // withheld slots of members that left, former members' names once
        // their slot is gone.
        self.away_since
            .retain(|name, _| f.slots.iter().any(|s| &s.name == name));
        self.withheld
            .retain(|name| f.members.iter().any(|m| &m.name == name));
        self.managed.retain(|name| {
            f.members.iter().any(|m| &m.name == name) || f.slots.iter().any(|s| &s.name == name)
        });
        steps
    }
}

/// A duration as an operator reads it (`30m`, `5s`), to the second.
fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn slot(
        name: &str,
        active: bool,
        restart: Option<u64>,
        wal_status: Option<&str>,
    ) -> ReplicationSlot {
        ReplicationSlot {
            name: name.into(),
            active,
            restart_lsn: restart.map(Lsn),
            retained_bytes: None,
            wal_status: wal_status.map(str::to_string),
        }
    }

    fn inactive(name: &str, restart: u64) -> ReplicationSlot {
        slot(name, false, Some(restart), Some("reserved"))
    }

    fn active(name: &str, restart: u64) -> ReplicationSlot {
        slot(name, true, Some(restart), Some("reserved"))
    }

    fn member(name: &str, answers: bool, replayed: Option<u64>) -> MemberSeen {
        MemberSeen {
            name: name.into(),
            answers,
            replayed: replayed.map(Lsn),
            streams_here: false,
        }
    }

    fn configured() -> Vec<String> {
        ["pg1", "pg2", "pg3", "w1"].map(String::from).to_vec()
    }

    /// The step kinds and slots, in plan order.
    fn brief(steps: &[SlotStep]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                SlotStep::Create { slot, .. } => format!("create {slot}"),
                SlotStep::Drop { slot, .. } => format!("drop {slot}"),
                SlotStep::Recreate { slot, .. } => format!("recreate {slot}"),
                SlotStep::Advance { slot, from, to } => format!("advance {slot} {from}->{to}"),
            })
            .collect()
    }

    struct Row {
        what: &'static str,
        role: SlotRole,
        members: Vec<MemberSeen>,
        slots: Vec<ReplicationSlot>,
        /// How long the keeper has already seen every slot away.
        away_for: Duration,
        expect: Vec<&'static str>,
    }

    const PRIMARY: SlotRole = SlotRole::Primary;

    fn standby(replayed: u64) -> SlotRole {
        SlotRole::Standby {
            replayed: Some(Lsn(replayed)),
        }
    }

    fn table() -> Vec<Row> {
        let zero = Duration::ZERO;
        let past_ttl = TTL + Duration::from_secs(1);
        vec![
            Row {
                what: "a primary with both standbys streaming changes nothing",
                role: PRIMARY,
                members: vec![member("pg2", true, Some(0x500)), member("pg3", true, Some(0x500))],
                slots: vec![active("pg2", 0x500), active("pg3", 0x500)],
                away_for: past_ttl,
                expect: vec![],
            },
            Row {
                what: "a primary creates the slot of a member that has none",
                role: PRIMARY,
                members: vec![member("pg2", true, None), member("pg3", false, None)],
                slots: vec![active("pg2", 0x500)],
                away_for: zero,
                expect: vec!["create pg3"],
            },
            Row {
                what: "a primary keeps an inactive slot within the TTL",
                role: PRIMARY,
                members: vec![member("pg2", false, None)],
                slots: vec![inactive("pg2", 0x100)],
                away_for: TTL - Duration::from_secs(1),
                expect: vec![],
            },
            Row {
                what: "a primary drops a slot inactive for the TTL",
                role: PRIMARY,
                members: vec![member("pg2", false, None)],
                slots: vec![inactive("pg2", 0x100)],
                away_for: TTL,
                expect: vec!["drop pg2"],
            },
            Row {
                what: "a primary makes a slot inactive for the TTL anew when its member's agent answers",
                role: PRIMARY,
                members: vec![member("pg2", true, Some(0x100))],
                slots: vec![inactive("pg2", 0x100)],
                away_for: TTL,
                expect: vec!["recreate pg2"],
            },
            Row {
                what: "a primary never advances slots (PostgreSQL does, as standbys confirm)",
                role: PRIMARY,
                members: vec![member("pg2", true, Some(0x900))],
                slots: vec![inactive("pg2", 0x100)],
                away_for: zero,
                expect: vec![],
            },
            Row {
                what: "a lost slot is recreated",
                role: PRIMARY,
                members: vec![member("pg2", false, None)],
                slots: vec![slot("pg2", false, None, Some("lost"))],
                away_for: zero,
                expect: vec!["recreate pg2"],
            },
            Row {
                what: "a lost slot still in use is left until its walsender is gone",
                role: PRIMARY,
                members: vec![member("pg2", true, None)],
                slots: vec![slot("pg2", true, None, Some("lost"))],
                away_for: zero,
                expect: vec![],
            },
            Row {
                what: "a lost slot of a member away past the TTL is dropped, not recreated",
                role: PRIMARY,
                members: vec![member("pg2", false, None)],
                slots: vec![slot("pg2", false, None, Some("lost"))],
                away_for: past_ttl,
                expect: vec!["drop pg2"],
            },
            Row {
                what: "a former member's slot is dropped after the TTL, not before",
                role: PRIMARY,
                members: vec![],
                slots: vec![inactive("old", 0x100)],
                away_for: TTL,
                expect: vec!["drop old"],
            },
            Row {
                what: "a slot the agent never made is never touched",
                role: PRIMARY,
                members: vec![],
                slots: vec![inactive("barman", 0x100), slot("backup", false, None, Some("lost"))],
                away_for: past_ttl,
                expect: vec![],
            },
            Row {
                what: "a slot named after this member or a witness is the agent's, and useless: dropped after the TTL",
                role: standby(0x900),
                members: vec![],
                slots: vec![inactive("pg1", 0x100), inactive("w1", 0x100)],
                away_for: past_ttl,
                expect: vec!["drop pg1", "drop w1"],
            },
            Row {
                what: "a standby creates slots for every other data member",
                role: standby(0x900),
                members: vec![member("pg1", true, Some(0x1000)), member("pg3", true, Some(0x800))],
                slots: vec![],
                away_for: zero,
                expect: vec!["create pg1", "create pg3"],
            },
            Row {
                what: "a standby advances each slot to the member's replay position, never past its own",
                role: standby(0x900),
                members: vec![member("pg1", true, Some(0x1000)), member("pg3", true, Some(0x800))],
                slots: vec![inactive("pg1", 0x100), inactive("pg3", 0x100)],
                away_for: zero,
                expect: vec!["advance pg1 0/100->0/900", "advance pg3 0/100->0/800"],
            },
            Row {
                what: "a standby never moves a slot backwards",
                role: standby(0x900),
                members: vec![member("pg1", true, Some(0x400)), member("pg3", true, Some(0x1000))],
                slots: vec![inactive("pg1", 0x500), inactive("pg3", 0x900)],
                away_for: zero,
                expect: vec![],
            },
            Row {
                what: "a standby makes again a slot ahead of its own replay (kept from before a rewind)",
                role: standby(0x900),
                members: vec![member("pg3", true, Some(0x1000))],
                slots: vec![inactive("pg3", 0x1000)],
                away_for: zero,
                expect: vec!["recreate pg3"],
            },
            Row {
                what: "a standby does not move the slot of a member that does not answer",
                role: standby(0x900),
                members: vec![member("pg1", false, Some(0x800))],
                slots: vec![inactive("pg1", 0x100)],
                away_for: zero,
                expect: vec![],
            },
            Row {
                what: "a standby that does not know its replay position moves nothing",
                role: SlotRole::Standby { replayed: None },
                members: vec![member("pg1", true, Some(0x800))],
                slots: vec![inactive("pg1", 0x100)],
                away_for: zero,
                expect: vec![],
            },
            Row {
                what: "on a standby a member whose agent answers is present: its slot stays past the TTL",
                role: standby(0x900),
                members: vec![member("pg3", true, Some(0x900))],
                slots: vec![inactive("pg3", 0x900)],
                away_for: past_ttl,
                expect: vec![],
            },
            Row {
                what: "on a standby a member whose agent is silent for the TTL loses its slot",
                role: standby(0x900),
                members: vec![member("pg3", false, None)],
                slots: vec![inactive("pg3", 0x300)],
                away_for: TTL,
                expect: vec!["drop pg3"],
            },
            Row {
                what: "a standby's slot that reserves no WAL is made again, reserving",
                role: standby(0x900),
                members: vec![member("pg3", true, Some(0x900))],
                slots: vec![slot("pg3", false, None, None)],
                away_for: zero,
                expect: vec!["recreate pg3"],
            },
            Row {
                what: "a standby's lost slot is recreated",
                role: standby(0x900),
                members: vec![member("pg3", true, Some(0x900))],
                slots: vec![slot("pg3", false, None, Some("lost"))],
                away_for: zero,
                expect: vec!["recreate pg3"],
            },
        ]
    }

    #[test]
    fn every_row_plans_its_steps() {
        let start = Instant::now();
        let now = start + Duration::from_secs(3600);
        for row in table() {
            let mut keeper = SlotKeeper::new(["old".to_string()]);
            // The keeper saw the same slots `away_for` ago.
            let first = SlotFacts {
                role: row.role,
                members: &row.members,
                configured: &configured(),
                slots: &row.slots,
                ttl: TTL,
                now: now - row.away_for,
            };
            let _ = keeper.plan(&first);
            let facts = SlotFacts { now, ..first };
            let steps = keeper.plan(&facts);
            assert_eq!(brief(&steps), row.expect, "{}", row.what);
        }
    }

    fn facts<'a>(
        members: &'a [MemberSeen],
        slots: &'a [ReplicationSlot],
        configured: &'a [String],
        now: Instant,
    ) -> SlotFacts<'a> {
        SlotFacts {
            role: PRIMARY,
            members,
            configured,
            slots,
            ttl: TTL,
            now,
        }
    }

    #[test]
    fn given_a_slot_dropped_for_absence_when_its_member_is_still_away_then_it_is_not_recreated_and_when_it_is_back_it_is(
    ) {
        let names = configured();
        let t0 = Instant::now();
        let mut keeper = SlotKeeper::default();
        let away = [member("pg3", false, None)];
        let slots = [inactive("pg3", 0x100)];
        assert!(keeper.plan(&facts(&away, &slots, &names, t0)).is_empty());
        let later = t0 + TTL;
        assert_eq!(
            brief(&keeper.plan(&facts(&away, &slots, &names, later))),
            ["drop pg3"]
        );
        assert!(keeper.is_withheld("pg3"));
        // The slot is gone; the member is still away: nothing, loop after loop.
        for s in 1..5 {
            let t = later + Duration::from_secs(s);
            assert!(keeper.plan(&facts(&away, &[], &names, t)).is_empty());
        }
        // Its agent answers again: the slot comes back.
        let back = [member("pg3", true, Some(0x100))];
        let t = later + Duration::from_secs(10);
        assert_eq!(
            brief(&keeper.plan(&facts(&back, &[], &names, t))),
            ["create pg3"]
        );
        assert!(!keeper.is_withheld("pg3"));
        // A fresh slot of a member that is back starts a fresh clock.
        let fresh = [inactive("pg3", 0x900)];
        let t = t + Duration::from_secs(1);
        assert!(keeper.plan(&facts(&back, &fresh, &names, t)).is_empty());
        assert!(keeper
            .plan(&facts(
                &back,
                &fresh,
                &names,
                t + TTL - Duration::from_secs(1)
            ))
            .is_empty());
    }

    #[test]
    fn a_slot_made_anew_for_a_member_that_answers_gets_a_fresh_clock() {
        let names = configured();
        let t0 = Instant::now();
        let mut keeper = SlotKeeper::default();
        let answers = [member("pg3", true, Some(0x100))];
        let slots = [inactive("pg3", 0x100)];
        let _ = keeper.plan(&facts(&answers, &slots, &names, t0));
        let steps = keeper.plan(&facts(&answers, &slots, &names, t0 + TTL));
        assert_eq!(brief(&steps), ["recreate pg3"]);
        assert!(!keeper.is_withheld("pg3"));
        let fresh = [inactive("pg3", 0x900)];
        let almost = t0 + TTL * 2 - Duration::from_secs(1);
        assert!(keeper
            .plan(&facts(&answers, &fresh, &names, almost))
            .is_empty());
        let steps = keeper.plan(&facts(&answers, &fresh, &names, t0 + TTL * 2));
        assert_eq!(brief(&steps), ["recreate pg3"], "still nothing streams");
    }

    #[test]
    fn a_member_streaming_again_without_its_agent_also_counts_as_back() {
        let names = configured();
        let t0 = Instant::now();
        let mut keeper = SlotKeeper::default();
        let away = [member("pg3", false, None)];
        let _ = keeper.plan(&facts(&away, &[inactive("pg3", 1)], &names, t0));
        let _ = keeper.plan(&facts(&away, &[inactive("pg3", 1)], &names, t0 + TTL));
        assert!(keeper.is_withheld("pg3"));
        let streams = [MemberSeen {
            streams_here: true,
            ..member("pg3", false, None)
        }];
        let steps = keeper.plan(&facts(&streams, &[], &names, t0 + TTL * 2));
        assert_eq!(brief(&steps), ["create pg3"]);
    }

    #[test]
    fn an_active_slot_stops_the_clock() {
        let names = configured();
        let t0 = Instant::now();
        let mut keeper = SlotKeeper::default();
        let m = [member("pg2", false, None)];
        let _ = keeper.plan(&facts(&m, &[inactive("pg2", 1)], &names, t0));
        let _ = keeper.plan(&facts(&m, &[active("pg2", 1)], &names, t0 + TTL / 2));
        // Inactive again: the absence counts from now, not from t0.
        let steps = keeper.plan(&facts(&m, &[inactive("pg2", 1)], &names, t0 + TTL));
        assert!(steps.is_empty(), "{steps:?}");
        let steps = keeper.plan(&facts(&m, &[inactive("pg2", 1)], &names, t0 + TTL * 2));
        assert_eq!(brief(&steps), ["drop pg2"]);
    }

    #[test]
    fn the_slots_the_agent_made_are_remembered_until_a_former_members_slot_is_gone() {
        let t0 = Instant::now();
        let mut keeper = SlotKeeper::new(["pg4".to_string()]);
        let members = [member("pg2", true, None)];
        let names: Vec<String> = vec!["pg1".into(), "pg2".into()];
        let with_pg4 = [active("pg2", 1), inactive("pg4", 1)];
        let _ = keeper.plan(&facts(&members, &with_pg4, &names, t0));
        assert_eq!(
            keeper.managed().iter().collect::<Vec<_>>(),
            ["pg2", "pg4"],
            "pg2 is made now; pg4 is a former member's, still there"
        );
        let steps = keeper.plan(&facts(&members, &with_pg4, &names, t0 + TTL));
        assert_eq!(brief(&steps), ["drop pg4"]);
        let _ = keeper.plan(&facts(&members, &[active("pg2", 1)], &names, t0 + TTL * 2));
        assert_eq!(keeper.managed().iter().collect::<Vec<_>>(), ["pg2"]);
    }

    #[test]
    fn the_reasons_name_the_member_and_say_what_follows() {
        let names = configured();
        let t0 = Instant::now();
        let mut keeper = SlotKeeper::default();
        let m = [member("pg3", false, None)];
        let lost = [slot("pg3", false, None, Some("lost"))];
        let steps = keeper.plan(&facts(&m, &lost, &names, t0));
        let SlotStep::Recreate { why, .. } = &steps[0] else {
            panic!("{steps:?}");
        };
        assert!(
            why.contains("lost") && why.contains("pg3") && why.contains("re-clone"),
            "{why}"
        );
        let steps = keeper.plan(&facts(&m, &[inactive("pg3", 1)], &names, t0 + TTL));
        let SlotStep::Drop { why, .. } = &steps[0] else {
            panic!("{steps:?}");
        };
        assert!(
            why.contains("pg3 has been away for 1m") && why.contains("member_slot_ttl = 1m"),
            "{why}"
        );
    }
}
