//! The fence guard: a small process beside the postmaster that stops it
//! when the primary's "writable until" deadline passes without being
//! pushed forward. The agent pushes the deadline at every lease renewal;
//! a frozen (SIGSTOP), crashed or OOM-killed agent stops pushing, and the
//! guard stops PostgreSQL before any other member can hold the lease.
//!
//! The guard is the same `pgwarden` binary (`pgwarden fence-guard`), in its
//! own process group so that neither a terminal nor systemd's
//! `KillMode=process` takes it down with the agent; a restarted agent takes
//! it over through its pid file. Deadlines are `CLOCK_MONOTONIC`
//! nanoseconds, the one clock both processes share that never jumps.
//! This module knows nothing of leases: only "writable until T".

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::files::server_log;

/// When the guard signals the postmaster: fast shutdown, then immediate,
/// then SIGKILL — all before the lease ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// SIGINT (fast shutdown) at this `CLOCK_BOOTTIME` reading.
    pub sigint_at: u64,
    /// SIGQUIT (immediate shutdown).
    pub sigquit_at: u64,
    /// SIGKILL of the postmaster.
    pub sigkill_at: u64,
}

impl Deadlines {
    /// Deadlines ending `margin` before `lease_end`: fast stop at
    /// `lease_end − margin`, immediate at `− margin/2`, kill at `− margin/4`.
    pub fn before(lease_end: Instant, margin: Duration) -> Deadlines {
        let end = crate::boottime::from_instant(lease_end);
        let m = margin.as_nanos() as u64;
        Deadlines {
            sigint_at: end.saturating_sub(m),
            sigquit_at: end.saturating_sub(m / 2),
            sigkill_at: end.saturating_sub(m / 4),
        }
    }

    fn render(&self, postmaster: i32) -> String {
        format!(
            "{postmaster} {} {} {}\n",
            self.sigint_at, self.sigquit_at, self.sigkill_at
        )
    }

    fn parse(text: &str) -> Option<(i32, Deadlines)> {
        let mut it = text.split_whitespace();
        let pid = it.next()?.parse().ok()?;
        let d = Deadlines {
            sigint_at: it.next()?.parse().ok()?,
            sigquit_at: it.next()?.parse().ok()?,
            sigkill_at: it.next()?.parse().ok()?,
        };
        Some((pid, d))
    }
}

/// The deadline file of a data directory (`<data_dir>.fence`).
pub fn deadline_file(data_dir: &Path) -> PathBuf {
    PathBuf::from(format!(
        "{}.fence",
        data_dir.to_string_lossy().trim_end_matches('/')
    ))
}

fn pid_file(data_dir: &Path) -> PathBuf {
    PathBuf::from(format!(
        "{}.fence.pid",
        data_dir.to_string_lossy().trim_end_matches('/')
    ))
}

/// The agent's handle on the guard of one data directory.
#[derive(Debug)]
pub struct FenceGuard {
    data_dir: PathBuf,
    guard_pid: Option<i32>,
    postmaster: Option<i32>,
}

/// The guard could not be started or told.
#[derive(Debug, thiserror::Error)]
#[error("fence guard: {0}")]
pub struct GuardError(String);

impl FenceGuard {
    /// The guard of `data_dir`; takes over one left running by a previous agent.
    pub fn new(data_dir: &Path) -> FenceGuard {
        let mut g = FenceGuard {
            data_dir: data_dir.to_path_buf(),
            guard_pid: None,
            postmaster: None,
        };
        if let Ok(text) = fs::read_to_string(pid_file(data_dir)) {
            let mut it = text.split_whitespace();
            let guard = it.next().and_then(|s| s.parse::<i32>().ok());
            let pm = it.next().and_then(|s| s.parse::<i32>().ok());
            if let (Some(guard), Some(pm)) = (guard, pm) {
                if is_guard(guard) {
                    tracing::info!(
                        "took over the running fence guard (pid {guard}) of postmaster {pm}"
                    );
                    g.guard_pid = Some(guard);
                    g.postmaster = Some(pm);
                }
            }
        }
        g
    }

    /// Whether a guard process is running for this data directory.
    pub fn is_running(&self) -> bool {
        self.guard_pid.is_some_and(is_guard)
    }

    /// Makes PostgreSQL (postmaster `postmaster`) writable until `deadlines`:
    /// writes the deadline file, and starts the guard when none watches this postmaster.
    pub fn arm(&mut self, postmaster: i32, deadlines: Deadlines) -> Result<(), GuardError> {
        let file = deadline_file(&self.data_dir);
        let tmp = file.with_extension("fence.tmp");
        fs::write(&tmp, deadlines.render(postmaster))
            .and_then(|()| fs::rename(&tmp, &file))
            .map_err(|e| GuardError(format!("cannot write {}: {e}", file.display())))?;
        if self.is_running() && self.postmaster == Some(postmaster) {
            return Ok(());
        }
        if let Some(old) = self.guard_pid.take() {
            // It watches a postmaster that is gone; it exits by itself, but
            // two guards must never race on one deadline file.
            let _ = kill(Pid::from_raw(old), Signal::SIGTERM);
        }
        let exe = std::env::current_exe()
            .map_err(|e| GuardError(format!("cannot find the pgwarden binary: {e}")))?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(server_log(&self.data_dir))
            .map_err(|e| GuardError(format!("cannot open the server log: {e}")))?;
        let log_err = log.try_clone().map_err(|e| GuardError(e.to_string()))?;
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(exe)
                .arg("fence-guard")
                .arg("--deadline-file")
                .arg(&file)
                .stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log_err))
                .process_group(0)
                .spawn()
                .map_err(|e| GuardError(format!("cannot start: {e}")))?
        };
        let pid = child.id() as i32;
        // The guard is not waited for by the agent: it must outlive it.
        std::mem::forget(child);
        let _ = fs::write(pid_file(&self.data_dir), format!("{pid} {postmaster}\n"));
        tracing::info!("fence guard started (pid {pid}): it stops postmaster {postmaster} if the lease deadline passes");
        self.guard_pid = Some(pid);
        self.postmaster = Some(postmaster);
        Ok(())
    }

    /// This node is no longer a primary: the guard is told to leave (the
    /// deadline file goes; it exits at its next look).
    pub fn disarm(&mut self) {
        let file = deadline_file(&self.data_dir);
        if file.exists() {
            let _ = fs::remove_file(&file);
        }
        if let Some(pid) = self.guard_pid.take() {
            // It would leave by itself within 20 ms; a signal makes it certain.
            if is_guard(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            let _ = fs::remove_file(pid_file(&self.data_dir));
        }
        self.postmaster = None;
    }
}

/// A live process running `pgwarden fence-guard`.
fn is_guard(pid: i32) -> bool {
    let alive = kill(Pid::from_raw(pid), None).is_ok();
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true);
    alive && !zombie && String::from_utf8_lossy(&cmdline).contains("fence-guard")
}

/// The guard process: watches the deadline file every 20 ms; exits when
/// the file is gone (no longer a primary) or its postmaster is; otherwise
/// signals the postmaster as each deadline passes. Returns the exit code.
pub fn run_guard(deadline_file: &Path) -> i32 {
    let say = |msg: &str| eprintln!("pgwarden fence-guard[{}]: {msg}", std::process::id());
    say(&format!("watching {}", deadline_file.display()));
    let mut sent: Option<Signal> = None;
    loop {
        let text = match fs::read_to_string(deadline_file) {
            Ok(t) => t,
            Err(_) => {
                say("deadline file removed: this node is no longer a primary; exiting");
                return 0;
            }
        };
        let Some((pm, d)) = Deadlines::parse(&text) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let pid = Pid::from_raw(pm);
        if kill(pid, None).is_err() {
            say(&format!("postmaster {pm} is gone; exiting"));
            return 0;
        }
        let now = crate::boottime::now_ns();
        let due = if now >= d.sigkill_at {
            Some(Signal::SIGKILL)
        } else if now >= d.sigquit_at {
            Some(Signal::SIGQUIT)
        } else if now >= d.sigint_at {
            Some(Signal::SIGINT)
        } else {
            None
        };
        match due {
            Some(sig) if sent != Some(sig) => {
                say(&format!(
                    "the primary's lease deadline passed without renewal (the agent is frozen or gone): sending {sig:?} to postmaster {pm}"
                ));
                let _ = kill(pid, sig);
                sent = Some(sig);
            }
            Some(_) => {}
            None => sent = None,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_trip_and_come_in_order_before_the_lease_end() {
        let end = Instant::now() + Duration::from_secs(10);
        let d = Deadlines::before(end, Duration::from_secs(2));
        assert!(d.sigint_at < d.sigquit_at && d.sigquit_at < d.sigkill_at);
        assert!(d.sigkill_at < crate::boottime::from_instant(end));
        assert_eq!(Deadlines::parse(&d.render(42)), Some((42, d)));
        assert_eq!(Deadlines::parse("garbage"), None);
    }
}
