//! The CLI's side of the API: where the agent is, fetching documents, and
//! rendering them for a person.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::config;

/// A client command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configuration could not be used to find the agent.
    #[error("{0}")]
    Config(String),
    /// Neither `--config` nor `--url` was given.
    #[error("say which agent to ask: --config FILE or --url URL")]
    NoTarget,
    /// The HTTP request failed.
    #[error("cannot reach the agent at {url}: {detail} (is `pgwarden run` running there?)")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// Why.
        detail: String,
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

/// The base URL of the agent to ask: `--url`, else the API address of the
/// configuration (a wildcard listen address is reached on loopback).
pub fn base_url(config_path: Option<&Path>, url: Option<&str>) -> Result<String, ClientError> {
    if let Some(u) = url {
        return Ok(u.trim_end_matches('/').to_string());
    }
    let path = config_path.ok_or(ClientError::NoTarget)?;
    let cfg = config::load(path).map_err(|e| ClientError::Config(e.to_string()))?;
    Ok(local_url(cfg.api.listen))
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

/// GET a JSON document; any HTTP status is returned with its body.
pub async fn get_json(url: &str) -> Result<(u16, Value), ClientError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| ClientError::Unreachable {
            url: url.to_string(),
            detail: e.to_string(),
        })?;
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| ClientError::Unreachable {
            url: url.to_string(),
            detail: e.to_string(),
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

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A status document as a readable table.
pub fn render_status(doc: &Value) -> String {
    let mut out = String::new();
    let g = |path: &[&str]| -> Value {
        let mut cur = doc;
        for p in path {
            match cur.get(p) {
                Some(v) => cur = v,
                None => return Value::Null,
            }
        }
        cur.clone()
    };
    let mut row = |k: &str, v: String| {
        let _ = writeln!(out, "  {k:<16}{v}");
    };
    row(
        "member",
        format!(
            "{} (cluster {})",
            text(&g(&["name"])),
            text(&g(&["cluster"]))
        ),
    );
    row("role", text(&g(&["role"])));
    let mut state = text(&g(&["state"]));
    if let Value::String(reason) = g(&["reason"]) {
        state = format!("{state}: {reason}");
    }
    row("state", state);
    let leader = g(&["leader"]);
    row(
        "leader",
        if leader.is_null() {
            "none".into()
        } else {
            format!(
                "{} (term {}, lease {:.1} s left)",
                text(&leader["name"]),
                text(&leader["term"]),
                leader["lease_remaining_ms"].as_f64().unwrap_or(0.0) / 1000.0
            )
        },
    );
    if !g(&["postgres"]).is_null() {
        let version = g(&["postgres", "version_num"])
            .as_u64()
            .map(|v| format!("{}.{}", v / 10000, v % 10000));
        row(
            "postgres",
            format!(
                "{} on {}:{}, pid {}, timeline {}",
                version.unwrap_or_else(|| "not answering".into()),
                text(&g(&["postgres", "host"])),
                text(&g(&["postgres", "port"])),
                text(&g(&["postgres", "pid"])),
                text(&g(&["postgres", "timeline"])),
            ),
        );
        row("system id", text(&g(&["postgres", "system_identifier"])));
        row("started", text(&g(&["postgres", "start_time"])));
        row(
            "pending restart",
            text(&g(&["postgres", "pending_restart"])),
        );
        row(
            "wal",
            format!(
                "lsn {}, received {}, replayed {}, lag {} bytes",
                text(&g(&["wal", "lsn"])),
                text(&g(&["wal", "received_lsn"])),
                text(&g(&["wal", "replayed_lsn"])),
                text(&g(&["wal", "lag_bytes"])),
            ),
        );
        let receiver = g(&["wal_receiver"]);
        row(
            "wal receiver",
            if receiver.is_null() {
                match g(&["wal_receiver_problem"]) {
                    Value::String(p) => format!("none: {p}"),
                    _ => "none".into(),
                }
            } else {
                format!(
                    "{} from {}:{}",
                    text(&receiver["status"]),
                    text(&receiver["sender_host"]),
                    text(&receiver["sender_port"])
                )
            },
        );
        let senders = g(&["wal_senders"]);
        let senders = senders.as_array().cloned().unwrap_or_default();
        if senders.is_empty() {
            row("wal senders", "none".into());
        }
        for (i, s) in senders.iter().enumerate() {
            row(
                if i == 0 { "wal senders" } else { "" },
                format!(
                    "{} {} ({}), lag {} bytes",
                    text(&s["application_name"]),
                    text(&s["state"]),
                    text(&s["sync_state"]),
                    text(&s["lag_bytes"])
                ),
            );
        }
    }
    row(
        "agent",
        format!(
            "{}, up {} s, loop {} ms ago{}",
            text(&g(&["agent", "version"])),
            text(&g(&["agent", "uptime_s"])),
            text(&g(&["agent", "loop_last_ms_ago"])),
            if g(&["agent", "paused"]) == Value::Bool(true) {
                ", paused"
            } else {
                ""
            }
        ),
    );
    out
}

/// A `/cluster` document as a `patronictl list`-like table.
pub fn render_cluster(doc: &Value) -> String {
    let leader = doc["leader"].as_str();
    let members = doc["members"].as_array().cloned().unwrap_or_default();
    let leader_lsn = members
        .iter()
        .find(|m| m["name"].as_str().is_some() && m["name"].as_str() == leader)
        .and_then(|m| m["wal"]["lsn"].as_str())
        .and_then(|s| s.parse::<crate::pg::Lsn>().ok());
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
    let mut sorted = members.clone();
    sorted.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    for m in &sorted {
        let name = text(&m["name"]);
        let host = match (
            m["postgres"]["host"].as_str(),
            m["postgres"]["port"].as_u64(),
        ) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            _ => "-".into(),
        };
        let role = if m["error"].is_string() && m["age_ms"].is_null() {
            "?".to_string()
        } else {
            text(&m["role"])
        };
        let mut state = text(&m["state"]);
        if let Some(age) = m["age_ms"].as_u64().filter(|a| *a > 5_000) {
            state = format!("{state} ({} s old)", age / 1000);
        }
        if m["error"].is_string() {
            state = format!("{state}, unreachable");
        }
        let lag = match (
            m["role"].as_str(),
            leader_lsn,
            m["wal"]["replayed_lsn"].as_str(),
        ) {
            (Some("replica"), Some(l), Some(r)) => match r.parse::<crate::pg::Lsn>() {
                Ok(r) => format!("{:.1}", l.bytes_after(r) as f64 / (1024.0 * 1024.0)),
                Err(_) => "-".into(),
            },
            (Some("primary"), _, _) => String::new(),
            _ => "-".into(),
        };
        let receiver = m["wal_receiver"]["status"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                if m["role"] == "replica" {
                    "none".into()
                } else {
                    String::new()
                }
            });
        let lease = if Some(name.as_str()) == leader {
            format!(
                "term {}, {:.1} s left",
                text(&m["leader"]["term"]),
                m["leader"]["lease_remaining_ms"].as_f64().unwrap_or(0.0) / 1000.0
            )
        } else {
            String::new()
        };
        rows.push([
            name,
            host,
            role,
            state,
            text(&m["timeline"]),
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
        text(&doc["cluster"]),
        leader.unwrap_or("none"),
        text(&doc["term"])
    );
    let _ = writeln!(out, "{sep}");
    line(&mut out, &rows[0]);
    let _ = writeln!(out, "{sep}");
    for r in &rows[1..] {
        line(&mut out, r);
    }
    let _ = writeln!(out, "{sep}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    #[test]
    fn a_primary_status_renders_as_a_table() {
        let doc = json!({
            "name": "pg1", "cluster": "main", "role": "primary", "state": "running", "reason": null,
            "leader": {"name": "pg1", "term": 3, "lease_remaining_ms": 9500},
            "postgres": {"version_num": 150018, "host": "10.0.0.1", "port": 5432, "pid": 42, "timeline": 1,
                         "system_identifier": "7311", "start_time": "2026-11-26T12:00:00Z", "pending_restart": false},
            "wal": {"lsn": "0/5000148", "received_lsn": null, "replayed_lsn": null, "lag_bytes": 0},
            "wal_receiver": null, "wal_receiver_problem": null,
            "wal_senders": [{"application_name": "pg2", "state": "streaming", "sync_state": "async", "lag_bytes": 0}],
            "agent": {"version": "0.1.0", "uptime_s": 5, "loop_last_ms_ago": 20, "paused": false}
        });
        let t = render_status(&doc);
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
                {"name": "pg2", "role": "replica", "state": "running", "timeline": 1,
                 "postgres": {"host": "10.0.0.2", "port": 5432},
                 "wal": {"lsn": "0/3000000", "replayed_lsn": "0/3000000"},
                 "wal_receiver": {"status": "streaming"}, "age_ms": 200, "error": null},
                {"name": "pg1", "role": "primary", "state": "running", "timeline": 1,
                 "postgres": {"host": "10.0.0.1", "port": 5432},
                 "wal": {"lsn": "0/3200000"}, "wal_receiver": null,
                 "leader": {"name": "pg1", "term": 4, "lease_remaining_ms": 9000}},
                {"name": "pg3", "role": null, "state": "unknown", "error": "connection refused"}
            ]
        });
        let t = render_cluster(&doc);
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
    fn a_document_missing_fields_still_renders() {
        let t = render_status(&json!({"name": "pg1"}));
        assert!(t.contains("pg1"));
        assert!(t.contains("leader          none"));
    }
}
