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
}

/// The lease of a one-member cluster: the member is the whole majority,
/// so it grants itself the lease, timed like any other lease (renewed at
/// every loop, it never lapses while the loop runs).
#[derive(Debug)]
pub struct SoloLease {
    me: String,
    ttl: Duration,
    term: u64,
    expires_at: Option<Instant>,
}

impl SoloLease {
    /// The lease of the single member `me`.
    pub fn new(me: &str, ttl: Duration) -> SoloLease {
        SoloLease {
            me: me.to_string(),
            ttl,
            term: 0,
            expires_at: None,
        }
    }

    fn status(&self, now: Instant) -> LeaseStatus {
        let live = self.expires_at.filter(|t| *t > now);
        LeaseStatus {
            holder: live.map(|_| self.me.clone()),
            term: self.term,
            expires_at: live,
            mine: live.is_some(),
        }
    }
}

impl LeaseClient for SoloLease {
    async fn update(&mut self, want: bool) -> LeaseStatus {
        let now = Instant::now();
        if want {
            if self.expires_at.is_none_or(|t| t <= now) {
                self.term += 1;
            }
            self.expires_at = Some(now + self.ttl);
        }
        self.status(now)
    }

    async fn release(&mut self) {
        self.expires_at = None;
    }
}

/// Stands in for the members' quorum lease until it is built: grants
/// nothing, so a member of a multi-member cluster never becomes primary on
/// its own, and says why.
#[derive(Debug, Default)]
pub struct NoLease;

impl LeaseClient for NoLease {
    async fn update(&mut self, _want: bool) -> LeaseStatus {
        LeaseStatus::default()
    }

    async fn release(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_solo_member_holds_its_lease_while_it_wants_it_and_loses_it_on_release() {
        let mut lease = SoloLease::new("pg1", Duration::from_secs(10));
        let first = lease.update(true).await;
        assert!(first.mine);
        assert_eq!(first.holder.as_deref(), Some("pg1"));
        assert_eq!(first.term, 1);
        let renewed = lease.update(true).await;
        assert_eq!(renewed.term, 1, "renewal keeps the term");
        assert!(renewed.remaining(Instant::now()) > Duration::from_secs(9));
        lease.release().await;
        let after = lease.update(false).await;
        assert!(!after.mine);
        assert_eq!(after.holder, None);
        assert_eq!(
            lease.update(true).await.term,
            2,
            "a new acquisition is a new term"
        );
    }

    #[tokio::test]
    async fn without_a_quorum_lease_nobody_is_leader() {
        assert!(!NoLease.update(true).await.mine);
    }
}
