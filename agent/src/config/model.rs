//! The typed configuration: what every other module reads. Defaults live
//! here, next to the field they belong to; cross-field rules live in
//! `validate.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::ByteSize;

/// One node's configuration, as loaded from its TOML file and the
/// `PGWARDEN_<SECTION>__<KEY>` environment overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node: its name, data directory, binaries.
    pub node: NodeSection,
    /// The agent's own HTTP API.
    #[serde(default)]
    pub api: ApiSection,
    /// The cluster: members, lease timing.
    pub cluster: ClusterSection,
    /// The local PostgreSQL server.
    #[serde(default)]
    pub postgresql: PostgresqlSection,
    /// Replication users and policy.
    #[serde(default)]
    pub replication: ReplicationSection,
    /// The agent's own log.
    #[serde(default)]
    pub log: LogSection,
}

/// `[node]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Unique member name; also the standby's `application_name` and slot name.
    pub name: String,
    /// PostgreSQL data directory (`PGDATA`).
    #[serde(default)]
    pub data_dir: PathBuf,
    /// Where `postgres`, `initdb`, ... live; found from PATH / `pg_config` when absent.
    #[serde(default)]
    pub bin_dir: Option<PathBuf>,
    /// A witness votes in elections and runs no PostgreSQL.
    #[serde(default)]
    pub witness: bool,
    /// Whether a primary keeps a hardware/softdog watchdog fed.
    #[serde(default)]
    pub watchdog: WatchdogMode,
    /// The watchdog device.
    #[serde(default = "default_watchdog_device")]
    pub watchdog_device: PathBuf,
    /// This member's own tags (Patroni's names and meanings), reported in
    /// its status: draining a node means editing that node's file only.
    #[serde(default)]
    pub tags: Tags,
}

/// `node.tags`: what this member asks of the others and of load balancers,
/// with Patroni's names and meanings. Serialized as Patroni reports tags:
/// a built-in flag that is off is left out, so `?tag_nofailover=false`
/// matches nothing, as on Patroni.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tags {
    /// Never become primary (and step down if primary).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub nofailover: bool,
    /// `/replica` and `/read-only` answer 503: load balancers send no reads.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub noloadbalance: bool,
    /// Never listed in the primary's `synchronous_standby_names`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub nosync: bool,
    /// Among candidates equally far ahead, the higher goes first; 0 never
    /// becomes primary (as `nofailover`).
    #[serde(skip_serializing_if = "is_default_priority")]
    pub failover_priority: u32,
    /// New members prefer to clone from this one.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub clonefrom: bool,
    /// Stream from this member instead of the primary (cascading).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicatefrom: Option<String>,
    /// Any other tag: free-form strings, numbers and booleans, reported and
    /// matched by `?tag_<key>=<value>` filters.
    #[serde(flatten)]
    pub custom: BTreeMap<String, serde_json::Value>,
}

/// Patroni's default `failover_priority`.
pub const DEFAULT_FAILOVER_PRIORITY: u32 = 1;

fn is_default_priority(p: &u32) -> bool {
    *p == DEFAULT_FAILOVER_PRIORITY
}

impl Default for Tags {
    fn default() -> Tags {
        Tags {
            nofailover: false,
            noloadbalance: false,
            nosync: false,
            failover_priority: DEFAULT_FAILOVER_PRIORITY,
            clonefrom: false,
            replicatefrom: None,
            custom: BTreeMap::new(),
        }
    }
}

impl Tags {
    /// Never promoted: `nofailover`, or `failover_priority = 0` (Patroni's rule).
    pub fn never_primary(&self) -> bool {
        self.nofailover || self.failover_priority == 0
    }

    /// The tag `key` as Patroni matches `?tag_<key>=<value>`: strings as
    /// they are, other values in lower case (`true`, `2`); `None` when the
    /// tag is not set (a built-in flag that is off counts as not set).
    pub fn filter_value(&self, key: &str) -> Option<String> {
        let map = serde_json::to_value(self).ok()?;
        match map.get(key)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string().to_lowercase()),
        }
    }
}

/// `node.watchdog`: a machine that freezes must not keep a writable primary
/// (as Patroni's watchdog option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchdogMode {
    /// No watchdog.
    #[default]
    Off,
    /// Use the watchdog when the device can be opened; go on without it otherwise.
    Auto,
    /// Never be primary without a working watchdog.
    Required,
}

/// Linux's watchdog device.
pub fn default_watchdog_device() -> PathBuf {
    PathBuf::from("/dev/watchdog")
}

/// `[api]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Address the HTTP API binds to.
    #[serde(default = "default_api_listen")]
    pub listen: SocketAddr,
    /// How peers and clients reach this agent; defaults to this member's `api_url`.
    #[serde(default)]
    pub advertise_url: Option<String>,
    /// Bearer token for the mutating endpoints; without it they answer 403.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// TLS certificate (PEM) for the API.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// TLS private key (PEM) for the API.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// CA that client certificates must chain to (mutual TLS).
    #[serde(default)]
    pub tls_client_ca_file: Option<PathBuf>,
    /// Whether clients must present a certificate; `None`: `required`
    /// with `tls_client_ca_file`, else `none` (see [`ApiSection::verify_client`]).
    #[serde(default)]
    pub verify_client: Option<VerifyClient>,
    /// CA that other agents' certificates must chain to, when this agent
    /// (or the CLI) calls them; the system's roots when absent.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
}

/// `api.verify_client`: what the API asks of a client's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyClient {
    /// No client certificate is asked for.
    None,
    /// A client may present one; a presented certificate must verify.
    Optional,
    /// Every client must present a certificate that verifies.
    Required,
}

impl VerifyClient {
    /// As the configuration writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyClient::None => "none",
            VerifyClient::Optional => "optional",
            VerifyClient::Required => "required",
        }
    }
}

/// The files a client of an agent's API uses for TLS: the CA it verifies
/// the agent's certificate with (the system's roots when absent), and the
/// certificate it presents as its own identity (none when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// PEM CA certificates to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain to present.
    pub cert_file: Option<PathBuf>,
    /// Its private key.
    pub key_file: Option<PathBuf>,
}

impl ApiSection {
    /// The API speaks HTTPS.
    pub fn serves_tls(&self) -> bool {
        self.tls_cert_file.is_some()
    }

    /// `verify_client` in force: as set, else `required` when
    /// `tls_client_ca_file` is set, else `none`.
    pub fn verify_client(&self) -> VerifyClient {
        match (self.verify_client, &self.tls_client_ca_file) {
            (Some(v), _) => v,
            (None, Some(_)) => VerifyClient::Required,
            (None, None) => VerifyClient::None,
        }
    }

    /// What this agent uses when it calls other agents: `tls_ca_file`, and
    /// its own certificate and key as its client identity (mutual TLS
    /// between agents), when it serves TLS.
    pub fn client_tls(&self) -> ClientTlsFiles {
        ClientTlsFiles {
            ca_file: self.tls_ca_file.clone(),
            cert_file: self.tls_cert_file.clone(),
            key_file: self.tls_key_file.clone(),
        }
    }
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: default_api_listen(),
            advertise_url: None,
            token_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            verify_client: None,
            tls_ca_file: None,
        }
    }
}

fn default_api_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8008))
}

/// `[cluster]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Cluster name; also PostgreSQL's `cluster_name`.
    pub name: String,
    /// Shared secret authenticating agent-to-agent calls (path to a file).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Leader lease length.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// HA loop period.
    #[serde(default = "default_loop_wait", with = "humantime_serde")]
    pub loop_wait: Duration,
    /// Every member, this node included; the same list on every node.
    #[serde(default)]
    pub members: Vec<Member>,
}

/// `cluster.ttl` when the file does not set it.
pub(super) fn default_ttl() -> Duration {
    Duration::from_secs(10)
}

/// `cluster.loop_wait` when the file does not set it.
pub(super) fn default_loop_wait() -> Duration {
    Duration::from_secs(1)
}

/// One entry of `cluster.members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// The member's `node.name`.
    pub name: String,
    /// Where its agent's API is reached, e.g. `http://10.0.0.1:8008`.
    pub api_url: String,
    /// Where its PostgreSQL connects from (pg_hba); defaults to `api_url`'s host.
    #[serde(default)]
    pub host: Option<String>,
    /// Never promote this member.
    #[serde(default)]
    pub nofailover: bool,
    /// Preferred source for cloning new members.
    #[serde(default)]
    pub clonefrom: bool,
    /// A witness: votes, runs no PostgreSQL.
    #[serde(default)]
    pub witness: bool,
}

impl Member {
    /// The address its PostgreSQL connects from: `host`, else the host of `api_url`.
    pub fn pg_host(&self) -> Option<String> {
        if let Some(h) = &self.host {
            return Some(h.clone());
        }
        host_of_url(&self.api_url)
    }
}

/// The host part of an `http(s)://host:port/...` URL, without brackets for IPv6.
pub fn host_of_url(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit('@').next()?;
    let host = if let Some(stripped) = authority.strip_prefix('[') {
        stripped.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    if host.is_empty() {
        None
    } else {
        Some(host.to_string())
    }
}

/// `[postgresql]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresqlSection {
    /// PostgreSQL's `listen_addresses`.
    #[serde(default = "default_listen_addresses")]
    pub listen_addresses: String,
    /// PostgreSQL's `port`.
    #[serde(default = "default_pg_port")]
    pub port: u16,
    /// How other members' PostgreSQL reach this one; defaults to this member's host.
    #[serde(default)]
    pub advertise_host: Option<String>,
    /// PostgreSQL's `unix_socket_directories` (the first one; the agent connects there).
    #[serde(default = "default_socket_dir")]
    pub socket_dir: PathBuf,
    /// User parameters, merged over the managed ones.
    #[serde(default)]
    pub parameters: BTreeMap<String, ParamValue>,
    /// User pg_hba lines, after the managed ones.
    #[serde(default)]
    pub pg_hba: Vec<String>,
}

impl Default for PostgresqlSection {
    fn default() -> Self {
        PostgresqlSection {
            listen_addresses: default_listen_addresses(),
            port: default_pg_port(),
            advertise_host: None,
            socket_dir: default_socket_dir(),
            parameters: BTreeMap::new(),
            pg_hba: Vec::new(),
        }
    }
}

fn default_listen_addresses() -> String {
    "*".to_string()
}

fn default_pg_port() -> u16 {
    5432
}

fn default_socket_dir() -> PathBuf {
    PathBuf::from("/var/run/postgresql")
}

/// A PostgreSQL parameter value as TOML gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// `on` / `off`.
    Bool(bool),
    /// A plain integer.
    Int(i64),
    /// A real number.
    Float(f64),
    /// Anything else, including values with units (`"1GB"`).
    Text(String),
}

impl fmt::Display for ParamValue {
    /// The value as PostgreSQL's `SHOW` would print it (unquoted).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Bool(true) => f.write_str("on"),
            ParamValue::Bool(false) => f.write_str("off"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Text(s) => f.write_str(s),
        }
    }
}

/// `[replication]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationSection {
    /// The replication role (`REPLICATION LOGIN`, not superuser).
    #[serde(default = "default_replication_user")]
    pub user: String,
    /// File holding the replication role's password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// File holding the `postgres` superuser's password.
    #[serde(default)]
    pub superuser_password_file: Option<PathBuf>,
    /// Synchronous replication mode.
    #[serde(default)]
    pub synchronous: SyncMode,
    /// Keep one physical replication slot per member on the primary.
    #[serde(default = "default_true")]
    pub slots: bool,
    /// How long the slot of an absent member is kept before it is dropped.
    #[serde(default = "default_member_slot_ttl", with = "humantime_serde")]
    pub member_slot_ttl: Duration,
    /// A standby lagging more than this is not promoted.
    #[serde(default = "default_max_lag")]
    pub max_lag_on_failover: ByteSize,
    /// The most a clone (`pg_basebackup --max-rate`) reads per second.
    #[serde(default)]
    pub clone_max_rate: Option<ByteSize>,
}

impl Default for ReplicationSection {
    fn default() -> Self {
        ReplicationSection {
            user: default_replication_user(),
            password_file: None,
            superuser_password_file: None,
            synchronous: SyncMode::Off,
            slots: true,
            member_slot_ttl: default_member_slot_ttl(),
            max_lag_on_failover: default_max_lag(),
            clone_max_rate: None,
        }
    }
}

fn default_replication_user() -> String {
    "replicator".to_string()
}

fn default_true() -> bool {
    true
}

/// `replication.member_slot_ttl` when the file does not set it.
pub(super) fn default_member_slot_ttl() -> Duration {
    Duration::from_secs(30 * 60)
}

fn default_max_lag() -> ByteSize {
    ByteSize(1 << 20)
}

/// `replication.synchronous`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Asynchronous replication.
    #[default]
    Off,
    /// One synchronous standby (`FIRST 1 (...)`).
    On,
    /// `ANY k (...)` quorum commit: no acknowledged write lost on failover.
    Quorum,
}

impl SyncMode {
    /// `k`: how many standbys acknowledge a commit. `"quorum"`:
    /// `max(1, N − M)` with `N` data members and `M` the majority of the
    /// lease's voters, so that every set of members that can elect a
    /// leader (it compares `N − k` positions) shares one with every set that
    /// acknowledged a commit. `"on"`: one. `"off"` acknowledges without a
    /// standby, but candidates still compare `N − k` positions with the
    /// quorum's `k` (the candidate rule is the same in both).
    pub fn acks(self, data_members: usize, voters: usize) -> usize {
        match self {
            SyncMode::On => 1,
            SyncMode::Off | SyncMode::Quorum => data_members.saturating_sub(voters / 2 + 1).max(1),
        }
    }

    /// The word the configuration and `/status` use.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Off => "off",
            SyncMode::On => "on",
            SyncMode::Quorum => "quorum",
        }
    }
}

/// `[log]`: what the agent writes on stderr. Both keys apply on SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// Text lines for people, or JSON lines for a log pipeline.
    #[serde(default)]
    pub format: LogFormat,
    /// A level (`"info"`) or `tracing` directives
    /// (`"info,pgwarden::lease=debug"`), as validated by the schema.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: LogFormat::Text,
            level: default_log_level(),
        }
    }
}

/// `log.level` when the file does not set it.
pub fn default_log_level() -> String {
    "info".to_string()
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `member`,
    /// `message` and the event's fields.
    Json,
}

impl LogFormat {
    /// The word the configuration uses.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl Config {
    /// This node's entry in `cluster.members` (validation guarantees it exists).
    pub fn me(&self) -> Option<&Member> {
        self.cluster
            .members
            .iter()
            .find(|m| m.name == self.node.name)
    }

    /// The members that run PostgreSQL (witnesses excluded).
    pub fn data_members(&self) -> impl Iterator<Item = &Member> {
        self.cluster.members.iter().filter(|m| !m.witness)
    }

    /// The host other members' PostgreSQL use to reach this one.
    pub fn pg_advertise_host(&self) -> String {
        self.postgresql
            .advertise_host
            .clone()
            .or_else(|| self.me().and_then(Member::pg_host))
            .unwrap_or_else(|| "127.0.0.1".to_string())
    }

    /// The URL peers and clients use to reach this agent.
    pub fn api_advertise_url(&self) -> String {
        self.api
            .advertise_url
            .clone()
            .or_else(|| self.me().map(|m| m.api_url.clone()))
            .unwrap_or_else(|| format!("http://{}", self.api.listen))
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.node.data_dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts_are_extracted_for_ipv4_ipv6_and_names() {
        assert_eq!(
            host_of_url("http://10.0.0.1:8008").as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(host_of_url("https://[::1]:8008/x").as_deref(), Some("::1"));
        assert_eq!(
            host_of_url("http://pg1.example").as_deref(),
            Some("pg1.example")
        );
        assert_eq!(host_of_url("ftp://x"), None);
        assert_eq!(host_of_url("http://:8008"), None);
    }
}
