//! systemd notifications: `READY=1` once PostgreSQL accepts connections,
//! `STATUS=` on every change of state, `WATCHDOG=1` from the HA loop.
//! Without `NOTIFY_SOCKET` every call is a no-op.

use sd_notify::NotifyState;

/// The agent's link to its service manager.
#[derive(Debug, Default)]
pub struct Notifier {
    ready_sent: bool,
    last_status: String,
    watchdog: bool,
}

impl Notifier {
    /// Reads `WATCHDOG_USEC` once, at start.
    pub fn from_env() -> Notifier {
        Notifier {
            ready_sent: false,
            last_status: String::new(),
            watchdog: sd_notify::watchdog_enabled().is_some(),
        }
    }

    /// `READY=1`, once.
    pub fn ready(&mut self) {
        if !self.ready_sent {
            self.ready_sent = true;
            let _ = sd_notify::notify(&[NotifyState::Ready]);
        }
    }

    /// `STATUS=...` when it changed.
    pub fn status(&mut self, status: &str) {
        if status != self.last_status {
            self.last_status = status.to_string();
            let _ = sd_notify::notify(&[NotifyState::Status(status)]);
        }
    }

    /// `WATCHDOG=1` when systemd asked for it: proof that the HA loop runs.
    pub fn watchdog(&self) {
        if self.watchdog {
            let _ = sd_notify::notify(&[NotifyState::Watchdog]);
        }
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
    }
}
