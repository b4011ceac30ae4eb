//! Finding the PostgreSQL programs and their major version.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Why the PostgreSQL programs could not be found or identified.
#[derive(Debug, thiserror::Error)]
pub enum BinariesError {
    /// The configured or discovered directory lacks a program.
    #[error("{program} not found in {dir} (set node.bin_dir to the directory holding postgres, initdb, pg_basebackup)")]
    Missing {
        /// The program looked for.
        program: &'static str,
        /// Where.
        dir: PathBuf,
    },
    /// No directory was configured and none could be found.
    #[error("no PostgreSQL installation found: not in PATH, no pg_config, nothing under /usr/lib/postgresql (install PostgreSQL or set node.bin_dir)")]
    NotFound,
    /// `postgres --version` failed or printed something unexpected.
    #[error("cannot tell the version of {path}: {detail}")]
    Version {
        /// The `postgres` binary.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

/// The PostgreSQL programs the agent runs, from one installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    /// The directory holding them.
    pub dir: PathBuf,
    /// Major version (`15`).
    pub major: u32,
}

/// The programs the agent needs, all from the same directory.
const REQUIRED: &[&str] = &[
    "postgres",
    "initdb",
    "pg_basebackup",
    "pg_rewind",
    "pg_controldata",
];

impl Binaries {
    /// Finds the installation: `bin_dir` when configured, else the directory
    /// of `postgres` in PATH, else `pg_config --bindir`, else the newest
    /// `/usr/lib/postgresql/*/bin` (Debian's layout, where PATH has no server).
    pub fn locate(bin_dir: Option<&Path>) -> Result<Binaries, BinariesError> {
        let dir = match bin_dir {
            Some(d) => d.to_path_buf(),
            None => discover().ok_or(BinariesError::NotFound)?,
        };
        for program in REQUIRED {
            if !dir.join(program).is_file() {
                return Err(BinariesError::Missing {
                    program,
                    dir: dir.clone(),
                });
            }
        }
        let postgres = dir.join("postgres");
        let out = Command::new(&postgres)
            .arg("--version")
            .output()
            .map_err(|e| BinariesError::Version {
                path: postgres.clone(),
                detail: e.to_string(),
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        let major = parse_major(&text).ok_or_else(|| BinariesError::Version {
            path: postgres.clone(),
            detail: format!("unexpected output {:?}", text.trim()),
        })?;
        Ok(Binaries { dir, major })
    }

    /// The full path of a program of this installation.
    pub fn program(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn discover() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            // Follow symlinks (/usr/local/bin/postgres -> .../15/bin/postgres):
            // every tool must come from the same installation.
            let Ok(real) = std::fs::canonicalize(dir.join("postgres")) else {
                continue;
            };
            if let Some(real_dir) = real.parent() {
                if REQUIRED.iter().all(|p| real_dir.join(p).is_file()) {
                    return Some(real_dir.to_path_buf());
                }
            }
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && dir.join("postgres").is_file() {
            return Some(dir);
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let major = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((major, bin))
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, dir)| dir)
}

/// The major version from `postgres --version` output:
/// `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` → 15,
/// `postgres (PostgreSQL) 9.6.24` → 9.
pub fn parse_major(version_output: &str) -> Option<u32> {
    let after = version_output.split(')').nth(1)?.trim();
    let number = after.split_whitespace().next()?;
    number.split('.').next()?.parse().ok()
}

/// The major version a data directory was made by (its `PG_VERSION` file).
pub fn data_dir_major(data_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_dir.join("PG_VERSION")).ok()?;
    text.trim().split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_versions_are_read_from_version_output() {
        assert_eq!(
            parse_major("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some(15)
        );
        assert_eq!(parse_major("postgres (PostgreSQL) 17.2\n"), Some(17));
        assert_eq!(parse_major("postgres (PostgreSQL) 12.22\n"), Some(12));
        assert_eq!(parse_major("postgres (PostgreSQL) 18beta1\n"), None);
        assert_eq!(parse_major("garbage"), None);
    }
}
