//! What a client command (`pgwarden status`, `list`, the operator
//! actions) needs from a node's configuration: where the agent is, its
//! token file, and the TLS files to reach it with.
//!
//! Lenient on purpose: an operator asking for the status may not be able
//! to read the replication passwords, and a node being set up may not have
//! them yet; neither should keep `pgwarden status --config` from working.
//! So only the `[api]` keys are checked here (types, unknown keys, the
//! rules between the TLS keys); every other section is read for what it
//! says and otherwise left to `check-config`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::load::{read_file, ConfigError};
use super::model::ClientTlsFiles;

/// A node's configuration as a client of its agent sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// `api.listen`.
    pub listen: SocketAddr,
    /// How clients reach the agent: `api.advertise_url`, else this node's
    /// entry in `cluster.members`; `None` when neither can be found.
    pub advertise_url: Option<String>,
    /// `api.token_file` (only its path: a client reads it when it needs it).
    pub token_file: Option<PathBuf>,
    /// The agent speaks HTTPS (`api.tls_cert_file` is set).
    pub serves_tls: bool,
    /// `api.tls_ca_file` to verify the agent with, and the node's own
    /// certificate and key, which a client on the node presents.
    pub tls: ClientTlsFiles,
}

/// Reads what a client needs from the configuration at `path`, with the
/// process's environment overrides. Fails only on problems with the file
/// as a whole or with `[api]`.
pub fn load_for_client(path: &Path) -> Result<ClientSettings, ConfigError> {
    load_for_client_with_env(path, std::env::vars_os())
}

/// [`load_for_client`] with the given environment instead of the process's.
pub fn load_for_client_with_env<I, K, V>(path: &Path, env: I) -> Result<ClientSettings, ConfigError>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<OsString>,
    V: Into<OsString>,
{
    let (config, report) = read_file(path, env)?;
    let (problems, _) = report.finish();
    let problems: Vec<_> = problems
        .into_iter()
        .filter(|p| p.key == "(file)" || p.key == "api" || p.key.starts_with("api."))
        .collect();
    if !problems.is_empty() {
        return Err(ConfigError {
            file: path.to_path_buf(),
            problems,
        });
    }
    let api = &config.api;
    let advertise_url = api
        .advertise_url
        .clone()
        .or_else(|| config.me().map(|m| m.api_url.clone()))
        .filter(|u| !u.is_empty());
    Ok(ClientSettings {
        listen: api.listen,
        advertise_url,
        token_file: api.token_file.clone(),
        serves_tls: api.serves_tls(),
        tls: api.client_tls(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, text).unwrap();
        (dir, file)
    }

    const NO_ENV: [(&str, &str); 0] = [];

    #[test]
    fn given_a_node_whose_secret_files_do_not_exist_then_a_client_still_finds_its_agent() {
        let (_dir, file) = write(
            r#"[node]
name = "pg2"
data_dir = "/var/lib/pg"
[api]
listen = "0.0.0.0:8008"
token_file = "/nonexistent/api.token"
tls_cert_file = "/nonexistent/api.crt"
tls_key_file = "/nonexistent/api.key"
tls_ca_file = "/nonexistent/ca.crt"
[cluster]
name = "main"
members = [{ name = "pg1", api_url = "https://10.0.0.1:8008" }, { name = "pg2", api_url = "https://10.0.0.2:8008" }]
[replication]
password_file = "/nonexistent/replicator.pass"
"#,
        );
        let s = load_for_client_with_env(&file, NO_ENV).expect("lenient");
        assert_eq!(s.advertise_url.as_deref(), Some("https://10.0.0.2:8008"));
        assert!(s.serves_tls);
        assert_eq!(s.token_file, Some(PathBuf::from("/nonexistent/api.token")));
        assert_eq!(s.tls.ca_file, Some(PathBuf::from("/nonexistent/ca.crt")));
        assert_eq!(s.tls.key_file, Some(PathBuf::from("/nonexistent/api.key")));
    }

    #[test]
    fn given_a_mistake_in_api_then_the_client_is_told_and_other_sections_do_not_matter() {
        let (_dir, file) = write(
            "[node]\nname = \"pg1\"\nbogus = 1\n[api]\nlisten = \"localhost:8008\"\ntls_ca_fil = \"/x\"\n",
        );
        let e = load_for_client_with_env(&file, NO_ENV).unwrap_err();
        let keys: Vec<&str> = e.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["api.tls_ca_fil", "api.listen"], "{e}");
        let (_dir, file) = write("[node]\nname = \"pg1\"\nbogus = 1\n");
        let s = load_for_client_with_env(&file, NO_ENV).expect("no [api] problem");
        assert_eq!(s.listen.port(), 8008);
        assert_eq!(s.advertise_url, None);
        assert!(!s.serves_tls);
    }
}
