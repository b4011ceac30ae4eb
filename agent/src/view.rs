//! The node's view: the one snapshot the HA loop publishes after every
//! iteration (through a `tokio::sync::watch`) and the API reads. The loop
//! is its only writer, so a slow PostgreSQL never blocks a health check
//! and health checks never reach PostgreSQL.

use std::time::{Duration, Instant, SystemTime};

use crate::peers::PeerView;
use crate::pg::probe::Observation;
use crate::pg::Lsn;
pub use crate::status_doc::{Position, Role, State};

/// Who holds the leader lease, as this node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderView {
    /// The holder.
    pub name: String,
    /// The lease's term (ballot counter).
    pub term: u64,
    /// When it ends, on this node's monotonic clock.
    pub expires_at: Instant,
}

/// The local PostgreSQL, as last seen.
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresView {
    /// The postmaster's pid, when one runs.
    pub pid: Option<i32>,
    /// The host other members reach it on.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The last successful probe, when PostgreSQL answered this loop.
    pub observation: Option<Observation>,
    /// When that probe ran.
    pub observed_at: Option<Instant>,
}

/// Everything the API serves, as of the end of one HA loop iteration.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    /// Member name.
    pub name: String,
    /// Cluster name.
    pub cluster: String,
    /// Role.
    pub role: Role,
    /// State.
    pub state: State,
    /// Why the node is in this state, in words, when it is not plainly healthy.
    pub reason: Option<String>,
    /// When the agent started.
    pub agent_started: Instant,
    /// When the HA loop last completed an iteration.
    pub loop_last: Option<Instant>,
    /// Paused: no automatic action.
    pub paused: bool,
    /// The local PostgreSQL (absent on a witness).
    pub postgres: Option<PostgresView>,
    /// The lease holder, when known.
    pub leader: Option<LeaderView>,
    /// This node holds the lease now.
    pub holds_lease: bool,
    /// Lease length (`cluster.ttl`), for `/liveness`.
    pub ttl: Duration,
    /// `replication.max_lag_on_failover` in bytes, for `/readiness`.
    pub max_lag_bytes: u64,
    /// Progress of a clone, percent.
    pub progress_pct: Option<u8>,
    /// The other members as last seen (for `/cluster`).
    pub peers: Vec<PeerView>,
    /// The leader's WAL position as it last reported it (for a replica's lag).
    pub leader_lsn: Option<Lsn>,
    /// Why this standby does not stream, in words.
    pub wal_receiver_problem: Option<String>,
    /// Role changes recorded in this data directory.
    pub history: Vec<crate::state::HistoryEntry>,
    /// The last position this node saw the primary at.
    pub last_leader_position: Option<Position>,
    /// When the pause flag last changed (milliseconds since the epoch).
    pub pause_version: u64,
    /// This primary hands its role over to that member (a switchover).
    pub handover_to: Option<String>,
    /// An operator chose this member to take over (a failover).
    pub designated: bool,
    /// On a primary in a synchronous mode: who acknowledges commits.
    pub synchronous: Option<crate::status_doc::SynchronousDoc>,
    /// The member list this agent runs with.
    pub membership: Option<crate::status_doc::MembershipDoc>,
    /// No data here, and a directory renamed aside beside it.
    pub renamed_aside: bool,
    /// This member's tags (`node.tags`), as of the last reload.
    pub tags: crate::config::Tags,
    /// Where other members and clients reach this agent's API.
    pub api_url: Option<String>,
    /// When this member last knew of a valid leader lease (Patroni's
    /// `dcs_last_seen`: the lease is pgwarden's DCS).
    pub lease_seen_at: Option<SystemTime>,
    /// A switchover scheduled on this member, waiting for its time.
    pub scheduled_switchover: Option<PendingSwitchover>,
}

/// A switchover waiting for its time (`POST /switchover` with `scheduled_at`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSwitchover {
    /// When.
    pub at: SystemTime,
    /// The member to be demoted.
    pub from: String,
    /// The member to be promoted (`None`: the best standby).
    pub to: Option<String>,
}

impl NodeView {
    /// A view before the first loop iteration.
    pub fn initial(
        name: &str,
        cluster: &str,
        witness: bool,
        ttl: Duration,
        max_lag_bytes: u64,
    ) -> NodeView {
        NodeView {
            name: name.to_string(),
            cluster: cluster.to_string(),
            role: if witness {
                Role::Witness
            } else {
                Role::Uninitialized
            },
            state: State::Starting,
            reason: Some("the agent is starting".into()),
            agent_started: Instant::now(),
            loop_last: None,
            paused: false,
            postgres: None,
            leader: None,
            holds_lease: false,
            ttl,
            max_lag_bytes,
            progress_pct: None,
            peers: Vec::new(),
            leader_lsn: None,
            wal_receiver_problem: None,
            history: Vec::new(),
            last_leader_position: None,
            pause_version: 0,
            handover_to: None,
            designated: false,
            synchronous: None,
            membership: None,
            renamed_aside: false,
            tags: crate::config::Tags::default(),
            api_url: None,
            lease_seen_at: None,
            scheduled_switchover: None,
        }
    }

    /// The last observation of PostgreSQL, when it answered.
    pub fn observation(&self) -> Option<&Observation> {
        self.postgres.as_ref().and_then(|p| p.observation.as_ref())
    }
}
