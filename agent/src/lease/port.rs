//! The HA loop's one narrow view of the leader lease: ask for it (or stop
//! asking), learn who holds it and until when, release it. Whatever
//! grants the lease — the members' own quorum, or an etcd for shops that
//! run one — stands behind this trait, and `ha/` does not change.

use std::future::Future;
use std::time::{Duration, Instant};

/// What the lease looks like from this node after an update.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseStatus {
    /// The holder, when known.
    pub holder: Option<String>,
    /// Its term.
    pub term: u64,
    /// When it ends on this node's clock (for the holder: its own, earlier, view).
    pub expires_at: Option<Instant>,
    /// This node holds it now.
    pub mine: bool,
}

impl LeaseStatus {
    /// Time left for the holder, zero when expired or unknown.
    pub fn remaining(&self, now: Instant) -> Duration {
        self.expires_at
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or_default()
    }
}

/// A source of the leader lease.
pub trait LeaseClient: Send {
    /// One HA-loop step: acquire or renew when `want` is true, otherwise
    /// only learn who holds it. Must return within a bounded time.
    fn update(&mut self, want: bool) -> impl Future<Output = LeaseStatus> + Send;

    /// Gives the lease up at once (clean shutdown, switchover).
    fn release(&mut self) -> impl Future<Output = ()> + Send;

    /// The lease as known now, without a round (at an agent's start: the
    /// lease it still holds from before a restart).
    fn current(&self) -> LeaseStatus;

    /// When this node, wanting the lease and not holding it, means to ask
    /// again: the HA loop wakes for it rather than at its next period, so
    /// that a takeover does not wait up to a `loop_wait` more and two
    /// members that backed off at random really do ask at different times.
    fn retry_at(&self) -> Option<Instant> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_time_never_goes_negative() {
        let now = Instant::now();
        let s = LeaseStatus {
            expires_at: Some(now),
            ..Default::default()
        };
        assert_eq!(s.remaining(now + Duration::from_secs(1)), Duration::ZERO);
        assert_eq!(LeaseStatus::default().remaining(now), Duration::ZERO);
    }
}
