//! Serving the API's connections: `axum::serve`, with the bounds a server
//! facing any client needs and `axum::serve` does not set. A client that
//! opens a connection and never finishes its request headers is dropped
//! after [`HEADER_TIMEOUT`]; one that announces a body and never sends it,
//! after [`BODY_TIMEOUT`] (a 408); and at most [`MAX_CONNECTIONS`] are
//! served at once, the others waiting in the kernel's backlog. Without
//! these, enough stalled clients would take the agent's file descriptors,
//! and with them its health checks and its lease traffic.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{watch, Semaphore};

use super::error::ApiError;
use super::MAX_BODY_BYTES;

/// How long a client may take to send its request line and headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's body (the API's bodies
/// are a few hundred bytes).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once: well under the default limit of 1024 open
/// files, leaving room for PostgreSQL sessions, peers and logs.
pub const MAX_CONNECTIONS: usize = 512;

/// How long a graceful shutdown waits for open connections to finish.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `shutdown` completes, then lets the
/// open connections finish their requests (at most [`DRAIN`]).
pub async fn serve<L>(mut listener: L, app: Router, shutdown: impl Future<Output = ()>)
where
    L: axum::serve::Listener,
{
    let app = app.layer(axum::middleware::from_fn(body_deadline));
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break, // never closed; nothing to serve without slots
            },
            () = &mut shutdown => break,
        };
        let (io, _) = tokio::select! {
            conn = listener.accept() => conn,
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(io), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!("API connection: {e}");
                    }
                }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    // Every slot back: every connection closed.
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN, slots.acquire_many(all)).await;
}

/// Reads the whole body within [`BODY_TIMEOUT`] before the handler runs,
/// so that no handler waits on a client that stopped sending.
async fn body_deadline(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(e)) => too_large_or_broken(&e.to_string()).into_response(),
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        )
        .into_response(),
    }
}

/// A body over the limit is a 413, as `DefaultBodyLimit` answers; a broken
/// one a 400.
fn too_large_or_broken(error: &str) -> ApiError {
    if error.contains("length limit") {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        )
    } else {
        ApiError::bad_request(format!("cannot read the request body: {error}"))
    }
}
