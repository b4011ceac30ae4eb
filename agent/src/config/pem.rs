//! PEM files the configuration names for the API's TLS: this agent's
//! certificate chain and private key, and the CAs it trusts. Read into DER
//! here, so that `check-config` and the running agent judge a file the
//! same way; building TLS configurations from them is `crate::tls`'s work.
//!
//! Keys are parsed with the ring provider, the only one the agent uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a PEM file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source} (install the PEM file there, readable by the agent)")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file holds no `CERTIFICATE` block, or a damaged one.
    #[error("{path} holds no usable PEM certificate ({detail}); it must contain -----BEGIN CERTIFICATE----- blocks, this agent's certificate first, then any intermediates")]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// The file holds no private key, or one that cannot be parsed.
    #[error("{path} holds no usable PEM private key ({detail}); it must contain one -----BEGIN PRIVATE KEY----- (PKCS#8), -----BEGIN EC PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY----- block")]
    NoKey {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// A certificate of a CA file cannot be a trust anchor.
    #[error("{path}: a certificate cannot be used as a CA ({detail}); the file must hold the CA's PEM certificates")]
    BadCa {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The key is not the certificate's, or of a kind ring cannot sign with.
    #[error("the private key in {key} cannot be used with the certificate in {cert}: {detail}; install the key the certificate was issued for")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        detail: String,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|source| PemError::Unreadable {
        path: path.to_path_buf(),
        source,
    })
}

/// The certificates of a PEM file, in file order (a chain: the leaf first).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let bytes = read(path)?;
    let no_cert = |detail: String| PemError::NoCertificate {
        path: path.to_path_buf(),
        detail,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| no_cert(e.to_string()))?;
    if certs.is_empty() {
        return Err(no_cert("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

/// The private key of a PEM file (the first one).
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| PemError::NoKey {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// The CAs of a PEM file, as the roots a verifier trusts.
pub fn read_roots(path: &Path) -> Result<RootCertStore, PemError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(path)? {
        roots.add(cert).map_err(|e| PemError::BadCa {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// A certificate chain with its private key, checked to belong together:
/// what a TLS server presents, and what a client presents as its identity.
pub fn read_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, PemError> {
    let chain = read_certificates(cert)?;
    let der = read_private_key(key)?;
    CertifiedKey::from_der(chain, der, &rustls::crypto::ring::default_provider())
        .map(Arc::new)
        .map_err(|e| PemError::KeyMismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            detail: match e {
                rustls::Error::InconsistentKeys(_) => {
                    "it does not match the certificate's public key".into()
                }
                other => other.to_string(),
            },
        })
}
