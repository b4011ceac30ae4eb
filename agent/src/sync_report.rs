//! Synchronous replication on a primary: which standbys it lists in
//! `synchronous_standby_names` and how many must acknowledge each commit
//! ([`SyncPlan`]), and what it tells its operator — which standbys
//! acknowledge, which are missing, whether commits wait for want of them
//! (`writes_blocked`). Pure: configurations and `pg_stat_replication` rows
//! in, the plan and the report out.

use crate::config::{Config, SyncMode};
use crate::status_doc::{MembershipDoc, SynchronousDoc, WalSender};

/// What the primary asks of its standbys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPlan {
    /// `"on"` or `"quorum"`.
    pub mode: SyncMode,
    /// How many of `names` acknowledge each commit.
    pub k: usize,
    /// The other data members, in member order.
    pub names: Vec<String>,
    /// `k` is above what this node's configuration alone asks, because
    /// some member runs with another member list.
    pub raised: bool,
    /// Members tagged `nosync` and left out of `names`.
    pub left_out: Vec<String>,
    /// Members tagged `nosync` and listed all the same, because without
    /// them fewer than `k` standbys would be listed.
    pub nosync_kept: Vec<String>,
}

impl SyncPlan {
    /// The plan for `cfg`, covering the member lists `seen` that other
    /// members report running with (`None` when asynchronous, or alone).
    ///
    /// A commit acknowledged by any `k` of `names` must reach every member
    /// set that a candidate running with member list `D` (its `k_D`) would
    /// compare with: any `N_D − k_D` of `D`'s data members. That holds when
    /// `k ≥ k_D + |names ∖ D|` (the acknowledgements that may land on
    /// members `D` does not know are not counted); so `k` is the largest
    /// such bound over this node's list and every list seen, at most
    /// `names.len()`. With every member on one list it is `k_D` itself.
    /// A member list changes safely whatever the order in which the nodes
    /// reload, as long as the primary sees each member's list.
    pub fn of(cfg: &Config, seen: &[MembershipDoc]) -> Option<SyncPlan> {
        let mode = cfg.replication.synchronous;
        if mode == SyncMode::Off {
            return None;
        }
        let names: Vec<String> = cfg
            .data_members()
            .filter(|m| m.name != cfg.node.name)
            .map(|m| m.name.clone())
            .collect();
        if names.is_empty() {
            return None;
        }
        let own = MembershipDoc::of(cfg);
        let bound = |d: &MembershipDoc| {
            let unknown = names.iter().filter(|n| !d.data_members.contains(n)).count();
            mode.acks(d.data_members.len(), d.voters) + unknown
        };
        let base = bound(&own).min(names.len());
        let k = seen
            .iter()
            .map(bound)
            .fold(base, usize::max)
            .min(names.len());
        Some(SyncPlan {
            mode,
            k,
            names,
            raised: k > base,
            left_out: Vec::new(),
            nosync_kept: Vec::new(),
        })
    }

    /// The plan with the members tagged `nosync` left out of the list,
    /// `k` unchanged, as long as `k` others remain listed (otherwise they
    /// stay listed, as `nosync_kept`).
    ///
    /// Safe whatever the tags say, and whenever they change: a candidate
    /// compares with `N − k` members, so fewer than `k` standbys lie
    /// outside what it compares, and every `k` acknowledging standbys
    /// still share one with it — from a shorter list as from the full one.
    /// Only availability changes: fewer standbys may acknowledge.
    pub fn without_nosync(mut self, nosync: &[String]) -> SyncPlan {
        let (tagged, eligible): (Vec<String>, Vec<String>) =
            self.names.iter().cloned().partition(|n| nosync.contains(n));
        if tagged.is_empty() {
            return self;
        }
        if eligible.len() >= self.k {
            self.names = eligible;
            self.left_out = tagged;
        } else {
            self.nosync_kept = tagged;
        }
        self
    }

    /// The `synchronous_standby_names` value.
    pub fn setting(&self) -> String {
        let list = self
            .names
            .iter()
            .map(|n| format!("\"{}\"", n.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(", ");
        match self.mode {
            SyncMode::On => format!("FIRST {} ({list})", self.k),
            _ => format!("ANY {} ({list})", self.k),
        }
    }
}

/// The report for a primary with these `senders`. A standby counts when
/// PostgreSQL itself counts it: `sync_state` `quorum` (ANY) or `sync`
/// (FIRST); a listed standby that is connected but still catching up does
/// not count yet, and is not missing either.
pub fn report(plan: &SyncPlan, senders: &[WalSender]) -> SynchronousDoc {
    let (mode, k, names) = (plan.mode, plan.k, &plan.names);
    let sender = |name: &str| {
        senders
            .iter()
            .find(|s| s.application_name.as_deref() == Some(name))
    };
    let counting = |s: &WalSender| {
        matches!(s.sync_state.as_deref(), Some("quorum") | Some("sync"))
            && matches!(s.state.as_deref(), Some("streaming"))
    };
    let standbys: Vec<String> = names
        .iter()
        .filter(|n| sender(n).is_some_and(counting))
        .cloned()
        .collect();
    let missing: Vec<String> = names
        .iter()
        .filter(|n| sender(n).is_none())
        .cloned()
        .collect();
    // "on" (FIRST 1): PostgreSQL counts one standby as `sync` and the
    // others as `potential`; one is enough.
    let writes_blocked = standbys.len() < k;
    SynchronousDoc {
        mode: mode.as_str().to_string(),
        k,
        standbys,
        missing,
        writes_blocked,
        k_raised: plan.raised,
        nosync: plan.left_out.clone(),
        nosync_kept: plan.nosync_kept.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(name: &str, state: &str, sync_state: &str) -> WalSender {
        WalSender {
            application_name: Some(name.into()),
            state: Some(state.into()),
            sync_state: Some(sync_state.into()),
            replay_lsn: None,
            lag_bytes: None,
            other: serde_json::Map::new(),
        }
    }

    fn names() -> Vec<String> {
        vec!["pg2".into(), "pg3".into()]
    }

    fn plan(mode: SyncMode, k: usize, names: &[String]) -> SyncPlan {
        SyncPlan {
            mode,
            k,
            names: names.to_vec(),
            raised: false,
            left_out: Vec::new(),
            nosync_kept: Vec::new(),
        }
    }

    #[test]
    fn nosync_members_are_left_out_while_k_others_remain_and_every_ack_set_still_meets_every_candidate(
    ) {
        let five = ["pg1", "pg2", "pg3", "pg4", "pg5"];
        for mode in [SyncMode::Quorum, SyncMode::On] {
            let cfg = config("pg1", &five, 0, mode);
            let full = SyncPlan::of(&cfg, &[]).expect("a synchronous mode");
            for tagged in [
                vec!["pg2"],
                vec!["pg2", "pg3"],
                vec!["pg2", "pg3", "pg4"],
                vec!["pg2", "pg3", "pg4", "pg5"],
            ] {
                let tagged: Vec<String> = tagged.iter().map(|n| n.to_string()).collect();
                let plan = full.clone().without_nosync(&tagged);
                assert_eq!(plan.k, full.k, "k never changes");
                if five.len() - 1 - tagged.len() >= full.k {
                    assert!(plan.names.iter().all(|n| !tagged.contains(n)), "{plan:?}");
                    assert_eq!(plan.left_out, tagged);
                } else {
                    assert_eq!(plan.names, full.names, "too few others: kept");
                    assert_eq!(plan.nosync_kept, tagged);
                }
                safe_against(&plan, "pg1", &list(&five, 0), mode);
            }
        }
        let plan = SyncPlan::of(
            &config("pg1", &["pg1", "pg2", "pg3"], 0, SyncMode::Quorum),
            &[],
        )
        .expect("quorum")
        .without_nosync(&["pg3".to_string()]);
        assert_eq!(plan.setting(), r#"ANY 1 ("pg2")"#);
        let r = report(&plan, &[]);
        assert_eq!(r.nosync, vec!["pg3".to_string()]);
        assert_eq!(r.missing, vec!["pg2".to_string()]);
    }

    /// A configuration of `data` members (and `witnesses`), run by `me`.
    fn config(me: &str, data: &[&str], witnesses: usize, mode: SyncMode) -> Config {
        let member = |name: &str, witness: bool| crate::config::Member {
            name: name.into(),
            api_url: "http://127.0.0.1:8008".into(),
            host: None,
            nofailover: false,
            clonefrom: false,
            witness,
        };
        let mut members: Vec<crate::config::Member> =
            data.iter().map(|n| member(n, false)).collect();
        for w in 0..witnesses {
            members.push(member(&format!("w{w}"), true));
        }
        Config {
            node: crate::config::NodeSection {
                name: me.into(),
                data_dir: "/var/lib/postgresql/15/main".into(),
                bin_dir: None,
                witness: false,
                watchdog: Default::default(),
                watchdog_device: crate::config::default_watchdog_device(),
                tags: Default::default(),
            },
            api: Default::default(),
            cluster: crate::config::ClusterSection {
                name: "main".into(),
                secret_file: None,
                ttl: std::time::Duration::from_secs(10),
                loop_wait: std::time::Duration::from_secs(1),
                members,
            },
            postgresql: Default::default(),
            replication: crate::config::ReplicationSection {
                synchronous: mode,
                ..Default::default()
            },
            log: Default::default(),
        }
    }

    fn list(data: &[&str], witnesses: usize) -> MembershipDoc {
        MembershipDoc {
            data_members: data.iter().map(|n| n.to_string()).collect(),
            voters: data.len() + witnesses,
        }
    }

    /// Every `size`-subset of `items`.
    fn subsets(items: &[String], size: usize) -> Vec<Vec<String>> {
        if size == 0 {
            return vec![vec![]];
        }
        if items.len() < size {
            return vec![];
        }
        let mut with: Vec<Vec<String>> = subsets(&items[1..], size - 1)
            .into_iter()
            .map(|mut s| {
                s.insert(0, items[0].clone());
                s
            })
            .collect();
        with.extend(subsets(&items[1..], size));
        with
    }

    /// The primary `me` dies: every `k` of its listed standbys that
    /// acknowledged share a member with every `N_D − k_D` survivors a
    /// candidate on list `d` compares with.
    fn safe_against(plan: &SyncPlan, me: &str, d: &MembershipDoc, mode: SyncMode) {
        let needed = d
            .data_members
            .len()
            .saturating_sub(mode.acks(d.data_members.len(), d.voters))
            .max(1);
        let survivors: Vec<String> = d
            .data_members
            .iter()
            .filter(|n| *n != me)
            .cloned()
            .collect();
        for acked in subsets(&plan.names, plan.k) {
            for compared in subsets(&survivors, needed) {
                assert!(
                    acked.iter().any(|a| compared.contains(a)),
                    "{plan:?}: acknowledged by {acked:?}, a candidate on {d:?} compares {compared:?}"
                );
            }
        }
    }

    #[test]
    fn a_membership_change_raises_k_until_every_member_runs_the_new_list() {
        let three = ["pg1", "pg2", "pg3"];
        let four = ["pg1", "pg2", "pg3", "pg4"];
        let five = ["pg1", "pg2", "pg3", "pg4", "pg5"];
        for mode in [SyncMode::Quorum, SyncMode::On] {
            // (the primary's list, the lists others run with, k wanted)
            for (mine, theirs, k) in [
                (&four[..], &three[..], 2), // 3 -> 4, the primary first
                (&three[..], &four[..], 1), // 3 -> 4, the others first
                (&five[..], &four[..], 2),  // 4 -> 5, the primary first
                (&four[..], &five[..], 2),  // 4 -> 5, the others first: k of 5
                (&four[..], &five[..], 2),  // 5 -> 4, the primary first
                (&five[..], &four[..], 2),  // 5 -> 4, the others first
                (&three[..], &three[..], 1),
            ] {
                let cfg = config("pg1", mine, 0, mode);
                let seen = [list(theirs, 0)];
                let plan = SyncPlan::of(&cfg, &seen).expect("a synchronous mode");
                let own = list(mine, 0);
                safe_against(&plan, "pg1", &own, mode);
                safe_against(&plan, "pg1", &seen[0], mode);
                if mode == SyncMode::Quorum {
                    assert_eq!(plan.k, k, "{mine:?} seeing {theirs:?}");
                }
                assert_eq!(
                    plan.raised,
                    plan.k > SyncPlan::of(&cfg, &[]).map_or(0, |p| p.k)
                );
            }
        }
        let settled = SyncPlan::of(
            &config("pg1", &three, 0, SyncMode::Quorum),
            &[list(&three, 0)],
        );
        assert_eq!(
            settled.map(|p| (p.k, p.raised, p.setting())),
            Some((1, false, r#"ANY 1 ("pg2", "pg3")"#.to_string()))
        );
    }

    #[test]
    fn k_never_exceeds_the_standbys_listed() {
        // Two data members and a witness, an old list of four: k stays 1.
        let cfg = config("pg1", &["pg1", "pg2"], 1, SyncMode::Quorum);
        let plan = SyncPlan::of(&cfg, &[list(&["pg1", "pg3", "pg4", "pg5"], 0)]);
        assert_eq!(plan.map(|p| p.k), Some(1));
        assert_eq!(
            SyncPlan::of(&config("pg1", &["pg1", "pg2"], 1, SyncMode::Off), &[]),
            None
        );
    }

    #[test]
    fn one_quorum_standby_of_two_is_enough_for_k_1() {
        let r = report(
            &plan(SyncMode::Quorum, 1, &names()),
            &[sender("pg2", "streaming", "quorum")],
        );
        assert_eq!(r.standbys, vec!["pg2".to_string()]);
        assert_eq!(r.missing, vec!["pg3".to_string()]);
        assert!(!r.writes_blocked);
        assert_eq!((r.mode.as_str(), r.k), ("quorum", 1));
    }

    #[test]
    fn no_standby_connected_blocks_writes_and_names_both() {
        let r = report(&plan(SyncMode::Quorum, 1, &names()), &[]);
        assert!(r.writes_blocked);
        assert_eq!(r.missing, names());
    }

    #[test]
    fn a_standby_catching_up_does_not_count_yet_and_is_not_missing() {
        let r = report(
            &plan(SyncMode::Quorum, 1, &names()),
            &[sender("pg2", "catchup", "potential")],
        );
        assert!(r.writes_blocked);
        assert_eq!(r.missing, vec!["pg3".to_string()]);
        assert!(r.standbys.is_empty());
    }

    #[test]
    fn k_2_needs_two_and_on_needs_the_sync_one() {
        let five: Vec<String> = ["pg1", "pg2", "pg4", "pg5"].map(String::from).to_vec();
        let one = [sender("pg1", "streaming", "quorum")];
        assert!(report(&plan(SyncMode::Quorum, 2, &five), &one).writes_blocked);
        let two = [
            sender("pg1", "streaming", "quorum"),
            sender("pg4", "streaming", "quorum"),
        ];
        assert!(!report(&plan(SyncMode::Quorum, 2, &five), &two).writes_blocked);
        let first = [
            sender("pg2", "streaming", "sync"),
            sender("pg3", "streaming", "potential"),
        ];
        let r = report(&plan(SyncMode::On, 1, &names()), &first);
        assert!(!r.writes_blocked);
        assert_eq!(r.standbys, vec!["pg2".to_string()]);
    }

    #[test]
    fn an_unlisted_sender_never_counts() {
        let r = report(
            &plan(SyncMode::Quorum, 1, &names()),
            &[sender("pg_basebackup", "streaming", "quorum")],
        );
        assert!(r.writes_blocked);
    }
}
