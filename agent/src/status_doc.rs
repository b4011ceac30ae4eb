//! The status document: the wire format of `GET /status` (and of every
//! health endpoint's body), in one place. The API serializes it; the
//! peers' reader and the CLI deserialize it. Nothing else in the agent
//! reads another member's JSON, so renaming a field here is a compile
//! error everywhere it matters, not a silently stopped failover.
//!
//! Deliberately low in the house: it depends on nothing of `api/`,
//! `peers` or `ha/`. Reading is lenient where versions may differ in a
//! rolling upgrade (fields added later default), strict where a decision
//! depends on the value (a member's name, role and state must be there).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::pg::Lsn;

/// What a member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs PostgreSQL read-write.
    Primary,
    /// Runs PostgreSQL in recovery.
    Replica,
    /// Runs no PostgreSQL; votes only.
    Witness,
    /// Has no data yet.
    Uninitialized,
}

/// What a member's PostgreSQL is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Started, not yet (or no longer) answering the agent's probe.
    Starting,
    /// Answering.
    Running,
    /// Not running, on purpose or waiting.
    Stopped,
    /// Exited unexpectedly; a restart is scheduled.
    Crashed,
    /// `initdb` is running.
    Bootstrapping,
    /// `pg_basebackup` is running.
    Cloning,
    /// `pg_rewind` is running.
    Rewinding,
    /// The agent is stopping a primary that may no longer be one: no
    /// write may be sent here.
    Fencing,
    /// Stopped because this member may not be primary.
    Fenced,
    /// The agent is stopping PostgreSQL (a rejoin, a shutdown).
    Stopping,
    /// The agent changes nothing until resumed.
    Paused,
}

/// `agent`: the agent itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentDoc {
    /// pgwarden's version.
    pub version: String,
    /// Seconds since the agent started.
    pub uptime_s: u64,
    /// How long ago the HA loop last completed (null before the first).
    pub loop_last_ms_ago: Option<u64>,
    /// Automatic actions are paused.
    #[serde(default)]
    pub paused: bool,
    /// When the pause flag was last set or cleared (milliseconds since the
    /// epoch): members adopt the newest they see, so that one `pause`
    /// reaches every member.
    #[serde(default)]
    pub pause_version: u64,
}

/// `postgres`: the local server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostgresDoc {
    /// `server_version_num`, when it answered.
    pub version_num: Option<u32>,
    /// The cluster's system identifier, when it answered.
    pub system_identifier: Option<String>,
    /// Its timeline, when it answered.
    pub timeline: Option<u32>,
    /// Where other members reach it.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The postmaster's pid.
    pub pid: Option<i32>,
    /// When it started (RFC 3339).
    pub start_time: Option<String>,
    /// A changed setting waits for a restart.
    #[serde(default)]
    pub pending_restart: bool,
}

/// `wal`: positions in PostgreSQL's notation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalDoc {
    /// Written (primary) or replayed (replica) position.
    pub lsn: Option<Lsn>,
    /// Received (replica).
    pub received_lsn: Option<Lsn>,
    /// Replayed (replica).
    pub replayed_lsn: Option<Lsn>,
    /// Replay is paused.
    #[serde(default)]
    pub replay_paused: bool,
    /// How far this replica trails the leader's last reported position.
    pub lag_bytes: Option<u64>,
}

/// `pg_stat_wal_receiver`: the columns the agent and its CLI read, and
/// every other column of the row as PostgreSQL gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalReceiver {
    /// `streaming`, `waiting`, `catchup`, ...
    pub status: String,
    /// The upstream's host.
    #[serde(default)]
    pub sender_host: Option<String>,
    /// The upstream's port.
    #[serde(default)]
    pub sender_port: Option<u32>,
    /// The slot it streams from.
    #[serde(default)]
    pub slot_name: Option<String>,
    /// The timeline it receives.
    #[serde(default)]
    pub received_tli: Option<u32>,
    /// The other columns (`written_lsn`, `flushed_lsn`, `latest_end_lsn`,
    /// times, `conninfo`, ...), which differ between major versions.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One `pg_stat_replication` row: the columns read here, every other
/// column as PostgreSQL gave it, and the agent's `lag_bytes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalSender {
    /// The standby's `application_name` (its member name).
    #[serde(default)]
    pub application_name: Option<String>,
    /// `streaming`, `catchup`, ...
    #[serde(default)]
    pub state: Option<String>,
    /// `async`, `sync`, `quorum`, `potential`.
    #[serde(default)]
    pub sync_state: Option<String>,
    /// Where the standby replayed up to.
    #[serde(default)]
    pub replay_lsn: Option<Lsn>,
    /// The primary's position minus `replay_lsn`.
    #[serde(default)]
    pub lag_bytes: Option<u64>,
    /// The other columns.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `synchronous`: on a primary in a synchronous mode, who acknowledges
/// its commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynchronousDoc {
    /// `"on"` or `"quorum"`.
    pub mode: String,
    /// How many standbys acknowledge each commit.
    pub k: usize,
    /// The listed standbys PostgreSQL counts now.
    pub standbys: Vec<String>,
    /// The listed standbys that are not connected.
    pub missing: Vec<String>,
    /// Fewer than `k` standbys count: commits wait.
    pub writes_blocked: bool,
    /// `k` is above what the member list alone asks: some member runs with
    /// another list (a membership change under way).
    #[serde(default)]
    pub k_raised: bool,
    /// Members tagged `nosync`, left out of the list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nosync: Vec<String>,
    /// Members tagged `nosync` but listed all the same: without them fewer
    /// than `k` standbys would be listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nosync_kept: Vec<String>,
}

/// `membership`: the member list this agent runs with, as far as quorum
/// commit is concerned (a primary covers every list its members report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipDoc {
    /// The members that run PostgreSQL, this one included if it does.
    pub data_members: Vec<String>,
    /// Every member, witnesses included: the lease's voters.
    pub voters: usize,
}

impl MembershipDoc {
    /// The list `cfg` runs with.
    pub fn of(cfg: &crate::config::Config) -> MembershipDoc {
        MembershipDoc {
            data_members: cfg.data_members().map(|m| m.name.clone()).collect(),
            voters: cfg.cluster.members.len(),
        }
    }
}

/// One physical replication slot, as `pg_replication_slots` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationSlot {
    /// `slot_name`: the member it is kept for, when the agent made it.
    pub name: String,
    /// A walsender streams from it now.
    pub active: bool,
    /// The oldest WAL it keeps (null: it reserves none).
    pub restart_lsn: Option<Lsn>,
    /// How much WAL it keeps: from `restart_lsn` to the primary's current
    /// position, or to a standby's replay position.
    pub retained_bytes: Option<u64>,
    /// `reserved`, `extended`, `unreserved` or `lost` (PostgreSQL 13+).
    pub wal_status: Option<String>,
}

/// `leader`: who holds the leader lease, as this member knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderDoc {
    /// The holder.
    pub name: String,
    /// The lease's term.
    pub term: u64,
    /// Time left on this member's clock.
    pub lease_remaining_ms: u64,
}

/// A WAL position on a timeline: what candidates compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The timeline.
    pub timeline: u32,
    /// The position on it.
    pub lsn: Lsn,
}

/// Patroni's `xlog` (positions as byte integers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XlogDoc {
    /// A primary's written position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<u64>,
    /// A replica's received position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_location: Option<u64>,
    /// A replica's replayed position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_location: Option<u64>,
    /// A replica's replay is paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// One entry of Patroni's `replication`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatroniReplication {
    /// `usename`.
    pub usename: Value,
    /// `application_name`.
    pub application_name: Value,
    /// `client_addr`.
    pub client_addr: Value,
    /// `state`.
    pub state: Value,
    /// `sync_state`.
    pub sync_state: Value,
    /// `sync_priority`.
    pub sync_priority: Value,
}

/// Patroni's `patroni` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatroniDoc {
    /// The agent's version.
    pub version: String,
    /// The cluster name.
    pub scope: String,
    /// The member name.
    pub name: String,
}

/// `GET /status`: one member as it describes itself (SPEC "HTTP API").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDoc {
    /// Member name.
    pub name: String,
    /// Cluster name.
    pub cluster: String,
    /// Role.
    pub role: Role,
    /// State.
    pub state: State,
    /// Why it is in this state, when it is not plainly healthy.
    #[serde(default)]
    pub reason: Option<String>,
    /// A clone's progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_pct: Option<u8>,
    /// The agent.
    pub agent: AgentDoc,
    /// The local PostgreSQL (null on a witness).
    #[serde(default)]
    pub postgres: Option<PostgresDoc>,
    /// WAL positions, when PostgreSQL answered.
    #[serde(default)]
    pub wal: Option<WalDoc>,
    /// The receiver row, while a receiver runs.
    #[serde(default)]
    pub wal_receiver: Option<WalReceiver>,
    /// Why a replica does not stream, in words.
    #[serde(default)]
    pub wal_receiver_problem: Option<String>,
    /// The senders (a primary).
    #[serde(default)]
    pub wal_senders: Vec<WalSender>,
    /// The physical replication slots (`pg_replication_slots`); absent in
    /// the documents of agents older than this field.
    #[serde(default)]
    pub slots: Vec<ReplicationSlot>,
    /// The lease holder as this member knows it.
    #[serde(default)]
    pub leader: Option<LeaderDoc>,
    /// The last position this member saw the primary at (what
    /// `max_lag_on_failover` is measured against).
    #[serde(default)]
    pub last_leader_position: Option<Position>,
    /// A primary handing its role over (a switchover): to whom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover_to: Option<String>,
    /// An operator chose this member to take over (a failover).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub designated: bool,
    /// Patroni's `pause`: the cluster is paused (present only then).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pause: bool,
    /// Patroni's `xlog`.
    #[serde(default)]
    pub xlog: Option<XlogDoc>,
    /// Patroni's `server_version`.
    #[serde(default)]
    pub server_version: Option<u32>,
    /// Patroni's `timeline`.
    #[serde(default)]
    pub timeline: Option<u32>,
    /// Patroni's `replication`.
    #[serde(default)]
    pub replication: Vec<PatroniReplication>,
    /// On a primary in a synchronous mode: who acknowledges commits.
    #[serde(default)]
    pub synchronous: Option<SynchronousDoc>,
    /// The member list this agent runs with.
    #[serde(default)]
    pub membership: Option<MembershipDoc>,
    /// It has no data, and its former data directory was renamed aside
    /// (a failed rewind, a re-clone): it may have acknowledged commits it
    /// no longer holds, so it does not count as compared with in a
    /// synchronous mode.
    #[serde(default)]
    pub renamed_aside: bool,
    /// How long before this answer PostgreSQL was observed for its
    /// positions (`wal`), in ms: a candidate compares only with positions
    /// observed after the old primary stopped.
    #[serde(default)]
    pub observed_ms_ago: Option<u64>,
    /// Patroni's `patroni`.
    #[serde(default)]
    pub patroni: Option<PatroniDoc>,
    /// This member's tags (`node.tags`), as Patroni reports them: built-in
    /// flags that are off are left out.
    #[serde(default)]
    pub tags: crate::config::Tags,
}

impl StatusDoc {
    /// Its PostgreSQL's position on its timeline, when it answered.
    pub fn position(&self) -> Option<Position> {
        let wal = self.wal.as_ref()?;
        let lsn = match (wal.received_lsn, wal.replayed_lsn) {
            (None, None) => wal.lsn?,
            (r, p) => r.max(p)?,
        };
        Some(Position {
            timeline: self.timeline?,
            lsn,
        })
    }

    /// Where its PostgreSQL is reached.
    pub fn pg_endpoint(&self) -> Option<(String, u16)> {
        self.postgres.as_ref().map(|p| (p.host.clone(), p.port))
    }

    /// Its system identifier, when its PostgreSQL answered.
    pub fn system_identifier(&self) -> Option<&str> {
        self.postgres.as_ref()?.system_identifier.as_deref()
    }

    /// It runs PostgreSQL read-write and says so.
    pub fn is_running_primary(&self) -> bool {
        self.role == Role::Primary && self.state == State::Running
    }

    /// It has no data directory yet and is not making one.
    pub fn is_uninitialized(&self) -> bool {
        self.role == Role::Uninitialized
            && !matches!(self.state, State::Bootstrapping | State::Cloning)
    }

    /// It says it holds the leader lease and runs as primary.
    pub fn claims_leadership(&self) -> bool {
        self.role == Role::Primary && self.leader.as_ref().is_some_and(|l| l.name == self.name)
    }
}

/// One member in `GET /cluster`: its last document (absent when it never
/// answered), with how old it is and why the last request failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterMember {
    /// Member name.
    pub name: String,
    /// Its API.
    #[serde(default)]
    pub api_url: Option<String>,
    /// Age of its document in milliseconds (absent for this member's own).
    #[serde(default)]
    pub age_ms: Option<u64>,
    /// Why the last request failed, if it did.
    #[serde(default)]
    pub error: Option<String>,
    /// Its document, when one arrived.
    #[serde(default)]
    pub status: Option<StatusDoc>,
}

/// `GET /cluster`: every member as this member last saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterDoc {
    /// Cluster name.
    pub cluster: String,
    /// The lease holder, as this member knows it.
    pub leader: Option<String>,
    /// Its term.
    pub term: Option<u64>,
    /// Every member, this one first.
    pub members: Vec<ClusterMember>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica() -> StatusDoc {
        serde_json::from_value(serde_json::json!({
            "name": "pg2", "cluster": "main", "role": "replica", "state": "running",
            "agent": {"version": "0.1.0", "uptime_s": 3, "loop_last_ms_ago": 20, "paused": false},
            "postgres": {"version_num": 150018, "system_identifier": "7311", "timeline": 2,
                         "host": "10.0.0.2", "port": 5432, "pid": 42, "start_time": null, "pending_restart": false},
            "wal": {"lsn": "0/5000148", "received_lsn": "0/5000200", "replayed_lsn": "0/5000148",
                    "replay_paused": false, "lag_bytes": 0},
            "wal_receiver": {"status": "streaming", "sender_host": "10.0.0.1", "sender_port": 5432,
                             "slot_name": "pg2", "received_tli": 2, "written_lsn": "0/5000200",
                             "conninfo": "host=10.0.0.1"},
            "wal_senders": [],
            "leader": {"name": "pg1", "term": 7, "lease_remaining_ms": 8200},
            "timeline": 2
        }))
        .expect("a replica's document")
    }

    #[test]
    fn a_document_reads_back_typed_and_keeps_every_receiver_column() {
        let doc = replica();
        assert_eq!(
            doc.position(),
            Some(Position {
                timeline: 2,
                lsn: "0/5000200".parse().unwrap()
            })
        );
        let r = doc.wal_receiver.as_ref().unwrap();
        assert_eq!(r.status, "streaming");
        assert!(r.other.contains_key("conninfo") && r.other.contains_key("written_lsn"));
        let again: StatusDoc = serde_json::from_str(&serde_json::to_string(&doc).unwrap()).unwrap();
        assert_eq!(again, doc);
        assert!(!doc.is_running_primary() && !doc.claims_leadership());
    }

    #[test]
    fn a_document_without_a_required_field_does_not_read() {
        let mut v = serde_json::to_value(replica()).unwrap();
        v.as_object_mut().unwrap().remove("role");
        let err = serde_json::from_value::<StatusDoc>(v).unwrap_err();
        assert!(err.to_string().contains("role"), "{err}");
        let mut v = serde_json::to_value(replica()).unwrap();
        v["state"] = "dancing".into();
        assert!(serde_json::from_value::<StatusDoc>(v).is_err());
    }
}
