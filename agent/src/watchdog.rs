//! The machine's watchdog (`node.watchdog`): while this node is primary,
//! the HA loop feeds `/dev/watchdog` (hardware or `softdog`) every loop,
//! with a timeout shorter than the lease. A machine that freezes — kernel
//! and all, which no process can guard against — is reset before its lease
//! ends. When the node stops being primary the device is closed with the
//! magic character `V`, which disarms it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::WatchdogMode;

nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, nix::libc::c_int);

/// The watchdog as the HA loop uses it.
#[derive(Debug)]
pub struct Watchdog {
    mode: WatchdogMode,
    device: PathBuf,
    timeout: Duration,
    open: Option<File>,
    problem: Option<String>,
}

impl Watchdog {
    /// A watchdog in `mode` on `device`, reset `timeout` after the last feed.
    pub fn new(mode: WatchdogMode, device: &Path, timeout: Duration) -> Watchdog {
        Watchdog {
            mode,
            device: device.to_path_buf(),
            timeout,
            open: None,
            problem: None,
        }
    }

    /// The timeout for a lease of `ttl` renewed every `loop_wait`: the
    /// machine must be reset before the lease could end, counting one
    /// missed loop and a second of slack.
    pub fn timeout_for(ttl: Duration, loop_wait: Duration) -> Duration {
        let secs = (ttl.as_secs_f64() * 0.98 - loop_wait.as_secs_f64() - 1.0).floor();
        Duration::from_secs(secs.max(1.0) as u64)
    }

    /// Why this node may not be primary (`required` mode and no working
    /// device); `None` otherwise.
    pub fn blocker(&mut self) -> Option<String> {
        if self.mode != WatchdogMode::Required {
            return None;
        }
        if self.open.is_none() {
            if let Err(e) = self.open_device() {
                return Some(format!(
                    "node.watchdog = \"required\" but {} cannot be used ({e}); this node will not be primary (load softdog, or set watchdog = \"auto\")",
                    self.device.display()
                ));
            }
        }
        None
    }

    fn open_device(&mut self) -> std::io::Result<()> {
        let f = OpenOptions::new().write(true).open(&self.device)?;
        let mut secs = self.timeout.as_secs() as nix::libc::c_int;
        // SAFETY: WDIOC_SETTIMEOUT reads and writes one c_int we own.
        match unsafe { wdioc_settimeout(f.as_raw_fd(), &mut secs) } {
            Ok(_) => tracing::info!(
                "watchdog {} armed with a {secs} s timeout",
                self.device.display()
            ),
            Err(e) => tracing::warn!(
                "watchdog {} did not take a {} s timeout ({e}); it keeps its own",
                self.device.display(),
                self.timeout.as_secs()
            ),
        }
        self.open = Some(f);
        self.problem = None;
        Ok(())
    }

    /// Feeds the watchdog (this node is a primary holding the lease).
    pub fn keepalive(&mut self) {
        if self.mode == WatchdogMode::Off {
            return;
        }
        if self.open.is_none() {
            if let Err(e) = self.open_device() {
                let text = format!("watchdog {} unavailable: {e}", self.device.display());
                if self.problem.as_deref() != Some(&text) {
                    tracing::warn!("{text}; going on without it (watchdog = \"auto\")");
                    self.problem = Some(text);
                }
                return;
            }
        }
        if let Some(f) = &mut self.open {
            if let Err(e) = f.write_all(b"\0").and_then(|()| f.flush()) {
                tracing::error!("cannot feed the watchdog {}: {e}", self.device.display());
            }
        }
    }

    /// Disarms it (magic close) when this node stops being primary.
    pub fn disarm(&mut self) {
        if let Some(mut f) = self.open.take() {
            let _ = f.write_all(b"V").and_then(|()| f.flush());
            tracing::info!("watchdog {} disarmed", self.device.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_ends_before_the_lease() {
        assert_eq!(
            Watchdog::timeout_for(Duration::from_secs(10), Duration::from_secs(1)),
            Duration::from_secs(7)
        );
        assert_eq!(
            Watchdog::timeout_for(Duration::from_secs(3), Duration::from_millis(500)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn required_mode_without_a_device_blocks_and_auto_does_not() {
        let missing = Path::new("/nonexistent/watchdog");
        let mut required = Watchdog::new(WatchdogMode::Required, missing, Duration::from_secs(5));
        assert!(required.blocker().is_some_and(|b| b.contains("required")));
        let mut auto = Watchdog::new(WatchdogMode::Auto, missing, Duration::from_secs(5));
        assert!(auto.blocker().is_none());
        auto.keepalive();
    }

    #[test]
    fn a_primary_feeds_the_device_and_disarms_it_with_the_magic_character() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("watchdog");
        std::fs::write(&dev, b"").unwrap();
        let mut w = Watchdog::new(WatchdogMode::Required, &dev, Duration::from_secs(5));
        assert!(w.blocker().is_none());
        w.keepalive();
        w.keepalive();
        w.disarm();
        assert_eq!(std::fs::read(&dev).unwrap(), b"\0\0V");
    }
}
