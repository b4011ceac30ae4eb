//! Retrying with exponential back-off: the one type behind crash restarts
//! and clone retries. Pure: the caller passes the time.

use std::time::{Duration, Instant};

/// Failures in a row and when the next attempt is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    failures: u32,
    next_at: Option<Instant>,
}

impl Backoff {
    /// Waits `first` after the first failure, doubling up to `max`.
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            failures: 0,
            next_at: None,
        }
    }

    /// One more failure at `now`; returns how long until the next attempt.
    pub fn failed(&mut self, now: Instant) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let shift = self.failures.saturating_sub(1).min(16);
        let delay = self.first.saturating_mul(1 << shift).min(self.max);
        self.next_at = Some(now + delay);
        delay
    }

    /// Success: the next failure starts again from `first`.
    pub fn reset(&mut self) {
        self.failures = 0;
        self.next_at = None;
    }

    /// Failures in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Time left before the next attempt (`None`: it may run now).
    pub fn wait_left(&self, now: Instant) -> Option<Duration> {
        self.next_at
            .filter(|t| now < *t)
            .map(|t| t.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_exponentially_up_to_a_limit_and_reset_on_success() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let now = Instant::now();
        assert_eq!(b.wait_left(now), None);
        assert_eq!(b.failed(now), Duration::from_millis(500));
        assert_eq!(b.failed(now), Duration::from_secs(1));
        assert_eq!(b.failed(now), Duration::from_secs(2));
        assert_eq!(b.failures(), 3);
        assert!(b.wait_left(now).is_some());
        assert_eq!(b.wait_left(now + Duration::from_secs(3)), None);
        for _ in 0..40 {
            b.failed(now);
        }
        assert_eq!(b.failed(now), Duration::from_secs(30));
        b.reset();
        assert_eq!((b.failures(), b.wait_left(now)), (0, None));
    }
}
