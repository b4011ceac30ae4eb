//! TLS for test clusters: certificates made with the `openssl` command in
//! the test's own directory (a CA, a certificate per node for 127.0.0.1
//! good for server and client authentication, a rogue CA for the negative
//! cases), and an HTTPS client for the harness's requests.

use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls_pki_types::pem::PemObject;

use crate::HttpAnswer;

/// Serial numbers of the certificates a test process issues: each new
/// certificate gets its own, so a rotated one is told from the old one.
static NEXT_SERIAL: AtomicU32 = AtomicU32::new(1000);

/// Runs `openssl` with `args` in `dir`; panics with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (install the openssl package)");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate and its private key (PEM files).
#[derive(Debug, Clone)]
pub struct CertPair {
    /// The certificate.
    pub cert: PathBuf,
    /// Its key (mode 0600).
    pub key: PathBuf,
}

/// A certificate authority made for one test.
#[derive(Debug, Clone)]
pub struct TestCa {
    /// The CA's certificate (PEM).
    pub cert: PathBuf,
    key: PathBuf,
    dir: PathBuf,
}

impl TestCa {
    /// A new CA named `name`, its files in `dir/name/`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let dir = dir.join(name);
        fs::create_dir_all(&dir).expect("CA dir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "30",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        TestCa {
            cert: dir.join("ca.crt"),
            key: dir.join("ca.key"),
            dir,
        }
    }

    /// A certificate for `name` signed by this CA, valid for 127.0.0.1,
    /// for both server and client authentication, with a serial number
    /// of its own; files `name-<serial>.crt` / `.key` in the CA's directory.
    pub fn issue(&self, name: &str) -> CertPair {
        let serial = NEXT_SERIAL.fetch_add(1, Ordering::Relaxed);
        let base = format!("{name}-{serial}");
        let ext = self.dir.join(format!("{base}.ext"));
        fs::write(
            &ext,
            "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth,clientAuth\n\
             subjectAltName=IP:127.0.0.1\n",
        )
        .expect("write extensions");
        let (crt, key, csr) = (
            format!("{base}.crt"),
            format!("{base}.key"),
            format!("{base}.csr"),
        );
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &serial.to_string(),
                "-days",
                "30",
                "-out",
                &crt,
                "-extfile",
                &format!("{base}.ext"),
            ],
        );
        let pair = CertPair {
            cert: self.dir.join(crt),
            key: self.dir.join(key),
        };
        fs::set_permissions(&pair.key, fs::Permissions::from_mode(0o600)).expect("chmod key");
        let _ = fs::remove_file(self.dir.join(csr));
        pair
    }

    /// The CA's key file (to show it is never needed by an agent).
    pub fn key(&self) -> &Path {
        &self.key
    }
}

/// A node's `[api]` TLS settings in a test cluster.
#[derive(Debug, Clone)]
pub struct NodeTls {
    /// `api.tls_ca_file`: the CA its peers' certificates are signed by.
    pub ca: PathBuf,
    /// `api.tls_cert_file` / `tls_key_file`.
    pub pair: CertPair,
    /// `api.tls_client_ca_file`.
    pub client_ca: Option<PathBuf>,
    /// `api.verify_client`, when written.
    pub verify_client: Option<String>,
}

impl NodeTls {
    /// A node of `ca`'s cluster with its own certificate, requiring
    /// client certificates from the same CA.
    pub fn mutual(ca: &TestCa, node: &str) -> NodeTls {
        NodeTls {
            ca: ca.cert.clone(),
            pair: ca.issue(node),
            client_ca: Some(ca.cert.clone()),
            verify_client: None,
        }
    }

    /// The `[api]` lines.
    pub fn api_toml(&self) -> String {
        let mut text = format!(
            "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\ntls_ca_file = \"{}\"\n",
            self.pair.cert.display(),
            self.pair.key.display(),
            self.ca.display()
        );
        if let Some(ca) = &self.client_ca {
            text.push_str(&format!("tls_client_ca_file = \"{}\"\n", ca.display()));
        }
        if let Some(v) = &self.verify_client {
            text.push_str(&format!("verify_client = \"{v}\"\n"));
        }
        text
    }
}

/// The certificates of a PEM file.
pub fn read_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An HTTPS client for loopback: trusts one CA, presents a certificate or none.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
}

impl TlsClient {
    /// Trusts `ca`; presents `identity` when given.
    pub fn new(ca: &Path, identity: Option<&CertPair>) -> TlsClient {
        let mut roots = rustls::RootCertStore::empty();
        for cert in read_certs(ca) {
            roots.add(cert).expect("a CA certificate");
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
        let config = match identity {
            Some(pair) => {
                let key = PrivateKeyDer::from_pem_file(&pair.key).expect("a private key");
                builder
                    .with_client_auth_cert(read_certs(&pair.cert), key)
                    .expect("a client certificate")
            }
            None => builder.with_no_client_auth(),
        };
        TlsClient {
            config: Arc::new(config),
        }
    }

    fn connect(
        &self,
        port: u16,
    ) -> io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
        let tcp = TcpStream::connect(("127.0.0.1", port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
        let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let conn = rustls::ClientConnection::new(self.config.clone(), name)
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(rustls::StreamOwned::new(conn, tcp))
    }

    /// `method path` over HTTPS: the whole answer, or the error that ended
    /// the connection (a refused handshake is an error, not an answer).
    pub fn request(&self, port: u16, method: &str, path: &str) -> io::Result<HttpAnswer> {
        let mut s = self.connect(port)?;
        let req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        s.write_all(req.as_bytes())?;
        let mut buf = Vec::new();
        match s.read_to_end(&mut buf) {
            Ok(_) => {}
            // A server that closes without close_notify after a complete
            // answer: the answer stands.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !buf.is_empty() => {}
            Err(e) => return Err(e),
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if status == 0 {
            return Err(io::Error::other(format!("not an HTTP answer: {text:?}")));
        }
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok(HttpAnswer { status, body })
    }

    /// The certificate the server at `port` presents to a new connection (DER).
    pub fn served_certificate(&self, port: u16) -> io::Result<Vec<u8>> {
        let mut s = self.connect(port)?;
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        s.conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .ok_or_else(|| io::Error::other("no certificate presented"))
    }
}
