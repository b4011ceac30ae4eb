//! The API's HTTPS side: a rustls server configuration from the PEM files,
//! behind a lock so that SIGHUP can swap it, and the listener that
//! performs handshakes beside the accept loop.
//!
//! Every connection's handshake runs in its own task, bounded in time and
//! in number, and axum only sees connections whose handshake finished: a
//! client that connects and sends nothing, or fails its handshake, costs
//! one task for [`HANDSHAKE_TIMEOUT`] and never delays anyone else — the
//! health checks of a load balancer and the peers' lease rounds go on.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rustls::server::WebPkiClientVerifier;
use rustls::sign::SingleCertAndKey;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::TlsError;
use crate::config::pem;
use crate::config::{ApiSection, VerifyClient};

/// Longest a client may take to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most handshakes in progress at once; past it new connections are
/// closed at once rather than queued (a connection storm must not grow
/// memory without bound, nor stall the accept loop).
pub const MAX_HANDSHAKES: usize = 512;

/// The API's TLS server configuration. Clones share it; [`ServerTls::reload`]
/// swaps it for connections accepted after.
#[derive(Debug, Clone)]
pub struct ServerTls {
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl ServerTls {
    /// The configuration `api` describes; `None` when the API speaks plain HTTP.
    pub fn load(api: &ApiSection) -> Result<Option<ServerTls>, TlsError> {
        if !api.serves_tls() {
            return Ok(None);
        }
        Ok(Some(ServerTls {
            current: Arc::new(RwLock::new(Arc::new(server_config(api)?))),
        }))
    }

    /// Re-reads the files: on success new connections use them; on
    /// failure nothing changes.
    pub fn reload(&self, api: &ApiSection) -> Result<(), TlsError> {
        let new = Arc::new(server_config(api)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = new;
        Ok(())
    }

    /// The configuration for the next connection.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Serves TLS on `tcp`: the listener to give `axum::serve`.
    pub fn listener(&self, tcp: TcpListener) -> TlsListener {
        TlsListener::new(tcp, self.clone())
    }
}

/// The server configuration: this agent's certificate, client
/// certificates as `verify_client` says, HTTP/1.1 (what the API serves).
fn server_config(api: &ApiSection) -> Result<ServerConfig, TlsError> {
    let (Some(cert), Some(key)) = (&api.tls_cert_file, &api.tls_key_file) else {
        return Err(TlsError::Refused {
            what: "api.tls_cert_file",
            detail: "TLS needs both tls_cert_file and tls_key_file".into(),
        });
    };
    let certified = pem::read_certified_key(cert, key).map_err(|source| TlsError::File {
        what: match &source {
            pem::PemError::Unreadable { path, .. } | pem::PemError::NoCertificate { path, .. }
                if path == cert =>
            {
                "api.tls_cert_file"
            }
            _ => "api.tls_key_file",
        },
        source,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = match (api.verify_client(), &api.tls_client_ca_file) {
        (VerifyClient::None, _) => WebPkiClientVerifier::no_client_auth(),
        (mode, Some(ca)) => {
            let roots = pem::read_roots(ca).map_err(|source| TlsError::File {
                what: "api.tls_client_ca_file",
                source,
            })?;
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let builder = if mode == VerifyClient::Optional {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            builder.build().map_err(|e| TlsError::Refused {
                what: "api.tls_client_ca_file",
                detail: e.to_string(),
            })?
        }
        (mode, None) => {
            return Err(TlsError::Refused {
                what: "api.verify_client",
                detail: format!("{:?} needs tls_client_ca_file", mode.as_str()),
            })
        }
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Refused {
            what: "TLS versions",
            detail: e.to_string(),
        })?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A TLS listener for `axum::serve`: a task accepts TCP connections and
/// runs each handshake in a task of its own; finished ones come out of
/// [`axum::serve::Listener::accept`]. Dropping it stops the accept task.
#[derive(Debug)]
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: std::io::Result<SocketAddr>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    fn new(tcp: TcpListener, tls: ServerTls) -> TlsListener {
        let local = tcp.local_addr();
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio::spawn(accept_loop(tcp, tls, tx));
        TlsListener {
            ready,
            local,
            acceptor,
        }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task is gone (it only ends when aborted): accept
            // nothing more, and let graceful shutdown end the server.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        match &self.local {
            Ok(addr) => Ok(*addr),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}

async fn accept_loop(
    tcp: TcpListener,
    tls: ServerTls,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let in_progress = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let refusals = Arc::new(RefusalLog::default());
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: back off a little,
                // as axum's own loop does, rather than spin.
                tracing::warn!("API: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = in_progress.clone().try_acquire_owned() else {
            refusals.note(
                peer,
                "too many TLS handshakes in progress; connection closed",
            );
            continue;
        };
        let acceptor = TlsAcceptor::from(tls.current());
        let ready = ready.clone();
        let refusals = refusals.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            drop(permit);
            match outcome {
                Ok(Ok(conn)) => {
                    let _ = ready.send((conn, peer)).await;
                }
                Ok(Err(e)) => refusals.note(peer, &format!("TLS handshake failed: {e}")),
                Err(_) => refusals.note(
                    peer,
                    &format!("no TLS handshake within {HANDSHAKE_TIMEOUT:?}; connection closed"),
                ),
            }
        });
    }
}

/// Refused handshakes, logged at most once per [`RefusalLog::EVERY`] with
/// a count of the others: a port scanner or a load balancer checking
/// without TLS must not flood the log, and one line still tells an
/// operator why a client is refused.
#[derive(Debug, Default)]
struct RefusalLog {
    state: Mutex<(Option<Instant>, u64)>,
}

impl RefusalLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn note(&self, peer: SocketAddr, why: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, quiet) = &mut *state;
        if last.is_some_and(|t| t.elapsed() < Self::EVERY) {
            *quiet += 1;
            return;
        }
        let others = if *quiet > 0 {
            format!(" ({quiet} more refused since the last such line)")
        } else {
            String::new()
        };
        tracing::info!("API: connection from {peer} refused: {why}{others}");
        *last = Some(Instant::now());
        *quiet = 0;
    }
}
