//! The status document (`GET /status` and every health endpoint's body)
//! and the cluster document (`GET /cluster`), built from the node's view
//! alone, in the types of [`crate::status_doc`].

use std::time::Instant;

use crate::status_doc::{
    AgentDoc, ClusterDoc, ClusterMember, LeaderDoc, PatroniDoc, PatroniReplication, PostgresDoc,
    State, StatusDoc, WalDoc, WalSender, XlogDoc,
};
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
    view.observation()?.receiver_status()
}

/// Builds the document in SPEC's shape, with Patroni's field names beside ours.
pub fn status_document(view: &NodeView, now: Instant) -> StatusDoc {
    let obs = view.observation();
    let postgres = view.postgres.as_ref().map(|pg| PostgresDoc {
        version_num: obs.map(|o| o.version_num),
        system_identifier: obs.map(|o| o.system_identifier.clone()),
        timeline: obs.and_then(|o| o.timeline),
        host: pg.host.clone(),
        port: pg.port,
        pid: pg.pid,
        start_time: obs.map(|o| o.start_time.clone()),
        pending_restart: obs.is_some_and(|o| o.pending_restart),
    });
    let wal = obs.map(|o| WalDoc {
        lsn: o.current_lsn.or(o.replayed_lsn),
        received_lsn: o.received_lsn,
        replayed_lsn: o.replayed_lsn,
        replay_paused: o.replay_paused,
        lag_bytes: lag_bytes(view),
    });
    let xlog = obs.map(|o| {
        if o.in_recovery {
            XlogDoc {
                location: None,
                received_location: o.received_lsn.map(|l| l.0),
                replayed_location: o.replayed_lsn.map(|l| l.0),
                paused: Some(o.replay_paused),
            }
        } else {
            XlogDoc {
                location: o.current_lsn.map(|l| l.0),
                received_location: None,
                replayed_location: None,
                paused: None,
            }
        }
    });
    let wal_senders: Vec<WalSender> = obs.map(|o| o.wal_senders.clone()).unwrap_or_default();
    StatusDoc {
        name: view.name.clone(),
        cluster: view.cluster.clone(),
        role: view.role,
        // Paused, a running server still says `running` (peers and load
        // balancers read it); one the agent leaves down says `paused`.
        state: match view.state {
            State::Stopped | State::Crashed | State::Fenced if view.paused => State::Paused,
            state => state,
        },
        pause: view.paused,
        reason: view.reason.clone(),
        progress_pct: view.progress_pct,
        agent: AgentDoc {
            version: VERSION.to_string(),
            uptime_s: now.saturating_duration_since(view.agent_started).as_secs(),
            loop_last_ms_ago: view
                .loop_last
                .map(|t| now.saturating_duration_since(t).as_millis() as u64),
            paused: view.paused,
            pause_version: view.pause_version,
        },
        postgres,
        wal,
        wal_receiver: obs.and_then(|o| o.wal_receiver.clone()),
        wal_receiver_problem: view.wal_receiver_problem.clone(),
        replication: wal_senders.iter().map(patroni_replication_row).collect(),
        synchronous: view.synchronous.clone(),
        membership: view.membership.clone(),
        renamed_aside: view.renamed_aside,
        observed_ms_ago: view
            .postgres
            .as_ref()
            .and_then(|p| p.observed_at)
            .map(|t| now.saturating_duration_since(t).as_millis() as u64),
        wal_senders,
        slots: obs.map(|o| o.slots.clone()).unwrap_or_default(),
        leader: view.leader.as_ref().map(|l| LeaderDoc {
            name: l.name.clone(),
            term: l.term,
            lease_remaining_ms: l.expires_at.saturating_duration_since(now).as_millis() as u64,
        }),
        last_leader_position: view.last_leader_position,
        handover_to: view.handover_to.clone(),
        designated: view.designated,
        xlog,
        server_version: obs.map(|o| o.version_num),
        timeline: obs.and_then(|o| o.timeline),
        patroni: Some(PatroniDoc {
            version: VERSION.to_string(),
            scope: view.cluster.clone(),
            name: view.name.clone(),
        }),
        tags: view.tags.clone(),
    }
}

/// One `replication` entry in Patroni's shape.
fn patroni_replication_row(sender: &WalSender) -> PatroniReplication {
    let pick = |k: &str| {
        sender
            .other
            .get(k)
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    let text = |v: &Option<String>| {
        v.clone()
            .map(serde_json::Value::from)
            .unwrap_or(serde_json::Value::Null)
    };
    PatroniReplication {
        usename: pick("usename"),
        application_name: text(&sender.application_name),
        client_addr: pick("client_addr"),
        state: text(&sender.state),
        sync_state: text(&sender.sync_state),
        sync_priority: pick("sync_priority"),
    }
}

/// `GET /cluster`: this member's document and every other member's last
/// one (with its age, or why it is missing), the leader and the term.
pub fn cluster_document(view: &NodeView, now: Instant) -> ClusterDoc {
    let mut members = vec![ClusterMember {
        name: view.name.clone(),
        api_url: None,
        age_ms: None,
        error: None,
        status: Some(status_document(view, now)),
    }];
    for p in &view.peers {
        members.push(ClusterMember {
            name: p.name.clone(),
            api_url: Some(p.api_url.clone()),
            age_ms: p
                .last
                .as_ref()
                .map(|(at, _)| now.saturating_duration_since(*at).as_millis() as u64),
            error: p.error.clone(),
            status: p.last.as_ref().map(|(_, d)| d.clone()),
        });
    }
    ClusterDoc {
        cluster: view.cluster.clone(),
        leader: view.leader.as_ref().map(|l| l.name.clone()),
        term: view.leader.as_ref().map(|l| l.term),
        members,
    }
}
