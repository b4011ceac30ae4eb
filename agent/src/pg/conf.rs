//! Rendering of the files the agent owns in the data directory:
//! `postgresql.conf` (which includes the user's `postgresql.base.conf`),
//! `pg_hba.conf`, `pg_ident.conf` and the standby settings.
//!
//! Everything here is pure: configuration and version in, file text out.
//! The version matters for two things: WAL retention (`wal_keep_segments`
//! up to 12, `wal_keep_size` from 13) and where recovery settings live
//! (`recovery.conf` before 12; `postgresql.conf` + `standby.signal` from 12,
//! the only layout supported, see [`MIN_SUPPORTED_MAJOR`]).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use crate::config::{Config, ParamValue};
use crate::sync_report::SyncPlan;

/// The oldest PostgreSQL major version the agent manages.
pub const MIN_SUPPORTED_MAJOR: u32 = 12;

/// The base file the managed `postgresql.conf` includes: initdb's own
/// `postgresql.conf`, renamed at bootstrap, for settings the operator keeps by hand.
pub const BASE_CONF_FILE: &str = "postgresql.base.conf";

/// The name of the `pg_ident.conf` map that lets the agent (root or the
/// data directory's owner) connect as the `postgres` superuser over the socket.
pub const IDENT_MAP: &str = "pgwarden";

/// The database superuser the agent creates and connects as.
pub const SUPERUSER: &str = "postgres";

/// WAL the primary keeps for standbys that fall behind (beyond slots).
const WAL_KEEP_BYTES: u64 = 128 << 20;
/// Size of a WAL segment, for `wal_keep_segments` (PostgreSQL ≤ 12).
const WAL_SEGMENT_BYTES: u64 = 16 << 20;

/// Where a PostgreSQL version keeps recovery (standby) settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryLayout {
    /// In `postgresql.conf`, with an empty `standby.signal` file (12+).
    ConfPlusStandbySignal,
}

/// Why a version cannot be managed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "PostgreSQL {0} is not supported: pgwarden manages PostgreSQL {MIN_SUPPORTED_MAJOR} and later"
)]
pub struct UnsupportedVersion(pub u32);

/// The recovery layout of a major version.
pub fn recovery_layout(major: u32) -> Result<RecoveryLayout, UnsupportedVersion> {
    if major < MIN_SUPPORTED_MAJOR {
        return Err(UnsupportedVersion(major));
    }
    Ok(RecoveryLayout::ConfPlusStandbySignal)
}

/// Where a standby streams from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbySource {
    /// The primary's PostgreSQL host.
    pub host: String,
    /// The primary's PostgreSQL port.
    pub port: u16,
    /// Physical slot to stream from, when slots are on.
    pub slot: Option<String>,
}

/// The settings the agent manages, with the user's parameters merged over
/// them (the user's win; the ones the agent must own are refused by
/// validation: `config::schema`'s reserved parameters and `validate`'s
/// minimums).
pub fn effective_parameters(cfg: &Config, major: u32) -> BTreeMap<String, ParamValue> {
    let senders = i64::try_from(crate::config::min_wal_senders(cfg.cluster.members.len()))
        .unwrap_or(i64::MAX)
        .max(10);
    let mut p = BTreeMap::new();
    let text = |s: &str| ParamValue::Text(s.to_string());
    p.insert(
        "listen_addresses".into(),
        text(&cfg.postgresql.listen_addresses),
    );
    p.insert(
        "port".into(),
        ParamValue::Int(i64::from(cfg.postgresql.port)),
    );
    p.insert(
        "unix_socket_directories".into(),
        text(&cfg.postgresql.socket_dir.to_string_lossy()),
    );
    p.insert("cluster_name".into(), text(&cfg.cluster.name));
    p.insert("wal_level".into(), text("replica"));
    p.insert("wal_log_hints".into(), ParamValue::Bool(true));
    p.insert("hot_standby".into(), ParamValue::Bool(true));
    p.insert("max_wal_senders".into(), ParamValue::Int(senders));
    p.insert("max_replication_slots".into(), ParamValue::Int(senders));
    // A standby whose primary went away tries again every second rather
    // than PostgreSQL's 5 s: after a failover or a restart of the primary
    // it streams (and, in a synchronous mode, acknowledges) sooner.
    p.insert("wal_retrieve_retry_interval".into(), text("1s"));
    if major >= 13 {
        p.insert(
            "wal_keep_size".into(),
            text(&format!("{}MB", WAL_KEEP_BYTES >> 20)),
        );
    } else {
        p.insert(
            "wal_keep_segments".into(),
            ParamValue::Int((WAL_KEEP_BYTES / WAL_SEGMENT_BYTES) as i64),
        );
    }
    if let Some(names) = synchronous_standby_names(cfg) {
        p.insert("synchronous_standby_names".into(), ParamValue::Text(names));
    }
    for (k, v) in &cfg.postgresql.parameters {
        p.insert(k.clone(), v.clone());
    }
    p
}

/// `synchronous_standby_names` for `replication.synchronous`, as this
/// node's own configuration alone has it ([`SyncPlan::of`]); none when
/// off. Every data member writes it, standbys too (where PostgreSQL ignores
/// it), so a promoted standby waits for its standbys from its first commit
/// on. While members run different member lists the runner raises `k`
/// ([`SyncPlan::of`] with the lists the members report) and the executor writes that instead.
pub fn synchronous_standby_names(cfg: &Config) -> Option<String> {
    SyncPlan::of(cfg, &[]).map(|plan| plan.setting())
}

/// The standby settings for a source, in `postgresql.conf` (12+).
pub fn standby_parameters(
    cfg: &Config,
    source: &StandbySource,
    passfile: &Path,
) -> BTreeMap<String, ParamValue> {
    let conninfo = format!(
        "host={} port={} user={} application_name={} passfile={} sslmode=prefer",
        conninfo_quote(&source.host),
        source.port,
        conninfo_quote(&cfg.replication.user),
        conninfo_quote(&cfg.node.name),
        conninfo_quote(&passfile.to_string_lossy()),
    );
    let mut p = BTreeMap::new();
    p.insert("primary_conninfo".into(), ParamValue::Text(conninfo));
    if let Some(slot) = &source.slot {
        p.insert("primary_slot_name".into(), ParamValue::Text(slot.clone()));
    }
    p.insert(
        "recovery_target_timeline".into(),
        ParamValue::Text("latest".into()),
    );
    p
}

/// The managed `postgresql.conf`: the base file first, then every managed
/// setting (later lines win in PostgreSQL), then the standby settings.
pub fn render_postgresql_conf(
    parameters: &BTreeMap<String, ParamValue>,
    standby: Option<&BTreeMap<String, ParamValue>>,
) -> String {
    let mut out = String::new();
    out.push_str(
        "# Managed by pgwarden: rewritten at every start and reload; edits here are lost.\n",
    );
    out.push_str("# Set parameters in [postgresql.parameters] of the pgwarden configuration,\n");
    out.push_str(&format!(
        "# or by hand in {BASE_CONF_FILE} (overridden by the lines below).\n"
    ));
    out.push_str(&format!("include_if_exists = '{BASE_CONF_FILE}'\n\n"));
    for (k, v) in parameters {
        out.push_str(&render_setting(k, v));
    }
    if let Some(standby) = standby {
        out.push_str("\n# standby: where this member streams from\n");
        for (k, v) in standby {
            out.push_str(&render_setting(k, v));
        }
    }
    out
}

/// One `name = value` line, quoted as `postgresql.conf` requires.
fn render_setting(name: &str, value: &ParamValue) -> String {
    match value {
        ParamValue::Bool(_) | ParamValue::Int(_) | ParamValue::Float(_) => {
            format!("{name} = {value}\n")
        }
        ParamValue::Text(s) => format!("{name} = {}\n", conf_quote(s)),
    }
}

/// Quotes a string for `postgresql.conf`: single quotes, `'` doubled,
/// backslashes escaped; line breaks cannot be represented and become spaces.
pub fn conf_quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('\'');
    for c in s.chars() {
        match c {
            '\'' => q.push_str("''"),
            '\\' => q.push_str("\\\\"),
            '\n' | '\r' => q.push(' '),
            c => q.push(c),
        }
    }
    q.push('\'');
    q
}

/// Quotes a value for a libpq connection string when it needs it.
fn conninfo_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:".contains(c))
    {
        return s.to_string();
    }
    let escaped = s.replace('\\', "\\\\").replace('\'', "\\'");
    format!("'{escaped}'")
}

/// The managed `pg_hba.conf`: local access for the agent and the owner,
/// loopback with passwords, one replication line per member (the same
/// file on every node, so any node can become primary), then the user's lines.
pub fn render_pg_hba(cfg: &Config) -> String {
    let mut out = String::new();
    out.push_str(
        "# Managed by pgwarden: rewritten at every start and reload; edits here are lost.\n",
    );
    out.push_str("# Add lines with [postgresql] pg_hba in the pgwarden configuration.\n");
    out.push_str("# TYPE  DATABASE     USER  ADDRESS  METHOD\n");
    out.push_str(&format!(
        "local   all          all                 peer map={IDENT_MAP}\n"
    ));
    out.push_str(&format!(
        "local   replication  all                 peer map={IDENT_MAP}\n"
    ));
    out.push_str("host    all          all   127.0.0.1/32  scram-sha-256\n");
    out.push_str("host    all          all   ::1/128       scram-sha-256\n");
    out.push_str(
        "# replication from every member; the superuser for pg_rewind from every member\n",
    );
    for m in cfg.data_members() {
        let Some(host) = m.pg_host() else { continue };
        out.push_str(&format!(
            "host    replication  {}  {}  scram-sha-256  # {}\n",
            hba_user(&cfg.replication.user),
            hba_address(&host),
            m.name
        ));
        out.push_str(&format!(
            "host    postgres     {SUPERUSER}  {}  scram-sha-256  # {} (pg_rewind)\n",
            hba_address(&host),
            m.name
        ));
    }
    if !cfg.postgresql.pg_hba.is_empty() {
        out.push_str("# from [postgresql] pg_hba\n");
        for line in &cfg.postgresql.pg_hba {
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

/// A user name as pg_hba wants it (quoted when not a plain identifier).
fn hba_user(user: &str) -> String {
    if user.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        user.to_string()
    } else {
        format!("\"{}\"", user.replace('"', ""))
    }
}

/// A single host as a pg_hba address: an IP gets its host-sized mask, a
/// host name is written as is (PostgreSQL resolves it).
fn hba_address(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => format!("{ip}/32"),
        Ok(IpAddr::V6(ip)) => format!("{ip}/128"),
        Err(_) => host.to_string(),
    }
}

/// The managed `pg_ident.conf`: root and the data directory's owner may
/// connect as the superuser over the local socket (they can become it
/// anyway); every other OS user maps to the database user of its own name,
/// as plain `peer` authentication would.
pub fn render_pg_ident(owner: &str) -> String {
    let mut out = String::new();
    out.push_str(
        "# Managed by pgwarden: rewritten at every start and reload; edits here are lost.\n",
    );
    out.push_str("# MAPNAME   SYSTEM-USERNAME  PG-USERNAME\n");
    out.push_str(&format!("{IDENT_MAP}  root  {SUPERUSER}\n"));
    if owner != "root" && owner != SUPERUSER {
        out.push_str(&format!("{IDENT_MAP}  {owner}  {SUPERUSER}\n"));
    }
    out.push_str(&format!("{IDENT_MAP}  /^(.*)$  \\1\n"));
    out
}

/// A libpq password file (`host:port:db:user:password` lines) for the
/// given users, with `:` and `\` escaped as libpq requires.
pub fn render_passfile(entries: &[(&str, &str)]) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
    entries
        .iter()
        .map(|(user, password)| format!("*:*:*:{}:{}\n", esc(user), esc(password)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SyncMode;
    use crate::config::{ClusterSection, Member, NodeSection};
    use std::path::PathBuf;

    fn three_node_config() -> Config {
        let member = |n: &str, ip: &str| Member {
            name: n.into(),
            api_url: format!("http://{ip}:8008"),
            host: None,
            nofailover: false,
            clonefrom: false,
            witness: false,
        };
        Config {
            node: NodeSection {
                name: "pg1".into(),
                data_dir: PathBuf::from("/var/lib/postgresql/15/main"),
                bin_dir: None,
                witness: false,
                watchdog: Default::default(),
                watchdog_device: crate::config::default_watchdog_device(),
                tags: Default::default(),
            },
            api: Default::default(),
            cluster: ClusterSection {
                name: "main".into(),
                secret_file: None,
                ttl: std::time::Duration::from_secs(10),
                loop_wait: std::time::Duration::from_secs(1),
                members: vec![
                    member("pg1", "10.0.0.1"),
                    member("pg2", "10.0.0.2"),
                    Member {
                        host: Some("10.0.1.3".into()),
                        ..member("pg3", "10.0.0.3")
                    },
                ],
            },
            postgresql: Default::default(),
            replication: Default::default(),
            log: Default::default(),
        }
    }

    fn rendered(major: u32) -> String {
        render_postgresql_conf(&effective_parameters(&three_node_config(), major), None)
    }

    #[test]
    fn given_postgres_12_then_wal_retention_is_counted_in_segments() {
        let conf = rendered(12);
        assert!(conf.contains("wal_keep_segments = 8\n"), "{conf}");
        assert!(!conf.contains("wal_keep_size"), "{conf}");
    }

    #[test]
    fn given_postgres_13_15_17_then_wal_retention_is_a_size() {
        for major in [13, 15, 17] {
            let conf = rendered(major);
            assert!(
                conf.contains("wal_keep_size = '128MB'\n"),
                "{major}: {conf}"
            );
            assert!(!conf.contains("wal_keep_segments"), "{major}: {conf}");
        }
    }

    #[test]
    fn recovery_settings_live_in_postgresql_conf_from_12_and_older_is_refused() {
        for major in [12, 13, 15, 17] {
            assert_eq!(
                recovery_layout(major),
                Ok(RecoveryLayout::ConfPlusStandbySignal)
            );
        }
        assert_eq!(recovery_layout(11), Err(UnsupportedVersion(11)));
        let cfg = three_node_config();
        let source = StandbySource {
            host: "10.0.0.2".into(),
            port: 5432,
            slot: Some("pg1".into()),
        };
        let standby = standby_parameters(&cfg, &source, Path::new("/var/lib/postgresql/.pgpass"));
        let conf = render_postgresql_conf(&effective_parameters(&cfg, 15), Some(&standby));
        assert!(conf.contains(
            "primary_conninfo = 'host=10.0.0.2 port=5432 user=replicator application_name=pg1 passfile=/var/lib/postgresql/.pgpass sslmode=prefer'\n"
        ), "{conf}");
        assert!(conf.contains("primary_slot_name = 'pg1'\n"));
        assert!(conf.contains("recovery_target_timeline = 'latest'\n"));
    }

    #[test]
    fn synchronous_standby_names_follow_the_mode_and_the_k_rule() {
        let mut cfg = three_node_config();
        assert_eq!(synchronous_standby_names(&cfg), None, "off: asynchronous");
        assert!(
            !render_postgresql_conf(&effective_parameters(&cfg, 15), None)
                .contains("synchronous_standby_names")
        );
        cfg.replication.synchronous = SyncMode::Quorum;
        assert_eq!(
            synchronous_standby_names(&cfg).as_deref(),
            Some(r#"ANY 1 ("pg2", "pg3")"#)
        );
        let conf = render_postgresql_conf(&effective_parameters(&cfg, 15), None);
        assert!(
            conf.contains(r#"synchronous_standby_names = 'ANY 1 ("pg2", "pg3")'"#),
            "{conf}"
        );
        cfg.replication.synchronous = SyncMode::On;
        assert_eq!(
            synchronous_standby_names(&cfg).as_deref(),
            Some(r#"FIRST 1 ("pg2", "pg3")"#)
        );
        // Five data members: k = 2 over the four others.
        cfg.replication.synchronous = SyncMode::Quorum;
        let template = cfg.cluster.members[0].clone();
        for n in ["pg4", "pg5"] {
            cfg.cluster.members.push(Member {
                name: n.into(),
                ..template.clone()
            });
        }
        cfg.node.name = "pg3".into();
        assert_eq!(
            synchronous_standby_names(&cfg).as_deref(),
            Some(r#"ANY 2 ("pg1", "pg2", "pg4", "pg5")"#)
        );
        // Two data members and a witness: the other one, k = 1.
        cfg.cluster.members.truncate(3);
        cfg.cluster.members[2].witness = true;
        cfg.node.name = "pg1".into();
        assert_eq!(
            synchronous_standby_names(&cfg).as_deref(),
            Some(r#"ANY 1 ("pg2")"#)
        );
    }

    #[test]
    fn managed_settings_make_a_replication_ready_primary() {
        let conf = rendered(15);
        for line in [
            "include_if_exists = 'postgresql.base.conf'\n",
            "listen_addresses = '*'\n",
            "port = 5432\n",
            "unix_socket_directories = '/var/run/postgresql'\n",
            "cluster_name = 'main'\n",
            "wal_level = 'replica'\n",
            "wal_log_hints = on\n",
            "hot_standby = on\n",
            "max_wal_senders = 10\n",
            "max_replication_slots = 10\n",
            "wal_retrieve_retry_interval = '1s'\n",
        ] {
            assert!(conf.contains(line), "missing {line:?} in\n{conf}");
        }
        // the include comes first, so every managed line overrides the base file
        let include = conf.find("include_if_exists").unwrap();
        assert!(include < conf.find("port = ").unwrap());
    }

    #[test]
    fn senders_and_slots_grow_with_the_member_count() {
        let mut cfg = three_node_config();
        let extra = cfg.cluster.members[0].clone();
        for i in 0..12 {
            cfg.cluster.members.push(Member {
                name: format!("x{i}"),
                ..extra.clone()
            });
        }
        let p = effective_parameters(&cfg, 15);
        assert_eq!(p["max_wal_senders"], ParamValue::Int(17));
        assert_eq!(p["max_replication_slots"], ParamValue::Int(17));
    }

    #[test]
    fn user_parameters_are_merged_over_the_managed_ones() {
        let mut cfg = three_node_config();
        cfg.postgresql
            .parameters
            .insert("max_connections".into(), ParamValue::Int(200));
        cfg.postgresql
            .parameters
            .insert("max_wal_senders".into(), ParamValue::Int(20));
        cfg.postgresql
            .parameters
            .insert("fsync".into(), ParamValue::Bool(false));
        let conf = render_postgresql_conf(&effective_parameters(&cfg, 15), None);
        assert!(conf.contains("max_connections = 200\n"));
        assert!(conf.contains("max_wal_senders = 20\n"));
        assert!(!conf.contains("max_wal_senders = 10\n"));
        assert!(conf.contains("fsync = off\n"));
    }

    #[test]
    fn strings_are_quoted_so_that_no_value_breaks_the_file() {
        assert_eq!(conf_quote("it's"), "'it''s'");
        assert_eq!(conf_quote("a\\b"), "'a\\\\b'");
        assert_eq!(conf_quote("x\ny"), "'x y'");
    }

    #[test]
    fn pg_hba_has_local_access_one_replication_line_per_member_then_user_lines() {
        let mut cfg = three_node_config();
        cfg.postgresql.pg_hba = vec!["host all all 10.0.0.0/24 scram-sha-256".into()];
        let hba = render_pg_hba(&cfg);
        assert!(hba.contains("local   all          all                 peer map=pgwarden\n"));
        for addr in ["10.0.0.1/32", "10.0.0.2/32", "10.0.1.3/32"] {
            assert!(
                hba.contains(&format!(
                    "host    replication  replicator  {addr}  scram-sha-256"
                )),
                "no replication line for {addr}:\n{hba}"
            );
        }
        let user_line = hba.find("host all all 10.0.0.0/24").unwrap();
        assert!(user_line > hba.find("10.0.1.3/32").unwrap());
    }

    #[test]
    fn pg_hba_is_the_same_on_every_node() {
        let mut other = three_node_config();
        other.node.name = "pg2".into();
        assert_eq!(render_pg_hba(&three_node_config()), render_pg_hba(&other));
    }

    #[test]
    fn witnesses_get_no_replication_line_and_ipv6_and_names_are_written_right() {
        let mut cfg = three_node_config();
        cfg.cluster.members[1].witness = true;
        cfg.cluster.members[0].host = Some("::1".into());
        cfg.cluster.members[2].host = Some("db3.example".into());
        let hba = render_pg_hba(&cfg);
        assert!(!hba.contains("10.0.0.2"));
        assert!(hba.contains("  ::1/128  "));
        assert!(hba.contains("  db3.example  "));
    }

    #[test]
    fn pg_ident_maps_root_and_owner_to_the_superuser_and_others_to_themselves() {
        let ident = render_pg_ident("alice");
        assert!(ident.contains("pgwarden  root  postgres\n"));
        assert!(ident.contains("pgwarden  alice  postgres\n"));
        assert!(ident.contains("pgwarden  /^(.*)$  \\1\n"));
        assert!(!render_pg_ident("postgres").contains("pgwarden  postgres  postgres"));
    }

    #[test]
    fn passfile_escapes_separators() {
        assert_eq!(
            render_passfile(&[("rep", "a:b\\c")]),
            "*:*:*:rep:a\\:b\\\\c\n"
        );
        assert_eq!(
            render_passfile(&[("a", "1"), ("b", "2")]),
            "*:*:*:a:1\n*:*:*:b:2\n"
        );
    }
}
