//! Operator actions: `POST /switchover` (and `DELETE`), `/failover`,
//! `/restart` (and `DELETE`), `/reload`, `/reinitialize`, `/pause`,
//! `/resume`, and Patroni's `PATCH /config {"pause": ...}`.
//!
//! Every one needs `Authorization: Bearer <api.token_file>`: 401 without
//! or with a wrong token, 403 while no token is configured (never open by
//! default). Bodies take Patroni's field names; anything else, a wrong
//! type or a time without an offset is a 400 naming the problem. The
//! request then goes to the HA loop, which answers when it is over:
//! 200 done, 202 scheduled, 412 not possible now, 409 another operation
//! in progress, 503 not the member to ask (or begun and failed).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::ha::operation::{Reply, Request, CATCH_UP_LIMIT, TAKE_OVER_LIMIT};
use crate::ha::operator::{Refusal, RestartConditions};
use crate::ha::runner::Control;
use crate::lease::secret_matches;
use crate::status_doc::Role;

use super::error::ApiError;
use super::ApiState;

/// What the action endpoints need from the daemon.
#[derive(Clone)]
pub struct Operator {
    /// The HA loop's control channel.
    pub control: mpsc::Sender<Control>,
    /// `api.token_file`, read at every request (a new token works at once).
    pub token_file: Option<PathBuf>,
    /// Re-reads the configuration file (as SIGHUP does) for `POST /reload`.
    pub reload: std::sync::Arc<dyn Fn() -> Result<crate::config::Config, String> + Send + Sync>,
}

/// Checks the bearer token.
fn authorize(op: &Operator, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(path) = &op.token_file else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "operator actions are disabled: no api.token_file is configured on this member (see docs/security.md)",
        ));
    };
    let token = read_token(path).map_err(|e| ApiError::new(StatusCode::FORBIDDEN, e))?;
    match super::bearer(headers) {
        Some(p) if secret_matches(p, &token) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong token: send the contents of this member's api.token_file as 'Authorization: Bearer <token>'",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "operator action: send the contents of api.token_file as 'Authorization: Bearer <token>'",
        )),
    }
}

/// The token in `path`, trimmed; an empty or unreadable file is no token.
fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "operator actions are disabled: cannot read api.token_file {}: {e}",
            path.display()
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!(
            "operator actions are disabled: api.token_file {} is empty",
            path.display()
        ));
    }
    Ok(token.to_string())
}

/// A JSON body of type `T`; an empty body is `{}`.
fn body<T: DeserializeOwned>(
    endpoint: &str,
    raw: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let raw = raw.map_err(|e| {
        ApiError::new(
            e.status(),
            format!("{endpoint}: cannot read the request body: {e}"),
        )
    })?;
    // Only a body of no bytes stands for `{}`: white space alone is no
    // JSON document, and a client sending it sends something else than
    // it thinks.
    let text: &[u8] = if raw.is_empty() { b"{}" } else { &raw };
    let value: serde_json::Value = serde_json::from_slice(text)
        .map_err(|e| ApiError::bad_request(format!("{endpoint}: not JSON: {e}")))?;
    // An object only: serde would take `[false, null]` for a struct too.
    if !value.is_object() {
        return Err(ApiError::bad_request(format!(
            "{endpoint}: the body must be a JSON object"
        )));
    }
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(format!("{endpoint}: {e}")))
}

fn time(field: &str, raw: Option<&str>) -> Result<Option<SystemTime>, ApiError> {
    raw.map(|t| {
        crate::rfc3339::parse(t).map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
    })
    .transpose()
}

/// The longest member name the configuration accepts.
const MAX_MEMBER_NAME: usize = 63;

/// A member name as the configuration accepts them (`[a-z0-9_]`, at most
/// 63 characters): anything else can name no member, and is a 400 rather
/// than a request the HA loop would refuse.
fn name(field: &str, raw: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(n) = raw else { return Ok(None) };
    if n.trim().is_empty() {
        return Err(ApiError::bad_request(format!(
            "{field}: an empty member name"
        )));
    }
    let valid = n.len() <= MAX_MEMBER_NAME
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return Err(ApiError::bad_request(format!(
            "{field}: {n:?} is not a member name (lower-case letters, digits and '_', at most {MAX_MEMBER_NAME} characters)"
        )));
    }
    Ok(Some(n))
}

/// Patroni's switchover body (`master` is its old name for `leader`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchoverBody {
    #[serde(alias = "master")]
    leader: Option<String>,
    candidate: Option<String>,
    scheduled_at: Option<String>,
}

fn switchover_request(b: SwitchoverBody) -> Result<Request, ApiError> {
    let leader = name("leader", b.leader)?.ok_or_else(|| {
        ApiError::bad_request(
            "POST /switchover: \"leader\" is required (the current leader's name, as in Patroni)",
        )
    })?;
    Ok(Request::Switchover {
        leader,
        candidate: name("candidate", b.candidate)?,
        at: time("scheduled_at", b.scheduled_at.as_deref())?,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailoverBody {
    candidate: Option<String>,
    #[serde(default)]
    force: bool,
}

fn failover_request(b: FailoverBody) -> Result<Request, ApiError> {
    let candidate = name("candidate", b.candidate)?.ok_or_else(|| {
        ApiError::bad_request("POST /failover: \"candidate\" is required (the member to promote)")
    })?;
    Ok(Request::Failover {
        candidate,
        force: b.force,
    })
}

/// Patroni's restart body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestartBody {
    schedule: Option<String>,
    #[serde(default)]
    restart_pending: bool,
    role: Option<String>,
    postgres_version: Option<String>,
}

fn restart_request(b: RestartBody) -> Result<Request, ApiError> {
    let role = match b.role.as_deref() {
        None => None,
        Some("primary" | "master") => Some(Role::Primary),
        Some("replica") => Some(Role::Replica),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "role: {other:?} is not primary, master or replica"
            )))
        }
    };
    let postgres_version = b
        .postgres_version
        .as_deref()
        .map(version_num)
        .transpose()
        .map_err(ApiError::bad_request)?;
    Ok(Request::Restart {
        conditions: RestartConditions {
            restart_pending: b.restart_pending,
            role,
            postgres_version,
        },
        at: time("schedule", b.schedule.as_deref())?,
    })
}

/// `"15.4"` → 150004, `"9.6.3"` → 90603 (PostgreSQL's `server_version_num`).
/// Digits only, as many as PostgreSQL's numbering holds: a major of two or
/// three digits (10 to 999) with an optional minor of up to four, or 9.x.y
/// (docs/api/openapi.yaml says the same with a pattern).
fn version_num(v: &str) -> Result<u32, String> {
    let bad = || format!("postgres_version: {v:?} is not a PostgreSQL version like 15.4");
    let number = |p: &str, max_digits: usize| -> Result<u32, String> {
        if p.is_empty() || p.len() > max_digits || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        p.parse().map_err(|_| bad())
    };
    let parts: Vec<&str> = v.split('.').collect();
    match parts.as_slice() {
        ["9", minor, patch] => Ok(90_000 + number(minor, 2)? * 100 + number(patch, 2)?),
        [major, rest @ ..] if rest.len() <= 1 && !major.starts_with('0') => {
            let major = number(major, 3)?;
            if major < 10 {
                return Err(bad());
            }
            let minor = rest.first().map(|m| number(m, 4)).transpose()?;
            Ok(major * 10_000 + minor.unwrap_or(0))
        }
        _ => Err(bad()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReinitBody {
    /// Patroni's flag; a reinit here never waits for anything it would skip.
    #[serde(default)]
    #[allow(dead_code)]
    force: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// Patroni's `PATCH /config`: only `pause` is a cluster-wide setting
/// here (the rest is each node's TOML file).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigPatch {
    pause: Option<bool>,
}

/// How long the loop may take to answer each request.
fn patience(r: &Request) -> Duration {
    match r {
        Request::Switchover { .. } => CATCH_UP_LIMIT + TAKE_OVER_LIMIT + Duration::from_secs(30),
        Request::Failover { .. } => Duration::from_secs(180),
        Request::Restart { .. } | Request::Reinit => Duration::from_secs(330),
        _ => Duration::from_secs(30),
    }
}

/// Hands `control` to the HA loop, which takes requests between its
/// iterations; 503 when it does not within 30 s.
async fn hand_to_loop(op: &Operator, control: Control) -> Result<(), Response> {
    let sent = tokio::time::timeout(Duration::from_secs(30), op.control.send(control)).await;
    if matches!(sent, Ok(Ok(()))) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the HA loop does not take requests now (busy with a long step, or stopping); try again",
    )
    .into_response())
}

/// Hands `request` to the loop and turns its reply into an answer.
async fn carry_out(op: &Operator, request: Request) -> Response {
    let patience = patience(&request);
    let (tx, rx) = oneshot::channel();
    if let Err(busy) = hand_to_loop(op, Control::Operate(request, tx)).await {
        return busy;
    }
    match tokio::time::timeout(patience, rx).await {
        Ok(Ok(reply)) => reply_response(reply),
        Ok(Err(_)) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the HA loop stopped before it finished the request (the agent is stopping?)",
        )
        .into_response(),
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no outcome within {} s; it may still finish: see GET /status and the agent's log",
                patience.as_secs()
            ),
        )
        .into_response(),
    }
}

fn reply_response(reply: Reply) -> Response {
    match reply {
        Reply::Done {
            message,
            mut fields,
        } => {
            fields.insert("message".into(), message.into());
            (StatusCode::OK, Json(serde_json::Value::Object(fields))).into_response()
        }
        Reply::Scheduled { message, at } => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"message": message, "scheduled_at": at})),
        )
            .into_response(),
        Reply::Refused(Refusal::NotHere(r)) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, r).into_response()
        }
        Reply::Refused(Refusal::NotPossible(r)) => {
            ApiError::new(StatusCode::PRECONDITION_FAILED, r).into_response()
        }
        Reply::Refused(Refusal::Busy(r)) => ApiError::new(StatusCode::CONFLICT, r).into_response(),
        Reply::NothingScheduled(r) => ApiError::new(StatusCode::NOT_FOUND, r).into_response(),
        Reply::Failed(r) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, r).into_response(),
    }
}

/// The operator part of the state, or 403 on a member built without it.
fn operator(state: &ApiState, headers: &HeaderMap) -> Result<Operator, ApiError> {
    let op = state.operator.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "operator actions are not available on this agent",
        )
    })?;
    authorize(&op, headers)?;
    Ok(op)
}

macro_rules! action {
    ($(#[$doc:meta])* $fn:ident, $endpoint:literal, $body:ty, $to_request:expr) => {
        $(#[$doc])*
        pub async fn $fn(
            State(state): State<ApiState>,
            headers: HeaderMap,
            raw: Result<Bytes, BytesRejection>,
        ) -> Response {
            let op = match operator(&state, &headers) {
                Ok(op) => op,
                Err(e) => return e.into_response(),
            };
            let request = body::<$body>($endpoint, raw).and_then($to_request);
            match request {
                Ok(request) => carry_out(&op, request).await,
                Err(e) => e.into_response(),
            }
        }
    };
}

action!(
    /// `POST /switchover`.
    switchover, "POST /switchover", SwitchoverBody, switchover_request);
action!(
    /// `DELETE /switchover`.
    cancel_switchover, "DELETE /switchover", Empty, |_| Ok(Request::CancelSwitchover));
action!(
    /// `POST /failover`.
    failover, "POST /failover", FailoverBody, failover_request);
action!(
    /// `POST /restart`.
    restart, "POST /restart", RestartBody, restart_request);
action!(
    /// `DELETE /restart`.
    cancel_restart, "DELETE /restart", Empty, |_| Ok(Request::CancelRestart));
action!(
    /// `POST /reinitialize`.
    reinitialize, "POST /reinitialize", ReinitBody, |_| Ok(Request::Reinit));
action!(
    /// `POST /pause`.
    pause, "POST /pause", Empty, |_| Ok(Request::Pause { paused: true }));
action!(
    /// `POST /resume`.
    resume, "POST /resume", Empty, |_| Ok(Request::Pause { paused: false }));
action!(
/// `PATCH /config` (Patroni's): `{"pause": true|false}`.
patch_config, "PATCH /config", ConfigPatch, |p: ConfigPatch| match p.pause {
    Some(paused) => Ok(Request::Pause { paused }),
    None => Err(ApiError::bad_request(
        "PATCH /config: only {\"pause\": true|false} is accepted here; other settings live in each node's configuration file (reload with POST /reload)",
    )),
});

/// `POST /reload`: re-reads the configuration file, as SIGHUP does.
pub async fn reload(
    State(state): State<ApiState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let op = match operator(&state, &headers) {
        Ok(op) => op,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = body::<Empty>("POST /reload", raw) {
        return e.into_response();
    }
    let cfg = match (op.reload)() {
        Ok(cfg) => cfg,
        Err(e) => {
            return ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                format!("the configuration file is invalid; the running configuration stays: {e}"),
            )
            .into_response()
        }
    };
    let (tx, rx) = oneshot::channel();
    if let Err(busy) = hand_to_loop(&op, Control::Reload(Box::new(cfg), Some(tx))).await {
        return busy;
    }
    match tokio::time::timeout(Duration::from_secs(60), rx).await {
        Ok(Ok(summary)) => Json(serde_json::json!({ "message": format!("reloaded: {summary}") }))
            .into_response(),
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the reload was handed to the HA loop but it did not confirm it in time; see the agent's log",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: DeserializeOwned>(json: &str) -> Result<T, ApiError> {
        body("test", Ok(Bytes::from(json.to_string())))
    }

    #[test]
    fn patroni_bodies_are_understood() {
        let r = parse::<SwitchoverBody>(
            r#"{"leader": "pg1", "candidate": "pg2", "scheduled_at": "2026-12-01T02:00:00+01:00"}"#,
        )
        .and_then(switchover_request)
        .unwrap();
        match r {
            Request::Switchover {
                leader,
                candidate,
                at,
            } => {
                assert_eq!(leader, "pg1");
                assert_eq!(candidate.as_deref(), Some("pg2"));
                assert_eq!(
                    at,
                    Some(crate::rfc3339::parse("2026-12-01T01:00:00Z").unwrap())
                );
            }
            other => panic!("{other:?}"),
        }
        let r = parse::<SwitchoverBody>(r#"{"master": "pg1"}"#)
            .and_then(switchover_request)
            .unwrap();
        assert!(matches!(r, Request::Switchover { leader, .. } if leader == "pg1"));
        let r = parse::<RestartBody>(
            r#"{"restart_pending": true, "role": "master", "postgres_version": "15.4"}"#,
        )
        .and_then(restart_request)
        .unwrap();
        assert_eq!(
            r,
            Request::Restart {
                conditions: RestartConditions {
                    restart_pending: true,
                    role: Some(Role::Primary),
                    postgres_version: Some(150_004),
                },
                at: None,
            }
        );
        assert!(parse::<Empty>("").is_ok());
        assert!(parse::<Empty>(" {} \n").is_ok());
        assert!(matches!(
            parse::<ConfigPatch>(r#"{"pause": true}"#).unwrap().pause,
            Some(true)
        ));
    }

    #[test]
    fn every_malformed_body_is_a_400_naming_the_problem() {
        let cases: Vec<(&str, Result<Request, ApiError>, &str)> = vec![
            (
                "not JSON",
                parse::<SwitchoverBody>("{leader").and_then(switchover_request),
                "key must be a string",
            ),
            (
                "no leader",
                parse::<SwitchoverBody>(r#"{"candidate": "pg2"}"#).and_then(switchover_request),
                "\"leader\" is required",
            ),
            (
                "unknown field",
                parse::<SwitchoverBody>(r#"{"leader": "pg1", "when": "now"}"#)
                    .and_then(switchover_request),
                "unknown field `when`",
            ),
            (
                "wrong type",
                parse::<SwitchoverBody>(r#"{"leader": 1}"#).and_then(switchover_request),
                "invalid type",
            ),
            (
                "time without offset",
                parse::<SwitchoverBody>(
                    r#"{"leader": "pg1", "scheduled_at": "2026-12-01T02:00:00"}"#,
                )
                .and_then(switchover_request),
                "scheduled_at",
            ),
            (
                "empty name",
                parse::<FailoverBody>(r#"{"candidate": " "}"#).and_then(failover_request),
                "empty member name",
            ),
            (
                "no candidate",
                parse::<FailoverBody>(r#"{"force": true}"#).and_then(failover_request),
                "\"candidate\" is required",
            ),
            (
                "force not a bool",
                parse::<FailoverBody>(r#"{"candidate": "pg2", "force": "yes"}"#)
                    .and_then(failover_request),
                "invalid type",
            ),
            (
                "bad role",
                parse::<RestartBody>(r#"{"role": "leader"}"#).and_then(restart_request),
                "is not primary, master or replica",
            ),
            (
                "bad version",
                parse::<RestartBody>(r#"{"postgres_version": "fifteen"}"#)
                    .and_then(restart_request),
                "not a PostgreSQL version",
            ),
            (
                "bad schedule",
                parse::<RestartBody>(r#"{"schedule": "tonight"}"#).and_then(restart_request),
                "schedule",
            ),
            (
                "array body",
                parse::<RestartBody>("[false, null, null, null]").and_then(restart_request),
                "must be a JSON object",
            ),
            (
                "white space only",
                parse::<Empty>("  \n").map(|_| Request::Reinit),
                "not JSON",
            ),
            (
                "not a member name",
                parse::<FailoverBody>(r#"{"candidate": "pg-2\u001c"}"#).and_then(failover_request),
                "is not a member name",
            ),
            (
                "a name too long",
                parse::<SwitchoverBody>(&format!(r#"{{"leader": "{}"}}"#, "p".repeat(64)))
                    .and_then(switchover_request),
                "is not a member name",
            ),
            (
                "a version past u32",
                parse::<RestartBody>(r#"{"postgres_version": "500000"}"#).and_then(restart_request),
                "not a PostgreSQL version",
            ),
            (
                "a body where none is taken",
                parse::<Empty>(r#"{"now": true}"#).map(|_| Request::Reinit),
                "unknown field `now`",
            ),
        ];
        for (what, result, needle) in cases {
            let e = result.expect_err(what);
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{what}");
            assert!(e.message.contains(needle), "{what}: {}", e.message);
        }
    }

    #[test]
    fn versions_are_patroni_strings() {
        assert_eq!(version_num("15"), Ok(150_000));
        assert_eq!(version_num("15.4"), Ok(150_004));
        assert_eq!(version_num("9.6.3"), Ok(90_603));
        assert!(version_num("9.6").is_err());
        assert!(version_num("15.4.1").is_err());
        assert!(version_num("").is_err());
        assert_eq!(version_num("100.9999"), Ok(1_009_999));
        for bad in [
            "+15", "015", "9", "1000", "15.", "15.12345", "9.6.100", "429497", "15.4 ",
        ] {
            assert!(version_num(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_token_is_required_compared_and_never_open_by_default() {
        let (control, _rx) = mpsc::channel(1);
        let dir = std::env::temp_dir().join(format!("pgwarden-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let op = |token_file: Option<PathBuf>| Operator {
            control: control.clone(),
            token_file,
            reload: std::sync::Arc::new(|| Err("unused".into())),
        };
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(axum::http::header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        let status = |o: &Operator, h: &HeaderMap| authorize(o, h).err().map(|e| e.status);
        let configured = op(Some(file.clone()));
        assert_eq!(status(&configured, &with("Bearer s3cret")), None);
        assert_eq!(
            status(&configured, &HeaderMap::new()),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            status(&configured, &with("Bearer s3cre")),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            status(&configured, &with("Basic s3cret")),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            status(&op(None), &with("Bearer s3cret")),
            Some(StatusCode::FORBIDDEN)
        );
        std::fs::write(&file, "  \n").unwrap();
        assert_eq!(
            status(&configured, &with("Bearer ")),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            status(&op(Some(dir.join("missing"))), &with("Bearer x")),
            Some(StatusCode::FORBIDDEN)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
