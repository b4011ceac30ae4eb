//! The fence guard: a small process beside PostgreSQL that stops the
//! postmaster when the primary's "writable until" deadline passes without
//! being pushed forward. The agent arms it *before* anything can make
//! PostgreSQL writable and pushes the deadline at every lease renewal; a
//! frozen (SIGSTOP), crashed or OOM-killed agent stops pushing, and the
//! guard stops PostgreSQL before any other member can hold the lease.
//!
//! The guard is the same `pgwarden` binary (`pgwarden fence-guard`), in its
//! own process group so that neither a terminal nor systemd's
//! `KillMode=process` takes it down with the agent; a restarted agent takes
//! it over through its pid file. It watches the data directory, not one
//! pid: when a deadline passes it signals whatever postmaster
//! `postmaster.pid` names (checked to be a live `postgres` serving that
//! directory), so a postmaster restarted after a crash is guarded too, and
//! the guard can be armed before the postmaster it guards exists.
//! Deadlines are `CLOCK_BOOTTIME` nanoseconds ([`crate::boottime`]): both
//! processes read that clock, it never jumps, and a suspended machine's
//! deadline passes on time. This module knows nothing of leases: only
//! "writable until T".

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::files::server_log;
use super::postmaster::Postmaster;

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

    fn render(&self) -> String {
        format!(
            "{} {} {}\n",
            self.sigint_at, self.sigquit_at, self.sigkill_at
        )
    }

    fn parse(text: &str) -> Option<Deadlines> {
        let mut it = text.split_whitespace();
        let d = Deadlines {
            sigint_at: it.next()?.parse().ok()?,
            sigquit_at: it.next()?.parse().ok()?,
            sigkill_at: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(d)
    }

    /// The signal due at `now`, if any.
    fn due(&self, now: u64) -> Option<Signal> {
        if now >= self.sigkill_at {
            Some(Signal::SIGKILL)
        } else if now >= self.sigquit_at {
            Some(Signal::SIGQUIT)
        } else if now >= self.sigint_at {
            Some(Signal::SIGINT)
        } else {
            None
        }
    }
}

/// The deadline file of a data directory (`<data_dir>.fence`).
pub fn deadline_file(data_dir: &Path) -> PathBuf {
    beside(data_dir, "fence")
}

fn pid_file(data_dir: &Path) -> PathBuf {
    beside(data_dir, "fence.pid")
}

fn beside(data_dir: &Path, ext: &str) -> PathBuf {
    PathBuf::from(format!(
        "{}.{ext}",
        data_dir.to_string_lossy().trim_end_matches('/')
    ))
}

/// The agent's handle on the guard of one data directory.
#[derive(Debug)]
pub struct FenceGuard {
    data_dir: PathBuf,
    guard_pid: Option<i32>,
}

/// The guard could not be started or told.
#[derive(Debug, thiserror::Error)]
#[error("fence guard: {0}")]
pub struct GuardError(String);

impl FenceGuard {
    /// The guard of `data_dir`; takes over one left running by a previous
    /// agent (one of an older kind, which watched a single pid, is replaced
    /// at the next arming).
    pub fn new(data_dir: &Path) -> FenceGuard {
        let mut g = FenceGuard {
            data_dir: data_dir.to_path_buf(),
            guard_pid: None,
        };
        let running = fs::read_to_string(pid_file(data_dir))
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse::<i32>().ok())
            .filter(|pid| guard_kind(*pid).is_some());
        if let Some(pid) = running {
            if guard_kind(pid) == Some(GuardKind::Current) {
                tracing::info!("took over the running fence guard (pid {pid})");
                g.guard_pid = Some(pid);
            } else {
                tracing::warn!("the running fence guard (pid {pid}) is of an older kind: it is replaced when the guard is next armed");
                g.guard_pid = Some(pid);
            }
        }
        g
    }

    /// Whether a guard process is running for this data directory.
    pub fn is_running(&self) -> bool {
        self.guard_pid.is_some_and(|p| guard_kind(p).is_some())
    }

    /// Whether the guard holds a deadline.
    pub fn is_armed(&self) -> bool {
        deadline_file(&self.data_dir).exists()
    }

    /// Makes PostgreSQL writable until `deadlines`: writes the deadline file
    /// (atomically), and starts the guard when none runs.
    pub fn arm(&mut self, deadlines: Deadlines) -> Result<(), GuardError> {
        let file = deadline_file(&self.data_dir);
        let tmp = beside(&self.data_dir, "fence.tmp");
        fs::write(&tmp, deadlines.render())
            .and_then(|()| fs::rename(&tmp, &file))
            .map_err(|e| GuardError(format!("cannot write {}: {e}", file.display())))?;
        crate::telemetry::fence_guard(crate::telemetry::GuardEvent::Armed);
        match self.guard_pid.map(|p| (p, guard_kind(p))) {
            Some((_, Some(GuardKind::Current))) => return Ok(()),
            Some((old, Some(GuardKind::Older))) => {
                // It reads another format: it would never fire. The new
                // one starts below, with the deadline already in place.
                let _ = kill(Pid::from_raw(old), Signal::SIGTERM);
            }
            _ => {}
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
                .arg("--data-dir")
                .arg(&self.data_dir)
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
        let _ = fs::write(pid_file(&self.data_dir), format!("{pid}\n"));
        tracing::info!(
            "fence guard started (pid {pid}): it stops PostgreSQL in {} if the lease deadline passes",
            self.data_dir.display()
        );
        self.guard_pid = Some(pid);
        crate::telemetry::fence_guard(crate::telemetry::GuardEvent::Started);
        Ok(())
    }

    /// PostgreSQL cannot take writes: the guard is told to leave (the
    /// deadline file goes; it exits at its next look).
    pub fn disarm(&mut self) {
        let file = deadline_file(&self.data_dir);
        if file.exists() {
            let _ = fs::remove_file(&file);
            crate::telemetry::fence_guard(crate::telemetry::GuardEvent::Disarmed);
        }
        if let Some(pid) = self.guard_pid.take() {
            // It would leave by itself within 20 ms; a signal makes it certain.
            if guard_kind(pid).is_some() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            let _ = fs::remove_file(pid_file(&self.data_dir));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GuardKind {
    /// Watches a data directory.
    Current,
    /// Watched one postmaster pid (before 0.2).
    Older,
}

/// What kind of live `pgwarden fence-guard` process `pid` is, if it is one.
fn guard_kind(pid: i32) -> Option<GuardKind> {
    let alive = kill(Pid::from_raw(pid), None).is_ok();
    let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true);
    let cmdline =
        String::from_utf8_lossy(&fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
            .into_owned();
    if !alive || zombie || !cmdline.contains("fence-guard") {
        return None;
    }
    Some(if cmdline.contains("--data-dir") {
        GuardKind::Current
    } else {
        GuardKind::Older
    })
}

/// The guard process: reads the deadline file every 20 ms; exits when the
/// file is gone (PostgreSQL can no longer take writes); as each deadline
/// passes, signals the postmaster serving `data_dir`, whichever it is.
/// Returns the exit code.
pub fn run_guard(deadline_file: &Path, data_dir: &Path) -> i32 {
    let say = |msg: &str| eprintln!("pgwarden fence-guard[{}]: {msg}", std::process::id());
    say(&format!(
        "watching {} for {}",
        deadline_file.display(),
        data_dir.display()
    ));
    let mut sent: Option<(i32, Signal)> = None;
    loop {
        let text = match fs::read_to_string(deadline_file) {
            Ok(t) => t,
            Err(_) => {
                say("deadline file removed: PostgreSQL can no longer take writes here; exiting");
                return 0;
            }
        };
        let due = Deadlines::parse(&text).and_then(|d| d.due(crate::boottime::now_ns()));
        match due {
            None => sent = None,
            Some(sig) => {
                // Only now look for the postmaster: whichever serves the
                // directory, even one started after the guard was armed.
                if let Ok(Some(pm)) = Postmaster::adopt(data_dir) {
                    let pid = pm.pid();
                    if sent != Some((pid, sig)) {
                        say(&format!(
                            "the primary's lease deadline passed without renewal (the agent is frozen or gone): sending {sig:?} to postmaster {pid}"
                        ));
                        let _ = kill(Pid::from_raw(pid), sig);
                        sent = Some((pid, sig));
                    }
                }
            }
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
        assert_eq!(Deadlines::parse(&d.render()), Some(d));
        assert_eq!(Deadlines::parse("garbage"), None);
        assert_eq!(
            Deadlines::parse("42 1 2 3"),
            None,
            "the older format names a pid"
        );
    }

    #[test]
    fn signals_fall_due_in_order() {
        let d = Deadlines {
            sigint_at: 10,
            sigquit_at: 20,
            sigkill_at: 30,
        };
        assert_eq!(d.due(9), None);
        assert_eq!(d.due(10), Some(Signal::SIGINT));
        assert_eq!(d.due(25), Some(Signal::SIGQUIT));
        assert_eq!(d.due(31), Some(Signal::SIGKILL));
    }
}
