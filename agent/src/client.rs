//! The CLI's side of the API: where the agent is, fetching documents, and
//! rendering them for a person; the operator actions, one per file.
//!
//! - [`session`]: what the actions share: the token, the endpoints and
//!   their timeouts, an answer's status code turned into an exit code.
//! - [`members`]: the leader, a named member's URL, `restart --all`'s order.
//! - [`time`]: `--at` checked before anything is asked.
//! - [`switchover`], [`failover`], [`restart`], [`reload`], [`reinit`],
//!   [`pause`]: the commands.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::config::{self, ClientTlsFiles};
use crate::status_doc::{ClusterDoc, Role, StatusDoc};
use crate::tls::ClientTls;

pub mod failover;
pub mod members;
pub mod pause;
pub mod reinit;
pub mod reload;
pub mod restart;
#[cfg(test)]
mod scenarios;
pub mod session;
pub mod switchover;
pub mod time;

/// A client command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configuration could not be used to find the agent.
    #[error("{0}")]
    Config(String),
    /// Neither `--config` nor `--url` was given.
    #[error("say which agent to ask: --config FILE or --url URL")]
    NoTarget,
    /// The TLS files cannot be used.
    #[error("{0}")]
    Tls(String),
    /// The HTTP request failed.
    #[error("cannot reach the agent at {url}: {detail} ({hint})")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// Why.
        detail: String,
        /// What to check.
        hint: &'static str,
    },
    /// The agent answered something that is not JSON.
    #[error("the agent at {url} answered {status} with a body that is not JSON: {detail}")]
    BadAnswer {
        /// The URL asked.
        url: String,
        /// HTTP status.
        status: u16,
        /// Why.
        detail: String,
    },
}

/// The agent a client command talks to.
#[derive(Debug)]
pub struct Target {
    /// Its base URL, without a trailing `/`.
    pub base_url: String,
    /// An HTTP client that trusts it (and presents a certificate when one is configured).
    pub http: reqwest::Client,
    /// `api.token_file` of the configuration, when one was given.
    pub token_file: Option<PathBuf>,
    /// What the user should know about how the agent is reached
    /// (a client certificate that could not be read, ...).
    pub notes: Vec<String>,
}

/// The agent to ask and how: `--url`, else the configuration's API. Over
/// plain HTTP a configuration's agent is asked at its listen address (a
/// wildcard on loopback); over HTTPS at its advertised URL, the name its
/// certificate is issued for. `flags` (`--ca-file`, `--cert-file`,
/// `--key-file`) win over the configuration's `api.tls_ca_file` and the
/// node's own certificate.
pub fn target(
    config_path: Option<&Path>,
    url: Option<&str>,
    flags: &ClientTlsFiles,
) -> Result<Target, ClientError> {
    let mut notes = Vec::new();
    let (base_url, token_file, mut files) = match (url, config_path) {
        (Some(u), _) => (
            u.trim_end_matches('/').to_string(),
            None,
            ClientTlsFiles::default(),
        ),
        (None, Some(path)) => {
            let s =
                config::load_for_client(path).map_err(|e| ClientError::Config(e.to_string()))?;
            let base = match (&s.advertise_url, s.serves_tls) {
                (Some(advertised), true) => advertised.trim_end_matches('/').to_string(),
                (None, true) => local_url(s.listen).replacen("http://", "https://", 1),
                (_, false) => local_url(s.listen),
            };
            let mut files = s.tls.clone();
            // The node's own key is for the agent; an operator who may not
            // read it still gets answers from an agent that asks no
            // client certificate.
            if let Some(key) = files.key_file.clone() {
                if let Err(e) = std::fs::File::open(&key) {
                    notes.push(format!(
                        "not presenting this node's certificate: cannot read api.tls_key_file {}: {e}",
                        key.display()
                    ));
                    files.cert_file = None;
                    files.key_file = None;
                }
            }
            (base, s.token_file, files)
        }
        (None, None) => return Err(ClientError::NoTarget),
    };
    if flags.ca_file.is_some() {
        files.ca_file = flags.ca_file.clone();
    }
    if flags.cert_file.is_some() || flags.key_file.is_some() {
        files.cert_file = flags.cert_file.clone();
        files.key_file = flags.key_file.clone();
    }
    let tls = ClientTls::load(&files).map_err(|e| ClientError::Tls(e.to_string()))?;
    let http = tls
        .client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| ClientError::Tls(format!("cannot set up the HTTP client: {e}")))?;
    Ok(Target {
        base_url,
        http,
        token_file,
        notes,
    })
}

/// `http://` URL for a listen address, loopback for wildcards.
pub fn local_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

/// GET a JSON document with `http`; any HTTP status is returned with its body.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Result<(u16, Value), ClientError> {
    let resp = http.get(url).send().await.map_err(|e| {
        let detail = error_chain(&e);
        ClientError::Unreachable {
            url: url.to_string(),
            hint: hint_for(url, &detail),
            detail,
        }
    })?;
    let status = resp.status().as_u16();
    let body = resp
        .json::<Value>()
        .await
        .map_err(|e| ClientError::BadAnswer {
            url: url.to_string(),
            status,
            detail: e.to_string(),
        })?;
    Ok((status, body))
}

/// An error with its causes: reqwest's own message ("error sending
/// request") hides the TLS reason (unknown issuer, certificate required).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text = format!("{text}: {s_text}");
        }
        source = s.source();
    }
    text
}

/// What to check after a failed request to `url`, from what failed.
pub(crate) fn hint_for(url: &str, detail: &str) -> &'static str {
    if detail.contains("CertificateRequired") || detail.contains("certificate required") {
        "the agent requires a client certificate: give --cert-file and --key-file, or --config on the node"
    } else if detail.contains("certificate") || detail.contains("Certificate") {
        "the agent's certificate is not trusted: give the CA that signed it with --ca-file (or api.tls_ca_file in --config)"
    } else if url.starts_with("https://") && closed_after_connecting(detail) {
        // In TLS 1.3 the client's handshake is over before the server has
        // read its (missing) certificate, so the server's refusal can race
        // the request and arrive as a bare close instead of the alert.
        "the agent closed the connection: if it requires client certificates, give --cert-file and --key-file (or --config on the node); otherwise see its log"
    } else {
        "is `pgwarden run` running there?"
    }
}

/// Whether a request failed on a connection that was open and then closed
/// by the other end (rather than refused, unresolved or timed out).
fn closed_after_connecting(detail: &str) -> bool {
    [
        "connection was not ready",
        "operation was canceled",
        "connection closed",
        "reset by peer",
        "unexpected EOF",
        "IncompleteMessage",
        "Broken pipe",
    ]
    .iter()
    .any(|sign| detail.contains(sign))
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// Reads an agent's answer as `T`, or says what is wrong with it.
fn typed<T: serde::de::DeserializeOwned>(doc: &Value, what: &str) -> Result<T, String> {
    serde_json::from_value(doc.clone())
        .map_err(|e| format!("the agent's answer is not {what}: {e}"))
}

/// A status document as a readable table.
pub fn render_status(doc: &Value) -> Result<String, String> {
    let doc: StatusDoc = typed(doc, "a status document")?;
    let mut out = String::new();
    let mut row = |k: &str, v: String| {
        let _ = writeln!(out, "  {k:<16}{v}");
    };
    row("member", format!("{} (cluster {})", doc.name, doc.cluster));
    row("role", json_name(&doc.role));
    let mut state = json_name(&doc.state);
    if let Some(reason) = &doc.reason {
        state = format!("{state}: {reason}");
    }
    row("state", state);
    row(
        "leader",
        match &doc.leader {
            None => "none".into(),
            Some(l) => format!(
                "{} (term {}, lease {:.1} s left)",
                l.name,
                l.term,
                l.lease_remaining_ms as f64 / 1000.0
            ),
        },
    );
    if let Some(pg) = &doc.postgres {
        let version = pg
            .version_num
            .map(|v| format!("{}.{}", v / 10000, v % 10000));
        row(
            "postgres",
            format!(
                "{} on {}:{}, pid {}, timeline {}",
                version.unwrap_or_else(|| "not answering".into()),
                pg.host,
                pg.port,
                opt(pg.pid),
                opt(pg.timeline),
            ),
        );
        row("system id", opt(pg.system_identifier.as_deref()));
        row("started", opt(pg.start_time.as_deref()));
        row("pending restart", pg.pending_restart.to_string());
        let wal = doc.wal.as_ref();
        row(
            "wal",
            format!(
                "lsn {}, received {}, replayed {}, lag {} bytes",
                opt(wal.and_then(|w| w.lsn)),
                opt(wal.and_then(|w| w.received_lsn)),
                opt(wal.and_then(|w| w.replayed_lsn)),
                opt(wal.and_then(|w| w.lag_bytes)),
            ),
        );
        row(
            "wal receiver",
            match (&doc.wal_receiver, &doc.wal_receiver_problem) {
                (Some(r), _) => format!(
                    "{} from {}:{}",
                    r.status,
                    opt(r.sender_host.as_deref()),
                    opt(r.sender_port)
                ),
                (None, Some(p)) => format!("none: {p}"),
                (None, None) => "none".into(),
            },
        );
        if doc.wal_senders.is_empty() {
            row("wal senders", "none".into());
        }
        for (i, s) in doc.wal_senders.iter().enumerate() {
            row(
                if i == 0 { "wal senders" } else { "" },
                format!(
                    "{} {} ({}), lag {} bytes",
                    opt(s.application_name.as_deref()),
                    opt(s.state.as_deref()),
                    opt(s.sync_state.as_deref()),
                    opt(s.lag_bytes)
                ),
            );
        }
    }
    row(
        "agent",
        format!(
            "{}, up {} s, loop {} ms ago{}",
            doc.agent.version,
            doc.agent.uptime_s,
            opt(doc.agent.loop_last_ms_ago),
            if doc.agent.paused { ", paused" } else { "" }
        ),
    );
    Ok(out)
}

/// A role or state as the document spells it.
fn json_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        _ => "?".into(),
    }
}

/// A `/pgwarden/cluster` document as a `patronictl list`-like table.
pub fn render_cluster(doc: &Value) -> Result<String, String> {
    let doc: ClusterDoc = typed(doc, "a cluster document")?;
    let leader = doc.leader.as_deref();
    let leader_lsn = doc
        .members
        .iter()
        .filter(|m| Some(m.name.as_str()) == leader)
        .find_map(|m| m.status.as_ref()?.wal.as_ref()?.lsn);
    let mut rows: Vec<[String; 8]> = vec![[
        "Member".into(),
        "Host".into(),
        "Role".into(),
        "State".into(),
        "TL".into(),
        "Lag in MB".into(),
        "Receiver".into(),
        "Leader lease".into(),
    ]];
    let mut sorted = doc.members.clone();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for m in &sorted {
        let st = m.status.as_ref();
        let host = st
            .and_then(|d| d.postgres.as_ref())
            .map(|p| format!("{}:{}", p.host, p.port))
            .unwrap_or_else(|| "-".into());
        let role = match st {
            Some(d) => json_name(&d.role),
            None => "?".into(),
        };
        let mut state = st
            .map(|d| json_name(&d.state))
            .unwrap_or_else(|| "unknown".into());
        if let Some(age) = m.age_ms.filter(|a| *a > 5_000) {
            state = format!("{state} ({} s old)", age / 1000);
        }
        if m.error.is_some() {
            state = format!("{state}, unreachable");
        }
        let lag = match (
            st.map(|d| d.role),
            leader_lsn,
            st.and_then(|d| d.wal.as_ref()?.replayed_lsn),
        ) {
            (Some(Role::Replica), Some(l), Some(r)) => {
                format!("{:.1}", l.bytes_after(r) as f64 / (1024.0 * 1024.0))
            }
            (Some(Role::Primary), _, _) => String::new(),
            _ => "-".into(),
        };
        let receiver = match st {
            Some(d) => match (&d.wal_receiver, d.role) {
                (Some(r), _) => r.status.clone(),
                (None, Role::Replica) => "none".into(),
                (None, _) => String::new(),
            },
            None => String::new(),
        };
        let lease = match st.and_then(|d| d.leader.as_ref()) {
            Some(l) if Some(m.name.as_str()) == leader && l.name == m.name => format!(
                "term {}, {:.1} s left",
                l.term,
                l.lease_remaining_ms as f64 / 1000.0
            ),
            _ => String::new(),
        };
        rows.push([
            m.name.clone(),
            host,
            role,
            state,
            opt(st.and_then(|d| d.timeline)),
            lag,
            receiver,
            lease,
        ]);
    }
    let mut widths = [0usize; 8];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |out: &mut String, r: &[String; 8]| {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    };
    let sep: String = format!(
        "+{}+",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "+ Cluster: {} (leader: {}, term {}) +",
        doc.cluster,
        leader.unwrap_or("none"),
        opt(doc.term)
    );
    let _ = writeln!(out, "{sep}");
    line(&mut out, &rows[0]);
    let _ = writeln!(out, "{sep}");
    for r in &rows[1..] {
        line(&mut out, r);
    }
    let _ = writeln!(out, "{sep}");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_refused_handshake_says_which_tls_file_to_give() {
        let https = "https://10.0.0.1:8008/cluster";
        assert!(hint_for(https, "invalid peer certificate: UnknownIssuer").contains("--ca-file"));
        assert!(
            hint_for(https, "received fatal alert: CertificateRequired").contains("--cert-file")
        );
        assert!(hint_for(https, "Connection refused").contains("pgwarden run"));
    }

    #[test]
    fn a_tls_connection_closed_during_the_request_points_at_the_client_certificate() {
        // Measured: TLS 1.3, no client certificate, the server's alert lost the race.
        let detail = "error sending request for url (https://127.0.0.1:7301/cluster): \
                      client error (Canceled): operation was canceled: connection was not ready";
        assert!(hint_for("https://127.0.0.1:7301/cluster", detail).contains("--cert-file"));
        // Over plain HTTP there is no certificate to blame.
        assert!(hint_for("http://127.0.0.1:7301/cluster", detail).contains("pgwarden run"));
    }

    #[test]
    fn wildcard_listen_addresses_are_asked_on_loopback() {
        assert_eq!(
            local_url("0.0.0.0:8008".parse().unwrap()),
            "http://127.0.0.1:8008"
        );
        assert_eq!(local_url("[::]:8008".parse().unwrap()), "http://[::1]:8008");
        assert_eq!(
            local_url("10.0.0.1:8008".parse().unwrap()),
            "http://10.0.0.1:8008"
        );
    }

    fn status(name: &str, role: &str, extra: Value) -> Value {
        let mut doc = json!({
            "name": name, "cluster": "main", "role": role, "state": "running", "reason": null,
            "agent": {"version": "0.1.0", "uptime_s": 5, "loop_last_ms_ago": 20, "paused": false},
            "postgres": {"version_num": 150018, "host": format!("10.0.0.{}", &name[2..]), "port": 5432,
                         "pid": 42, "timeline": 1, "system_identifier": "7311",
                         "start_time": "2026-11-26T12:00:00Z", "pending_restart": false},
            "timeline": 1
        });
        for (k, v) in extra.as_object().unwrap() {
            doc[k] = v.clone();
        }
        doc
    }

    #[test]
    fn a_primary_status_renders_as_a_table() {
        let doc = status(
            "pg1",
            "primary",
            json!({
                "leader": {"name": "pg1", "term": 3, "lease_remaining_ms": 9500},
                "wal": {"lsn": "0/5000148", "received_lsn": null, "replayed_lsn": null, "lag_bytes": 0},
                "wal_senders": [{"application_name": "pg2", "state": "streaming", "sync_state": "async", "lag_bytes": 0}]
            }),
        );
        let t = render_status(&doc).unwrap();
        assert!(t.contains("role            primary"), "{t}");
        assert!(t.contains("pg1 (term 3, lease 9.5 s left)"), "{t}");
        assert!(
            t.contains("15.18 on 10.0.0.1:5432, pid 42, timeline 1"),
            "{t}"
        );
        assert!(t.contains("pg2 streaming (async), lag 0 bytes"), "{t}");
    }

    #[test]
    fn a_cluster_renders_one_row_per_member_with_replica_lag_in_mb() {
        let doc = json!({
            "cluster": "main", "leader": "pg1", "term": 4,
            "members": [
                {"name": "pg2", "age_ms": 200, "error": null, "status": status("pg2", "replica", json!({
                    "wal": {"lsn": "0/3000000", "replayed_lsn": "0/3000000", "received_lsn": null, "lag_bytes": null},
                    "wal_receiver": {"status": "streaming"}}))},
                {"name": "pg1", "status": status("pg1", "primary", json!({
                    "wal": {"lsn": "0/3200000", "received_lsn": null, "replayed_lsn": null, "lag_bytes": 0},
                    "leader": {"name": "pg1", "term": 4, "lease_remaining_ms": 9000}}))},
                {"name": "pg3", "error": "connection refused"}
            ]
        });
        let t = render_cluster(&doc).unwrap();
        assert!(t.contains("leader: pg1, term 4"), "{t}");
        let pg2 = t.lines().find(|l| l.contains("pg2")).unwrap();
        assert!(
            pg2.contains("10.0.0.2:5432")
                && pg2.contains("replica")
                && pg2.contains("2.0")
                && pg2.contains("streaming"),
            "{pg2}"
        );
        let pg1 = t.lines().find(|l| l.contains("| pg1")).unwrap();
        assert!(pg1.contains("term 4, 9.0 s left"), "{pg1}");
        let pg3 = t.lines().find(|l| l.contains("pg3")).unwrap();
        assert!(pg3.contains("unreachable"), "{pg3}");
        // members are sorted by name
        assert!(t.find("| pg1").unwrap() < t.find("| pg2").unwrap());
    }

    #[test]
    fn an_answer_that_is_not_a_status_document_is_an_error_naming_what_is_missing() {
        let e = render_status(&json!({"name": "pg1"})).unwrap_err();
        assert!(
            e.contains("not a status document") && e.contains("cluster"),
            "{e}"
        );
    }
}
