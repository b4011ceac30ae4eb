//! The postmaster: started by the agent, adopted after an agent restart,
//! watched for crashes, stopped in the mode asked for.
//!
//! PostgreSQL runs in its own process group and session, with its stderr
//! in a file rather than a pipe to the agent, so that the agent can die or
//! be upgraded without taking the database down (systemd `KillMode=process`).

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::binaries::Binaries;
use super::files::server_log;
use super::runas::RunAs;

/// Why the postmaster could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum PostmasterError {
    /// The log file could not be opened.
    #[error("cannot open the server log {path}: {source}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `postgres` could not be spawned.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The binary.
        program: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// It did not stop, even after escalation.
    #[error("postmaster {pid} did not stop within {waited:?}")]
    StopTimeout {
        /// Its pid.
        pid: i32,
        /// How long the agent waited.
        waited: Duration,
    },
}

/// Why a running postmaster found through `postmaster.pid` is not adopted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdoptRefusal {
    /// The pid file names a process that runs something else.
    #[error("postmaster.pid names pid {pid}, which is {what}, not postgres")]
    NotPostgres {
        /// The pid.
        pid: i32,
        /// What it runs.
        what: String,
    },
    /// The process works in another directory.
    #[error("postmaster.pid names pid {pid}, a postgres serving {cwd}, not this data directory")]
    OtherDataDir {
        /// The pid.
        pid: i32,
        /// Its working directory.
        cwd: String,
    },
    /// The agent may not signal it.
    #[error("postmaster {pid} belongs to another user; the agent cannot manage it")]
    NotPermitted {
        /// The pid.
        pid: i32,
    },
}

/// How to stop PostgreSQL (PostgreSQL's own three modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// SIGTERM: wait for sessions to end.
    Smart,
    /// SIGINT: roll back sessions, checkpoint, stop.
    Fast,
    /// SIGQUIT: stop at once, crash recovery at the next start.
    Immediate,
}

impl StopMode {
    fn signal(self) -> Signal {
        match self {
            StopMode::Smart => Signal::SIGTERM,
            StopMode::Fast => Signal::SIGINT,
            StopMode::Immediate => Signal::SIGQUIT,
        }
    }
}

/// The contents of `postmaster.pid` that matter to the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidFile {
    /// The postmaster's pid.
    pub pid: i32,
    /// The data directory it serves.
    pub data_dir: PathBuf,
    /// Start time (Unix seconds).
    pub start_time: i64,
    /// Its port.
    pub port: u16,
    /// Its status line (`ready`, `starting`, `stopping`, `standby`), when written.
    pub status: Option<String>,
}

/// Reads `postmaster.pid`, if present and well-formed.
pub fn read_pid_file(data_dir: &Path) -> Option<PidFile> {
    let text = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    parse_pid_file(&text)
}

/// Parses the text of `postmaster.pid`.
pub fn parse_pid_file(text: &str) -> Option<PidFile> {
    let lines: Vec<&str> = text.lines().collect();
    Some(PidFile {
        pid: lines.first()?.trim().parse().ok()?,
        data_dir: PathBuf::from(lines.get(1)?.trim()),
        start_time: lines
            .get(2)
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
        port: lines
            .get(3)
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
        status: lines
            .get(7)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
    })
}

/// How the postmaster left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// Exit status in words (`signal: 9 (SIGKILL)`), or "gone" for an adopted one.
    pub how: String,
}

/// A running postmaster the agent is responsible for.
#[derive(Debug)]
pub struct Postmaster {
    pid: Pid,
    child: Option<tokio::process::Child>,
    started: Instant,
}

impl Postmaster {
    /// Starts `postgres -D data_dir` as `runas`, stderr appended to the server log.
    pub fn spawn(
        bins: &Binaries,
        runas: &RunAs,
        data_dir: &Path,
    ) -> Result<Postmaster, PostmasterError> {
        let log_path = server_log(data_dir);
        let log = open_log(&log_path, runas).map_err(|source| PostmasterError::Log {
            path: log_path.clone(),
            source,
        })?;
        let log_err = log.try_clone().map_err(|source| PostmasterError::Log {
            path: log_path.clone(),
            source,
        })?;
        let program = bins.program("postgres");
        let mut cmd = std::process::Command::new(&program);
        cmd.arg("-D").arg(data_dir);
        runas.apply(&mut cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .process_group(0);
        let child = tokio::process::Command::from(cmd)
            .kill_on_drop(false)
            .spawn()
            .map_err(|source| PostmasterError::Spawn {
                program: program.clone(),
                source,
            })?;
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        Ok(Postmaster {
            pid: Pid::from_raw(pid),
            child: Some(child),
            started: Instant::now(),
        })
    }

    /// Adopts the postmaster `postmaster.pid` names, after checking it is a
    /// live `postgres` working in this data directory. `Ok(None)`: nothing
    /// is running (no pid file, or a stale one).
    pub fn adopt(data_dir: &Path) -> Result<Option<Postmaster>, AdoptRefusal> {
        let Some(pidfile) = read_pid_file(data_dir) else {
            return Ok(None);
        };
        let pid = Pid::from_raw(pidfile.pid);
        match kill(pid, None) {
            Ok(()) => {}
            Err(Errno::EPERM) => return Err(AdoptRefusal::NotPermitted { pid: pidfile.pid }),
            Err(_) => return Ok(None),
        }
        if is_zombie(pid) {
            return Ok(None);
        }
        let what = process_name(pid).unwrap_or_else(|| "unknown".into());
        if what != "postgres" && what != "postmaster" {
            return Err(AdoptRefusal::NotPostgres {
                pid: pidfile.pid,
                what,
            });
        }
        // The postmaster chdirs to its data directory: its cwd says which one it serves.
        let cwd = fs::read_link(format!("/proc/{}/cwd", pidfile.pid)).ok();
        let ours = fs::canonicalize(data_dir).ok();
        if cwd.is_none() || cwd != ours {
            return Err(AdoptRefusal::OtherDataDir {
                pid: pidfile.pid,
                cwd: cwd
                    .map(|c| c.display().to_string())
                    .unwrap_or_else(|| "unknown".into()),
            });
        }
        Ok(Some(Postmaster {
            pid,
            child: None,
            started: Instant::now(),
        }))
    }

    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// True when the agent started it (false: adopted).
    pub fn is_child(&self) -> bool {
        self.child.is_some()
    }

    /// How long since the agent started or adopted it.
    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether it has exited, without waiting.
    pub fn poll_exit(&mut self) -> Option<Exit> {
        match &mut self.child {
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => Some(Exit {
                    how: status.to_string(),
                }),
                Ok(None) => None,
                Err(e) => Some(Exit {
                    how: format!("cannot wait for it: {e}"),
                }),
            },
            None => {
                let gone = matches!(kill(self.pid, None), Err(Errno::ESRCH)) || is_zombie(self.pid);
                gone.then(|| Exit {
                    how: "exited (adopted process, status unknown)".into(),
                })
            }
        }
    }

    /// Sends the mode's signal only.
    pub fn signal(&self, mode: StopMode) {
        let _ = kill(self.pid, mode.signal());
    }

    /// Stops it in `mode`, escalating to immediate after `timeout`, and to
    /// SIGKILL of the postmaster after another `timeout` (its children then
    /// exit by themselves when they notice it is gone).
    pub async fn stop(
        &mut self,
        mode: StopMode,
        timeout: Duration,
    ) -> Result<Exit, PostmasterError> {
        let started = Instant::now();
        let mut steps = vec![mode.signal()];
        if mode != StopMode::Immediate {
            steps.push(Signal::SIGQUIT);
        }
        steps.push(Signal::SIGKILL);
        for signal in steps {
            if let Some(exit) = self.poll_exit() {
                return Ok(exit);
            }
            if signal != mode.signal() {
                tracing::warn!(
                    pid = self.pid(),
                    ?signal,
                    "postmaster still running after {timeout:?}, escalating"
                );
            }
            let _ = kill(self.pid, signal);
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                if let Some(exit) = self.poll_exit() {
                    return Ok(exit);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Err(PostmasterError::StopTimeout {
            pid: self.pid(),
            waited: started.elapsed(),
        })
    }
}

fn open_log(path: &Path, runas: &RunAs) -> std::io::Result<fs::File> {
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            fs::create_dir_all(dir)?;
            runas.give(dir)?;
        }
    }
    let f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    runas.give(path)?;
    Ok(f)
}

/// The name of the program a process runs: the executable's file name,
/// or its `comm` when the executable link cannot be read.
fn process_name(pid: Pid) -> Option<String> {
    if let Ok(exe) = fs::read_link(format!("/proc/{pid}/exe")) {
        let name = exe.file_name()?.to_string_lossy().into_owned();
        return Some(name.trim_end_matches(" (deleted)").to_string());
    }
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// A zombie still answers `kill(pid, 0)` but is not running.
fn is_zombie(pid: Pid) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_files_are_parsed_with_and_without_status() {
        let text = "4242\n/var/lib/postgresql/15/main\n1764158400\n5432\n/var/run/postgresql\n*\n  5432001         0\nready   \n";
        let p = parse_pid_file(text).unwrap();
        assert_eq!(p.pid, 4242);
        assert_eq!(p.data_dir, PathBuf::from("/var/lib/postgresql/15/main"));
        assert_eq!(p.port, 5432);
        assert_eq!(p.status.as_deref(), Some("ready"));
        let early = parse_pid_file("17\n/d\n").unwrap();
        assert_eq!(early.status, None);
        assert!(parse_pid_file("").is_none());
        assert!(parse_pid_file("x\n/d\n").is_none());
    }

    #[test]
    fn a_pid_file_naming_a_dead_process_is_not_adopted() {
        let tmp = tempfile::tempdir().unwrap();
        // pid_max is far below i32::MAX - 1 on Linux: this pid cannot exist.
        fs::write(
            tmp.path().join("postmaster.pid"),
            format!("{}\n{}\n", i32::MAX - 1, tmp.path().display()),
        )
        .unwrap();
        assert!(matches!(Postmaster::adopt(tmp.path()), Ok(None)));
    }

    #[test]
    fn a_pid_file_naming_another_program_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let me = std::process::id();
        fs::write(
            tmp.path().join("postmaster.pid"),
            format!("{me}\n{}\n", tmp.path().display()),
        )
        .unwrap();
        match Postmaster::adopt(tmp.path()) {
            Err(AdoptRefusal::NotPostgres { pid, .. }) => assert_eq!(pid as u32, me),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
