//! The lease of a one-member cluster.

use std::time::{Duration, Instant};

use super::port::{LeaseClient, LeaseStatus};

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

    fn current(&self) -> LeaseStatus {
        self.status(Instant::now())
    }
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
}
