//! The status document (`GET /status` and every health endpoint's body),
//! built from the node's view alone.

use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::pg::Lsn;
use crate::view::NodeView;

/// The agent's version, as reported in `/status`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How far a replica trails: the leader's last reported position minus
/// what this replica replayed (received minus replayed when the leader's
/// position is unknown); 0 on a primary; `None` when unknown.
pub fn lag_bytes(view: &NodeView) -> Option<u64> {
    let obs = view.observation()?;
    if !obs.in_recovery {
        return Some(0);
    }
    let replayed = obs.replayed_lsn?;
    match view.leader_lsn {
        Some(leader) => Some(leader.bytes_after(replayed)),
        None => Some(obs.received_lsn?.bytes_after(replayed)),
    }
}

/// The wal receiver's `status` column, when a receiver runs.
pub fn receiver_status(view: &NodeView) -> Option<&str> {
    view.observation()?
        .wal_receiver
        .as_ref()?
        .get("status")?
        .as_str()
}

fn lsn_value(lsn: Option<Lsn>) -> Value {
    lsn.map(|l| Value::String(l.to_string()))
        .unwrap_or(Value::Null)
}

fn lsn_bytes(lsn: Option<Lsn>) -> Value {
    lsn.map(|l| Value::from(l.0)).unwrap_or(Value::Null)
}

/// Builds the document in SPEC's shape, with Patroni's field names beside ours.
pub fn status_document(view: &NodeView, now: Instant) -> Value {
    let obs = view.observation();
    let loop_ms = view
        .loop_last
        .map(|t| Value::from(now.saturating_duration_since(t).as_millis() as u64))
        .unwrap_or(Value::Null);
    let postgres = view.postgres.as_ref().map(|pg| {
        json!({
            "version_num": obs.map(|o| o.version_num),
            "system_identifier": obs.map(|o| o.system_identifier.clone()),
            "timeline": obs.and_then(|o| o.timeline),
            "host": pg.host,
            "port": pg.port,
            "pid": pg.pid,
            "start_time": obs.map(|o| o.start_time.clone()),
            "pending_restart": obs.map(|o| o.pending_restart).unwrap_or(false),
        })
    });
    let wal = obs.map(|o| {
        json!({
            "lsn": lsn_value(o.current_lsn.or(o.replayed_lsn)),
            "received_lsn": lsn_value(o.received_lsn),
            "replayed_lsn": lsn_value(o.replayed_lsn),
            "replay_paused": o.replay_paused,
            "lag_bytes": lag_bytes(view),
        })
    });
    let leader = view.leader.as_ref().map(|l| {
        json!({
            "name": l.name,
            "term": l.term,
            "lease_remaining_ms": l.expires_at.saturating_duration_since(now).as_millis() as u64,
        })
    });
    let wal_senders: Vec<Value> = obs
        .map(|o| o.wal_senders.iter().cloned().map(Value::Object).collect())
        .unwrap_or_default();
    let xlog = obs.map(|o| {
        if o.in_recovery {
            json!({
                "received_location": lsn_bytes(o.received_lsn),
                "replayed_location": lsn_bytes(o.replayed_lsn),
                "paused": o.replay_paused,
            })
        } else {
            json!({ "location": lsn_bytes(o.current_lsn) })
        }
    });
    let replication: Vec<Value> = obs
        .map(|o| o.wal_senders.iter().map(patroni_replication_row).collect())
        .unwrap_or_default();
    let mut doc = json!({
        "name": view.name,
        "cluster": view.cluster,
        "role": view.role,
        "state": if view.paused { Value::from("paused") } else { serde_json::to_value(view.state).unwrap_or(Value::Null) },
        "reason": view.reason,
        "agent": {
            "version": VERSION,
            "uptime_s": now.saturating_duration_since(view.agent_started).as_secs(),
            "loop_last_ms_ago": loop_ms,
            "paused": view.paused,
        },
        "postgres": postgres,
        "wal": wal,
        "wal_receiver": obs.and_then(|o| o.wal_receiver.clone()),
        "wal_receiver_problem": view.wal_receiver_problem,
        "wal_senders": wal_senders,
        "leader": leader,
        "xlog": xlog,
        "server_version": obs.map(|o| o.version_num),
        "timeline": obs.and_then(|o| o.timeline),
        "replication": replication,
        "patroni": { "version": VERSION, "scope": view.cluster, "name": view.name },
    });
    if let (Some(pct), Some(map)) = (view.progress_pct, doc.as_object_mut()) {
        map.insert("progress_pct".into(), Value::from(pct));
    }
    doc
}

/// One `replication` entry in Patroni's shape.
fn patroni_replication_row(sender: &Map<String, Value>) -> Value {
    let pick = |k: &str| sender.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "usename": pick("usename"),
        "application_name": pick("application_name"),
        "client_addr": pick("client_addr"),
        "state": pick("state"),
        "sync_state": pick("sync_state"),
        "sync_priority": pick("sync_priority"),
    })
}

/// `GET /cluster`: this member's document and every other member's last
/// one (with its age, or why it is missing), the leader and the term.
pub fn cluster_document(view: &NodeView, now: Instant) -> Value {
    let mut members = vec![status_document(view, now)];
    for p in &view.peers {
        let mut doc = match &p.last {
            Some((at, doc)) => {
                let mut d = doc.clone();
                if let Some(m) = d.as_object_mut() {
                    m.insert(
                        "age_ms".into(),
                        Value::from(now.saturating_duration_since(*at).as_millis() as u64),
                    );
                }
                d
            }
            None => json!({ "name": p.name, "role": Value::Null, "state": "unknown" }),
        };
        if let Some(m) = doc.as_object_mut() {
            m.insert("api_url".into(), Value::from(p.api_url.clone()));
            m.insert(
                "error".into(),
                p.error.clone().map(Value::from).unwrap_or(Value::Null),
            );
        }
        members.push(doc);
    }
    json!({
        "cluster": view.cluster,
        "leader": view.leader.as_ref().map(|l| l.name.clone()),
        "term": view.leader.as_ref().map(|l| l.term),
        "members": members,
    })
}
