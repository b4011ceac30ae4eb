//! Patroni's documents on the wire: `GET /patroni`, `GET /cluster` and
//! `GET /history` as Patroni (4.x) writes them, so that a tool built for
//! Patroni (patronictl-like dashboards, check_patroni, scripts that `jq`
//! these endpoints) reads pgwarden unchanged.
//!
//! Field names, JSON types and "present only when" rules follow Patroni's
//! `api.py` (`get_postgresql_status`, `_write_status_response`) and
//! `utils.py` (`cluster_as_json`); the builders are in `api/patroni.rs`.
//! pgwarden's own, richer documents stay in [`crate::status_doc`]: nothing
//! in the agent reads these types back, so they may follow Patroni freely.
//!
//! Deliberately low in the house, like `status_doc`: it depends on nothing
//! of `api/`, `peers` or `ha/`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::Tags;

/// Tags are reported only when some tag is set (Patroni: `if tags:`).
fn no_tags(tags: &Tags) -> bool {
    *tags == Tags::default()
}

/// `GET /patroni` (and Patroni's health-check bodies): one member's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatroniStatus {
    /// PostgreSQL's state in Patroni's words (`running`, `starting`,
    /// `stopped`, `crashed`, `stopping`, `initializing new cluster`,
    /// `creating replica`, ...).
    pub state: String,
    /// `pg_postmaster_start_time()` as Python prints it
    /// (`2023-08-18 11:03:37+00:00`); only while PostgreSQL answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postmaster_start_time: Option<String>,
    /// `primary`, `replica`, `uninitialized` (Patroni's words), or
    /// `witness` (pgwarden's member without PostgreSQL).
    pub role: String,
    /// `server_version_num` as an integer; only while PostgreSQL answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<u32>,
    /// WAL positions as byte integers; only while PostgreSQL answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xlog: Option<Xlog>,
    /// This replica is a synchronous standby the primary counts (present only then).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sync_standby: bool,
    /// This replica is a quorum standby the primary counts (present only then).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quorum_standby: bool,
    /// PostgreSQL's timeline; only while PostgreSQL answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    /// A replica's WAL receiver: `streaming` (Patroni ≥ 3.0), else absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_state: Option<String>,
    /// One row per WAL sender; absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<Vec<Replication>>,
    /// The cluster is paused (present only then).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pause: bool,
    /// Nobody holds the leader lease (present only then).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster_unlocked: bool,
    /// Epoch seconds this member last knew of a valid leader lease (the
    /// analogue of Patroni's last successful DCS read); 0 before the first.
    pub dcs_last_seen: u64,
    /// The member's tags, as Patroni reports them; absent when none is set.
    #[serde(default, skip_serializing_if = "no_tags")]
    pub tags: Tags,
    /// The cluster's system identifier, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_system_identifier: Option<String>,
    /// A changed setting waits for a restart (present only then).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending_restart: bool,
    /// Which settings, `{name: {old_value, new_value}}`, as far as pgwarden
    /// knows them (present with `pending_restart`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_restart_reason: Option<Map<String, Value>>,
    /// The agent: its version, the cluster and the member.
    pub patroni: PatroniAgent,
}

/// Patroni's `xlog`: a primary's position, or a replica's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Xlog {
    /// A replica (PostgreSQL in recovery).
    Replica {
        /// Received (flushed) position, or the replayed one when nothing was received.
        received_location: Option<u64>,
        /// Replayed position.
        replayed_location: Option<u64>,
        /// `pg_last_xact_replay_timestamp()`.
        replayed_timestamp: Option<String>,
        /// Replay is paused.
        paused: bool,
    },
    /// A primary.
    Primary {
        /// The primary's WAL position.
        location: u64,
    },
}

/// One `replication` row: Patroni's columns of `pg_stat_replication`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replication {
    /// The role the standby connects as.
    pub usename: Option<String>,
    /// The standby's `application_name` (its member name).
    pub application_name: Option<String>,
    /// The standby's address (null over a Unix socket).
    pub client_addr: Option<String>,
    /// `streaming`, `catchup`, ...
    pub state: Option<String>,
    /// `async`, `sync`, `quorum`, `potential`.
    pub sync_state: Option<String>,
    /// Its priority in `synchronous_standby_names`.
    pub sync_priority: Option<i64>,
}

/// Patroni's `patroni` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatroniAgent {
    /// pgwarden's version.
    pub version: String,
    /// The cluster name (Patroni's `scope`).
    pub scope: String,
    /// The member name.
    pub name: String,
}

/// `GET /cluster` as Patroni's `cluster_as_json` builds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatroniCluster {
    /// Every data member, sorted by name.
    pub members: Vec<PatroniMember>,
    /// The cluster name.
    pub scope: String,
    /// The cluster is paused (present only then).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pause: bool,
    /// A switchover waiting for its time, when this member knows of one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_switchover: Option<ScheduledSwitchover>,
}

/// One member in `GET /cluster`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatroniMember {
    /// Member name.
    pub name: String,
    /// `leader`, `promoted`, `sync_standby`, `quorum_standby` or `replica`.
    pub role: String,
    /// `streaming` for a streaming replica, else PostgreSQL's state in
    /// Patroni's words; `unknown` for a member not heard from within `ttl`.
    pub state: String,
    /// Its API, as Patroni registers it (`http://host:port/patroni`).
    pub api_url: String,
    /// Its PostgreSQL's host, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Its PostgreSQL's port, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Its timeline, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    /// A changed setting waits for a restart (present only then).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending_restart: bool,
    /// As in `/patroni` (present with `pending_restart`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_restart_reason: Option<Map<String, Value>>,
    /// Its tags; absent when none is set.
    #[serde(default, skip_serializing_if = "no_tags")]
    pub tags: Tags,
    /// Received position (`0/5000148`) or `unknown`; not on the leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_lsn: Option<String>,
    /// Bytes the received position trails the leader's, or `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_lag: Option<Lag>,
    /// Replayed position or `unknown`; not on the leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lsn: Option<String>,
    /// Bytes the replayed position trails the leader's, or `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lag: Option<Lag>,
    /// The further of received and replayed, or `unknown`; not on the leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<String>,
    /// Bytes `lsn` trails the leader's position, or `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<Lag>,
}

/// A lag in bytes, or Patroni's `"unknown"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Lag {
    /// Bytes behind the leader's last known position (0 when ahead of it).
    Bytes(u64),
    /// Always the string `unknown`.
    Unknown(String),
}

impl Lag {
    /// Patroni's `"unknown"`.
    pub fn unknown() -> Lag {
        Lag::Unknown(UNKNOWN.to_string())
    }
}

/// Patroni's word for a value it cannot tell.
pub const UNKNOWN: &str = "unknown";

/// `scheduled_switchover` in `GET /cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledSwitchover {
    /// When, ISO 8601 with the offset (`2023-09-24T08:36:00+00:00`).
    pub at: String,
    /// The member to be demoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The member to be promoted (absent: the best standby).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// One `GET /history` entry: `[timeline, lsn, reason, timestamp, new_leader]`,
/// where `timeline` is the timeline that ended at `lsn` (as in PostgreSQL's
/// history files) and the timestamp is when the next one began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryLine(pub u32, pub u64, pub String, pub String, pub String);
