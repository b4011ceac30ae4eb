//! The client side: what a caller of an agent's API trusts and presents.
//! This agent uses it for its peers' `/status` and the lease's
//! `/internal/lease/*`, the CLI for `status`, `list` and the actions.
//!
//! The server's certificate is verified against `api.tls_ca_file` alone
//! when it is set (the cluster's own CA: a certificate some public CA
//! issued for a member's address is not a member), else against the
//! system's roots, as reqwest does by default. The client presents its
//! certificate (an agent: its own API certificate) to servers that ask.
//!
//! The `reqwest::Client`s are built once; the CA and the certificate they
//! use sit behind a lock that [`ClientTls::reload`] swaps, so a SIGHUP
//! reaches every client without rebuilding any: connections opened after
//! it present the new certificate and trust the new CA.

use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use super::TlsError;
use crate::config::pem;
use crate::config::ClientTlsFiles;

/// What a client of agents trusts and presents. Clones share it.
#[derive(Debug, Clone)]
pub struct ClientTls {
    shared: Arc<Shared>,
    /// The rustls configuration every client built from this one starts from.
    config: Arc<ClientConfig>,
}

#[derive(Debug)]
struct Shared {
    current: RwLock<Arc<Material>>,
}

/// The files' contents, swapped whole.
#[derive(Debug)]
struct Material {
    verifier: Arc<dyn ServerCertVerifier>,
    identity: Option<Arc<CertifiedKey>>,
}

impl ClientTls {
    /// Reads the files: the CA when set, the certificate and key when both are set.
    pub fn load(files: &ClientTlsFiles) -> Result<ClientTls, TlsError> {
        let shared = Arc::new(Shared {
            current: RwLock::new(Arc::new(material(files)?)),
        });
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Refused {
                what: "TLS versions",
                detail: e.to_string(),
            })?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(CurrentVerifier(shared.clone())))
            .with_client_cert_resolver(Arc::new(CurrentIdentity(shared.clone())));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ClientTls {
            shared,
            config: Arc::new(config),
        })
    }

    /// The system's roots and no client certificate: for clients with no
    /// TLS settings (the demo).
    pub fn system_roots() -> Result<ClientTls, TlsError> {
        ClientTls::load(&ClientTlsFiles::default())
    }

    /// Re-reads the files; on failure nothing changes.
    pub fn reload(&self, files: &ClientTlsFiles) -> Result<(), TlsError> {
        let new = Arc::new(material(files)?);
        *self
            .shared
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = new;
        Ok(())
    }

    /// A `reqwest` client builder with this TLS: callers add their
    /// timeouts and build.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder().tls_backend_preconfigured((*self.config).clone())
    }
}

impl Shared {
    fn material(&self) -> Arc<Material> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn material(files: &ClientTlsFiles) -> Result<Material, TlsError> {
    let verifier: Arc<dyn ServerCertVerifier> = match &files.ca_file {
        Some(ca) => {
            let roots = pem::read_roots(ca).map_err(|source| TlsError::File {
                what: "CA file (api.tls_ca_file)",
                source,
            })?;
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::Refused {
                    what: "CA file (api.tls_ca_file)",
                    detail: e.to_string(),
                })?
        }
        None => Arc::new(
            rustls_platform_verifier::Verifier::new(provider()).map_err(|e| TlsError::Refused {
                what: "the system's CA certificates",
                detail: e.to_string(),
            })?,
        ),
    };
    let identity =
        match (&files.cert_file, &files.key_file) {
            (Some(cert), Some(key)) => Some(pem::read_certified_key(cert, key).map_err(
                |source| TlsError::File {
                    what: "client certificate",
                    source,
                },
            )?),
            _ => None,
        };
    Ok(Material { verifier, identity })
}

/// Verifies a server with the CA in force when the connection opens.
#[derive(Debug)]
struct CurrentVerifier(Arc<Shared>);

impl ServerCertVerifier for CurrentVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.material().verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .material()
            .verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .material()
            .verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.material().verifier.supported_verify_schemes()
    }
}

/// Presents the client certificate in force when the connection opens.
#[derive(Debug)]
struct CurrentIdentity(Arc<Shared>);

impl ResolvesClientCert for CurrentIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.material().identity.clone()
    }

    fn has_certs(&self) -> bool {
        self.0.material().identity.is_some()
    }
}
