//! The PostgreSQL tools the agent runs as the data directory's owner:
//! `initdb` now; `pg_basebackup` and `pg_rewind` join it as cloning and
//! rejoining arrive.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::binaries::Binaries;
use super::conf::SUPERUSER;
use super::runas::RunAs;

/// A tool failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// It could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// It exited with an error.
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        /// The program.
        program: PathBuf,
        /// Its exit status.
        status: String,
        /// The last lines it wrote to stderr.
        stderr: String,
    },
    /// A temporary file for it could not be prepared.
    #[error("cannot prepare a temporary file for {what}: {source}")]
    Temp {
        /// What it was for.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Options for `initdb`.
pub struct InitdbOptions<'a> {
    /// The data directory (empty or missing).
    pub data_dir: &'a Path,
    /// The superuser's password, handed over in a private file.
    pub superuser_password: &'a str,
    /// Skip fsync (test setups that run PostgreSQL with `fsync = off`).
    pub no_sync: bool,
}

/// Runs `initdb` with data checksums (needed by pg_rewind, and catches
/// corruption) and SCRAM authentication; the superuser password goes in a
/// file only the PostgreSQL user can read, never on a command line.
pub fn initdb(bins: &Binaries, runas: &RunAs, opts: &InitdbOptions<'_>) -> Result<(), CtlError> {
    let pwdir = PrivateTempDir::new(runas)?;
    let pwfile = pwdir.path.join("pwfile");
    write_private(&pwfile, opts.superuser_password, runas).map_err(|source| CtlError::Temp {
        what: "the superuser password",
        source,
    })?;
    let program = bins.program("initdb");
    let mut cmd = Command::new(&program);
    cmd.arg("-D")
        .arg(opts.data_dir)
        .arg("--data-checksums")
        .arg("--auth-local=peer")
        .arg("--auth-host=scram-sha-256")
        .arg(format!("--username={SUPERUSER}"))
        .arg(format!("--pwfile={}", pwfile.display()))
        .arg("--encoding=UTF8");
    if opts.no_sync {
        cmd.arg("--no-sync");
    }
    run(cmd, runas, &program)
}

/// Runs a prepared command as `runas`, turning a failure into an error
/// carrying the tail of its stderr.
pub fn run(mut cmd: Command, runas: &RunAs, program: &Path) -> Result<(), CtlError> {
    runas.apply(&mut cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = cmd.output().map_err(|source| CtlError::Spawn {
        program: program.to_path_buf(),
        source,
    })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
    Err(CtlError::Failed {
        program: program.to_path_buf(),
        status: out.status.to_string(),
        stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
    })
}

/// Writes a 0600 file owned by `runas`.
fn write_private(path: &Path, contents: &str, runas: &RunAs) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    runas.give(path)
}

/// A 0700 directory owned by the PostgreSQL user, removed on drop: a
/// place for files a tool must read that nobody else may.
struct PrivateTempDir {
    path: PathBuf,
}

impl PrivateTempDir {
    fn new(runas: &RunAs) -> Result<Self, CtlError> {
        let temp = |source| CtlError::Temp {
            what: "a private directory",
            source,
        };
        let template = std::env::temp_dir().join("pgwarden-XXXXXX");
        let path = nix::unistd::mkdtemp(&template).map_err(|e| temp(e.into()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).map_err(temp)?;
        runas.give(&path).map_err(temp)?;
        Ok(PrivateTempDir { path })
    }
}

impl Drop for PrivateTempDir {
    fn drop(&mut self) {
        // Only our own files are in here; nothing of PostgreSQL's data.
        let _ = fs::remove_dir_all(&self.path);
    }
}
