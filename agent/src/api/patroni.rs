//! Patroni's documents, built from the node's view alone: `GET /patroni`
//! ([`patroni_status`]), `GET /cluster` ([`patroni_cluster`]) and
//! `GET /history` ([`patroni_history`]), in the types of
//! [`crate::patroni_doc`]. Pure functions of the view and the time, so
//! that every rule of Patroni's "which field appears when" is a unit test.
//!
//! Where pgwarden's model differs from Patroni's, the choice is made here
//! once and documented in docs/api.md:
//! - a witness (no PostgreSQL) answers `/patroni` with role `witness` and
//!   state `stopped`, and is not a member of the Patroni `/cluster`;
//! - `dcs_last_seen` is when this member last knew of a valid leader lease;
//! - a configured member not heard from within `ttl` stays in `/cluster`
//!   with state `unknown` (Patroni drops a member whose key expired).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::Map;

use crate::patroni_doc::{
    HistoryLine, Lag, PatroniAgent, PatroniCluster, PatroniMember, PatroniStatus, Replication,
    ScheduledSwitchover, Xlog, UNKNOWN,
};
use crate::pg::Lsn;
use crate::state::HistoryEntry;
use crate::status_doc::{Role, State, StatusDoc, SynchronousDoc, WalSender};
use crate::view::NodeView;

use super::health::sync_state_on_primary;
use super::status::{status_document, VERSION};

/// PostgreSQL's state in Patroni's words (`PostgresqlState`).
pub fn state_word(state: State) -> &'static str {
    match state {
        State::Starting => "starting",
        State::Running => "running",
        State::Crashed => "crashed",
        State::Bootstrapping => "initializing new cluster",
        State::Cloning => "creating replica",
        // The agent stops a primary it fences, or to rejoin: Patroni's words
        // for a server on its way down.
        State::Fencing | State::Stopping => "stopping",
        // Patroni runs pg_rewind with PostgreSQL down and says `stopped`.
        State::Stopped | State::Rewinding | State::Fenced | State::Paused => "stopped",
    }
}

/// A role in Patroni's words; `witness` is pgwarden's own.
fn role_word(role: Role) -> &'static str {
    match role {
        Role::Primary => "primary",
        Role::Replica => "replica",
        Role::Uninitialized => "uninitialized",
        Role::Witness => "witness",
    }
}

/// An RFC 3339 UTC time (`2026-11-26T12:00:00Z`) as Python's `isoformat()`
/// writes it (`2026-11-26T12:00:00+00:00`).
fn isoformat(rfc3339: &str) -> String {
    match rfc3339.strip_suffix('Z') {
        Some(t) => format!("{t}+00:00"),
        None => rfc3339.to_string(),
    }
}

/// `pg_postmaster_start_time()` as Patroni prints it (Python's `str()` of
/// a datetime: a space, not a `T`).
fn postmaster_start_time(rfc3339: &str) -> String {
    isoformat(rfc3339).replacen('T', " ", 1)
}

/// Seconds since the epoch (0 for a time before it).
fn epoch_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// One `replication` row from a `pg_stat_replication` row.
fn replication_row(sender: &WalSender) -> Replication {
    let text = |k: &str| {
        sender
            .other
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    Replication {
        usename: text("usename"),
        application_name: sender.application_name.clone(),
        client_addr: text("client_addr"),
        state: sender.state.clone(),
        sync_state: sender.sync_state.clone(),
        sync_priority: sender.other.get("sync_priority").and_then(|v| v.as_i64()),
    }
}

/// `pending_restart_reason`: pgwarden knows that some setting waits for a
/// restart, not which one (the probe counts `pg_settings.pending_restart`),
/// so the object is empty.
fn pending_restart_reason(pending: bool) -> Option<Map<String, serde_json::Value>> {
    pending.then(Map::new)
}

/// `GET /patroni`: this member's status as Patroni's `get_postgresql_status`
/// and `_write_status_response` build it. The PostgreSQL fields appear only
/// when PostgreSQL answered the agent's last probe, as Patroni's appear only
/// when its query succeeds.
pub fn patroni_status(view: &NodeView, now: Instant) -> PatroniStatus {
    let obs = view.observation();
    let mut doc = PatroniStatus {
        state: if view.role == Role::Witness {
            "stopped".into()
        } else if view.state == State::Running && obs.is_none() {
            // Patroni's word when PostgreSQL runs but its query failed.
            UNKNOWN.into()
        } else {
            state_word(view.state).into()
        },
        postmaster_start_time: None,
        role: role_word(view.role).into(),
        server_version: None,
        xlog: None,
        sync_standby: false,
        quorum_standby: false,
        timeline: None,
        replication_state: None,
        replication: None,
        pause: view.paused,
        cluster_unlocked: view.leader.as_ref().is_none_or(|l| l.expires_at <= now),
        dcs_last_seen: view.lease_seen_at.map_or(0, epoch_seconds),
        tags: view.tags.clone(),
        database_system_identifier: obs.map(|o| o.system_identifier.clone()),
        pending_restart: obs.is_some_and(|o| o.pending_restart),
        pending_restart_reason: pending_restart_reason(obs.is_some_and(|o| o.pending_restart)),
        patroni: PatroniAgent {
            version: VERSION.to_string(),
            scope: view.cluster.clone(),
            name: view.name.clone(),
        },
    };
    let Some(o) = obs else {
        return doc;
    };
    doc.postmaster_start_time = Some(postmaster_start_time(&o.start_time));
    doc.server_version = Some(o.version_num);
    doc.timeline = o.timeline;
    if o.in_recovery {
        doc.role = "replica".into();
        doc.xlog = Some(Xlog::Replica {
            received_location: o.received_lsn.or(o.replayed_lsn).map(|l| l.0),
            replayed_location: o.replayed_lsn.map(|l| l.0),
            // pg_last_xact_replay_timestamp(), in Patroni's words; null
            // until a transaction was replayed, as on Patroni.
            replayed_timestamp: o.replay_timestamp.as_ref().map(|(text, _)| text.clone()),
            paused: o.replay_paused,
        });
        match sync_state_on_primary(view).as_deref() {
            Some("sync") => doc.sync_standby = true,
            Some("quorum") => doc.quorum_standby = true,
            _ => {}
        }
        // Patroni names only `streaming` (and `in archive recovery`, which
        // needs a restore_command pgwarden never sets).
        doc.replication_state = o
            .receiver_status()
            .filter(|s| *s == "streaming")
            .map(str::to_string);
    } else {
        doc.role = "primary".into();
        doc.xlog = o.current_lsn.map(|l| Xlog::Primary { location: l.0 });
    }
    if !o.wal_senders.is_empty() {
        doc.replication = Some(o.wal_senders.iter().map(replication_row).collect());
    }
    doc
}

/// What `/cluster` knows of one member: its last document, if recent enough.
struct Known<'a> {
    name: &'a str,
    api_url: &'a str,
    /// The last document, heard within `ttl` (this member's own: always).
    doc: Option<&'a StatusDoc>,
    /// The last document however old, for what does not change (host, tags).
    last: Option<&'a StatusDoc>,
}

/// Patroni's `api_url`: the member's `/patroni` endpoint.
fn patroni_api_url(base: &str) -> String {
    format!("{}/patroni", base.trim_end_matches('/'))
}

/// `GET /cluster` as Patroni's `cluster_as_json` builds it, from this node's
/// view: itself and every other data member as last heard from.
pub fn patroni_cluster(view: &NodeView, now: Instant) -> PatroniCluster {
    let own = status_document(view, now);
    let own_url = view.api_url.clone().unwrap_or_default();
    let data_member = |name: &str, doc: Option<&StatusDoc>| match &view.membership {
        Some(m) => m.data_members.iter().any(|d| d == name),
        None => doc.is_none_or(|d| d.role != Role::Witness),
    };
    let mut known: Vec<Known<'_>> = Vec::new();
    if data_member(&view.name, Some(&own)) {
        known.push(Known {
            name: &view.name,
            api_url: &own_url,
            doc: Some(&own),
            last: Some(&own),
        });
    }
    for p in &view.peers {
        let last = p.last.as_ref().map(|(_, d)| d);
        if !data_member(&p.name, last) {
            continue;
        }
        let recent = p
            .last
            .as_ref()
            .filter(|(at, _)| now.saturating_duration_since(*at) <= view.ttl)
            .map(|(_, d)| d);
        known.push(Known {
            name: &p.name,
            api_url: &p.api_url,
            doc: recent,
            last,
        });
    }
    let leader = view
        .leader
        .as_ref()
        .filter(|l| l.expires_at > now)
        .map(|l| l.name.as_str());
    let leader_doc = known
        .iter()
        .find(|k| Some(k.name) == leader)
        .and_then(|k| k.doc);
    // Patroni measures lag against the leader's last reported position.
    let leader_lsn = match leader_doc {
        Some(d) if d.name == view.name => d.wal.as_ref().and_then(|w| w.lsn),
        _ => view
            .leader_lsn
            .or_else(|| leader_doc.and_then(|d| d.wal.as_ref()).and_then(|w| w.lsn)),
    };
    let synchronous = leader_doc.and_then(|d| d.synchronous.as_ref());
    let mut members: Vec<PatroniMember> = known
        .iter()
        .map(|k| member(k, leader, leader_lsn, synchronous))
        .collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    PatroniCluster {
        members,
        scope: view.cluster.clone(),
        pause: view.paused,
        scheduled_switchover: view
            .scheduled_switchover
            .as_ref()
            .map(|s| ScheduledSwitchover {
                at: isoformat(&crate::rfc3339::format(s.at)),
                from: Some(s.from.clone()),
                to: s.to.clone(),
            }),
    }
}

/// One member of `/cluster`.
fn member(
    k: &Known<'_>,
    leader: Option<&str>,
    leader_lsn: Option<Lsn>,
    synchronous: Option<&SynchronousDoc>,
) -> PatroniMember {
    let is_leader = Some(k.name) == leader;
    let role = if is_leader {
        // Patroni 4: the lease is held but the promotion has not finished.
        if k.doc.is_some_and(|d| d.role == Role::Replica) {
            "promoted"
        } else {
            "leader"
        }
    } else {
        match synchronous {
            Some(s) if s.standbys.iter().any(|n| n == k.name) => {
                if s.mode == "quorum" {
                    "quorum_standby"
                } else {
                    "sync_standby"
                }
            }
            _ => "replica",
        }
    };
    let state = match k.doc {
        None => UNKNOWN.to_string(),
        Some(d) => {
            let streaming = d
                .wal_receiver
                .as_ref()
                .is_some_and(|r| r.status == "streaming");
            if role != "leader" && streaming {
                "streaming".to_string()
            } else if d.role == Role::Witness {
                "stopped".to_string()
            } else {
                state_word(d.state).to_string()
            }
        }
    };
    let pending = k
        .doc
        .and_then(|d| d.postgres.as_ref())
        .is_some_and(|p| p.pending_restart);
    let mut m = PatroniMember {
        name: k.name.to_string(),
        role: role.to_string(),
        state,
        api_url: patroni_api_url(k.api_url),
        host: k
            .last
            .and_then(|d| d.postgres.as_ref())
            .map(|p| p.host.clone()),
        port: k.last.and_then(|d| d.postgres.as_ref()).map(|p| p.port),
        timeline: k.doc.and_then(|d| d.timeline),
        pending_restart: pending,
        pending_restart_reason: pending_restart_reason(pending),
        tags: k.last.map(|d| d.tags.clone()).unwrap_or_default(),
        receive_lsn: None,
        receive_lag: None,
        replay_lsn: None,
        replay_lag: None,
        lsn: None,
        lag: None,
    };
    if !is_leader {
        let wal = k.doc.and_then(|d| d.wal.as_ref());
        let received = wal.and_then(|w| w.received_lsn);
        let replayed = wal.and_then(|w| w.replayed_lsn);
        let further = match (received, replayed) {
            (None, None) => wal.and_then(|w| w.lsn),
            (r, p) => r.max(p),
        };
        let pair = |lsn: Option<Lsn>| match lsn {
            None => (UNKNOWN.to_string(), Lag::unknown()),
            Some(lsn) => (
                lsn.to_string(),
                leader_lsn.map_or_else(Lag::unknown, |l| Lag::Bytes(l.bytes_after(lsn))),
            ),
        };
        let (lsn, lag) = pair(received);
        (m.receive_lsn, m.receive_lag) = (Some(lsn), Some(lag));
        let (lsn, lag) = pair(replayed);
        (m.replay_lsn, m.replay_lag) = (Some(lsn), Some(lag));
        let (lsn, lag) = pair(further);
        (m.lsn, m.lag) = (Some(lsn), Some(lag));
    }
    m
}

/// `GET /history` as Patroni's arrays: one line per timeline switch (a
/// promotion), `[timeline that ended, LSN, reason, when, new leader]`.
/// pgwarden's other role changes (initdb, rejoins, fencing, re-clones) have
/// no timeline switch and are only in `/pgwarden/history`.
pub fn patroni_history(history: &[HistoryEntry]) -> Vec<HistoryLine> {
    history
        .iter()
        .filter_map(|e| {
            let timeline = e.timeline.filter(|t| *t >= 2)?;
            let lsn: Lsn = e.lsn.as_deref()?.parse().ok()?;
            Some(HistoryLine(
                timeline - 1,
                lsn.0,
                e.reason.clone(),
                isoformat(&e.at),
                e.new_leader.clone(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::PeerView;
    use crate::pg::probe::Observation;
    use crate::status_doc::{MembershipDoc, WalReceiver};
    use crate::view::{LeaderView, PendingSwitchover, PostgresView};
    use serde_json::{json, Value};
    use std::time::Duration;

    const PRIMARY_FIXTURE: &str =
        include_str!("../../../tests/fixtures/patroni/patroni_primary.json");
    const REPLICA_FIXTURE: &str =
        include_str!("../../../tests/fixtures/patroni/patroni_replica_unlocked.json");
    const CLUSTER_FIXTURE: &str = include_str!("../../../tests/fixtures/patroni/cluster.json");
    const HISTORY_FIXTURE: &str = include_str!("../../../tests/fixtures/patroni/history.json");

    fn sender(name: &str, sync_state: &str) -> WalSender {
        let other = json!({"usename": "replicator", "client_addr": "10.0.0.2", "sync_priority": 0});
        WalSender {
            application_name: Some(name.into()),
            state: Some("streaming".into()),
            sync_state: Some(sync_state.into()),
            replay_lsn: Some(Lsn(0x5000000)),
            lag_bytes: Some(0),
            other: other.as_object().cloned().unwrap_or_default(),
        }
    }

    fn observation(in_recovery: bool) -> Observation {
        Observation {
            in_recovery,
            version_num: 150018,
            system_identifier: "7311".into(),
            timeline: Some(2),
            current_lsn: (!in_recovery).then_some(Lsn(0x5000100)),
            received_lsn: in_recovery.then_some(Lsn(0x5000000)),
            replayed_lsn: in_recovery.then_some(Lsn(0x4F00000)),
            replay_paused: false,
            start_time: "2026-11-26T12:00:00Z".into(),
            replay_timestamp: None,
            pending_restart: false,
            wal_senders: if in_recovery {
                vec![]
            } else {
                vec![sender("pg2", "async"), sender("pg3", "async")]
            },
            slots: vec![],
            wal_receiver: in_recovery.then(|| WalReceiver {
                status: "streaming".into(),
                sender_host: Some("10.0.0.1".into()),
                sender_port: Some(5432),
                slot_name: Some("pg2".into()),
                received_tli: Some(2),
                other: Map::new(),
            }),
        }
    }

    /// A member of pg1..pg3 as its own loop publishes it.
    fn view(name: &str, obs: Option<Observation>, leader: Option<&str>) -> NodeView {
        let now = Instant::now();
        let mut v = NodeView::initial(name, "main", false, Duration::from_secs(10), 1 << 20);
        v.role = match &obs {
            Some(o) if o.in_recovery => Role::Replica,
            _ => Role::Primary,
        };
        v.state = if obs.is_some() {
            State::Running
        } else {
            State::Stopped
        };
        v.loop_last = Some(now);
        v.holds_lease = leader == Some(name);
        v.leader = leader.map(|l| LeaderView {
            name: l.into(),
            term: 3,
            expires_at: now + Duration::from_secs(10),
        });
        v.lease_seen_at = leader.map(|_| UNIX_EPOCH + Duration::from_secs(1_692_356_718));
        v.tags.clonefrom = true;
        v.api_url = Some(format!("http://10.0.0.{}:8008", &name[2..]));
        v.membership = Some(MembershipDoc {
            data_members: vec!["pg1".into(), "pg2".into(), "pg3".into()],
            voters: 3,
        });
        v.postgres = Some(PostgresView {
            pid: Some(42),
            host: format!("10.0.0.{}", &name[2..]),
            port: 5432,
            observed_at: obs.as_ref().map(|_| now),
            observation: obs,
        });
        v
    }

    fn primary() -> NodeView {
        view("pg1", Some(observation(false)), Some("pg1"))
    }

    fn replica() -> NodeView {
        view("pg2", Some(observation(true)), Some("pg1"))
    }

    /// `other`, as `view`'s peer, heard from `age` ago.
    fn peer(view: &mut NodeView, other: &NodeView, age: Duration) {
        let now = Instant::now();
        view.peers.push(PeerView {
            name: other.name.clone(),
            api_url: other.api_url.clone().unwrap_or_default(),
            last: Some((now - age, status_document(other, now))),
            error: None,
            fresh: age.is_zero(),
            asked_at: Some(now - age),
        });
    }

    fn json_type(v: &Value) -> &'static str {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// Every difference in shape between `ours` and Patroni's `theirs`:
    /// `-path` a field of theirs we lack, `+path` a field of ours they do
    /// not have, `path: ours≠theirs` a JSON type that differs. Arrays are
    /// compared element by element, up to the shorter.
    fn shape_differences(path: &str, ours: &Value, theirs: &Value, out: &mut Vec<String>) {
        match (ours, theirs) {
            (Value::Object(o), Value::Object(t)) => {
                for (k, tv) in t {
                    let p = format!("{path}.{k}");
                    match o.get(k) {
                        None => out.push(format!("-{p}")),
                        Some(ov) => shape_differences(&p, ov, tv, out),
                    }
                }
                for k in o.keys().filter(|k| !t.contains_key(*k)) {
                    out.push(format!("+{path}.{k}"));
                }
            }
            (Value::Array(o), Value::Array(t)) => {
                if o.len() != t.len() {
                    out.push(format!("{path}: {} elements≠{}", o.len(), t.len()));
                }
                for (i, (ov, tv)) in o.iter().zip(t).enumerate() {
                    shape_differences(&format!("{path}[{i}]"), ov, tv, out);
                }
            }
            (o, t) if json_type(o) != json_type(t) => {
                out.push(format!("{path}: {}≠{}", json_type(o), json_type(t)))
            }
            _ => {}
        }
    }

    fn differences(ours: &Value, theirs: &str) -> Vec<String> {
        let theirs: Value = serde_json::from_str(theirs).expect("a fixture is JSON");
        let mut out = Vec::new();
        shape_differences("", ours, &theirs, &mut out);
        out.sort();
        out
    }

    #[test]
    fn a_primary_s_patroni_document_has_every_field_of_patroni_s_example_with_its_type() {
        let ours = serde_json::to_value(patroni_status(&primary(), Instant::now())).unwrap();
        // Intended: none. (Patroni 4 says `primary` where the 3.1 example
        // says `master`: same field, same type.)
        assert_eq!(differences(&ours, PRIMARY_FIXTURE), Vec::<String>::new());
        assert_eq!(ours["role"], "primary");
        assert_eq!(ours["state"], "running");
        assert_eq!(ours["postmaster_start_time"], "2026-11-26 12:00:00+00:00");
        assert_eq!(ours["xlog"], json!({"location": 0x5000100}));
        assert_eq!(ours["server_version"], 150018);
        assert_eq!(ours["dcs_last_seen"], 1_692_356_718);
        assert_eq!(ours["tags"], json!({"clonefrom": true}));
        assert_eq!(
            ours["replication"][0],
            json!({"usename": "replicator", "application_name": "pg2", "client_addr": "10.0.0.2",
                   "state": "streaming", "sync_state": "async", "sync_priority": 0})
        );
        assert_eq!(
            ours["patroni"],
            json!({"version": VERSION, "scope": "main", "name": "pg1"})
        );
    }

    #[test]
    fn a_replica_s_patroni_document_has_every_field_of_patroni_s_example_with_its_type() {
        let mut v = replica();
        // The example is of an unlocked cluster.
        v.leader = None;
        let ours = serde_json::to_value(patroni_status(&v, Instant::now())).unwrap();
        assert_eq!(
            differences(&ours, REPLICA_FIXTURE),
            vec![
                // Patroni ≥ 3.0 reports the receiver's state (the 3.1
                // example predates the field in its docs).
                "+.replication_state".to_string(),
                // The example's replica lists wal senders (it was copied
                // from the primary's); this replica feeds no standby.
                "-.replication".to_string(),
            ]
        );
        assert_eq!(ours["role"], "replica");
        assert_eq!(ours["cluster_unlocked"], true);
        assert_eq!(ours["replication_state"], "streaming");
        assert_eq!(
            ours["xlog"],
            json!({"received_location": 0x5000000, "replayed_location": 0x4F00000,
                   "replayed_timestamp": null, "paused": false})
        );
    }

    #[test]
    fn given_postgres_does_not_answer_then_only_patroni_s_fields_without_postgres_appear() {
        let mut v = view("pg2", None, Some("pg1"));
        v.role = Role::Replica;
        v.state = State::Crashed;
        v.tags.clonefrom = false;
        let ours = serde_json::to_value(patroni_status(&v, Instant::now())).unwrap();
        assert_eq!(
            ours,
            json!({"state": "crashed", "role": "replica", "dcs_last_seen": 1_692_356_718,
                   "patroni": {"version": VERSION, "scope": "main", "name": "pg2"}})
        );
        v.state = State::Cloning;
        v.role = Role::Uninitialized;
        v.paused = true;
        v.leader = None;
        let ours = serde_json::to_value(patroni_status(&v, Instant::now())).unwrap();
        assert_eq!(ours["state"], "creating replica");
        assert_eq!(ours["role"], "uninitialized");
        assert_eq!(
            (&ours["pause"], &ours["cluster_unlocked"]),
            (&json!(true), &json!(true))
        );
    }

    #[test]
    fn given_pgwarden_states_then_patroni_s_words() {
        let words: Vec<&str> = [
            State::Starting,
            State::Running,
            State::Stopped,
            State::Crashed,
            State::Bootstrapping,
            State::Cloning,
            State::Rewinding,
            State::Fencing,
            State::Fenced,
            State::Stopping,
            State::Paused,
        ]
        .into_iter()
        .map(state_word)
        .collect();
        assert_eq!(
            words,
            [
                "starting",
                "running",
                "stopped",
                "crashed",
                "initializing new cluster",
                "creating replica",
                "stopped",
                "stopping",
                "stopped",
                "stopping",
                "stopped"
            ]
        );
    }

    #[test]
    fn given_a_witness_then_role_witness_state_stopped_and_no_member_of_the_patroni_cluster() {
        let mut w = NodeView::initial("w1", "main", true, Duration::from_secs(10), 0);
        w.state = State::Running;
        let ours = patroni_status(&w, Instant::now());
        assert_eq!(
            (ours.role.as_str(), ours.state.as_str()),
            ("witness", "stopped")
        );
        assert!(ours.xlog.is_none() && ours.server_version.is_none());
        let mut v = primary();
        let mut witness_doc = w.clone();
        witness_doc.name = "w1".into();
        peer(&mut v, &witness_doc, Duration::ZERO);
        let names: Vec<String> = patroni_cluster(&v, Instant::now())
            .members
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, ["pg1"]);
    }

    #[test]
    fn given_the_primary_counts_this_replica_then_sync_standby_or_quorum_standby() {
        for (sync_state, mode, field) in [
            ("sync", "on", "sync_standby"),
            ("quorum", "quorum", "quorum_standby"),
        ] {
            let mut p = primary();
            if let Some(o) = p.postgres.as_mut().and_then(|pg| pg.observation.as_mut()) {
                o.wal_senders = vec![sender("pg2", sync_state), sender("pg3", "async")];
            }
            // From JSON: fields added later default.
            p.synchronous = serde_json::from_value(json!({
                "mode": mode, "k": 1, "standbys": ["pg2"], "missing": [], "writes_blocked": false
            }))
            .expect("a synchronous document");
            let mut r = replica();
            peer(&mut r, &p, Duration::ZERO);
            let ours = serde_json::to_value(patroni_status(&r, Instant::now())).unwrap();
            assert_eq!(ours[field], true, "{ours}");
            let other = if field == "sync_standby" {
                "quorum_standby"
            } else {
                "sync_standby"
            };
            assert!(ours.get(other).is_none(), "{ours}");
            // and /cluster names its role
            let cluster = patroni_cluster(&r, Instant::now());
            let pg2 = cluster.members.iter().find(|m| m.name == "pg2").unwrap();
            assert_eq!(pg2.role, field);
        }
        // an asynchronous replica says neither
        let mut r = replica();
        peer(&mut r, &primary(), Duration::ZERO);
        let ours = serde_json::to_value(patroni_status(&r, Instant::now())).unwrap();
        assert!(ours.get("sync_standby").is_none() && ours.get("quorum_standby").is_none());
    }

    #[test]
    fn a_pending_restart_is_reported_with_a_reason_object() {
        let mut v = primary();
        if let Some(o) = v.postgres.as_mut().and_then(|pg| pg.observation.as_mut()) {
            o.pending_restart = true;
        }
        let ours = serde_json::to_value(patroni_status(&v, Instant::now())).unwrap();
        assert_eq!(ours["pending_restart"], true);
        assert_eq!(ours["pending_restart_reason"], json!({}));
        let ours = serde_json::to_value(patroni_status(&primary(), Instant::now())).unwrap();
        assert!(
            ours.get("pending_restart").is_none() && ours.get("pending_restart_reason").is_none()
        );
    }

    /// pg1 (primary, leader) as pg2 sees it, with pg2 itself and pg3.
    fn cluster_from_pg2(pg3_age: Option<Duration>) -> PatroniCluster {
        let mut r = replica();
        peer(&mut r, &primary(), Duration::ZERO);
        let pg3 = view("pg3", Some(observation(true)), Some("pg1"));
        match pg3_age {
            Some(age) => peer(&mut r, &pg3, age),
            None => r.peers.push(PeerView {
                name: "pg3".into(),
                api_url: "http://10.0.0.3:8008".into(),
                last: None,
                error: Some("connection refused".into()),
                fresh: false,
                asked_at: None,
            }),
        }
        r.scheduled_switchover = Some(PendingSwitchover {
            at: UNIX_EPOCH + Duration::from_secs(1_695_544_560),
            from: "pg1".into(),
            to: Some("pg3".into()),
        });
        patroni_cluster(&r, Instant::now())
    }

    #[test]
    fn the_cluster_document_has_every_field_of_patroni_s_example_with_its_type() {
        let ours = serde_json::to_value(cluster_from_pg2(Some(Duration::ZERO))).unwrap();
        let mut two = ours.clone();
        // The example has the leader and one replica.
        two["members"].as_array_mut().unwrap().truncate(2);
        assert_eq!(
            differences(&two, CLUSTER_FIXTURE),
            vec![
                // Patroni 4's per-position lags (the 3.1 example predates them).
                "+.members[1].lsn".to_string(),
                "+.members[1].receive_lag".to_string(),
                "+.members[1].receive_lsn".to_string(),
                "+.members[1].replay_lag".to_string(),
                "+.members[1].replay_lsn".to_string(),
            ]
        );
        let m = &ours["members"];
        assert_eq!(
            (&m[0]["name"], &m[0]["role"], &m[0]["state"]),
            (&json!("pg1"), &json!("leader"), &json!("running"))
        );
        assert_eq!(m[0]["api_url"], "http://10.0.0.1:8008/patroni");
        assert!(m[0].get("lag").is_none());
        for (i, name) in [(1, "pg2"), (2, "pg3")] {
            assert_eq!(
                (&m[i]["name"], &m[i]["role"], &m[i]["state"]),
                (&json!(name), &json!("replica"), &json!("streaming"))
            );
            // pg1 at 0/5000100; the replicas received 0/5000000, replayed 0/4F00000
            assert_eq!(m[i]["lag"], 0x100);
            assert_eq!(m[i]["receive_lag"], 0x100);
            assert_eq!(m[i]["replay_lag"], 0x100100);
            assert_eq!(m[i]["replay_lsn"], "0/4F00000");
        }
        assert_eq!(
            ours["scheduled_switchover"],
            json!({"at": "2023-09-24T08:36:00+00:00", "from": "pg1", "to": "pg3"})
        );
        assert_eq!(ours["scope"], "main");
        assert!(ours.get("pause").is_none());
    }

    #[test]
    fn given_a_member_not_heard_from_within_ttl_then_it_is_listed_with_state_unknown() {
        for age in [None, Some(Duration::from_secs(11))] {
            let ours = serde_json::to_value(cluster_from_pg2(age)).unwrap();
            let pg3 = &ours["members"][2];
            assert_eq!(pg3["name"], "pg3");
            assert_eq!(pg3["state"], "unknown");
            assert_eq!(pg3["role"], "replica");
            assert_eq!(pg3["api_url"], "http://10.0.0.3:8008/patroni");
            assert_eq!(
                (&pg3["lag"], &pg3["lsn"]),
                (&json!("unknown"), &json!("unknown"))
            );
            // what does not change is kept from its last document
            assert_eq!(pg3.get("host").is_some(), age.is_some(), "{pg3}");
        }
    }

    #[test]
    fn given_no_leader_then_no_member_is_leader_and_lags_are_unknown() {
        let mut r = replica();
        r.leader = None;
        let c = patroni_cluster(&r, Instant::now());
        assert_eq!(c.members.len(), 1);
        assert_eq!(c.members[0].role, "replica");
        assert_eq!(c.members[0].lsn.as_deref(), Some("0/5000000"));
        assert_eq!(c.members[0].lag, Some(Lag::unknown()));
    }

    #[test]
    fn history_has_patroni_s_arrays_one_per_timeline_switch() {
        let entry =
            |timeline, lsn: Option<&str>, reason: &str, at: &str, leader: &str| HistoryEntry {
                timeline,
                lsn: lsn.map(str::to_string),
                reason: reason.into(),
                at: at.into(),
                new_leader: leader.into(),
            };
        let history = vec![
            entry(
                Some(1),
                Some("0/1000000"),
                "initialized a new cluster with initdb",
                "2026-11-26T12:00:00Z",
                "pg1",
            ),
            entry(
                Some(2),
                Some("0/1870998"),
                "promoted: pg1 is unreachable",
                "2026-11-26T12:05:00Z",
                "pg2",
            ),
            entry(
                None,
                None,
                "rejoined 10.0.0.2:5432 as a standby after pg_rewind",
                "2026-11-26T12:06:00Z",
                "",
            ),
            entry(
                Some(3),
                Some("0/3000060"),
                "promoted: switchover",
                "2026-11-26T12:10:00Z",
                "pg1",
            ),
        ];
        let ours = serde_json::to_value(patroni_history(&history)).unwrap();
        assert_eq!(
            ours,
            json!([
                [
                    1,
                    0x1870998,
                    "promoted: pg1 is unreachable",
                    "2026-11-26T12:05:00+00:00",
                    "pg2"
                ],
                [
                    2,
                    0x3000060,
                    "promoted: switchover",
                    "2026-11-26T12:10:00+00:00",
                    "pg1"
                ]
            ])
        );
        let mut diffs = Vec::new();
        let theirs: Value = serde_json::from_str(HISTORY_FIXTURE).unwrap();
        shape_differences("", &ours[0], &theirs[0], &mut diffs);
        // Patroni ≥ 2.0 adds the new leader (the documented example predates it).
        assert_eq!(diffs, [": 5 elements≠4"]);
        assert_eq!(patroni_history(&[]), vec![]);
    }
}
