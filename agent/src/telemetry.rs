//! Process-wide counters and histograms for *events*: what happened since
//! the agent started, which the node's view (a snapshot of *now*) cannot
//! tell — lease rounds and how they ended, fencing, fence-guard commands,
//! HA loop durations, role changes, API requests.
//!
//! Each event site calls one function here (`telemetry::lease_round(..)`,
//! `telemetry::fence()`, ...), which bumps an atomic in one global
//! [`Telemetry`]; `GET /metrics` ([`crate::api::metrics`]) renders it beside
//! the view. Global on purpose: the events happen deep in the lease, the
//! executor and the fence guard, and threading a handle through all of them
//! for a counter would touch every constructor for no decision's sake.
//! Nothing reads these values back to decide anything: they are for
//! operators only, so the simulations and `decide` stay pure.
//!
//! Every label value is from a fixed set (an outcome, an event, a route
//! template, a status code), so the number of series is bounded.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use crate::lease::Outcome;

/// One label, as the families here key their series.
pub type Labels = Vec<(&'static str, String)>;

/// A fence-guard command the agent carried out (the guard process itself
/// cannot count: it runs apart from the agent, and when it fires the agent
/// is frozen or gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardEvent {
    /// A guard process was started beside PostgreSQL.
    Started,
    /// A "writable until" deadline was written: the first arming, or its
    /// push at a lease renewal.
    Armed,
    /// The deadline was removed: PostgreSQL can no longer take writes.
    Disarmed,
}

impl GuardEvent {
    const ALL: [GuardEvent; 3] = [GuardEvent::Started, GuardEvent::Armed, GuardEvent::Disarmed];

    /// The `event` label.
    pub fn label(self) -> &'static str {
        match self {
            GuardEvent::Started => "started",
            GuardEvent::Armed => "armed",
            GuardEvent::Disarmed => "disarmed",
        }
    }
}

/// The `outcome` label of a lease round.
pub fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Acquired { .. } => "acquired",
        Outcome::Blocked { .. } => "blocked",
        Outcome::Preempted { .. } => "preempted",
        Outcome::TooLate => "too_late",
        Outcome::TimedOut => "timed_out",
        Outcome::LeaseTooLong { .. } => "lease_too_long",
    }
}

/// Every outcome label, so that each series exists (at 0) from the start:
/// `rate()` over a series that appears only at its first event misses it.
const OUTCOMES: [&str; 6] = [
    "acquired",
    "blocked",
    "preempted",
    "too_late",
    "timed_out",
    "lease_too_long",
];

/// Upper bounds of the HA loop duration buckets, in seconds: a quiet loop
/// takes milliseconds, a slow PostgreSQL or peer up to seconds, and the
/// long actions (initdb, a clone, a rewind) minutes.
const LOOP_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The event metrics. Cloning shares the values (the metric types are
/// `Arc`s inside), which is how `/metrics` registers them for one scrape.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// Lease rounds by `outcome`.
    pub lease_rounds: Family<Labels, Counter>,
    /// Times the agent fenced its PostgreSQL.
    pub fences: Counter,
    /// Fence-guard commands by `event`.
    pub guard_events: Family<Labels, Counter>,
    /// HA loop iterations, by duration.
    pub loop_duration: Histogram,
    /// Role changes recorded in the history.
    pub role_changes: Counter,
    /// API requests by `route` (the matched template) and `code`.
    pub api_requests: Family<Labels, Counter>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

impl Telemetry {
    /// Fresh metrics, every fixed-label series at 0.
    pub fn new() -> Telemetry {
        let t = Telemetry {
            lease_rounds: Family::default(),
            fences: Counter::default(),
            guard_events: Family::default(),
            loop_duration: Histogram::new(LOOP_BUCKETS),
            role_changes: Counter::default(),
            api_requests: Family::default(),
        };
        for outcome in OUTCOMES {
            // Creating the series is the point; the guard it returns is not needed.
            let _ = t
                .lease_rounds
                .get_or_create(&vec![("outcome", outcome.to_string())]);
        }
        for event in GuardEvent::ALL {
            let _ = t
                .guard_events
                .get_or_create(&vec![("event", event.label().to_string())]);
        }
        t
    }

    /// A lease round ended with `outcome`.
    pub fn lease_round(&self, outcome: &Outcome) {
        self.lease_rounds
            .get_or_create(&vec![("outcome", outcome_label(outcome).to_string())])
            .inc();
    }

    /// The agent fenced its PostgreSQL.
    pub fn fence(&self) {
        self.fences.inc();
    }

    /// The agent told the fence guard something.
    pub fn fence_guard(&self, event: GuardEvent) {
        self.guard_events
            .get_or_create(&vec![("event", event.label().to_string())])
            .inc();
    }

    /// One HA loop iteration took `took`.
    pub fn loop_duration(&self, took: Duration) {
        self.loop_duration.observe(took.as_secs_f64());
    }

    /// A role change was recorded.
    pub fn role_change(&self) {
        self.role_changes.inc();
    }

    /// The API answered `code` on `route` (a route template, never a raw
    /// path: a raw path would make a series per scanner's guess).
    pub fn api_request(&self, route: &str, code: u16) {
        self.api_requests
            .get_or_create(&vec![
                ("route", route.to_string()),
                ("code", code.to_string()),
            ])
            .inc();
    }
}

/// The agent's one set of event metrics.
pub fn global() -> &'static Telemetry {
    static GLOBAL: OnceLock<Telemetry> = OnceLock::new();
    GLOBAL.get_or_init(Telemetry::new)
}

/// A lease round ended with `outcome`.
pub fn lease_round(outcome: &Outcome) {
    global().lease_round(outcome);
}

/// The agent fenced its PostgreSQL.
pub fn fence() {
    global().fence();
}

/// The agent told the fence guard something.
pub fn fence_guard(event: GuardEvent) {
    global().fence_guard(event);
}

/// One HA loop iteration took `took`.
pub fn loop_duration(took: Duration) {
    global().loop_duration(took);
}

/// A role change was recorded in the history.
pub fn role_change() {
    global().role_change();
}

/// The API answered `code` on `route`.
pub fn api_request(route: &str, code: u16) {
    global().api_request(route, code);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(family: &Family<Labels, Counter>, labels: &[(&'static str, &str)]) -> u64 {
        let key: Labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        family.get_or_create(&key).get()
    }

    #[test]
    fn events_count_under_their_own_label_and_start_at_zero() {
        let t = Telemetry::new();
        assert_eq!(count(&t.lease_rounds, &[("outcome", "timed_out")]), 0);
        t.lease_round(&Outcome::TimedOut);
        t.lease_round(&Outcome::TimedOut);
        t.lease_round(&Outcome::TooLate);
        assert_eq!(count(&t.lease_rounds, &[("outcome", "timed_out")]), 2);
        assert_eq!(count(&t.lease_rounds, &[("outcome", "too_late")]), 1);
        assert_eq!(count(&t.lease_rounds, &[("outcome", "acquired")]), 0);
        t.fence_guard(GuardEvent::Disarmed);
        assert_eq!(count(&t.guard_events, &[("event", "disarmed")]), 1);
        assert_eq!(count(&t.guard_events, &[("event", "armed")]), 0);
        t.api_request("/status", 200);
        t.api_request("/status", 200);
        assert_eq!(
            count(&t.api_requests, &[("route", "/status"), ("code", "200")]),
            2
        );
    }

    #[test]
    fn every_outcome_has_a_preset_label() {
        use crate::lease::MemberName;
        let by = crate::lease::Ballot::new(1, MemberName::new("pg1"), 1);
        let all = [
            Outcome::Blocked {
                holder: MemberName::new("pg1"),
                remaining: Duration::from_secs(1),
            },
            Outcome::Preempted { by },
            Outcome::TooLate,
            Outcome::TimedOut,
            Outcome::LeaseTooLong {
                max_lease: Duration::from_secs(1),
            },
        ];
        for o in &all {
            assert!(OUTCOMES.contains(&outcome_label(o)), "{o:?}");
        }
        assert!(OUTCOMES.contains(&"acquired"));
    }
}
