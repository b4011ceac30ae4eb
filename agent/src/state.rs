//! `pgwarden.state`: what the agent must remember across restarts about
//! its data directory (which cluster it belongs to), written atomically.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::pg::files::{write_atomic, FileError};
use crate::pg::runas::RunAs;

/// The state file's name inside the data directory.
pub const STATE_FILE: &str = "pgwarden.state";

/// The agent's remembered state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    /// The cluster's `system_identifier`, recorded when the data directory
    /// was made; a leader with another one is a different cluster.
    #[serde(default)]
    pub system_identifier: Option<String>,
    /// Which member ran `initdb` for this cluster.
    #[serde(default)]
    pub initialized_by: Option<String>,
    /// When (RFC 3339).
    #[serde(default)]
    pub initialized_at: Option<String>,
    /// Role changes, oldest first (`GET /history`).
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    /// The last position this member saw the primary at: what
    /// `max_lag_on_failover` is measured against after an agent restart.
    #[serde(default)]
    pub last_leader_position: Option<crate::status_doc::Position>,
    /// A promotion this agent asked of a postmaster and has not yet seen
    /// finish: PostgreSQL goes on promoting if the agent dies, so a
    /// restarted agent must not take "in recovery" for "read-only".
    #[serde(default)]
    pub promotion_requested: Option<PromotionRequest>,
    /// The replication slots the agent made for members, by name: a
    /// former member's slot is told from a slot the agent never made (a
    /// backup tool's, which it never touches) after the member has left
    /// `cluster.members` and the agent restarted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member_slots: Vec<String>,
}

/// A promotion asked of one postmaster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionRequest {
    /// The member that asked (pg_basebackup and pg_rewind copy this file).
    pub member: String,
    /// The postmaster asked.
    pub postmaster_pid: i32,
}

/// One role change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The timeline after the change.
    pub timeline: Option<u32>,
    /// The WAL position at the change.
    pub lsn: Option<String>,
    /// Why, in words.
    pub reason: String,
    /// When (RFC 3339).
    pub at: String,
    /// The member that became (or stayed) primary.
    pub new_leader: String,
}

/// How many role changes the state file keeps.
pub const HISTORY_LIMIT: usize = 200;

/// The state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// It exists but is not ours or is damaged.
    #[error("{path} is damaged: {detail} (move it aside; the agent rewrites it)")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// The parse error.
        detail: String,
    },
    /// Reading failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] FileError),
}

impl AgentState {
    /// Loads the state of a data directory; a missing file is the default state.
    pub fn load(data_dir: &Path) -> Result<AgentState, StateError> {
        let path = data_dir.join(STATE_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| StateError::Damaged {
                path,
                detail: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgentState::default()),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    /// Saves it (temp file, fsync, rename).
    pub fn save(&self, data_dir: &Path, owner: &RunAs) -> Result<(), StateError> {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into());
        text.push('\n');
        write_atomic(&data_dir.join(STATE_FILE), text.as_bytes(), 0o600, owner)?;
        Ok(())
    }
}
