//! What a SIGHUP does with each key: the one reload plan. Pure: the running
//! configuration and the new one in, per changed key whether it is applied
//! now, written for PostgreSQL and in effect at its next restart, or kept
//! at its running value until the agent restarts. The `change` column of
//! docs/configuration.md is checked against [`KEYS`] by a test.

use super::model::Config;

/// What changing a key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Applied on SIGHUP.
    Reload,
    /// Written to PostgreSQL's configuration on SIGHUP; in effect at
    /// PostgreSQL's next restart (`pending_restart` until then).
    PostgresRestart,
    /// Kept at its running value until the agent restarts: changing it
    /// under a running agent would not be safe (the lease is set up with
    /// `ttl` at start, the API socket is bound, ...).
    AgentRestart,
}

impl Change {
    /// As docs/configuration.md writes it.
    pub fn as_doc(self) -> &'static str {
        match self {
            Change::Reload => "reload",
            Change::PostgresRestart => "PostgreSQL restart",
            Change::AgentRestart => "agent restart",
        }
    }
}

/// One key of the configuration and what changing it takes.
pub struct Key {
    /// `section.key`.
    pub name: &'static str,
    /// What a change takes.
    pub change: Change,
    changed: fn(&Config, &Config) -> bool,
    keep: fn(&mut Config, &Config),
}

macro_rules! keys {
    ($($name:literal => $change:ident : $($field:ident).+;)*) => {
        /// Every key of the configuration file.
        pub const KEYS: &[Key] = &[$(
            Key {
                name: $name,
                change: Change::$change,
                changed: |a, b| a.$($field).+ != b.$($field).+,
                keep: |to, from| to.$($field).+ = from.$($field).+.clone(),
            },
        )*];
    };
}

keys! {
    "node.name" => AgentRestart: node.name;
    "node.data_dir" => AgentRestart: node.data_dir;
    "node.bin_dir" => AgentRestart: node.bin_dir;
    "node.witness" => AgentRestart: node.witness;
    "node.watchdog" => AgentRestart: node.watchdog;
    "node.watchdog_device" => AgentRestart: node.watchdog_device;
    "node.tags" => Reload: node.tags;
    "api.listen" => AgentRestart: api.listen;
    "api.advertise_url" => AgentRestart: api.advertise_url;
    "api.token_file" => Reload: api.token_file;
    "api.tls_cert_file" => Reload: api.tls_cert_file;
    "api.tls_key_file" => Reload: api.tls_key_file;
    "api.tls_client_ca_file" => Reload: api.tls_client_ca_file;
    "api.verify_client" => Reload: api.verify_client;
    "api.tls_ca_file" => Reload: api.tls_ca_file;
    "cluster.name" => AgentRestart: cluster.name;
    "cluster.secret_file" => AgentRestart: cluster.secret_file;
    "cluster.ttl" => AgentRestart: cluster.ttl;
    "cluster.loop_wait" => AgentRestart: cluster.loop_wait;
    "cluster.members" => Reload: cluster.members;
    "postgresql.listen_addresses" => PostgresRestart: postgresql.listen_addresses;
    "postgresql.port" => PostgresRestart: postgresql.port;
    "postgresql.advertise_host" => Reload: postgresql.advertise_host;
    "postgresql.socket_dir" => AgentRestart: postgresql.socket_dir;
    "postgresql.parameters" => Reload: postgresql.parameters;
    "postgresql.pg_hba" => Reload: postgresql.pg_hba;
    "replication.user" => AgentRestart: replication.user;
    "replication.password_file" => Reload: replication.password_file;
    "replication.superuser_password_file" => Reload: replication.superuser_password_file;
    "replication.synchronous" => Reload: replication.synchronous;
    "replication.slots" => AgentRestart: replication.slots;
    "replication.member_slot_ttl" => Reload: replication.member_slot_ttl;
    "replication.max_lag_on_failover" => Reload: replication.max_lag_on_failover;
    "replication.clone_max_rate" => Reload: replication.clone_max_rate;
    "log.format" => Reload: log.format;
    "log.level" => Reload: log.level;
}

/// What a reload does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// Changed keys applied now.
    pub applied: Vec<&'static str>,
    /// Changed keys written for PostgreSQL, in effect at its next restart.
    pub postgres_restart: Vec<&'static str>,
    /// Changed keys kept at their running value until the agent restarts.
    pub agent_restart: Vec<&'static str>,
}

impl ReloadPlan {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty() && self.postgres_restart.is_empty() && self.agent_restart.is_empty()
    }
}

/// The plan for going from `running` to `new`.
pub fn reload_plan(running: &Config, new: &Config) -> ReloadPlan {
    let mut plan = ReloadPlan::default();
    for key in KEYS.iter().filter(|k| (k.changed)(running, new)) {
        match key.change {
            Change::Reload => plan.applied.push(key.name),
            Change::PostgresRestart => plan.postgres_restart.push(key.name),
            Change::AgentRestart => plan.agent_restart.push(key.name),
        }
    }
    plan
}

/// The configuration to run after the reload: `new`, with every key that
/// needs an agent restart kept at its running value.
pub fn to_apply(running: &Config, new: &Config) -> Config {
    let mut applied = new.clone();
    for key in KEYS.iter().filter(|k| k.change == Change::AgentRestart) {
        (key.keep)(&mut applied, running);
    }
    applied
}

/// What changing `name` (`section.key`) takes.
pub fn change_of(name: &str) -> Option<Change> {
    KEYS.iter().find(|k| k.name == name).map(|k| k.change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_with_env, ByteSize};
    use std::time::Duration;

    fn config() -> Config {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("s");
        std::fs::write(&secret, "x\n").unwrap();
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            format!(
                r#"[node]
name = "pg1"
data_dir = "/var/lib/pg"
[cluster]
name = "main"
members = [{{ name = "pg1", api_url = "http://10.0.0.1:8008" }}]
[replication]
password_file = "{s}"
superuser_password_file = "{s}"
"#,
                s = secret.display()
            ),
        )
        .unwrap();
        load_with_env(&file, Vec::<(String, String)>::new())
            .expect("a valid configuration")
            .config
    }

    #[test]
    fn every_key_is_classified_once() {
        let mut names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a key is listed twice");
    }

    #[test]
    fn a_ttl_change_is_kept_for_the_agent_restart_and_parameters_apply_now() {
        let running = config();
        let mut new = running.clone();
        new.cluster.ttl = Duration::from_secs(60);
        new.postgresql.port = 5433;
        new.replication.max_lag_on_failover = ByteSize(2 << 20);
        new.postgresql.parameters.insert(
            "work_mem".into(),
            crate::config::ParamValue::Text("8MB".into()),
        );
        let plan = reload_plan(&running, &new);
        assert_eq!(plan.agent_restart, vec!["cluster.ttl"]);
        assert_eq!(plan.postgres_restart, vec!["postgresql.port"]);
        assert_eq!(
            plan.applied,
            vec!["postgresql.parameters", "replication.max_lag_on_failover"]
        );
        let applied = to_apply(&running, &new);
        assert_eq!(
            applied.cluster.ttl, running.cluster.ttl,
            "the lease keeps its length"
        );
        assert_eq!(applied.postgresql.port, 5433);
        assert_eq!(applied.replication.max_lag_on_failover, ByteSize(2 << 20));
        assert!(reload_plan(&running, &running).is_empty());
    }

    #[test]
    fn a_log_format_or_level_change_applies_on_reload() {
        let running = config();
        let mut new = running.clone();
        new.log.format = crate::config::LogFormat::Json;
        new.log.level = "info,pgwarden::lease=debug".into();
        let plan = reload_plan(&running, &new);
        assert_eq!(plan.applied, vec!["log.format", "log.level"]);
        assert!(plan.agent_restart.is_empty() && plan.postgres_restart.is_empty());
        assert_eq!(to_apply(&running, &new).log, new.log);
        assert_eq!(change_of("log.format"), Some(Change::Reload));
        assert_eq!(change_of("log.level"), Some(Change::Reload));
    }

    /// The `change` column of docs/configuration.md says what this plan does.
    #[test]
    fn the_documented_change_of_every_key_is_what_a_reload_does() {
        let doc = include_str!("../../../docs/configuration.md");
        let mut section = String::new();
        let mut documented = Vec::new();
        let mut change_col = None;
        for line in doc.lines() {
            if line.starts_with("## ") {
                section = line
                    .strip_prefix("## `[")
                    .map(|rest| rest.trim_end_matches("]`").to_string())
                    .unwrap_or_default();
                change_col = None;
                continue;
            }
            if line.starts_with("### ") {
                // A sub-table (member entries, tags) is not a key table.
                change_col = None;
                continue;
            }
            if !line.starts_with('|') {
                continue;
            }
            // `\|` inside a cell (`"off" \| "auto"`) is not a separator
            let line = line.replace("\\|", "/");
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            if cells.first() == Some(&"key") {
                change_col = cells.iter().position(|c| *c == "change");
                continue;
            }
            let (Some(col), Some(key)) =
                (change_col, cells.first().and_then(|c| c.strip_prefix('`')))
            else {
                continue;
            };
            let name = format!("{section}.{}", key.trim_end_matches('`'));
            documented.push((
                name,
                cells.get(col).copied().unwrap_or_default().to_string(),
            ));
        }
        for key in KEYS {
            let doc = documented
                .iter()
                .find(|(n, _)| n == key.name)
                .unwrap_or_else(|| panic!("{} is not in docs/configuration.md", key.name));
            assert!(
                doc.1.starts_with(key.change.as_doc()),
                "{}: docs say {:?}, a reload does {:?}",
                key.name,
                doc.1,
                key.change.as_doc()
            );
        }
        for (name, _) in &documented {
            assert!(
                change_of(name).is_some(),
                "{name} is documented but not a key"
            );
        }
    }
}
