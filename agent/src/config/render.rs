//! The effective configuration as TOML, for `pgwarden check-config`: every
//! key with the value the agent will use (file, environment and defaults
//! combined), values derived from other keys marked as such, and each
//! secret file shown by path with whether it is usable. Secrets themselves
//! are never read into the output.
//!
//! The output is itself a valid configuration: loading it gives the same
//! effective configuration.

use std::fmt::Write as _;
use std::path::Path;

use super::model::{Config, Member, ParamValue};
use super::secrets::{check_secret_file, loose_permissions, who_else, SecretError};

/// The effective configuration as TOML, secrets masked.
pub fn effective_toml(cfg: &Config) -> String {
    let mut out = Out::default();
    out.comment(&format!(
        "Effective configuration of pgwarden node {:?} in cluster {:?}:",
        cfg.node.name, cfg.cluster.name
    ));
    out.comment("the file, its PGWARDEN_<SECTION>__<KEY> overrides and the defaults, combined.");
    out.comment(
        "Secrets are not shown: only the files that hold them, and whether they are usable.",
    );

    out.section("node");
    out.kv("name", &string(&cfg.node.name));
    if cfg.node.data_dir.as_os_str().is_empty() {
        out.comment("data_dir is not set: a witness runs no PostgreSQL");
    } else {
        out.kv("data_dir", &path(&cfg.node.data_dir));
    }
    match &cfg.node.bin_dir {
        Some(dir) => out.kv("bin_dir", &path(dir)),
        None => out
            .comment("bin_dir is not set: postgres, initdb, ... are found from PATH or pg_config"),
    }
    out.kv("witness", &cfg.node.witness.to_string());
    out.kv(
        "watchdog",
        &format!(
            "\"{}\"",
            match cfg.node.watchdog {
                super::model::WatchdogMode::Off => "off",
                super::model::WatchdogMode::Auto => "auto",
                super::model::WatchdogMode::Required => "required",
            }
        ),
    );
    out.kv(
        "watchdog_device",
        &format!("{:?}", cfg.node.watchdog_device.display().to_string()),
    );
    out.kv("tags", &tags(&cfg.node.tags));

    out.section("api");
    out.kv("listen", &string(&cfg.api.listen.to_string()));
    match &cfg.api.advertise_url {
        Some(url) => out.kv("advertise_url", &string(url)),
        None => out.kv_note(
            "advertise_url",
            &string(&cfg.api_advertise_url()),
            "default: this member's api_url",
        ),
    }
    match &cfg.api.token_file {
        Some(p) => out.kv_note("token_file", &path(p), &secret_note(p)),
        None => out.comment("token_file is not set: the mutating endpoints answer 403"),
    }
    match &cfg.api.tls_cert_file {
        Some(p) => out.kv("tls_cert_file", &path(p)),
        None => out.comment("tls_cert_file is not set: the API speaks plain HTTP"),
    }
    if let Some(p) = &cfg.api.tls_key_file {
        out.kv_note("tls_key_file", &path(p), &secret_note(p));
    }
    match &cfg.api.tls_client_ca_file {
        Some(p) => out.kv("tls_client_ca_file", &path(p)),
        None if cfg.api.tls_cert_file.is_some() => {
            out.comment("tls_client_ca_file is not set: clients need no certificate")
        }
        None => {}
    }
    if cfg.api.serves_tls() || cfg.api.verify_client.is_some() {
        let mode = string(cfg.api.verify_client().as_str());
        match cfg.api.verify_client {
            Some(_) => out.kv("verify_client", &mode),
            None => out.kv_note(
                "verify_client",
                &mode,
                "default: required with tls_client_ca_file, else none",
            ),
        }
    }
    match &cfg.api.tls_ca_file {
        Some(p) => out.kv("tls_ca_file", &path(p)),
        None if cfg.api.serves_tls() => out.comment(
            "tls_ca_file is not set: other agents' certificates are verified with the system's roots",
        ),
        None => {}
    }

    out.section("cluster");
    out.kv("name", &string(&cfg.cluster.name));
    match &cfg.cluster.secret_file {
        Some(p) => out.kv_note("secret_file", &path(p), &secret_note(p)),
        None => out.comment("secret_file is not set: a single member has no peers to authenticate"),
    }
    out.kv(
        "ttl",
        &string(&humantime::format_duration(cfg.cluster.ttl).to_string()),
    );
    out.kv(
        "loop_wait",
        &string(&humantime::format_duration(cfg.cluster.loop_wait).to_string()),
    );
    out.line("members = [");
    for m in &cfg.cluster.members {
        out.line(&format!("  {},", member(m)));
    }
    out.line("]");

    let pg = &cfg.postgresql;
    out.section("postgresql");
    out.kv("listen_addresses", &string(&pg.listen_addresses));
    out.kv("port", &pg.port.to_string());
    match &pg.advertise_host {
        Some(h) => out.kv("advertise_host", &string(h)),
        None => out.kv_note(
            "advertise_host",
            &string(&cfg.pg_advertise_host()),
            "default: this member's host",
        ),
    }
    out.kv("socket_dir", &path(&pg.socket_dir));
    if pg.pg_hba.is_empty() {
        out.kv_note("pg_hba", "[]", "only the managed replication lines");
    } else {
        out.line("pg_hba = [");
        for line in &pg.pg_hba {
            out.line(&format!("  {},", string(line)));
        }
        out.line("]");
    }
    if pg.parameters.is_empty() {
        out.comment("parameters: none set, only the managed ones apply");
    } else {
        out.section("postgresql.parameters");
        for (name, value) in &pg.parameters {
            out.kv(&key(name), &param(value));
        }
    }

    let rep = &cfg.replication;
    out.section("replication");
    out.kv("user", &string(&rep.user));
    for (name, file) in [
        ("password_file", &rep.password_file),
        ("superuser_password_file", &rep.superuser_password_file),
    ] {
        match file {
            Some(p) => out.kv_note(name, &path(p), &secret_note(p)),
            None => out.comment(&format!("{name} is not set: a witness needs none")),
        }
    }
    out.kv("synchronous", &string(rep.synchronous.as_str()));
    out.kv("slots", &rep.slots.to_string());
    out.kv(
        "member_slot_ttl",
        &string(&humantime::format_duration(rep.member_slot_ttl).to_string()),
    );
    out.kv(
        "max_lag_on_failover",
        &string(&rep.max_lag_on_failover.to_string()),
    );
    if let Some(rate) = rep.clone_max_rate {
        out.kv("clone_max_rate", &string(&rate.to_string()));
    }

    out.section("log");
    out.kv("format", &string(cfg.log.format.as_str()));
    out.kv("level", &string(&cfg.log.level));
    out.text
}

/// What can be said about a secret file without showing its contents.
fn secret_note(p: &Path) -> String {
    match check_secret_file(p) {
        Ok(mode) if loose_permissions(mode) => {
            format!(
                "secret file: readable, but mode {mode:04o}: {} (chmod 0600)",
                who_else(mode)
            )
        }
        Ok(mode) => format!("secret file: readable, mode {mode:04o}"),
        Err(SecretError::Empty { .. }) => "secret file: EMPTY".into(),
        Err(SecretError::Unreadable { source, .. }) => {
            format!("secret file: NOT READABLE ({source})")
        }
    }
}

/// One member entry as an inline table, its `host` filled in.
fn member(m: &Member) -> String {
    let mut s = format!(
        "{{ name = {}, api_url = {}",
        string(&m.name),
        string(&m.api_url)
    );
    if let Some(host) = m.pg_host() {
        let _ = write!(s, ", host = {}", string(&host));
    }
    let _ = write!(
        s,
        ", nofailover = {}, clonefrom = {}, witness = {} }}",
        m.nofailover, m.clonefrom, m.witness
    );
    s
}

/// The tags as an inline table, the built-in ones always shown.
fn tags(t: &super::model::Tags) -> String {
    let mut s = format!(
        "{{ nofailover = {}, noloadbalance = {}, nosync = {}, failover_priority = {}, clonefrom = {}",
        t.nofailover, t.noloadbalance, t.nosync, t.failover_priority, t.clonefrom
    );
    if let Some(from) = &t.replicatefrom {
        let _ = write!(s, ", replicatefrom = {}", string(from));
    }
    for (k, v) in &t.custom {
        let v = match v {
            serde_json::Value::String(text) => string(text),
            other => other.to_string(),
        };
        let _ = write!(s, ", {} = {v}", key(k));
    }
    s.push_str(" }");
    s
}

/// A TOML string literal, escaped.
fn string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn path(p: &Path) -> String {
    string(&p.to_string_lossy())
}

/// A key, quoted when it is not a bare TOML key (`auto_explain.log_min_duration`).
fn key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_string()
    } else {
        string(k)
    }
}

fn param(v: &ParamValue) -> String {
    match v {
        ParamValue::Bool(b) => b.to_string(),
        ParamValue::Int(i) => i.to_string(),
        // Through toml so that 2.0 stays a float ("2.0", not "2").
        ParamValue::Float(x) => toml::Value::Float(*x).to_string(),
        ParamValue::Text(s) => string(s),
    }
}

/// The output being built, a line at a time.
#[derive(Default)]
struct Out {
    text: String,
}

impl Out {
    fn line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn comment(&mut self, text: &str) {
        self.line(&format!("# {text}"));
    }

    fn section(&mut self, name: &str) {
        self.line("");
        self.line(&format!("[{name}]"));
    }

    fn kv(&mut self, key: &str, value: &str) {
        self.line(&format!("{key} = {value}"));
    }

    fn kv_note(&mut self, key: &str, value: &str, note: &str) {
        self.line(&format!("{key} = {value}  # {note}"));
    }
}
