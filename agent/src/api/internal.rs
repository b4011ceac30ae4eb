//! Agent-to-agent endpoints: `POST /internal/lease/{prepare,propose,release}`,
//! answered by this member's acceptor. Every call needs the cluster secret
//! as a bearer token; without it, or with a wrong one, the answer is 401
//! and nothing changes.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

use crate::lease::{
    secret_matches, AcceptorService, Ballot, MemberName, Prepare, Propose, Release,
};

use super::error::ApiError;
use super::ApiState;

/// What the internal endpoints need: the acceptor and the secret.
#[derive(Clone)]
pub struct InternalState {
    /// This member's acceptor.
    pub acceptor: AcceptorService,
    /// The cluster secret peers must present.
    pub secret: String,
    /// The lease's voters (fixed until the agent restarts, as the lease's
    /// membership is): only their ballots reach the acceptor.
    pub voters: Vec<MemberName>,
}

impl InternalState {
    /// A 422 for a ballot the acceptor must never see ([`AcceptorService::screen`]).
    fn screen(&self, ballot: &Ballot) -> Result<(), ApiError> {
        self.acceptor
            .screen(ballot, &self.voters)
            .map_err(|why| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, why))
    }
}

/// The acceptor when the caller presents the cluster secret. A request
/// without any is a 401 everywhere, a one-member cluster included (where
/// there is no acceptor to reach and a token gets a 404).
fn authorize(state: &ApiState, headers: &HeaderMap) -> Result<InternalState, ApiError> {
    let missing = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "agent-to-agent endpoint: send the cluster secret as 'Authorization: Bearer <secret>'",
        )
    };
    if super::bearer(headers).is_none() {
        return Err(missing());
    }
    let Some(internal) = state.internal.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "this member takes part in no quorum lease (a one-member cluster)",
        ));
    };
    match super::bearer(headers) {
        Some(token) if secret_matches(token, &internal.secret) => Ok(internal),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong cluster secret: every member must use the same cluster.secret_file contents",
        )),
        None => Err(missing()),
    }
}

fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body =
        body.map_err(|e| ApiError::new(e.status(), format!("cannot read the request body: {e}")))?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("not a lease message: {e}"),
        )
    })
}

fn silent() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "acceptor silent: this member started less than one lease length ago and cannot vouch for leases it may have granted before",
    )
}

/// `POST /internal/lease/prepare`.
pub async fn prepare(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = authorize(&state, &headers).and_then(|internal| {
        let msg: Prepare = parse(body)?;
        internal.screen(&msg.ballot)?;
        internal.acceptor.prepare(msg).ok_or_else(silent)
    });
    match result {
        Ok(reply) => Json(reply).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /internal/lease/propose`.
pub async fn propose(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = authorize(&state, &headers).and_then(|internal| {
        let msg: Propose = parse(body)?;
        internal.screen(&msg.ballot)?;
        internal.acceptor.propose(msg).ok_or_else(silent)
    });
    match result {
        Ok(reply) => Json(reply).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /internal/wake`: another member's step waits for this one (a
/// switchover's target): run the HA loop now rather than at its next
/// period. Changes nothing by itself.
pub async fn wake(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&state, &headers) {
        return e.into_response();
    }
    if let Some(op) = &state.operator {
        // A full queue already holds something that wakes the loop.
        let _ = op.control.try_send(crate::ha::runner::Control::Wake);
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /internal/lease/release`.
pub async fn release(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = authorize(&state, &headers).and_then(|internal| {
        let msg: Release = parse(body)?;
        internal.screen(&msg.ballot)?;
        internal.acceptor.release(msg);
        Ok(())
    });
    match result {
        Ok(()) => Json(serde_json::json!({"released": true})).into_response(),
        Err(e) => e.into_response(),
    }
}
