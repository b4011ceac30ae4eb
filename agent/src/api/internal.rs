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

use crate::lease::{secret_matches, AcceptorService, Ballot, Prepare, Propose, Release};

use super::error::ApiError;
use super::ApiState;

/// What the internal endpoints need: the acceptor and the secret.
#[derive(Clone)]
pub struct InternalState {
    /// This member's acceptor.
    pub acceptor: AcceptorService,
    /// The cluster secret peers must present.
    pub secret: String,
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

/// The largest ballot counter taken: 2^53 - 1, the largest integer every
/// JSON reader keeps exact, and at one round per loop more rounds than
/// any cluster will run. A promise of a counter near `u64::MAX` could
/// never be outbid (a proposer's counter saturates there): one such
/// message, from a peer gone mad, would leave the cluster without a
/// leader for good, the promise being kept in the acceptor's notes. Found
/// by the API fuzz test.
pub const MAX_BALLOT_COUNTER: u64 = (1 << 53) - 1;

/// A lease message: each carries a ballot.
trait LeaseMessage: DeserializeOwned {
    fn ballot(&self) -> &Ballot;
}

impl LeaseMessage for Prepare {
    fn ballot(&self) -> &Ballot {
        &self.ballot
    }
}

impl LeaseMessage for Propose {
    fn ballot(&self) -> &Ballot {
        &self.ballot
    }
}

impl LeaseMessage for Release {
    fn ballot(&self) -> &Ballot {
        &self.ballot
    }
}

fn parse<T: LeaseMessage>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body =
        body.map_err(|e| ApiError::new(e.status(), format!("cannot read the request body: {e}")))?;
    let unprocessable = |why: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, why);
    let msg: T = serde_json::from_slice(&body)
        .map_err(|e| unprocessable(format!("not a lease message: {e}")))?;
    if msg.ballot().counter > MAX_BALLOT_COUNTER {
        return Err(unprocessable(format!(
            "ballot counter {} is beyond {MAX_BALLOT_COUNTER}: no agent counts that far (a peer gone mad?)",
            msg.ballot().counter
        )));
    }
    Ok(msg)
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
        internal.acceptor.release(msg);
        Ok(())
    });
    match result {
        Ok(()) => Json(serde_json::json!({"released": true})).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed<T: LeaseMessage>(json: &str) -> Result<T, ApiError> {
        parse(Ok(Bytes::from(json.to_string())))
    }

    #[test]
    fn a_ballot_no_proposer_could_outbid_is_refused_before_the_acceptor_sees_it() {
        let at = |counter: u64| {
            format!(
                r#"{{"ballot": {{"counter": {counter}, "member": "zzzz", "incarnation": 18446744073709551615}}}}"#
            )
        };
        assert!(parsed::<Prepare>(&at(MAX_BALLOT_COUNTER)).is_ok());
        for counter in [MAX_BALLOT_COUNTER + 1, u64::MAX] {
            let e = parsed::<Prepare>(&at(counter)).unwrap_err();
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
            assert!(e.message.contains("beyond"), "{}", e.message);
            assert!(parsed::<Release>(&at(counter)).is_err());
        }
        let propose = r#"{"ballot": {"counter": 18446744073709551615, "member": "pg1", "incarnation": 1}, "lease_ms": 1000}"#;
        assert!(parsed::<Propose>(propose).is_err());
        assert!(parsed::<Prepare>("[]").is_err());
    }
}
