//! The probe: one round trip over the local socket per HA loop, turned
//! into an [`Observation`]. Health checks read the observation, never
//! PostgreSQL, so a flood of them cannot reach the database.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::status_doc::{Position, ReplicationSlot, WalReceiver, WalSender};

use super::conf::SUPERUSER;
use super::lsn::Lsn;

/// Why PostgreSQL could not be observed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No connection could be made.
    #[error("cannot connect to PostgreSQL on {socket}:{port}: {source} (is it running? see `pgwarden status`)")]
    Connect {
        /// Socket directory.
        socket: PathBuf,
        /// Port.
        port: u16,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// A query failed.
    #[error("query on the local PostgreSQL failed: {0}")]
    Query(#[from] tokio_postgres::Error),
    /// PostgreSQL did not answer in time.
    #[error("PostgreSQL did not answer within {0:?}")]
    Timeout(Duration),
    /// The answer could not be read.
    #[error("unexpected answer from PostgreSQL: {0}")]
    Unexpected(String),
}

/// What one probe saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// `server_version_num` (150018).
    pub version_num: u32,
    /// `pg_control_system().system_identifier`.
    pub system_identifier: String,
    /// The timeline: of the current WAL file on a primary, of the receiver
    /// (or the last checkpoint) on a standby; the executor replaces the
    /// last checkpoint's by the replay position's (`pg::history`).
    pub timeline: Option<u32>,
    /// `pg_current_wal_lsn()` (primary only).
    pub current_lsn: Option<Lsn>,
    /// `pg_last_wal_receive_lsn()` (standby only).
    pub received_lsn: Option<Lsn>,
    /// `pg_last_wal_replay_lsn()` (standby only).
    pub replayed_lsn: Option<Lsn>,
    /// `pg_is_wal_replay_paused()`.
    pub replay_paused: bool,
    /// `pg_postmaster_start_time()`, RFC 3339 UTC.
    pub start_time: String,
    /// A standby's `pg_last_xact_replay_timestamp()`: as Patroni writes it
    /// (`2026-11-26 12:00:00.123456+00:00`) and in epoch seconds; `None`
    /// on a primary and on a standby that replayed no transaction yet.
    pub replay_timestamp: Option<(String, f64)>,
    /// Some setting changed that needs a restart to apply.
    pub pending_restart: bool,
    /// Every row of `pg_stat_replication`, all columns, plus `lag_bytes`.
    pub wal_senders: Vec<WalSender>,
    /// The `pg_stat_wal_receiver` row, when a receiver runs.
    pub wal_receiver: Option<WalReceiver>,
    /// The physical replication slots, by name, with the WAL each keeps.
    pub slots: Vec<ReplicationSlot>,
}

impl Observation {
    /// How far this node's WAL goes, on its timeline: written on a primary;
    /// received or replayed, whichever is further, on a standby.
    pub fn position(&self) -> Option<Position> {
        let lsn = self
            .current_lsn
            .or(self.received_lsn.max(self.replayed_lsn))?;
        Some(Position {
            timeline: self.timeline?,
            lsn,
        })
    }

    /// The receiver's status (`streaming`, ...), while one runs.
    pub fn receiver_status(&self) -> Option<&str> {
        self.wal_receiver.as_ref().map(|r| r.status.as_str())
    }
}

const OBSERVE_SQL: &str = "SELECT
  pg_is_in_recovery()::text,
  current_setting('server_version_num'),
  (SELECT system_identifier::text FROM pg_control_system()),
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
  pg_last_wal_receive_lsn()::text,
  pg_last_wal_replay_lsn()::text,
  CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused()::text ELSE 'false' END,
  CASE WHEN pg_is_in_recovery()
    THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver), (SELECT timeline_id FROM pg_control_checkpoint()))::text
    ELSE (('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int)::text END,
  to_char(pg_postmaster_start_time() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
  (SELECT count(*) FROM pg_settings WHERE pending_restart)::text,
  (SELECT coalesce(json_agg(r), '[]')::text FROM pg_stat_replication r),
  (SELECT row_to_json(r)::text FROM pg_stat_wal_receiver r),
  (SELECT coalesce(json_agg(s ORDER BY s.slot_name), '[]')::text FROM pg_replication_slots s WHERE s.slot_type = 'physical'),
  CASE WHEN pg_is_in_recovery() THEN
    to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00:00' END,
  CASE WHEN pg_is_in_recovery() THEN extract(epoch FROM pg_last_xact_replay_timestamp())::text END";

/// The columns of a `pg_replication_slots` row the agent reads (whole rows
/// are read, so that a version without `wal_status`, 12, reads too).
#[derive(Debug, serde::Deserialize)]
struct SlotRow {
    slot_name: String,
    active: bool,
    restart_lsn: Option<Lsn>,
    #[serde(default)]
    wal_status: Option<String>,
}

/// A connection to the local PostgreSQL over its Unix socket, as the
/// superuser (peer authentication through the agent's ident map).
pub struct Probe {
    socket_dir: PathBuf,
    port: u16,
    timeout: Duration,
    client: Option<Client>,
}

impl Probe {
    /// A probe for the server on `socket_dir`/`port`; connects lazily.
    pub fn new(socket_dir: &Path, port: u16, timeout: Duration) -> Probe {
        Probe {
            socket_dir: socket_dir.to_path_buf(),
            port,
            timeout,
            client: None,
        }
    }

    /// Forgets the connection (after a restart, a port change).
    pub fn reset(&mut self, socket_dir: &Path, port: u16) {
        self.socket_dir = socket_dir.to_path_buf();
        self.port = port;
        self.client = None;
    }

    /// A connected client, reconnecting when the last one broke.
    pub async fn client(&mut self) -> Result<&Client, ProbeError> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        if let Some(c) = self.client.take() {
            return Ok(self.client.insert(c));
        }
        let mut cfg = tokio_postgres::Config::new();
        cfg.host_path(&self.socket_dir)
            .port(self.port)
            .user(SUPERUSER)
            .dbname("postgres")
            .application_name("pgwarden")
            // The agent's own commits (the replication role, the bootstrap
            // record) must not wait for synchronous standbys: on a new
            // cluster's first primary the standbys cannot clone before the
            // role exists, and a new primary repeats them anyway.
            .options("-c synchronous_commit=local")
            .connect_timeout(self.timeout);
        let connect = cfg.connect(NoTls);
        let (client, connection) = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| ProbeError::Timeout(self.timeout))?
            .map_err(|source| ProbeError::Connect {
                socket: self.socket_dir.clone(),
                port: self.port,
                source,
            })?;
        tokio::spawn(async move {
            // Ends when the server closes the connection; the next probe reconnects.
            let _ = connection.await;
        });
        Ok(self.client.insert(client))
    }

    /// Reconnects to another port when the server moved (a port change
    /// applied by a restart).
    pub fn reset_port_if_changed(&mut self, port: u16) {
        if port != self.port {
            self.port = port;
            self.client = None;
        }
    }

    /// Runs statements (no results) with the probe's timeout.
    pub async fn execute(&mut self, sql: &str) -> Result<(), ProbeError> {
        let timeout = self.timeout;
        let result = {
            let client = self.client().await?;
            tokio::time::timeout(timeout, client.batch_execute(sql)).await
        };
        match result {
            Ok(r) => r.map_err(|e| self.broken(e)),
            Err(_) => {
                self.client = None;
                Err(ProbeError::Timeout(timeout))
            }
        }
    }

    /// Runs a query returning text cells, with the probe's timeout.
    pub async fn query_text(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, ProbeError> {
        let timeout = self.timeout;
        let result = {
            let client = self.client().await?;
            tokio::time::timeout(timeout, client.simple_query(sql)).await
        };
        let messages = match result {
            Ok(r) => r.map_err(|e| self.broken(e))?,
            Err(_) => {
                self.client = None;
                return Err(ProbeError::Timeout(timeout));
            }
        };
        Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    }

    fn broken(&mut self, e: tokio_postgres::Error) -> ProbeError {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = None;
        }
        ProbeError::Query(e)
    }

    /// One observation of the server.
    pub async fn observe(&mut self) -> Result<Observation, ProbeError> {
        let rows = self.query_text(OBSERVE_SQL).await?;
        let row = rows
            .into_iter()
            .next()
            .ok_or_else(|| ProbeError::Unexpected("no row".into()))?;
        parse_observation(&row)
    }
}

/// Builds an observation from the text cells of [`OBSERVE_SQL`].
pub fn parse_observation(row: &[Option<String>]) -> Result<Observation, ProbeError> {
    let cell = |i: usize| row.get(i).and_then(|c| c.as_deref());
    let unexpected =
        |what: &str, i: usize| ProbeError::Unexpected(format!("{what}: {:?}", cell(i)));
    let lsn = |i: usize| cell(i).and_then(|s| s.parse::<Lsn>().ok());
    let in_recovery = cell(0) == Some("true");
    let current_lsn = lsn(3);
    let mut wal_senders: Vec<WalSender> = match cell(10) {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| ProbeError::Unexpected(format!("pg_stat_replication: {e}")))?,
        None => Vec::new(),
    };
    for sender in &mut wal_senders {
        sender.lag_bytes = match (current_lsn, sender.replay_lsn) {
            (Some(cur), Some(rep)) => Some(cur.bytes_after(rep)),
            _ => None,
        };
    }
    let wal_receiver = match cell(11) {
        Some(text) => Some(
            serde_json::from_str(text)
                .map_err(|e| ProbeError::Unexpected(format!("pg_stat_wal_receiver: {e}")))?,
        ),
        None => None,
    };
    // What a slot keeps is measured against where this server's WAL ends:
    // written on a primary, replayed on a standby.
    let end = if in_recovery { lsn(5) } else { current_lsn };
    let slots = match cell(12) {
        Some(text) => serde_json::from_str::<Vec<SlotRow>>(text)
            .map_err(|e| ProbeError::Unexpected(format!("pg_replication_slots: {e}")))?
            .into_iter()
            .map(|row| ReplicationSlot {
                retained_bytes: match (end, row.restart_lsn) {
                    (Some(end), Some(restart)) => Some(end.bytes_after(restart)),
                    _ => None,
                },
                name: row.slot_name,
                active: row.active,
                restart_lsn: row.restart_lsn,
                wal_status: row.wal_status,
            })
            .collect(),
        None => Vec::new(),
    };
    Ok(Observation {
        in_recovery,
        version_num: cell(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| unexpected("server_version_num", 1))?,
        system_identifier: cell(2)
            .ok_or_else(|| unexpected("system_identifier", 2))?
            .to_string(),
        timeline: cell(7).and_then(|s| s.parse().ok()),
        current_lsn,
        received_lsn: lsn(4),
        replayed_lsn: lsn(5),
        replay_paused: cell(6) == Some("true"),
        start_time: cell(8).unwrap_or_default().to_string(),
        replay_timestamp: cell(13)
            .zip(cell(14).and_then(|e| e.parse::<f64>().ok()))
            .map(|(text, epoch)| (text.to_string(), epoch)),
        pending_restart: cell(9).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) > 0,
        wal_senders,
        wal_receiver,
        slots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(v: &[Option<&str>]) -> Vec<Option<String>> {
        v.iter().map(|c| c.map(str::to_string)).collect()
    }

    #[test]
    fn a_primary_row_becomes_an_observation_with_sender_lag() {
        let row = cells(&[
            Some("false"),
            Some("150018"),
            Some("7311000000000000001"),
            Some("0/5000148"),
            None,
            None,
            Some("false"),
            Some("1"),
            Some("2026-11-26T12:00:00Z"),
            Some("0"),
            Some(
                r#"[{"pid": 42, "application_name": "pg2", "state": "streaming", "replay_lsn": "0/5000100", "sync_state": "async"}]"#,
            ),
            None,
        ]);
        let o = parse_observation(&row).unwrap();
        assert!(!o.in_recovery);
        assert_eq!(o.version_num, 150018);
        assert_eq!(o.timeline, Some(1));
        assert_eq!(o.current_lsn, Some(Lsn(0x5000148)));
        assert_eq!(o.wal_senders.len(), 1);
        assert_eq!(o.wal_senders[0].lag_bytes, Some(0x48));
        assert_eq!(o.wal_senders[0].application_name.as_deref(), Some("pg2"));
        assert_eq!(o.wal_senders[0].other["pid"], serde_json::json!(42));
        assert!(o.wal_receiver.is_none());
        assert_eq!(o.position().map(|p| p.lsn), Some(Lsn(0x5000148)));
    }

    #[test]
    fn a_standby_row_keeps_the_whole_receiver_row() {
        let row = cells(&[
            Some("true"),
            Some("150018"),
            Some("7311"),
            None,
            Some("0/6000000"),
            Some("0/5FFFFF0"),
            Some("true"),
            Some("2"),
            Some("2026-11-26T12:00:00Z"),
            Some("2"),
            Some("[]"),
            Some(r#"{"status": "streaming", "sender_port": 5432, "received_tli": 2}"#),
        ]);
        let o = parse_observation(&row).unwrap();
        assert!(o.in_recovery && o.replay_paused && o.pending_restart);
        assert_eq!(o.wal_receiver.as_ref().unwrap().sender_port, Some(5432));
        assert_eq!(o.receiver_status(), Some("streaming"));
        assert_eq!(
            o.position(),
            Some(Position {
                timeline: 2,
                lsn: Lsn(0x6000000)
            })
        );
    }

    #[test]
    fn slots_report_the_wal_they_keep_up_to_the_primarys_position_or_the_standbys_replay() {
        let slots = r#"[
            {"slot_name": "pg2", "slot_type": "physical", "active": true, "restart_lsn": "0/5000100", "wal_status": "reserved", "safe_wal_size": null},
            {"slot_name": "pg3", "slot_type": "physical", "active": false, "restart_lsn": null, "wal_status": "lost"}
        ]"#;
        let mut row = cells(&[
            Some("false"),
            Some("150018"),
            Some("7311"),
            Some("0/5000148"),
            None,
            None,
            Some("false"),
            Some("1"),
            Some("2026-11-26T12:00:00Z"),
            Some("0"),
            Some("[]"),
            None,
            Some(slots),
        ]);
        let o = parse_observation(&row).unwrap();
        assert_eq!(o.slots.len(), 2);
        assert_eq!(o.slots[0].name, "pg2");
        assert!(o.slots[0].active);
        assert_eq!(o.slots[0].retained_bytes, Some(0x48));
        assert_eq!(o.slots[0].wal_status.as_deref(), Some("reserved"));
        assert_eq!(o.slots[1].restart_lsn, None);
        assert_eq!(o.slots[1].retained_bytes, None);
        assert_eq!(o.slots[1].wal_status.as_deref(), Some("lost"));
        // A standby measures against its replay position; PostgreSQL 12
        // has no wal_status.
        row[0] = Some("true".into());
        row[3] = None;
        row[4] = Some("0/6000000".into());
        row[5] = Some("0/5000200".into());
        row[12] =
            Some(r#"[{"slot_name": "pg1", "active": false, "restart_lsn": "0/5000000"}]"#.into());
        let o = parse_observation(&row).unwrap();
        assert_eq!(o.slots[0].retained_bytes, Some(0x200));
        assert_eq!(o.slots[0].wal_status, None);
    }

    #[test]
    fn a_malformed_row_is_an_error_not_a_panic() {
        assert!(parse_observation(&[]).is_err());
        let mut row = cells(&[Some("false"), Some("x"), Some("1")]);
        assert!(parse_observation(&row).is_err());
        row = cells(&[
            Some("false"),
            Some("150018"),
            Some("1"),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            Some("{not json"),
        ]);
        assert!(parse_observation(&row).is_err());
    }
}
