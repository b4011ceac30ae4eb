//! Time as one member sees it, and the lease lengths derived from the
//! configured lease `T` and the clock-drift bound.
//!
//! Nothing here reads a clock: the caller passes its monotonic time in, so
//! the state machines stay pure and the simulator can give every member a
//! clock of its own that runs fast or slow.

use std::fmt;
use std::time::Duration;

const NANOS_PER_MILLI: u64 = 1_000_000;
const PPM: u128 = 1_000_000;

/// A reading of **this member's** monotonic clock, in nanoseconds since an
/// arbitrary origin (the agent uses the `Instant` it started at).
///
/// Deliberately not `Serialize`: a reading of one member's clock means
/// nothing on another member, whose clock started elsewhere and runs at its
/// own rate. Only lengths of time ([`Duration`], milliseconds) travel in
/// messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalTime(u64);

impl LocalTime {
    /// The reading `nanos` nanoseconds after this member's clock origin.
    pub const fn from_nanos(nanos: u64) -> LocalTime {
        LocalTime(nanos)
    }

    /// Nanoseconds since this member's clock origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating instead of overflowing (584 years of nanoseconds).
    pub fn saturating_add(self, d: Duration) -> LocalTime {
        LocalTime(self.0.saturating_add(duration_nanos(d)))
    }

    /// How long after `earlier` this reading is; zero if it is not after.
    pub fn saturating_duration_since(self, earlier: LocalTime) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}s", self.0 as f64 / 1e9)
    }
}

/// Nanoseconds in `d`, saturating at `u64::MAX`.
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Whole milliseconds in `d`, rounded up: used for "time remaining" hints,
/// where reporting a little more than the truth is the harmless direction.
pub(crate) fn ceil_millis(d: Duration) -> u64 {
    let nanos = duration_nanos(d);
    nanos.div_ceil(NANOS_PER_MILLI)
}

/// Why a [`LeaseConfig`] cannot be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseConfigError {
    /// The lease must last at least a millisecond.
    LeaseTooShort,
    /// The lease travels in messages as whole milliseconds; a fraction would
    /// make the holder's and the acceptors' timers disagree.
    LeaseNotWholeMilliseconds(Duration),
    /// A drift bound this large leaves (almost) no lease for the holder.
    DriftTooLarge {
        /// The configured bound, in parts per million.
        ppm: u32,
    },
}

impl fmt::Display for LeaseConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseConfigError::LeaseTooShort => {
                write!(
                    f,
                    "the lease length must be at least 1 ms; use a few seconds"
                )
            }
            LeaseConfigError::LeaseNotWholeMilliseconds(d) => write!(
                f,
                "the lease length {d:?} is not a whole number of milliseconds; round it"
            ),
            LeaseConfigError::DriftTooLarge { ppm } => write!(
                f,
                "a clock-drift bound of {ppm} ppm is larger than the limit of {MAX_DRIFT_PPM} ppm \
                 (10 %); clocks that drift this much cannot time a lease"
            ),
        }
    }
}

impl std::error::Error for LeaseConfigError {}

/// The largest accepted clock-drift bound: 10 % (100 000 ppm). Real quartz
/// clocks drift by tens of ppm; anything near this bound is a broken clock.
pub const MAX_DRIFT_PPM: u32 = 100_000;

/// The lease length `T` and the clock-rate drift bound `ρ`: everything the
/// state machines need to time a lease safely. All members must share it
/// (an acceptor refuses a proposal longer than its own `T`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    lease_len: Duration,
    max_drift_ppm: u32,
}

impl LeaseConfig {
    /// A lease of `lease_len` (`T`) among members whose clocks each run at a
    /// rate within `1 ± max_drift_ppm / 10⁶` of real time.
    pub fn new(lease_len: Duration, max_drift_ppm: u32) -> Result<LeaseConfig, LeaseConfigError> {
        if lease_len < Duration::from_millis(1) {
            return Err(LeaseConfigError::LeaseTooShort);
        }
        if duration_nanos(lease_len) % NANOS_PER_MILLI != 0 {
            return Err(LeaseConfigError::LeaseNotWholeMilliseconds(lease_len));
        }
        if max_drift_ppm > MAX_DRIFT_PPM {
            return Err(LeaseConfigError::DriftTooLarge { ppm: max_drift_ppm });
        }
        Ok(LeaseConfig {
            lease_len,
            max_drift_ppm,
        })
    }

    /// `T`: how long an acceptor keeps an accepted lease, on its own clock,
    /// and how long a restarted acceptor stays silent.
    pub fn lease_len(&self) -> Duration {
        self.lease_len
    }

    /// `T` in whole milliseconds, as it travels in a proposal.
    pub fn lease_millis(&self) -> u64 {
        duration_nanos(self.lease_len) / NANOS_PER_MILLI
    }

    /// The drift bound `ρ` in parts per million.
    pub fn max_drift_ppm(&self) -> u32 {
        self.max_drift_ppm
    }

    /// How long the **holder** may believe in its lease, on its own clock,
    /// counted from the moment it sent `prepare`: `T · (1 − ρ) / (1 + ρ)`,
    /// rounded down.
    ///
    /// Why: a holder's clock may run slow (rate `1 − ρ`) and an acceptor's
    /// fast (`1 + ρ`). In real time the holder's view then lasts at most
    /// `T / (1 + ρ)` after its prepare, and the acceptor's record — started
    /// later, at accept — at least `T / (1 + ρ)` after the same instant. So
    /// the holder's view always ends first, whatever the two rates are.
    pub fn holder_len(&self) -> Duration {
        let t = self.lease_len.as_nanos();
        let rho = u128::from(self.max_drift_ppm);
        let nanos = t * (PPM - rho) / (PPM + rho);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_no_drift_then_the_holder_keeps_the_whole_lease() {
        let config = LeaseConfig::new(Duration::from_secs(10), 0).expect("valid");
        assert_eq!(config.holder_len(), Duration::from_secs(10));
    }

    #[test]
    fn given_one_percent_drift_then_the_holder_gives_up_about_two_percent() {
        let config = LeaseConfig::new(Duration::from_secs(10), 10_000).expect("valid");
        // 10 s · 0.99 / 1.01 = 9.801980198... s
        assert_eq!(config.holder_len(), Duration::from_nanos(9_801_980_198));
    }

    #[test]
    fn given_the_slowest_holder_and_the_fastest_acceptor_then_the_holder_view_ends_first() {
        let config = LeaseConfig::new(Duration::from_secs(10), 10_000).expect("valid");
        let rho = 0.01_f64;
        let holder_real = config.holder_len().as_secs_f64() / (1.0 - rho);
        let acceptor_real = config.lease_len().as_secs_f64() / (1.0 + rho);
        assert!(
            holder_real <= acceptor_real,
            "{holder_real} > {acceptor_real}"
        );
    }

    #[test]
    fn given_a_bad_lease_or_drift_then_the_config_is_refused_with_a_reason() {
        assert_eq!(
            LeaseConfig::new(Duration::ZERO, 0),
            Err(LeaseConfigError::LeaseTooShort)
        );
        assert_eq!(
            LeaseConfig::new(Duration::from_micros(1500), 0),
            Err(LeaseConfigError::LeaseNotWholeMilliseconds(
                Duration::from_micros(1500)
            ))
        );
        assert_eq!(
            LeaseConfig::new(Duration::from_secs(1), MAX_DRIFT_PPM + 1),
            Err(LeaseConfigError::DriftTooLarge {
                ppm: MAX_DRIFT_PPM + 1
            })
        );
        let message = LeaseConfigError::DriftTooLarge { ppm: 200_000 }.to_string();
        assert!(message.contains("200000 ppm"), "{message}");
    }

    #[test]
    fn given_local_times_then_arithmetic_saturates_instead_of_wrapping() {
        let t = LocalTime::from_nanos(5);
        assert_eq!(
            t.saturating_add(Duration::from_nanos(7)),
            LocalTime::from_nanos(12)
        );
        assert_eq!(
            LocalTime::from_nanos(u64::MAX).saturating_add(Duration::from_secs(1)),
            LocalTime::from_nanos(u64::MAX)
        );
        assert_eq!(
            t.saturating_duration_since(LocalTime::from_nanos(9)),
            Duration::ZERO
        );
        assert_eq!(ceil_millis(Duration::from_nanos(1)), 1);
        assert_eq!(ceil_millis(Duration::from_millis(3)), 3);
    }
}
