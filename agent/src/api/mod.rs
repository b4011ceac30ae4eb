//! The HTTP API: the status document, the Patroni-compatible health
//! checks, and JSON errors for anything else. Every answer comes from the
//! node's view (a `watch` receiver); nothing here queries PostgreSQL.
//!
//! - `status.rs`: the status document.
//! - `patroni.rs`: Patroni's documents (`/patroni`, `/cluster`, `/history`).
//! - `health.rs`: which check passes for which view.
//! - `internal.rs`: the agent-to-agent lease endpoints (cluster secret).
//! - `actions.rs`: operator actions (bearer token).
//! - `error.rs`: JSON errors.
//! - `serve.rs`: the connections, with time and number bounds.
//! - `metrics.rs`: `GET /metrics` (Prometheus) and the request counter.

pub mod actions;
pub mod error;
pub mod health;
pub mod internal;
pub mod metrics;
pub mod patroni;
pub mod serve;
pub mod status;

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use tokio::sync::watch;

use crate::config::ByteSize;
use crate::view::NodeView;
use error::ApiError;
use health::{Check, LagMode, ReplicaFilter};

/// What every handler can read.
#[derive(Clone)]
pub struct ApiState {
    /// The node's view, published by the HA loop.
    pub view: watch::Receiver<NodeView>,
    /// The acceptor and cluster secret, in a multi-member cluster.
    pub internal: Option<internal::InternalState>,
    /// The HA loop's control and the token, for operator actions.
    pub operator: Option<actions::Operator>,
}

/// The token of an `Authorization: Bearer <token>` header, if any.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// pgwarden's own cluster document (every member's whole `/status`):
/// `/cluster` is Patroni's shape.
pub const CLUSTER_DOC_PATH: &str = "/pgwarden/cluster";

/// pgwarden's own history (every role change, with its reason):
/// `/history` is Patroni's shape.
pub const HISTORY_DOC_PATH: &str = "/pgwarden/history";

/// The largest request body accepted (operator actions are tiny).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The router with every endpoint.
pub fn router(state: ApiState) -> Router {
    let mut r = Router::new()
        .route("/status", get(status_handler).options(status_handler))
        .route("/patroni", get(patroni_handler))
        .route("/cluster", get(patroni_cluster_handler))
        .route("/history", get(patroni_history_handler))
        .route(CLUSTER_DOC_PATH, get(cluster_handler))
        .route(HISTORY_DOC_PATH, get(history_handler))
        .route("/metrics", get(metrics::handler))
        .route("/internal/lease/prepare", post(internal::prepare))
        .route("/internal/lease/propose", post(internal::propose))
        .route("/internal/lease/release", post(internal::release))
        .route("/internal/wake", post(internal::wake))
        .route(
            "/switchover",
            post(actions::switchover).delete(actions::cancel_switchover),
        )
        .route("/failover", post(actions::failover))
        .route(
            "/restart",
            post(actions::restart).delete(actions::cancel_restart),
        )
        .route("/reload", post(actions::reload))
        .route("/reinitialize", post(actions::reinitialize))
        .route("/pause", post(actions::pause))
        .route("/resume", post(actions::resume))
        .route("/config", patch(actions::patch_config));
    for (path, check) in [
        ("/", Check::Primary),
        ("/primary", Check::Primary),
        ("/master", Check::Primary),
        ("/read-write", Check::Primary),
        ("/leader", Check::Leader),
        ("/replica", Check::Replica),
        ("/read-only", Check::ReadOnly),
        ("/sync", Check::Sync),
        ("/synchronous", Check::Sync),
        ("/quorum", Check::Quorum),
        ("/read-only-sync", Check::ReadOnlySync),
        ("/read-only-synchronous", Check::ReadOnlySync),
        ("/standby-leader", Check::StandbyLeader),
        ("/standby_leader", Check::StandbyLeader),
        ("/async", Check::Async),
        ("/asynchronous", Check::Async),
        ("/health", Check::Health),
        ("/liveness", Check::Liveness),
        ("/readiness", Check::Readiness),
    ] {
        let handler =
            move |state: State<ApiState>, method: Method, query: Query<HashMap<String, String>>| {
                health_handler(state, method, query, check)
            };
        r = r.route(path, get(handler).options(handler));
    }
    r.fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(metrics::count_requests))
        .with_state(state)
}

async fn status_handler(State(state): State<ApiState>, method: Method) -> Response {
    let doc = status::status_document(&state.view.borrow(), Instant::now());
    if method == Method::OPTIONS {
        return StatusCode::OK.into_response();
    }
    Json(doc).into_response()
}

async fn history_handler(State(state): State<ApiState>) -> Response {
    Json(state.view.borrow().history.clone()).into_response()
}

async fn cluster_handler(State(state): State<ApiState>) -> Response {
    Json(status::cluster_document(
        &state.view.borrow(),
        Instant::now(),
    ))
    .into_response()
}

async fn patroni_handler(State(state): State<ApiState>) -> Response {
    Json(patroni::patroni_status(
        &state.view.borrow(),
        Instant::now(),
    ))
    .into_response()
}

async fn patroni_cluster_handler(State(state): State<ApiState>) -> Response {
    Json(patroni::patroni_cluster(
        &state.view.borrow(),
        Instant::now(),
    ))
    .into_response()
}

async fn patroni_history_handler(State(state): State<ApiState>) -> Response {
    Json(patroni::patroni_history(&state.view.borrow().history)).into_response()
}

async fn health_handler(
    State(state): State<ApiState>,
    method: Method,
    Query(query): Query<HashMap<String, String>>,
    check: Check,
) -> Response {
    let filter = match replica_filter(&query) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let now = Instant::now();
    let (ok, doc) = {
        let view = state.view.borrow();
        (
            health::passes(check, &view, &filter, now),
            status::status_document(&view, now),
        )
    };
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if method == Method::OPTIONS {
        return code.into_response();
    }
    (code, Json(doc)).into_response()
}

/// Reads `?lag=` (a size, `16MB`, or plain bytes as Patroni takes it),
/// `?replication_state=`, `?mode=apply|write` and `?tag_<key>=<value>`.
/// A value that does not parse is a 400 (Patroni ignores it and answers
/// as if it were absent: a typo in a load balancer's check would then
/// pass silently).
fn replica_filter(query: &HashMap<String, String>) -> Result<ReplicaFilter, ApiError> {
    let max_lag = match query.get("lag") {
        None => None,
        Some(raw) => Some(
            raw.parse::<u64>()
                .map(ByteSize)
                .or_else(|_| raw.parse::<ByteSize>())
                .map_err(|e| ApiError::bad_request(format!("query parameter lag: {e}")))?,
        ),
    };
    let replication_state = query.get("replication_state").cloned();
    if let Some(s) = &replication_state {
        const STATES: &[&str] = &[
            "streaming",
            health::IN_ARCHIVE_RECOVERY,
            "catchup",
            "starting",
            "stopping",
            "waiting",
            "stopped",
            "backup",
        ];
        if !STATES.contains(&s.as_str()) {
            return Err(ApiError::bad_request(format!(
                "query parameter replication_state: unknown state {s:?} (one of {})",
                STATES.join(", ")
            )));
        }
    }
    let lag_mode = match query.get("mode").map(String::as_str) {
        None | Some("apply") => LagMode::Apply,
        Some("write") => LagMode::Write,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "query parameter mode: {other:?} is not a lag mode (apply or write)"
            )))
        }
    };
    let mut tags: Vec<(String, String)> = query
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("tag_")?.to_string(), v.clone())))
        .collect();
    tags.sort();
    Ok(ReplicaFilter {
        max_lag,
        replication_state,
        tags,
        lag_mode,
    })
}

async fn fallback(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no endpoint {method} {}: see docs/api.md for the endpoints",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not accept {method}", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_filters_accept_sizes_and_bytes_and_refuse_garbage() {
        let q = |k: &str, v: &str| HashMap::from([(k.to_string(), v.to_string())]);
        assert_eq!(
            replica_filter(&q("lag", "16MB")).unwrap().max_lag,
            Some(ByteSize(16 << 20))
        );
        assert_eq!(
            replica_filter(&q("lag", "1024")).unwrap().max_lag,
            Some(ByteSize(1024))
        );
        assert!(replica_filter(&q("lag", "lots")).is_err());
        assert!(replica_filter(&q("replication_state", "dancing")).is_err());
        assert!(replica_filter(&q("replication_state", "streaming")).is_ok());
    }
}
