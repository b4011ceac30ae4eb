//! TLS for the API, on rustls with the ring provider: the agent's HTTPS
//! server, and the client side that this agent (calling its peers) and
//! the CLI (calling an agent) share.
//!
//! - `server.rs`: [`ServerTls`], the server configuration built from
//!   `api.tls_cert_file` / `tls_key_file` / `tls_client_ca_file` /
//!   `verify_client`, swapped whole on SIGHUP; [`TlsListener`], the accept
//!   loop that hands axum finished handshakes.
//! - `client.rs`: [`ClientTls`], what a client trusts (`api.tls_ca_file`,
//!   else the system's roots) and the certificate it presents; every
//!   `reqwest::Client` that talks to an agent starts from
//!   [`ClientTls::client_builder`].
//!
//! Certificate files are read at start and on SIGHUP ([`AgentTls::reload`]),
//! never per connection; a file that does not load keeps what was loaded
//! before. Turning TLS on or off changes what the API socket speaks, so it
//! waits for an agent restart.
//!
//! Architecture invariant: this is the only module that builds a rustls
//! configuration; the PEM files are read by `config::pem`, so that
//! `check-config` and the agent judge them the same way.

mod client;
mod server;

pub use client::ClientTls;
pub use server::{ServerTls, TlsListener};

use crate::config::pem::PemError;
use crate::config::ApiSection;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file cannot be used.
    #[error("{what}: {source}")]
    File {
        /// The key naming the file (`api.tls_cert_file`), or its role for a client.
        what: &'static str,
        /// Why.
        source: PemError,
    },
    /// rustls refused the combination.
    #[error("{what}: {detail}")]
    Refused {
        /// What was being built.
        what: &'static str,
        /// rustls's reason.
        detail: String,
    },
}

/// This agent's TLS: the server side when the API speaks HTTPS, and the
/// client side its peer and lease requests use. Loaded together at start,
/// re-read together on SIGHUP.
#[derive(Debug, Clone)]
pub struct AgentTls {
    /// The API's server configuration; `None`: plain HTTP.
    pub server: Option<ServerTls>,
    /// What this agent trusts and presents when it calls other agents.
    pub client: ClientTls,
}

impl AgentTls {
    /// Reads the files `api` names.
    pub fn load(api: &ApiSection) -> Result<AgentTls, TlsError> {
        Ok(AgentTls {
            server: ServerTls::load(api)?,
            client: ClientTls::load(&api.client_tls())?,
        })
    }

    /// Re-reads the files (SIGHUP): new connections use the new
    /// certificates; a file that does not load keeps the old ones, and the
    /// log says why.
    pub fn reload(&self, api: &ApiSection) {
        match (&self.server, api.serves_tls()) {
            (Some(server), true) => match server.reload(api) {
                Ok(()) => tracing::info!(
                    "SIGHUP: API certificate re-read from {} (client certificates: {}); new connections use it",
                    api.tls_cert_file.as_deref().unwrap_or_else(|| std::path::Path::new("?")).display(),
                    api.verify_client().as_str()
                ),
                Err(e) => tracing::error!(
                    "SIGHUP: keeping the API certificate loaded before, the new files do not load: {e}"
                ),
            },
            (Some(_), false) => tracing::warn!(
                "SIGHUP: api.tls_cert_file is no longer set, but turning TLS off takes an agent restart; the API goes on serving HTTPS with the certificate loaded before"
            ),
            (None, true) => tracing::warn!(
                "SIGHUP: api.tls_cert_file is now set, but turning TLS on takes an agent restart; the API goes on speaking plain HTTP"
            ),
            (None, false) => {}
        }
        if let Err(e) = self.client.reload(&api.client_tls()) {
            tracing::error!(
                "SIGHUP: keeping the CA and client certificate loaded before for calls to other agents, the new files do not load: {e}"
            );
        }
    }
}
