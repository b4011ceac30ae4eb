//! `CLOCK_BOOTTIME`: the clock every deadline of the agent is on (the
//! lease, the fence guard's "writable until"). It never jumps, and unlike
//! `CLOCK_MONOTONIC` it keeps counting while the machine is suspended, so
//! a suspended VM's lease ends on time instead of being stretched by the
//! suspension. Readings are comparable between processes and across agent
//! restarts within one boot.

use std::time::{Duration, Instant};

use nix::time::{clock_gettime, ClockId};

/// `CLOCK_BOOTTIME` now, in nanoseconds since the machine booted.
pub fn now_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_BOOTTIME)
        .map(|t| {
            (t.tv_sec() as u64)
                .saturating_mul(1_000_000_000)
                .saturating_add(t.tv_nsec() as u64)
        })
        .unwrap_or(0)
}

/// An `Instant` as a `CLOCK_BOOTTIME` reading (through the time left
/// until it, or since it, now).
pub fn from_instant(t: Instant) -> u64 {
    let (ns, now) = (now_ns(), Instant::now());
    if t >= now {
        ns.saturating_add(duration_ns(t - now))
    } else {
        ns.saturating_sub(duration_ns(now - t))
    }
}

/// A `CLOCK_BOOTTIME` reading as an `Instant`.
pub fn to_instant(ns: u64) -> Instant {
    let (at, now) = (now_ns(), Instant::now());
    if ns >= at {
        now + Duration::from_nanos(ns - at)
    } else {
        now.checked_sub(Duration::from_nanos(at - ns))
            .unwrap_or(now)
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip_through_the_boot_clock() {
        let later = Instant::now() + Duration::from_secs(5);
        let back = to_instant(from_instant(later));
        let off = if back > later {
            back - later
        } else {
            later - back
        };
        assert!(off < Duration::from_millis(50), "{off:?}");
        assert!(now_ns() > 0);
    }
}
