//! Secret files: passwords, tokens and the cluster secret are never in the
//! configuration itself, only the paths of files that hold them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why a secret file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read.
    #[error("cannot read secret file {path}: {source} (create it, mode 0600, readable by the agent)")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file holds nothing but whitespace.
    #[error("secret file {path} is empty (write the secret on its first line)")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Reads a secret: the file's first line, without the line ending.
pub fn read_secret(path: &Path) -> Result<String, SecretError> {
    let text = fs::read_to_string(path).map_err(|source| SecretError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let first = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if first.trim().is_empty() {
        return Err(SecretError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(first.to_string())
}

/// True when anyone on the machine may read the file (mode o+r).
pub fn is_world_readable(path: &Path) -> std::io::Result<bool> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o004 != 0)
}
