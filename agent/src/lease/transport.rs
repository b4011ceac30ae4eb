//! The lease's messages over HTTP: `POST /internal/lease/{prepare,propose,release}`
//! on every member's API, with the cluster secret as a bearer token. Short
//! timeouts, every member in parallel; a member that hangs or answers
//! garbage counts as no answer.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The internal endpoints' paths.
pub const PREPARE_PATH: &str = "/internal/lease/prepare";
/// See [`PREPARE_PATH`].
pub const PROPOSE_PATH: &str = "/internal/lease/propose";
/// See [`PREPARE_PATH`].
pub const RELEASE_PATH: &str = "/internal/lease/release";

/// An HTTP client to the other members' acceptors.
#[derive(Debug, Clone)]
pub struct PeerTransport {
    http: reqwest::Client,
    secret: String,
}

/// Why a peer gave no usable answer (logged at debug level: an
/// unreachable member is ordinary during a failure).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Connection, timeout, or HTTP error.
    #[error("{url}: {detail}")]
    Http {
        /// The endpoint.
        url: String,
        /// What happened.
        detail: String,
    },
    /// The member answered with a status other than 200.
    #[error("{url}: answered {status}")]
    Status {
        /// The endpoint.
        url: String,
        /// HTTP status.
        status: u16,
    },
    /// The member answered something that is not the expected message.
    #[error("{url}: unreadable answer: {detail}")]
    Garbage {
        /// The endpoint.
        url: String,
        /// The parse error.
        detail: String,
    },
}

impl PeerTransport {
    /// A transport presenting `secret`, each request bounded by `timeout`,
    /// with `tls` for members reached over `https://`.
    pub fn new(
        secret: String,
        timeout: Duration,
        tls: &crate::tls::ClientTls,
    ) -> Result<PeerTransport, reqwest::Error> {
        let http = tls
            .client_builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(PeerTransport { http, secret })
    }

    /// POSTs `msg` to `base_url` + `path` and reads the answer.
    pub async fn call<M: Serialize, R: DeserializeOwned>(
        &self,
        base_url: &str,
        path: &str,
        msg: &M,
    ) -> Result<R, TransportError> {
        let url = format!("{}{path}", base_url.trim_end_matches('/'));
        let resp = self
            .http
            .post(&url)
            .bearer_auth(&self.secret)
            .json(msg)
            .send()
            .await
            .map_err(|e| TransportError::Http {
                url: url.clone(),
                detail: e.to_string(),
            })?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(TransportError::Status { url, status });
        }
        // Bounded read: an acceptor's answer is tiny; a peer that streams
        // megabytes is not an acceptor.
        let bytes = resp.bytes().await.map_err(|e| TransportError::Http {
            url: url.clone(),
            detail: e.to_string(),
        })?;
        if bytes.len() > 64 * 1024 {
            return Err(TransportError::Garbage {
                url,
                detail: format!("{} bytes", bytes.len()),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| TransportError::Garbage {
            url,
            detail: e.to_string(),
        })
    }
}
