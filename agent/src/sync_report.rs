//! What a primary in a synchronous mode tells its operator: which standbys
//! acknowledge commits, which are missing, and whether commits wait for
//! want of them (`writes_blocked`). Pure: the configured names, `k` and the
//! primary's `pg_stat_replication` rows in, the report out.

use crate::config::{Config, SyncMode};
use crate::status_doc::{SynchronousDoc, WalSender};

/// The standbys `synchronous_standby_names` lists, and `k`, for `cfg`
/// (`None` when replication is asynchronous). The same names and `k` as
/// [`crate::pg::conf::synchronous_standby_names`] writes.
pub fn listed(cfg: &Config) -> Option<(SyncMode, usize, Vec<String>)> {
    let mode = cfg.replication.synchronous;
    if mode == SyncMode::Off {
        return None;
    }
    let names: Vec<String> = cfg
        .data_members()
        .filter(|m| m.name != cfg.node.name)
        .map(|m| m.name.clone())
        .collect();
    let k = mode
        .acks(cfg.data_members().count(), cfg.cluster.members.len())
        .min(names.len());
    Some((mode, k, names))
}

/// The report for a primary with these `senders`. A standby counts when
/// PostgreSQL itself counts it: `sync_state` `quorum` (ANY) or `sync`
/// (FIRST); a listed standby that is connected but still catching up does
/// not count yet, and is not missing either.
pub fn report(mode: SyncMode, k: usize, names: &[String], senders: &[WalSender]) -> SynchronousDoc {
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

    #[test]
    fn one_quorum_standby_of_two_is_enough_for_k_1() {
        let r = report(
            SyncMode::Quorum,
            1,
            &names(),
            &[sender("pg2", "streaming", "quorum")],
        );
        assert_eq!(r.standbys, vec!["pg2".to_string()]);
        assert_eq!(r.missing, vec!["pg3".to_string()]);
        assert!(!r.writes_blocked);
        assert_eq!((r.mode.as_str(), r.k), ("quorum", 1));
    }

    #[test]
    fn no_standby_connected_blocks_writes_and_names_both() {
        let r = report(SyncMode::Quorum, 1, &names(), &[]);
        assert!(r.writes_blocked);
        assert_eq!(r.missing, names());
    }

    #[test]
    fn a_standby_catching_up_does_not_count_yet_and_is_not_missing() {
        let r = report(
            SyncMode::Quorum,
            1,
            &names(),
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
        assert!(report(SyncMode::Quorum, 2, &five, &one).writes_blocked);
        let two = [
            sender("pg1", "streaming", "quorum"),
            sender("pg4", "streaming", "quorum"),
        ];
        assert!(!report(SyncMode::Quorum, 2, &five, &two).writes_blocked);
        let first = [
            sender("pg2", "streaming", "sync"),
            sender("pg3", "streaming", "potential"),
        ];
        let r = report(SyncMode::On, 1, &names(), &first);
        assert!(!r.writes_blocked);
        assert_eq!(r.standbys, vec!["pg2".to_string()]);
    }

    #[test]
    fn an_unlisted_sender_never_counts() {
        let r = report(
            SyncMode::Quorum,
            1,
            &names(),
            &[sender("pg_basebackup", "streaming", "quorum")],
        );
        assert!(r.writes_blocked);
    }
}
