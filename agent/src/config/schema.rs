//! The shape of the file: which sections and keys exist, their types and
//! defaults, and the reading of the merged tree into a [`Config`], one key
//! at a time so that every bad key is reported.
//!
//! Every model field is built here with an explicit struct literal: a field
//! added to `model.rs` without a reader here fails to compile.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fields::{describe, Table};
use super::model::{
    default_log_level, default_loop_wait, default_ttl, ApiSection, ClusterSection, Config,
    LogFormat, LogSection, Member, NodeSection, ParamValue, PostgresqlSection, ReplicationSection,
    SyncMode, Tags, VerifyClient, WatchdogMode,
};
use super::report::Report;
use super::validate;

/// A section of the file and the keys it may hold.
pub(super) struct SectionSpec {
    /// `node`, `api`, ...
    pub(super) name: &'static str,
    /// Every key the section may hold.
    pub(super) keys: &'static [&'static str],
}

/// Every section, in the order the file and the messages present them.
pub(super) const SECTIONS: &[SectionSpec] = &[
    SectionSpec {
        name: "node",
        keys: &[
            "name",
            "data_dir",
            "bin_dir",
            "witness",
            "watchdog",
            "watchdog_device",
            "tags",
        ],
    },
    SectionSpec {
        name: "api",
        keys: &[
            "listen",
            "advertise_url",
            "token_file",
            "tls_cert_file",
            "tls_key_file",
            "tls_client_ca_file",
            "verify_client",
            "tls_ca_file",
        ],
    },
    SectionSpec {
        name: "cluster",
        keys: &["name", "secret_file", "ttl", "loop_wait", "members"],
    },
    SectionSpec {
        name: "postgresql",
        keys: &[
            "listen_addresses",
            "port",
            "advertise_host",
            "socket_dir",
            "parameters",
            "pg_hba",
        ],
    },
    SectionSpec {
        name: "replication",
        keys: &[
            "user",
            "password_file",
            "superuser_password_file",
            "synchronous",
            "slots",
            "member_slot_ttl",
            "max_lag_on_failover",
            "clone_max_rate",
        ],
    },
    SectionSpec {
        name: "log",
        keys: &["format", "level"],
    },
];

/// The keys of one `cluster.members` entry.
pub(super) const MEMBER_KEYS: &[&str] = &[
    "name",
    "api_url",
    "host",
    "nofailover",
    "clonefrom",
    "witness",
];

/// Keys that are lists or tables: the environment holds only strings, so
/// they cannot be overridden whole.
const LIST_KEYS: &[(&str, &str)] = &[("cluster", "members"), ("postgresql", "pg_hba")];

/// PostgreSQL parameters that have their own key, or that the agent must
/// own for replication to work: setting them in `postgresql.parameters`
/// would fight the agent.
const RESERVED_PARAMETERS: &[(&str, &str)] = &[
    ("port", "set postgresql.port instead"),
    (
        "listen_addresses",
        "set postgresql.listen_addresses instead",
    ),
    (
        "unix_socket_directories",
        "set postgresql.socket_dir instead",
    ),
    ("cluster_name", "set cluster.name instead"),
    (
        "synchronous_standby_names",
        "set replication.synchronous instead",
    ),
    (
        "primary_conninfo",
        "the agent points each replica at the current primary",
    ),
    (
        "primary_slot_name",
        "the agent manages replication slots (replication.slots)",
    ),
    ("data_directory", "set node.data_dir instead"),
    (
        "hba_file",
        "the agent writes pg_hba.conf; add lines with postgresql.pg_hba",
    ),
    ("config_file", "the agent writes postgresql.conf"),
    (
        "ident_file",
        "the agent writes pg_ident.conf (its local access depends on it)",
    ),
    (
        "hot_standby",
        "the agent keeps it on: a standby must answer its probe and read-only queries",
    ),
    (
        "wal_log_hints",
        "the agent keeps it on: pg_rewind needs it to rejoin a former primary",
    ),
    (
        "recovery_target_timeline",
        "the agent keeps it at latest, so that a standby follows a new primary",
    ),
    (
        "recovery_target",
        "a standby that stops recovering cannot follow the primary",
    ),
    (
        "recovery_target_lsn",
        "a standby that stops recovering cannot follow the primary",
    ),
    (
        "recovery_target_time",
        "a standby that stops recovering cannot follow the primary",
    ),
    (
        "recovery_target_xid",
        "a standby that stops recovering cannot follow the primary",
    ),
    (
        "recovery_target_name",
        "a standby that stops recovering cannot follow the primary",
    ),
    (
        "promote_trigger_file",
        "the agent promotes, and only while it holds the leader lease",
    ),
];

/// Checks the section and key of an environment override
/// (`PGWARDEN_<section>__<key>`, already lowercased).
pub(super) fn check_override_key(section: &str, key: &str) -> Result<(), String> {
    let Some(spec) = SECTIONS.iter().find(|s| s.name == section) else {
        return Err(format!(
            "unknown section [{section}]; {}overrides are named PGWARDEN_<SECTION>__<KEY> with SECTION one of {}",
            closest(section, SECTIONS.iter().map(|s| s.name))
                .map(|s| format!("did you mean [{s}]? "))
                .unwrap_or_default(),
            section_names()
        ));
    };
    if section == "postgresql" {
        if key == "parameters" {
            return Err(
                "set one parameter at a time: PGWARDEN_POSTGRESQL__PARAMETERS__<NAME>=<value>"
                    .into(),
            );
        }
        if let Some(param) = key.strip_prefix("parameters__") {
            return parameter_name(param);
        }
    }
    if LIST_KEYS.contains(&(section, key)) {
        return Err(format!(
            "{section}.{key} is a list and cannot be set from the environment; set it in the file"
        ));
    }
    if let Some((first, _)) = key.split_once("__") {
        if spec.keys.contains(&first) {
            return Err(format!("{section}.{first} has no sub-keys"));
        }
    }
    if !spec.keys.contains(&key) {
        return Err(format!(
            "unknown key {key:?} in [{section}]; {}valid keys: {}",
            hint(section, key),
            spec.keys.join(", ")
        ));
    }
    Ok(())
}

/// Reads the merged tree into a [`Config`]. Keys with problems get their
/// default (or an empty placeholder) so reading can go on; the caller
/// refuses the result when `r` holds any problem.
pub(super) fn read(tree: &Value, r: &mut Report) -> Config {
    let empty = Map::new();
    let root = match tree {
        Value::Object(map) => map,
        _ => &empty,
    };
    for (key, value) in root {
        match SECTIONS.iter().find(|s| s.name == key) {
            Some(_) if !value.is_object() => r.error(
                key,
                format!("expected a section [{key}], found {}; write the keys under a [{key}] header", describe(value)),
            ),
            Some(_) => {}
            None if value.is_object() => r.error(
                key,
                format!(
                    "unknown section [{key}]; {}valid sections: {}",
                    closest(key, SECTIONS.iter().map(|s| s.name))
                        .map(|s| format!("did you mean [{s}]? "))
                        .unwrap_or_default(),
                    section_names()
                ),
            ),
            None => r.error(
                key,
                format!(
                    "unknown key {key:?} outside any section{}; every key belongs under a [section] header",
                    match homes_of(key).as_slice() {
                        [] => String::new(),
                        homes => format!(" (it belongs in {})", headers(homes)),
                    }
                ),
            ),
        }
    }
    let section = |name: &str| Table::new(name, root.get(name).and_then(Value::as_object));

    let node = read_node(&section("node"), r);
    let api = read_api(&section("api"), r);
    let cluster = read_cluster(&section("cluster"), r);
    let postgresql = read_postgresql(&section("postgresql"), r);
    let replication = read_replication(&section("replication"), r);
    let log = read_log(&section("log"), r);
    Config {
        node,
        api,
        cluster,
        postgresql,
        replication,
        log,
    }
}

fn read_node(t: &Table, r: &mut Report) -> NodeSection {
    check_unknown(t, r, "node");
    let name = t.string(r, "name", "\"pg1\"");
    let name = checked(r, &t.key("name"), name, |n| validate::member_name(n));
    if !t.has("name") {
        r.error(
            "node.name",
            "missing: every node needs a name, the same as its entry in cluster.members; add name = \"pg1\" under [node]",
        );
    }
    let data_dir = t.path(r, "data_dir", "\"/var/lib/postgresql/15/main\"");
    let bin_dir = t.path(r, "bin_dir", "\"/usr/lib/postgresql/15/bin\"");
    let witness = t.bool(r, "witness").unwrap_or(false);
    if !t.has("data_dir") && !witness {
        r.error(
            "node.data_dir",
            "missing: add data_dir = \"/var/lib/postgresql/15/main\" under [node] (or witness = true on a node that runs no PostgreSQL)",
        );
    }
    let watchdog = match t.get("watchdog") {
        None => WatchdogMode::Off,
        Some(Value::String(s)) => match s.as_str() {
            "off" => WatchdogMode::Off,
            "auto" => WatchdogMode::Auto,
            "required" => WatchdogMode::Required,
            _ => {
                r.error(
                    &t.key("watchdog"),
                    format!("{s:?} is not a watchdog mode; write watchdog = \"off\", \"auto\" or \"required\""),
                );
                WatchdogMode::Off
            }
        },
        Some(_) => {
            t.wrong_type(
                r,
                "watchdog",
                "\"off\", \"auto\" or \"required\"",
                "\"off\"",
            );
            WatchdogMode::Off
        }
    };
    let watchdog_device = t
        .path(r, "watchdog_device", "\"/dev/watchdog\"")
        .unwrap_or_else(super::model::default_watchdog_device);
    let tags = read_tags(t, r);
    NodeSection {
        name: name.unwrap_or_default(),
        data_dir: data_dir.unwrap_or_default(),
        bin_dir,
        witness,
        watchdog,
        watchdog_device,
        tags,
    }
}

/// `node.tags`: the built-in tags typed, any other tag kept as a string,
/// number or boolean (Patroni's free-form tags).
fn read_tags(t: &Table, r: &mut Report) -> Tags {
    let mut tags = Tags::default();
    let Some(map) = t.table(
        r,
        "tags",
        "{ nofailover = false, noloadbalance = false, nosync = false, failover_priority = 1 }",
    ) else {
        return tags;
    };
    let tt = Table::new(t.key("tags"), Some(map));
    tags.nofailover = tt.bool(r, "nofailover").unwrap_or(false);
    tags.noloadbalance = tt.bool(r, "noloadbalance").unwrap_or(false);
    tags.nosync = tt.bool(r, "nosync").unwrap_or(false);
    tags.clonefrom = tt.bool(r, "clonefrom").unwrap_or(false);
    if let Some(v) = tt.get("failover_priority") {
        match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(p) => tags.failover_priority = p,
            None => tt.wrong_type(
                r,
                "failover_priority",
                "a whole number, 0 or more (0: never primary)",
                "1",
            ),
        }
    }
    let replicatefrom = tt.string(r, "replicatefrom", "\"pg2\"");
    tags.replicatefrom = checked(r, &tt.key("replicatefrom"), replicatefrom, |n| {
        validate::member_name(n)
    });
    for (key, value) in map {
        if BUILTIN_TAGS.contains(&key.as_str()) {
            continue;
        }
        match value {
            Value::String(_) | Value::Bool(_) | Value::Number(_) => {
                tags.custom.insert(key.clone(), value.clone());
            }
            other => r.error(
                &tt.key(key),
                format!(
                    "expected a string, number or boolean, found {}; a tag is e.g. {key} = \"rack-a\"",
                    describe(other)
                ),
            ),
        }
    }
    tags
}

/// The tags with a meaning to the agent (Patroni's); others are free-form.
const BUILTIN_TAGS: &[&str] = &[
    "nofailover",
    "noloadbalance",
    "nosync",
    "failover_priority",
    "clonefrom",
    "replicatefrom",
];

fn read_api(t: &Table, r: &mut Report) -> ApiSection {
    check_unknown(t, r, "api");
    let defaults = ApiSection::default();
    let listen = t.string(r, "listen", "\"0.0.0.0:8008\"");
    let listen = listen.and_then(|s| match validate::listen_addr(&s) {
        Ok(addr) => Some(addr),
        Err(message) => {
            r.error(&t.key("listen"), message);
            None
        }
    });
    let advertise_url = t.string(r, "advertise_url", "\"http://10.0.0.1:8008\"");
    let advertise_url = checked(r, &t.key("advertise_url"), advertise_url, |u| {
        validate::api_url(u).map(|_| ())
    });
    ApiSection {
        listen: listen.unwrap_or(defaults.listen),
        advertise_url,
        token_file: t.path(r, "token_file", "\"/etc/pgwarden/api.token\""),
        tls_cert_file: t.path(r, "tls_cert_file", "\"/etc/pgwarden/api.crt\""),
        tls_key_file: t.path(r, "tls_key_file", "\"/etc/pgwarden/api.key\""),
        tls_client_ca_file: t.path(r, "tls_client_ca_file", "\"/etc/pgwarden/clients-ca.crt\""),
        verify_client: read_verify_client(t, r),
        tls_ca_file: t.path(r, "tls_ca_file", "\"/etc/pgwarden/ca.crt\""),
    }
}

fn read_verify_client(t: &Table, r: &mut Report) -> Option<VerifyClient> {
    const CHOICES: &str = "\"none\", \"optional\" or \"required\"";
    match t.get("verify_client")? {
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "none" => Some(VerifyClient::None),
            "optional" => Some(VerifyClient::Optional),
            "required" => Some(VerifyClient::Required),
            _ => {
                r.error(
                    &t.key("verify_client"),
                    format!("{s:?} is not a client verification mode; write verify_client = {CHOICES} (required: every client presents a certificate signed by tls_client_ca_file)"),
                );
                None
            }
        },
        _ => {
            t.wrong_type(r, "verify_client", CHOICES, "\"required\"");
            None
        }
    }
}

fn read_cluster(t: &Table, r: &mut Report) -> ClusterSection {
    check_unknown(t, r, "cluster");
    let name = t.string(r, "name", "\"main\"");
    let name = checked(r, &t.key("name"), name, |n| validate::cluster_name(n));
    if !t.has("name") {
        r.error(
            "cluster.name",
            "missing: add name = \"main\" under [cluster], the same on every node",
        );
    }
    ClusterSection {
        name: name.unwrap_or_default(),
        secret_file: t.path(r, "secret_file", "\"/etc/pgwarden/cluster.secret\""),
        ttl: t.duration(r, "ttl", "10s").unwrap_or_else(default_ttl),
        loop_wait: t
            .duration(r, "loop_wait", "1s")
            .unwrap_or_else(default_loop_wait),
        members: read_members(t, r),
    }
}

const MEMBERS_EXAMPLE: &str = "members = [{ name = \"pg1\", api_url = \"http://10.0.0.1:8008\" }]";

/// Reads `cluster.members`. Entries with problems stay in the list (with
/// placeholders) so that indices in later messages match the file.
fn read_members(cluster: &Table, r: &mut Report) -> Vec<Member> {
    let Some(value) = cluster.get("members") else {
        r.error(
            "cluster.members",
            format!("missing: list every member, this node included, the same list on every node; e.g. {MEMBERS_EXAMPLE}"),
        );
        return Vec::new();
    };
    let Value::Array(items) = value else {
        cluster.wrong_type(
            r,
            "members",
            "a list of member entries",
            &MEMBERS_EXAMPLE["members = ".len()..],
        );
        return Vec::new();
    };
    if items.is_empty() {
        r.error(
            "cluster.members",
            format!("is empty: list every member, this node included; e.g. {MEMBERS_EXAMPLE}"),
        );
    }
    let mut members = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("cluster.members[{i}]");
        let Value::Object(map) = item else {
            r.error(
                &path,
                format!(
                    "expected a member entry such as {{ name = \"pg1\", api_url = \"http://10.0.0.1:8008\" }}, found {}",
                    describe(item)
                ),
            );
            // A placeholder keeps later indices equal to the file's.
            members.push(Member {
                name: String::new(),
                api_url: String::new(),
                host: None,
                nofailover: false,
                clonefrom: false,
                witness: false,
            });
            continue;
        };
        let t = Table::new(path.clone(), Some(map));
        t.unknown_keys(r, &format!("member entry {path}"), MEMBER_KEYS, |k| {
            suggest(k, MEMBER_KEYS)
        });
        let name = t.string(r, "name", "\"pg1\"");
        let name = checked(r, &t.key("name"), name, |n| validate::member_name(n));
        if !t.has("name") {
            r.error(
                &t.key("name"),
                "missing: add name = \"pg1\" to this member entry (its node.name)",
            );
        }
        let api_url = t.string(r, "api_url", "\"http://10.0.0.1:8008\"");
        let api_url = checked(r, &t.key("api_url"), api_url, |u| {
            validate::api_url(u).map(|_| ())
        });
        if !t.has("api_url") {
            r.error(
                &t.key("api_url"),
                "missing: add api_url = \"http://10.0.0.1:8008\" to this member entry (where its agent listens)",
            );
        }
        let host = t.string(r, "host", "\"10.0.1.1\"");
        let host = checked(r, &t.key("host"), host, |h| validate::host(h));
        members.push(Member {
            name: name.unwrap_or_default(),
            api_url: api_url.unwrap_or_default(),
            host,
            nofailover: t.bool(r, "nofailover").unwrap_or(false),
            clonefrom: t.bool(r, "clonefrom").unwrap_or(false),
            witness: t.bool(r, "witness").unwrap_or(false),
        });
    }
    members
}

fn read_postgresql(t: &Table, r: &mut Report) -> PostgresqlSection {
    check_unknown(t, r, "postgresql");
    let defaults = PostgresqlSection::default();
    let listen_addresses = t.string(r, "listen_addresses", "\"0.0.0.0\"");
    let port = t.port(r, "port", 5432);
    let advertise_host = t.string(r, "advertise_host", "\"10.0.0.1\"");
    let advertise_host = checked(r, &t.key("advertise_host"), advertise_host, |h| {
        validate::host(h)
    });
    let socket_dir = t.path(r, "socket_dir", "\"/var/run/postgresql\"");
    let parameters = read_parameters(t, r);
    let pg_hba = t.strings(r, "pg_hba", "\"host all all 10.0.0.0/24 scram-sha-256\"");
    for (i, line) in pg_hba.iter().flatten().enumerate() {
        if let Err(message) = validate::hba_line(line) {
            r.error(&format!("postgresql.pg_hba[{i}]"), message);
        }
    }
    PostgresqlSection {
        listen_addresses: listen_addresses.unwrap_or(defaults.listen_addresses),
        port: port.unwrap_or(defaults.port),
        advertise_host,
        socket_dir: socket_dir.unwrap_or(defaults.socket_dir),
        parameters,
        pg_hba: pg_hba.unwrap_or_default(),
    }
}

fn read_parameters(t: &Table, r: &mut Report) -> BTreeMap<String, ParamValue> {
    let mut out = BTreeMap::new();
    let Some(map) = t.table(
        r,
        "parameters",
        "{ max_connections = 200, shared_buffers = \"1GB\" }",
    ) else {
        return out;
    };
    for (name, value) in map {
        let key = format!("postgresql.parameters.{name}");
        if let Err(message) = parameter_name(name) {
            r.error(&key, message);
            continue;
        }
        let param = match value {
            Value::Bool(b) => ParamValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => ParamValue::Int(i),
                None => ParamValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => ParamValue::Text(s.clone()),
            other => {
                r.error(
                    &key,
                    format!(
                        "expected a string, number or boolean, found {}; write e.g. {name} = \"1GB\"",
                        describe(other)
                    ),
                );
                continue;
            }
        };
        out.insert(name.clone(), param);
    }
    out
}

/// A PostgreSQL parameter name the agent lets the user set.
fn parameter_name(name: &str) -> Result<(), String> {
    if let Some((_, why)) = RESERVED_PARAMETERS.iter().find(|(p, _)| *p == name) {
        return Err(format!(
            "{name} cannot be set in postgresql.parameters: {why}"
        ));
    }
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a PostgreSQL parameter name; write it as in postgresql.conf, in lowercase (e.g. shared_buffers)"
        ))
    }
}

fn read_replication(t: &Table, r: &mut Report) -> ReplicationSection {
    check_unknown(t, r, "replication");
    let defaults = ReplicationSection::default();
    let user = t.string(r, "user", "\"replicator\"");
    let user = checked(r, &t.key("user"), user, |u| validate::role_name(u));
    let password_file = t.path(r, "password_file", "\"/etc/pgwarden/replicator.pass\"");
    let superuser_password_file = t.path(
        r,
        "superuser_password_file",
        "\"/etc/pgwarden/postgres.pass\"",
    );
    let synchronous = match t.get("synchronous") {
        None => None,
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "off" => Some(SyncMode::Off),
            "on" => Some(SyncMode::On),
            "quorum" => Some(SyncMode::Quorum),
            _ => {
                r.error(
                    "replication.synchronous",
                    format!(
                        "{s:?} is not a synchronous mode; write synchronous = \"off\", \"on\" or \"quorum\" (off: asynchronous; on: one synchronous standby; quorum: no acknowledged write is lost on failover)"
                    ),
                );
                None
            }
        },
        Some(_) => {
            t.wrong_type(r, "synchronous", "\"off\", \"on\" or \"quorum\"", "\"off\"");
            None
        }
    };
    ReplicationSection {
        user: user.unwrap_or(defaults.user),
        password_file,
        superuser_password_file,
        synchronous: synchronous.unwrap_or(defaults.synchronous),
        slots: t.bool(r, "slots").unwrap_or(defaults.slots),
        member_slot_ttl: t
            .duration(r, "member_slot_ttl", "30min")
            .unwrap_or(defaults.member_slot_ttl),
        max_lag_on_failover: t
            .size(r, "max_lag_on_failover", "1MB")
            .unwrap_or(defaults.max_lag_on_failover),
        clone_max_rate: t.size(r, "clone_max_rate", "100MB").and_then(|rate| {
            checked(r, &t.key("clone_max_rate"), Some(rate), |rate| {
                validate::clone_max_rate(*rate)
            })
        }),
    }
}

fn read_log(t: &Table, r: &mut Report) -> LogSection {
    check_unknown(t, r, "log");
    const FORMATS: &str = "\"text\" or \"json\"";
    let format = match t.get("format") {
        None => LogFormat::Text,
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                r.error(
                    &t.key("format"),
                    format!("{s:?} is not a log format; write format = {FORMATS} (text: lines for people; json: one JSON object a line, for a log pipeline)"),
                );
                LogFormat::Text
            }
        },
        Some(_) => {
            t.wrong_type(r, "format", FORMATS, "\"json\"");
            LogFormat::Text
        }
    };
    let level = t.string(r, "level", "\"info\"");
    let level = checked(r, &t.key("level"), level, |l| validate::log_level(l));
    LogSection {
        format,
        level: level
            .map(|l| l.trim().to_string())
            .unwrap_or_else(default_log_level),
    }
}

/// Keeps `value` when `rule` accepts it; records the rule's message otherwise.
fn checked<T>(
    r: &mut Report,
    key: &str,
    value: Option<T>,
    rule: impl Fn(&T) -> Result<(), String>,
) -> Option<T> {
    let value = value?;
    match rule(&value) {
        Ok(()) => Some(value),
        Err(message) => {
            r.error(key, message);
            None
        }
    }
}

fn check_unknown(t: &Table, r: &mut Report, section: &str) {
    let keys = SECTIONS
        .iter()
        .find(|s| s.name == section)
        .map(|s| s.keys)
        .unwrap_or_default();
    t.unknown_keys(r, &format!("[{section}]"), keys, |k| hint(section, k));
}

/// A suggestion for an unknown key of `section`: a close spelling among
/// its keys, else the section the key really belongs in.
fn hint(section: &str, key: &str) -> String {
    let keys = SECTIONS
        .iter()
        .find(|s| s.name == section)
        .map(|s| s.keys)
        .unwrap_or_default();
    let near = suggest(key, keys);
    if !near.is_empty() {
        return near;
    }
    let homes = homes_of(key);
    if homes.is_empty() || homes.contains(&section) {
        return String::new();
    }
    format!("it belongs in {}; ", headers(&homes))
}

/// `did you mean "x"? ` when one of `known` is close to `key`.
fn suggest(key: &str, known: &[&str]) -> String {
    closest(key, known.iter().copied())
        .map(|k| format!("did you mean {k:?}? "))
        .unwrap_or_default()
}

/// The sections that have a key named `key`.
fn homes_of(key: &str) -> Vec<&'static str> {
    SECTIONS
        .iter()
        .filter(|s| s.keys.contains(&key))
        .map(|s| s.name)
        .collect()
}

/// `[node]`, `[node] or [cluster]`.
fn headers(sections: &[&str]) -> String {
    sections
        .iter()
        .map(|s| format!("[{s}]"))
        .collect::<Vec<_>>()
        .join(" or ")
}

fn section_names() -> String {
    SECTIONS
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The candidate closest to `word` when it is close enough to be a typo:
/// a few edits away, a different case, or the start of a longer key
/// (`password` for `password_file`).
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    let budget = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .filter_map(|c| {
            let d = edit_distance(&lower, c);
            let prefix = lower.len() >= 4 && (c.starts_with(&lower) || lower.starts_with(c));
            (d <= budget || prefix).then_some((d, c))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance counting a swap of two neighbours as one edit (`nmae`
/// for `name` is one typo, not two): optimal string alignment.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(doc: Value) -> Vec<(String, String)> {
        let mut r = Report::default();
        read(&doc, &mut r);
        r.finish()
            .0
            .into_iter()
            .map(|p| (p.key, p.message))
            .collect()
    }

    fn minimal() -> Value {
        json!({
            "node": { "name": "pg1", "data_dir": "/var/lib/postgresql/15/main" },
            "cluster": { "name": "main", "members": [{ "name": "pg1", "api_url": "http://10.0.0.1:8008" }] },
        })
    }

    #[test]
    fn the_schema_lists_exactly_the_sections_and_fields_of_the_model() {
        // The model's own serialization names every field; a key missing
        // here would be refused as unknown, a key too many would be unread.
        let mut r = Report::default();
        let model = serde_json::to_value(read(&minimal(), &mut r)).expect("serialize");
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        let names_of = |v: &Value| {
            sorted(
                v.as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default(),
            )
        };
        let listed = |keys: &[&str]| sorted(keys.iter().map(|k| k.to_string()).collect());
        assert_eq!(
            names_of(&model),
            listed(&SECTIONS.iter().map(|s| s.name).collect::<Vec<_>>())
        );
        for spec in SECTIONS {
            assert_eq!(
                names_of(&model[spec.name]),
                listed(spec.keys),
                "[{}]",
                spec.name
            );
        }
        assert_eq!(
            names_of(&model["cluster"]["members"][0]),
            listed(MEMBER_KEYS)
        );
    }

    #[test]
    fn a_minimal_tree_reads_with_every_default_filled_in() {
        let mut r = Report::default();
        let c = read(&minimal(), &mut r);
        assert!(r.finish().0.is_empty());
        assert_eq!(c.api, ApiSection::default());
        assert_eq!(c.postgresql, PostgresqlSection::default());
        assert_eq!(c.replication, ReplicationSection::default());
        assert_eq!(c.cluster.ttl, default_ttl());
        assert_eq!(c.cluster.members[0].name, "pg1");
    }

    #[test]
    fn an_empty_file_lists_every_missing_required_key() {
        let keys: Vec<String> = problems(json!({})).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "node.name",
                "node.data_dir",
                "cluster.name",
                "cluster.members"
            ]
        );
    }

    #[test]
    fn a_witness_needs_no_data_dir() {
        let mut doc = minimal();
        doc["node"] = json!({ "name": "pg1", "witness": true });
        assert_eq!(problems(doc), []);
    }

    #[test]
    fn unknown_keys_are_reported_per_section_with_a_suggestion() {
        let mut doc = minimal();
        doc["cluster"]["tll"] = json!("10s");
        doc["node"]["ttl"] = json!("10s");
        doc["cluster"]["members"][0]["api_ur"] = json!("x");
        doc["replication"] = json!({ "password": "secret" });
        let p = problems(doc);
        let find = |k: &str| {
            p.iter()
                .find(|(key, _)| key == k)
                .map(|(_, m)| m.clone())
                .unwrap_or_default()
        };
        assert!(
            find("cluster.tll").contains("did you mean \"ttl\"?"),
            "{p:?}"
        );
        assert!(
            find("cluster.tll").contains("valid keys: name, secret_file, ttl, loop_wait, members"),
            "{p:?}"
        );
        assert!(
            find("node.ttl").contains("it belongs in [cluster]"),
            "{p:?}"
        );
        assert!(
            find("cluster.members[0].api_ur").contains("did you mean \"api_url\"?"),
            "{p:?}"
        );
        assert!(
            find("replication.password").contains("did you mean \"password_file\"?"),
            "{p:?}"
        );
    }

    #[test]
    fn unknown_sections_and_keys_outside_sections_are_reported() {
        let mut doc = minimal();
        doc["nodes"] = json!({});
        doc["ttl"] = json!("10s");
        let p = problems(doc);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].0, "nodes");
        assert!(p[0].1.contains("did you mean [node]?"), "{p:?}");
        assert!(p[1].1.contains("it belongs in [cluster]"), "{p:?}");
        let p = problems(json!({ "name": "pg1" }));
        assert!(
            p[0].1.contains("it belongs in [node] or [cluster]"),
            "{p:?}"
        );
    }

    #[test]
    fn every_bad_value_is_reported_not_only_the_first() {
        let mut doc = minimal();
        doc["postgresql"] = json!({ "port": 70000, "pg_hba": ["hots all all 0.0.0.0/0 trust"] });
        doc["cluster"]["ttl"] = json!("ten");
        doc["replication"] = json!({ "synchronous": "maybe", "max_lag_on_failover": "5XB" });
        doc["api"] = json!({ "listen": "localhost:8008" });
        doc["node"]["name"] = json!("PG-1");
        let keys: Vec<String> = problems(doc).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "node.name",
                "api.listen",
                "cluster.ttl",
                "postgresql.port",
                "postgresql.pg_hba[0]",
                "replication.synchronous",
                "replication.max_lag_on_failover",
            ]
        );
    }

    #[test]
    fn member_entries_are_checked_one_by_one() {
        let mut doc = minimal();
        doc["cluster"]["members"] = json!([
            { "name": "pg1", "api_url": "http://10.0.0.1:8008" },
            "pg2",
            { "name": "pg-3", "api_url": "10.0.0.3:8008" },
            { "api_url": "http://10.0.0.4:8008", "witness": "yes" },
        ]);
        let keys: Vec<String> = problems(doc).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "cluster.members[1]",
                "cluster.members[2].name",
                "cluster.members[2].api_url",
                "cluster.members[3].name",
                "cluster.members[3].witness",
            ]
        );
    }

    #[test]
    fn parameters_that_have_their_own_key_are_refused_with_the_key_to_use() {
        let mut doc = minimal();
        doc["postgresql"] =
            json!({ "parameters": { "port": 5433, "shared_buffers": "1GB", "work_mem": [1] } });
        let p = problems(doc);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].0, "postgresql.parameters.port");
        assert!(p[0].1.contains("postgresql.port"), "{p:?}");
        assert_eq!(p[1].0, "postgresql.parameters.work_mem");
    }

    #[test]
    fn parameter_values_keep_their_toml_types() {
        let mut doc = minimal();
        doc["postgresql"] = json!({ "parameters": { "fsync": false, "max_connections": 200, "x.y": 1.5, "shared_buffers": "1GB" } });
        let mut r = Report::default();
        let c = read(&doc, &mut r);
        let p = &c.postgresql.parameters;
        assert_eq!(p["fsync"], ParamValue::Bool(false));
        assert_eq!(p["max_connections"], ParamValue::Int(200));
        assert_eq!(p["x.y"], ParamValue::Float(1.5));
        assert_eq!(p["shared_buffers"], ParamValue::Text("1GB".into()));
    }

    #[test]
    fn overrides_are_checked_against_the_same_schema_as_the_file() {
        assert!(check_override_key("postgresql", "port").is_ok());
        assert!(check_override_key("postgresql", "parameters__work_mem").is_ok());
        assert!(check_override_key("postgresql", "parameters__port").is_err());
        assert!(check_override_key("postgresql", "pg_hba").is_err());
        assert!(check_override_key("node", "name__x")
            .unwrap_err()
            .contains("no sub-keys"));
        assert!(check_override_key("nod", "name")
            .unwrap_err()
            .contains("did you mean [node]?"));
    }

    #[test]
    fn typos_are_matched_but_unrelated_words_are_not() {
        let keys = ["name", "secret_file", "ttl", "loop_wait", "members"];
        assert_eq!(closest("tll", keys.iter().copied()), Some("ttl"));
        assert_eq!(closest("nmae", keys.iter().copied()), Some("name"));
        assert_eq!(closest("loopwait", keys.iter().copied()), Some("loop_wait"));
        assert_eq!(closest("Members", keys.iter().copied()), Some("members"));
        assert_eq!(closest("secret", keys.iter().copied()), Some("secret_file"));
        assert_eq!(closest("colour", keys.iter().copied()), None);
    }
}
