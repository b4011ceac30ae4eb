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

/// What `pg_controldata` says of a stopped cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlData {
    /// `Database cluster state` (`shut down`, `shut down in recovery`, ...).
    pub state: String,
    /// `Latest checkpoint location`: after a clean shutdown, the start of
    /// the shutdown checkpoint, the last record the cluster wrote.
    pub checkpoint: super::Lsn,
    /// `Latest checkpoint's TimeLineID`.
    pub timeline: u32,
}

/// Runs `pg_controldata` on `data_dir` as `runas`.
pub async fn controldata(
    bins: &Binaries,
    runas: &RunAs,
    data_dir: &Path,
) -> Result<ControlData, CtlError> {
    let program = bins.program("pg_controldata");
    let mut cmd = Command::new(&program);
    cmd.arg(data_dir);
    runas.apply(&mut cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| CtlError::Spawn {
            program: program.clone(),
            source,
        })?;
    let failed = |stderr: String| CtlError::Failed {
        program: program.clone(),
        status: out.status.to_string(),
        stderr,
    };
    if !out.status.success() {
        return Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    parse_controldata(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| failed("its output lacks the cluster state or the latest checkpoint".into()))
}

/// Reads the lines of `pg_controldata`'s output that the agent needs.
pub fn parse_controldata(text: &str) -> Option<ControlData> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim_start().strip_prefix(':'))
            .map(str::trim)
    };
    Some(ControlData {
        state: field("Database cluster state")?.to_string(),
        checkpoint: field("Latest checkpoint location")?.parse().ok()?,
        timeline: field("Latest checkpoint's TimeLineID")?.parse().ok()?,
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

/// Options for `pg_basebackup`.
pub struct BasebackupOptions<'a> {
    /// The (empty) target data directory.
    pub data_dir: &'a Path,
    /// The source's host.
    pub host: &'a str,
    /// The source's port.
    pub port: u16,
    /// The replication user.
    pub user: &'a str,
    /// `application_name` for the copy's connection.
    pub application_name: &'a str,
    /// The libpq password file holding the replication password.
    pub passfile: &'a Path,
    /// Skip fsync (test setups).
    pub no_sync: bool,
    /// At most this many kilobytes a second (`--max-rate`).
    pub max_rate_kb: Option<u64>,
}

/// Copies a running member's data directory with `pg_basebackup -Xs
/// -c fast -P`, as `runas`, the password from a passfile (never the command
/// line). `progress` is called with each percentage it reports.
pub async fn basebackup(
    bins: &Binaries,
    runas: &RunAs,
    opts: &BasebackupOptions<'_>,
    progress: &(dyn Fn(u8) + Send + Sync),
) -> Result<(), CtlError> {
    use tokio::io::AsyncReadExt;

    let program = bins.program("pg_basebackup");
    let conninfo = format!(
        "host={} port={} user={} application_name={} passfile={} connect_timeout=10",
        opts.host,
        opts.port,
        opts.user,
        opts.application_name,
        opts.passfile.display()
    );
    let mut cmd = Command::new(&program);
    cmd.arg("-D")
        .arg(opts.data_dir)
        .arg("-d")
        .arg(conninfo)
        .args(["-X", "stream", "-c", "fast", "-P", "-w"]);
    if opts.no_sync {
        cmd.arg("--no-sync");
    }
    if let Some(kb) = opts.max_rate_kb {
        cmd.arg(format!("--max-rate={kb}"));
    }
    runas.apply(&mut cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| CtlError::Spawn {
            program: program.clone(),
            source,
        })?;
    let mut stderr_text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let mut buf = [0u8; 4096];
        let mut pending = String::new();
        loop {
            let n = stderr.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            pending.push_str(&String::from_utf8_lossy(&buf[..n]));
            // Progress lines end in '\r' on a terminal and '\n' otherwise.
            while let Some(pos) = pending.find(['\r', '\n']) {
                let line: String = pending.drain(..=pos).collect();
                if let Some(pct) = parse_progress(&line) {
                    progress(pct);
                } else if !line.trim().is_empty() {
                    stderr_text.push_str(line.trim());
                    stderr_text.push_str(" | ");
                }
            }
        }
    }
    let status = child.wait().await.map_err(|source| CtlError::Spawn {
        program: program.clone(),
        source,
    })?;
    if status.success() {
        return Ok(());
    }
    Err(CtlError::Failed {
        program,
        status: status.to_string(),
        stderr: stderr_text.trim_end_matches(" | ").to_string(),
    })
}

/// Runs `pg_rewind --source-server` into `data_dir` (stopped), as `runas`,
/// connecting to the new primary as the superuser through `passfile`.
pub async fn rewind(
    bins: &Binaries,
    runas: &RunAs,
    data_dir: &Path,
    source_host: &str,
    source_port: u16,
    passfile: &Path,
    no_sync: bool,
) -> Result<String, CtlError> {
    let program = bins.program("pg_rewind");
    let conninfo = format!(
        "host={source_host} port={source_port} user={SUPERUSER} dbname=postgres passfile={} connect_timeout=10",
        passfile.display()
    );
    let mut cmd = Command::new(&program);
    cmd.arg("-D")
        .arg(data_dir)
        .arg(format!("--source-server={conninfo}"))
        .arg("--progress");
    if no_sync {
        cmd.arg("--no-sync");
    }
    runas.apply(&mut cmd);
    cmd.stdin(Stdio::null());
    let out = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| CtlError::Spawn {
            program: program.clone(),
            source,
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        return Ok(stderr);
    }
    let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
    Err(CtlError::Failed {
        program,
        status: out.status.to_string(),
        stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
    })
}

/// Asks a (newly promoted) primary for a `CHECKPOINT`, as the superuser:
/// on PostgreSQL 15 `pg_rewind` reads the source's timeline from its
/// control file, which only a checkpoint updates after a promotion.
pub async fn remote_checkpoint(host: &str, port: u16, password: &str) -> Result<(), String> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(host)
        .port(port)
        .user(SUPERUSER)
        .password(password)
        .dbname("postgres")
        .application_name("pgwarden-rewind")
        .connect_timeout(std::time::Duration::from_secs(5));
    let connect = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        cfg.connect(tokio_postgres::NoTls),
    );
    let (client, conn) = connect
        .await
        .map_err(|_| format!("{host}:{port} did not answer within 10 s"))?
        .map_err(|e| format!("cannot connect to {host}:{port} as {SUPERUSER}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        client.batch_execute("CHECKPOINT"),
    )
    .await
    .map_err(|_| format!("CHECKPOINT on {host}:{port} took longer than 60 s"))?
    .map_err(|e| format!("CHECKPOINT on {host}:{port} failed: {e}"))
}

/// The percentage in a `pg_basebackup -P` line: `30728/30728 kB (100%), 1/1 tablespace`.
pub fn parse_progress(line: &str) -> Option<u8> {
    let open = line.find('(')?;
    let close = line[open..].find("%)")? + open;
    line[open + 1..close].trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controldata_gives_the_state_and_the_last_checkpoint() {
        let text = "pg_control version number:            1300\n\
            Database cluster state:               shut down\n\
            Latest checkpoint location:           0/3000060\n\
            Latest checkpoint's REDO location:    0/3000028\n\
            Latest checkpoint's TimeLineID:       2\n";
        let c = parse_controldata(text).unwrap();
        assert_eq!(c.state, "shut down");
        assert_eq!(c.checkpoint, "0/3000060".parse().unwrap());
        assert_eq!(c.timeline, 2);
        assert_eq!(parse_controldata("garbage"), None);
    }

    #[test]
    fn basebackup_progress_lines_give_their_percentage() {
        assert_eq!(
            parse_progress("30728/30728 kB (100%), 1/1 tablespace"),
            Some(100)
        );
        assert_eq!(
            parse_progress("    0/30728 kB (0%), 0/1 tablespace\r"),
            Some(0)
        );
        assert_eq!(
            parse_progress("pg_basebackup: error: connection failed"),
            None
        );
        assert_eq!(parse_progress("(abc%)"), None);
    }
}
