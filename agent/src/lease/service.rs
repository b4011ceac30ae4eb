//! This member's acceptor as a shared service: the API's internal
//! endpoints and this member's own proposer both talk to it. It also owns
//! the member's monotonic clock, the only clock the lease ever reads.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::acceptor::{Acceptor, CurrentLease};
use super::clock::{LeaseConfig, LocalTime};
use super::messages::{Prepare, PrepareReply, Propose, ProposeReply, Release};

/// The process's monotonic clock as [`LocalTime`]: nanoseconds since the
/// agent started. Never the wall clock, which may jump.
#[derive(Debug, Clone, Copy)]
pub struct MonoClock {
    origin: Instant,
}

impl MonoClock {
    /// A clock starting now.
    pub fn new() -> MonoClock {
        MonoClock {
            origin: Instant::now(),
        }
    }

    /// The current local time.
    pub fn now(&self) -> LocalTime {
        LocalTime::from_nanos(self.origin.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64)
    }

    /// A local time as an `Instant`, for the rest of the agent.
    pub fn instant(&self, t: LocalTime) -> Instant {
        self.origin + Duration::from_nanos(t.as_nanos())
    }
}

impl Default for MonoClock {
    fn default() -> Self {
        Self::new()
    }
}

/// This member's acceptor, shared; every call reads the clock itself.
#[derive(Debug, Clone)]
pub struct AcceptorService {
    acceptor: Arc<Mutex<Acceptor>>,
    clock: MonoClock,
}

impl AcceptorService {
    /// A fresh acceptor: silent for one lease length (the diskless rule).
    pub fn new(config: LeaseConfig, clock: MonoClock) -> AcceptorService {
        AcceptorService {
            acceptor: Arc::new(Mutex::new(Acceptor::new(config, clock.now()))),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Acceptor> {
        // A panic while holding the lock cannot leave the acceptor half
        // updated in a way that matters more than losing the agent; keep going.
        self.acceptor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The clock this service reads.
    pub fn clock(&self) -> MonoClock {
        self.clock
    }

    /// Answers a prepare; `None` while silent after a start.
    pub fn prepare(&self, msg: Prepare) -> Option<PrepareReply> {
        let now = self.clock.now();
        self.lock().on_prepare(now, msg)
    }

    /// Answers a propose; `None` while silent after a start.
    pub fn propose(&self, msg: Propose) -> Option<ProposeReply> {
        let now = self.clock.now();
        self.lock().on_propose(now, msg)
    }

    /// Takes a release.
    pub fn release(&self, msg: Release) {
        let now = self.clock.now();
        self.lock().on_release(now, msg)
    }

    /// The newest unexpired lease this acceptor accepted.
    pub fn current(&self) -> Option<CurrentLease> {
        let now = self.clock.now();
        self.lock().current_lease(now)
    }

    /// Whether it still keeps silent after its start.
    pub fn is_silent(&self) -> bool {
        let now = self.clock.now();
        self.lock().is_silent(now)
    }
}

/// Compares a presented secret with the cluster secret in time that does
/// not depend on where they differ.
pub fn secret_matches(presented: &str, secret: &str) -> bool {
    let (a, b) = (presented.as_bytes(), secret.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(secret_matches("abc", "abc"));
        assert!(!secret_matches("abd", "abc"));
        assert!(!secret_matches("ab", "abc"));
        assert!(!secret_matches("abcd", "abc"));
        assert!(!secret_matches("", "abc"));
    }

    #[test]
    fn a_new_acceptor_service_is_silent_for_one_lease() {
        let cfg = LeaseConfig::new(Duration::from_secs(5), 10_000).unwrap();
        let svc = AcceptorService::new(cfg, MonoClock::new());
        assert!(svc.is_silent());
        assert!(svc.current().is_none());
    }
}
