//! The Patroni-compatible health checks: which endpoint answers 200 for
//! which view. Pure: the HTTP layer only turns `true` into 200.

use std::time::Instant;

use crate::config::ByteSize;
use crate::view::{NodeView, Role, State};

use super::status::{lag_bytes, receiver_status};

/// Filters a load balancer may add to the checks (Patroni's query
/// parameters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaFilter {
    /// `?lag=16MB`: at most this far behind.
    pub max_lag: Option<ByteSize>,
    /// `?replication_state=streaming`: the receiver's status, or Patroni's
    /// `in archive recovery` (a replica whose receiver does not stream).
    pub replication_state: Option<String>,
    /// `?tag_<key>=<value>`: this member's tags must say so (not on the
    /// primary and leader checks, as Patroni).
    pub tags: Vec<(String, String)>,
    /// `/readiness?mode=`: which position `?lag` is measured from.
    pub lag_mode: LagMode,
}

/// `/readiness?mode=`: a replica's lag measured from what it replayed
/// (`apply`, the default) or from what it received (`write`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LagMode {
    /// From the replayed position.
    #[default]
    Apply,
    /// From the received position.
    Write,
}

/// Patroni's word for a replica whose WAL receiver does not stream.
pub const IN_ARCHIVE_RECOVERY: &str = "in archive recovery";

/// A health endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// `/`, `/primary`, `/read-write`.
    Primary,
    /// `/leader`.
    Leader,
    /// `/replica`.
    Replica,
    /// `/read-only`.
    ReadOnly,
    /// `/sync`, `/synchronous`: a replica the primary counts in its
    /// synchronous set.
    Sync,
    /// `/quorum`: a replica the primary counts in its `ANY k` quorum.
    Quorum,
    /// `/read-only-sync`: the primary, or a synchronous replica.
    ReadOnlySync,
    /// `/async`, `/asynchronous`: a replica the primary does not count.
    Async,
    /// `/health`.
    Health,
    /// `/standby-leader`: the leader of a standby cluster (there are none
    /// yet: always 503).
    StandbyLeader,
    /// `/liveness`.
    Liveness,
    /// `/readiness`.
    Readiness,
}

fn running(view: &NodeView) -> bool {
    view.state == State::Running && view.observation().is_some()
}

/// This node holds the lease *now*: the view says so and the lease has not
/// run out since (the view is as of the last loop, which may be stuck in a
/// long action).
pub fn holds_lease_now(view: &NodeView, now: Instant) -> bool {
    view.holds_lease && view.leader.as_ref().is_some_and(|l| l.expires_at > now)
}

/// A read-write primary this node may be: running, not in recovery, holding the lease.
pub fn is_primary(view: &NodeView, now: Instant) -> bool {
    running(view) && view.role == Role::Primary && holds_lease_now(view, now)
}

/// A running replica within the filter (Patroni's `/replica`): streaming
/// only when `?replication_state=streaming` asks for it; never one tagged
/// `noloadbalance`.
pub fn is_replica(view: &NodeView, filter: &ReplicaFilter) -> bool {
    if !running(view) || view.role != Role::Replica || view.tags.noloadbalance {
        return false;
    }
    if let Some(wanted) = filter.replication_state.as_deref() {
        let status = receiver_status(view);
        let matches = if wanted == IN_ARCHIVE_RECOVERY {
            status != Some("streaming")
        } else {
            status == Some(wanted)
        };
        if !matches {
            return false;
        }
    }
    within_lag(view, filter)
}

/// The `?lag=` filter: a replica at most that far behind the leader's last
/// reported position (unknown lag fails it).
fn within_lag(view: &NodeView, filter: &ReplicaFilter) -> bool {
    let Some(max) = filter.max_lag else {
        return true;
    };
    let lag = match filter.lag_mode {
        LagMode::Apply => lag_bytes(view),
        LagMode::Write => write_lag_bytes(view),
    };
    lag.is_some_and(|lag| lag <= max.bytes())
}

/// How far what this replica *received* trails the leader's last reported
/// position (`/readiness?mode=write`).
fn write_lag_bytes(view: &NodeView) -> Option<u64> {
    let obs = view.observation()?;
    if !obs.in_recovery {
        return Some(0);
    }
    let received = obs.received_lsn.or(obs.replayed_lsn)?;
    Some(view.leader_lsn?.bytes_after(received))
}

/// Every `?tag_<key>=<value>` matches this member's tags as Patroni
/// compares them.
fn tags_match(view: &NodeView, filter: &ReplicaFilter) -> bool {
    filter
        .tags
        .iter()
        .all(|(k, v)| view.tags.filter_value(k).as_deref() == Some(v.as_str()))
}

/// This member's `sync_state` in the running primary's `pg_stat_replication`,
/// as the primary last reported it (its `/status`, polled every loop), when
/// that primary runs a synchronous mode.
pub(crate) fn sync_state_on_primary(view: &NodeView) -> Option<String> {
    view.peers
        .iter()
        .filter_map(|p| p.fresh_doc())
        .filter(|d| d.is_running_primary() && d.synchronous.is_some())
        .flat_map(|d| d.wal_senders.iter())
        .find(|s| s.application_name.as_deref() == Some(view.name.as_str()))
        .and_then(|s| s.sync_state.clone())
}

/// The primary counts this replica's acknowledgements (`sync` or `quorum`).
fn counted(view: &NodeView) -> bool {
    matches!(
        sync_state_on_primary(view).as_deref(),
        Some("sync") | Some("quorum")
    )
}

/// Whether `check` passes for `view` at `now`, tag filters included
/// (ignored by the primary and leader checks, as Patroni ignores them).
pub fn passes(check: Check, view: &NodeView, filter: &ReplicaFilter, now: Instant) -> bool {
    let ignores_tags = matches!(
        check,
        Check::Primary | Check::Leader | Check::StandbyLeader | Check::Liveness | Check::Readiness
    );
    passes_untagged(check, view, filter, now) && (ignores_tags || tags_match(view, filter))
}

fn passes_untagged(check: Check, view: &NodeView, filter: &ReplicaFilter, now: Instant) -> bool {
    match check {
        Check::Primary => is_primary(view, now),
        Check::Leader => holds_lease_now(view, now),
        Check::Replica => is_replica(view, filter),
        Check::ReadOnly => is_primary(view, now) || is_replica(view, filter),
        Check::Sync => is_replica(view, filter) && counted(view),
        Check::Quorum => {
            is_replica(view, filter) && sync_state_on_primary(view).as_deref() == Some("quorum")
        }
        Check::ReadOnlySync => is_primary(view, now) || (is_replica(view, filter) && counted(view)),
        Check::Async => is_replica(view, filter) && !counted(view),
        Check::Health => running(view),
        Check::StandbyLeader => false,
        // Patroni's: paused, a stuck loop is fine; a primary must have
        // looped within ttl, anyone else within twice that.
        Check::Liveness => {
            let allowed = if running(view) && view.role == Role::Primary {
                view.ttl
            } else {
                view.ttl * 2
            };
            view.paused
                || view
                    .loop_last
                    .is_some_and(|t| now.saturating_duration_since(t) <= allowed)
        }
        // Patroni's: the leader, or a running PostgreSQL; with `?lag=` a
        // replica within it (from `?mode=apply|write`).
        Check::Readiness => {
            holds_lease_now(view, now)
                || (running(view) && (view.role != Role::Replica || within_lag(view, filter)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::probe::Observation;
    use crate::pg::Lsn;
    use crate::view::{LeaderView, PostgresView};
    use std::time::Duration;

    fn observation(in_recovery: bool, receiver: Option<&str>) -> Observation {
        Observation {
            in_recovery,
            version_num: 150018,
            system_identifier: "7311".into(),
            timeline: Some(1),
            current_lsn: (!in_recovery).then_some(Lsn(0x5000000)),
            received_lsn: in_recovery.then_some(Lsn(0x5000000)),
            replayed_lsn: in_recovery.then_some(Lsn(0x4F00000)),
            replay_paused: false,
            start_time: "2026-11-26T12:00:00Z".into(),
            replay_timestamp: None,
            pending_restart: false,
            wal_senders: vec![],
            slots: vec![],
            wal_receiver: receiver.map(|s| crate::status_doc::WalReceiver {
                status: s.into(),
                sender_host: None,
                sender_port: None,
                slot_name: None,
                received_tli: None,
                other: serde_json::Map::new(),
            }),
        }
    }

    fn view(role: Role, state: State, obs: Option<Observation>, lease: bool) -> NodeView {
        let mut v = NodeView::initial("pg1", "main", false, Duration::from_secs(10), 1 << 20);
        v.role = role;
        v.state = state;
        v.holds_lease = lease;
        v.loop_last = Some(Instant::now());
        v.leader = lease.then(|| LeaderView {
            name: "pg1".into(),
            term: 1,
            expires_at: Instant::now() + Duration::from_secs(10),
        });
        v.postgres = Some(PostgresView {
            pid: Some(1),
            host: "127.0.0.1".into(),
            port: 5432,
            observed_at: obs.as_ref().map(|_| Instant::now()),
            observation: obs,
        });
        v
    }

    /// A running replica whose receiver streams, without the lease.
    fn streaming_replica() -> NodeView {
        view(
            Role::Replica,
            State::Running,
            Some(observation(true, Some("streaming"))),
            false,
        )
    }

    /// A running primary holding the lease.
    fn lease_primary() -> NodeView {
        view(
            Role::Primary,
            State::Running,
            Some(observation(false, None)),
            true,
        )
    }

    fn codes(v: &NodeView) -> Vec<(Check, bool)> {
        let f = ReplicaFilter::default();
        [
            Check::Primary,
            Check::Leader,
            Check::Replica,
            Check::ReadOnly,
            Check::Sync,
            Check::Quorum,
            Check::ReadOnlySync,
            Check::Async,
            Check::Health,
            Check::Liveness,
            Check::Readiness,
        ]
        .into_iter()
        .map(|c| (c, passes(c, v, &f, Instant::now())))
        .collect()
    }

    #[test]
    fn a_primary_holding_the_lease_passes_primary_leader_read_only_health_liveness_readiness() {
        let v = lease_primary();
        let passed: Vec<Check> = codes(&v)
            .into_iter()
            .filter(|(_, ok)| *ok)
            .map(|(c, _)| c)
            .collect();
        assert_eq!(
            passed,
            vec![
                Check::Primary,
                Check::Leader,
                Check::ReadOnly,
                Check::ReadOnlySync,
                Check::Health,
                Check::Liveness,
                Check::Readiness
            ]
        );
    }

    #[test]
    fn a_primary_without_the_lease_is_not_primary() {
        let v = view(
            Role::Primary,
            State::Running,
            Some(observation(false, None)),
            false,
        );
        assert!(!passes(
            Check::Primary,
            &v,
            &ReplicaFilter::default(),
            Instant::now()
        ));
        assert!(!passes(
            Check::Leader,
            &v,
            &ReplicaFilter::default(),
            Instant::now()
        ));
        assert!(passes(
            Check::Health,
            &v,
            &ReplicaFilter::default(),
            Instant::now()
        ));
    }

    #[test]
    fn a_lease_that_ran_out_since_the_last_loop_is_not_held() {
        let v = lease_primary();
        let later = Instant::now() + Duration::from_secs(11);
        assert!(!passes(
            Check::Primary,
            &v,
            &ReplicaFilter::default(),
            later
        ));
        assert!(!passes(Check::Leader, &v, &ReplicaFilter::default(), later));
    }

    #[test]
    fn stopped_postgres_fails_everything_but_liveness() {
        let v = view(Role::Primary, State::Stopped, None, true);
        let passed: Vec<Check> = codes(&v)
            .into_iter()
            .filter(|(_, ok)| *ok)
            .map(|(c, _)| c)
            .collect();
        // Readiness: the lease holder is ready (Patroni's rule).
        assert_eq!(
            passed,
            vec![Check::Leader, Check::Liveness, Check::Readiness]
        );
    }

    #[test]
    fn a_streaming_replica_passes_replica_within_lag_and_state_filters() {
        let v = streaming_replica();
        let f = ReplicaFilter::default();
        let now = Instant::now();
        assert!(passes(Check::Replica, &v, &f, now));
        assert!(passes(Check::ReadOnly, &v, &f, now));
        assert!(passes(Check::Async, &v, &f, now));
        assert!(
            passes(Check::Readiness, &v, &f, now),
            "1 MB lag is within max_lag_on_failover"
        );
        let tight = ReplicaFilter {
            max_lag: Some(ByteSize(1024)),
            ..Default::default()
        };
        assert!(!passes(Check::Replica, &v, &tight, now), "lag 1 MB > 1 kB");
        let state = ReplicaFilter {
            replication_state: Some("catchup".into()),
            ..Default::default()
        };
        assert!(!passes(Check::Replica, &v, &state, now));
    }

    /// `view` with a running primary pg1 whose senders say `sync_state`
    /// for this member (pg2).
    fn with_primary_reporting(mut v: NodeView, sync_state: Option<&str>) -> NodeView {
        let senders = sync_state
            .map(|s| {
                serde_json::json!([{"application_name": "pg2", "state": "streaming", "sync_state": s}])
            })
            .unwrap_or(serde_json::json!([]));
        let doc: crate::status_doc::StatusDoc = serde_json::from_value(serde_json::json!({
            "name": "pg1", "cluster": "main", "role": "primary", "state": "running",
            "agent": {"version": "0", "uptime_s": 1, "loop_last_ms_ago": 1, "paused": false, "pause_version": 0},
            "wal_senders": senders,
            "synchronous": {"mode": "quorum", "k": 1, "standbys": ["pg2"], "missing": [], "writes_blocked": false}
        }))
        .expect("a status document");
        v.name = "pg2".into();
        v.peers = vec![crate::peers::PeerView {
            name: "pg1".into(),
            api_url: "http://127.0.0.1:8008".into(),
            last: Some((Instant::now(), doc)),
            error: None,
            fresh: true,
            asked_at: Some(Instant::now()),
        }];
        v
    }

    #[test]
    fn sync_quorum_and_async_follow_the_primarys_count() {
        let replica = || streaming_replica();
        let f = ReplicaFilter::default();
        let now = Instant::now();
        let pass = |v: &NodeView, c| passes(c, v, &f, now);
        let quorum = with_primary_reporting(replica(), Some("quorum"));
        assert!(pass(&quorum, Check::Sync));
        assert!(pass(&quorum, Check::Quorum));
        assert!(pass(&quorum, Check::ReadOnlySync));
        assert!(!pass(&quorum, Check::Async));
        let first = with_primary_reporting(replica(), Some("sync"));
        assert!(pass(&first, Check::Sync) && !pass(&first, Check::Quorum));
        for s in [Some("potential"), Some("async"), None] {
            let not = with_primary_reporting(replica(), s);
            assert!(!pass(&not, Check::Sync), "{s:?}");
            assert!(!pass(&not, Check::ReadOnlySync), "{s:?}");
            assert!(pass(&not, Check::Async), "{s:?}");
        }
        assert!(!pass(&replica(), Check::Sync), "no primary reported");
        let mut stale = with_primary_reporting(replica(), Some("quorum"));
        stale.peers[0].fresh = false;
        assert!(
            !pass(&stale, Check::Sync),
            "the primary's last answer is old"
        );
    }

    #[test]
    fn a_running_replica_that_does_not_stream_is_a_replica_unless_streaming_is_asked() {
        let v = view(
            Role::Replica,
            State::Running,
            Some(observation(true, None)),
            false,
        );
        let now = Instant::now();
        let state = |s: &str| ReplicaFilter {
            replication_state: Some(s.into()),
            ..Default::default()
        };
        assert!(passes(Check::Replica, &v, &ReplicaFilter::default(), now));
        assert!(!passes(Check::Replica, &v, &state("streaming"), now));
        assert!(passes(Check::Replica, &v, &state(IN_ARCHIVE_RECOVERY), now));
        assert!(passes(Check::Health, &v, &ReplicaFilter::default(), now));
        let streaming = streaming_replica();
        assert!(passes(Check::Replica, &streaming, &state("streaming"), now));
        assert!(!passes(
            Check::Replica,
            &streaming,
            &state(IN_ARCHIVE_RECOVERY),
            now
        ));
    }

    #[test]
    fn noloadbalance_takes_a_replica_out_of_the_read_checks_but_not_a_primary() {
        let mut v = streaming_replica();
        v.tags.noloadbalance = true;
        let f = ReplicaFilter::default();
        let now = Instant::now();
        for c in [Check::Replica, Check::ReadOnly, Check::Async] {
            assert!(!passes(c, &v, &f, now), "{c:?}");
        }
        assert!(passes(Check::Health, &v, &f, now));
        let mut p = lease_primary();
        p.tags.noloadbalance = true;
        assert!(passes(Check::Primary, &p, &f, now) && passes(Check::ReadOnly, &p, &f, now));
    }

    #[test]
    fn tag_filters_match_as_patroni_compares_and_the_primary_ignores_them() {
        let mut v = streaming_replica();
        v.tags.custom.insert("dc".into(), "east".into());
        v.tags.custom.insert("weight".into(), 3.into());
        v.tags.nosync = true;
        let tags = |pairs: &[(&str, &str)]| ReplicaFilter {
            tags: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let now = Instant::now();
        assert!(passes(Check::Replica, &v, &tags(&[("dc", "east")]), now));
        assert!(passes(
            Check::Replica,
            &v,
            &tags(&[("dc", "east"), ("weight", "3")]),
            now
        ));
        assert!(passes(
            Check::Replica,
            &v,
            &tags(&[("nosync", "true")]),
            now
        ));
        assert!(!passes(Check::Replica, &v, &tags(&[("dc", "west")]), now));
        assert!(
            !passes(Check::Replica, &v, &tags(&[("rack", "a")]), now),
            "unset tag"
        );
        // A built-in flag that is off is not set, as on Patroni.
        assert!(!passes(
            Check::Replica,
            &v,
            &tags(&[("nofailover", "false")]),
            now
        ));
        assert!(!passes(Check::ReadOnly, &v, &tags(&[("dc", "west")]), now));
        assert!(!passes(Check::Health, &v, &tags(&[("dc", "west")]), now));
        let p = lease_primary();
        assert!(passes(Check::Primary, &p, &tags(&[("dc", "west")]), now));
        assert!(passes(Check::Leader, &p, &tags(&[("dc", "west")]), now));
        assert!(!passes(Check::ReadOnly, &p, &tags(&[("dc", "west")]), now));
    }

    #[test]
    fn liveness_allows_twice_ttl_on_a_replica_and_anything_while_paused() {
        let mut v = streaming_replica();
        let f = ReplicaFilter::default();
        let now = Instant::now();
        assert!(passes(
            Check::Liveness,
            &v,
            &f,
            now + Duration::from_secs(15)
        ));
        assert!(!passes(
            Check::Liveness,
            &v,
            &f,
            now + Duration::from_secs(21)
        ));
        v.paused = true;
        assert!(passes(
            Check::Liveness,
            &v,
            &f,
            now + Duration::from_secs(60)
        ));
    }

    #[test]
    fn readiness_is_the_leader_or_a_running_server_within_the_asked_lag() {
        let mut v = streaming_replica();
        // The leader reported 0/5100000: received 0/5000000 (1 MB behind),
        // replayed 0/4F00000 (2 MB behind).
        v.leader_lsn = Some(Lsn(0x5100000));
        let now = Instant::now();
        let lag = |mb: u64, mode| ReplicaFilter {
            max_lag: Some(ByteSize(mb << 20)),
            lag_mode: mode,
            ..Default::default()
        };
        assert!(passes(Check::Readiness, &v, &ReplicaFilter::default(), now));
        assert!(!passes(Check::Readiness, &v, &lag(1, LagMode::Apply), now));
        assert!(passes(Check::Readiness, &v, &lag(2, LagMode::Apply), now));
        assert!(passes(Check::Readiness, &v, &lag(1, LagMode::Write), now));
        let stopped = view(Role::Replica, State::Stopped, None, false);
        assert!(!passes(
            Check::Readiness,
            &stopped,
            &ReplicaFilter::default(),
            now
        ));
        assert!(!passes(
            Check::StandbyLeader,
            &v,
            &ReplicaFilter::default(),
            now
        ));
    }

    #[test]
    fn liveness_fails_when_the_loop_stalled_longer_than_ttl() {
        let mut v = lease_primary();
        let later = Instant::now() + Duration::from_secs(11);
        assert!(!passes(
            Check::Liveness,
            &v,
            &ReplicaFilter::default(),
            later
        ));
        v.loop_last = None;
        assert!(!passes(
            Check::Liveness,
            &v,
            &ReplicaFilter::default(),
            Instant::now()
        ));
    }
}
