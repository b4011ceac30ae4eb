//! The chaos run's schedule: which faults, in which order, on whom and for
//! how long, all drawn from one seed, so that a run that found a violation
//! is replayed by giving the same seed again. Pure: nothing here touches a
//! process or a network.
//!
//! Targets are roles ("the primary", "the second replica"), not names:
//! which member holds a role is only known when the fault is injected, and
//! a role is what makes a fault interesting (killing a replica and killing
//! the primary are different failures).

use std::fmt;
use std::time::Duration;

/// A small deterministic generator (SplitMix64): the same seed gives the
/// same schedule on every machine, which is all a replay needs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A length in `[lo, hi]`, to the millisecond.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let (lo, hi) = (
            lo.as_millis() as u64,
            hi.as_millis().max(lo.as_millis()) as u64,
        );
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// Whom a fault hits, resolved when it is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The data member holding the primary role.
    Primary,
    /// The `n`-th replica (modulo how many there are), in member order.
    Replica(u8),
    /// The witness (only in a topology that has one).
    Witness,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Primary => write!(f, "primary"),
            Target::Replica(n) => write!(f, "replica#{n}"),
            Target::Witness => write!(f, "witness"),
        }
    }
}

/// One fault of the schedule, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 of the target's postmaster; its agent is left to cope.
    KillPostgres { target: Target },
    /// kill -9 of the target's agent, started again after `down`.
    KillAgent { target: Target, down: Duration },
    /// kill -9 of the agent and of PostgreSQL (node death), the agent
    /// started again after `down`.
    KillNode { target: Target, down: Duration },
    /// SIGSTOP of the target's agent for `length`, then SIGCONT.
    FreezeAgent { target: Target, length: Duration },
    /// SIGSTOP of the target's postmaster and every backend for `length`.
    FreezePostgres { target: Target, length: Duration },
    /// The target's link down for `length`: cut off from everyone.
    Isolate { target: Target, length: Duration },
    /// `a` and `b` drop each other's packets for `length`; both still
    /// reach the third member (a partial, non-transitive partition).
    CutBetween {
        a: Target,
        b: Target,
        length: Duration,
    },
    /// The target drops what it sends (`outgoing`) or what it receives, for
    /// `length`: the one-way partition.
    OneWay {
        target: Target,
        outgoing: bool,
        length: Duration,
    },
    /// The target loses `percent` % of its packets both ways for `length`.
    Lossy {
        target: Target,
        percent: u8,
        length: Duration,
    },
    /// The target's outgoing packets are delayed by `delay` for `length`.
    Slow {
        target: Target,
        delay: Duration,
        length: Duration,
    },
    /// `POST /switchover`, to the `n`-th replica or (`None`) whoever is best.
    Switchover { candidate: Option<u8> },
    /// `POST /restart` of the target's PostgreSQL.
    Restart { target: Target },
    /// `POST /reinitialize` of a replica: its data directory renamed aside
    /// and cloned again.
    Reinit { replica: u8 },
    /// `POST /pause`, `length` of maintenance mode, `POST /resume`.
    Pause { length: Duration },
    /// SIGTERM of the target's agent and a new agent at once: PostgreSQL
    /// must keep running through it (the `systemctl restart` case).
    AgentRestart { target: Target },
}

/// The kinds of fault: what `--only` names and the summary counts.
pub const KINDS: [&str; 15] = [
    "kill-postgres",
    "kill-agent",
    "kill-node",
    "freeze-agent",
    "freeze-postgres",
    "isolate",
    "cut-between",
    "one-way",
    "lossy",
    "slow",
    "switchover",
    "restart",
    "reinit",
    "pause",
    "agent-restart",
];

impl Fault {
    /// Its kind, one of [`KINDS`].
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::KillPostgres { .. } => "kill-postgres",
            Fault::KillAgent { .. } => "kill-agent",
            Fault::KillNode { .. } => "kill-node",
            Fault::FreezeAgent { .. } => "freeze-agent",
            Fault::FreezePostgres { .. } => "freeze-postgres",
            Fault::Isolate { .. } => "isolate",
            Fault::CutBetween { .. } => "cut-between",
            Fault::OneWay { .. } => "one-way",
            Fault::Lossy { .. } => "lossy",
            Fault::Slow { .. } => "slow",
            Fault::Switchover { .. } => "switchover",
            Fault::Restart { .. } => "restart",
            Fault::Reinit { .. } => "reinit",
            Fault::Pause { .. } => "pause",
            Fault::AgentRestart { .. } => "agent-restart",
        }
    }
}

fn secs(d: &Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind();
        match self {
            Fault::KillPostgres { target }
            | Fault::Restart { target }
            | Fault::AgentRestart { target } => write!(f, "{kind}({target})"),
            Fault::KillAgent { target, down } | Fault::KillNode { target, down } => {
                write!(f, "{kind}({target}, down {})", secs(down))
            }
            Fault::FreezeAgent { target, length }
            | Fault::FreezePostgres { target, length }
            | Fault::Isolate { target, length } => write!(f, "{kind}({target}, {})", secs(length)),
            Fault::CutBetween { a, b, length } => write!(f, "{kind}({a} x {b}, {})", secs(length)),
            Fault::OneWay {
                target,
                outgoing,
                length,
            } => write!(
                f,
                "{kind}({target} drops {}, {})",
                if *outgoing { "outgoing" } else { "incoming" },
                secs(length)
            ),
            Fault::Lossy {
                target,
                percent,
                length,
            } => write!(f, "{kind}({target}, {percent}%, {})", secs(length)),
            Fault::Slow {
                target,
                delay,
                length,
            } => write!(
                f,
                "{kind}({target}, +{}ms, {})",
                delay.as_millis(),
                secs(length)
            ),
            Fault::Switchover { candidate: None } => write!(f, "{kind}(any)"),
            Fault::Switchover { candidate: Some(n) } => write!(f, "{kind}(to replica#{n})"),
            Fault::Reinit { replica } => write!(f, "{kind}(replica#{replica})"),
            Fault::Pause { length } => write!(f, "{kind}({})", secs(length)),
        }
    }
}

/// What the schedule is drawn for.
#[derive(Debug, Clone)]
pub struct Shape {
    /// The cluster has a witness (which agent-level faults may hit).
    pub witness: bool,
    /// The cluster's `ttl`: lengths are drawn below and above it.
    pub ttl: Duration,
    /// The kinds to draw from (empty: every kind).
    pub kinds: Vec<String>,
}

/// `count` faults drawn from `seed` for a cluster of `shape`.
pub fn schedule(seed: u64, count: usize, shape: &Shape) -> Vec<Fault> {
    let mut rng = Rng::new(seed);
    let kinds: Vec<&str> = KINDS
        .iter()
        .copied()
        .filter(|k| shape.kinds.is_empty() || shape.kinds.iter().any(|s| s == k))
        .collect();
    if kinds.is_empty() {
        return Vec::new();
    }
    (0..count)
        .map(|_| {
            let kind = kinds[rng.below(kinds.len() as u64) as usize];
            draw(&mut rng, kind, shape)
        })
        .collect()
}

/// Unknown names in `kinds`, for the command line's error.
pub fn unknown_kinds(kinds: &[String]) -> Vec<String> {
    kinds
        .iter()
        .filter(|k| !KINDS.contains(&k.as_str()))
        .cloned()
        .collect()
}

/// One fault of `kind`, its parameters drawn from `rng`.
fn draw(rng: &mut Rng, kind: &str, shape: &Shape) -> Fault {
    let ttl = shape.ttl;
    // Below and above the ttl: a short fault must be ridden out, a long
    // one must end in a failover (or a fenced primary).
    let length = |rng: &mut Rng| rng.between(ttl / 4, ttl * 3);
    // Agent-level faults may hit the witness too; PostgreSQL-level ones
    // only data members.
    let any_agent = |rng: &mut Rng| match rng.below(if shape.witness { 5 } else { 4 }) {
        0 | 1 => Target::Primary,
        4 => Target::Witness,
        n => Target::Replica(n as u8 - 2),
    };
    let data = |rng: &mut Rng| match rng.below(2) {
        0 => Target::Primary,
        _ => Target::Replica(rng.below(2) as u8),
    };
    match kind {
        "kill-postgres" => Fault::KillPostgres { target: data(rng) },
        "kill-agent" => Fault::KillAgent {
            target: any_agent(rng),
            down: length(rng),
        },
        "kill-node" => Fault::KillNode {
            target: any_agent(rng),
            down: length(rng),
        },
        "freeze-agent" => Fault::FreezeAgent {
            target: any_agent(rng),
            length: length(rng),
        },
        "freeze-postgres" => Fault::FreezePostgres {
            target: data(rng),
            length: length(rng),
        },
        "isolate" => Fault::Isolate {
            target: any_agent(rng),
            length: length(rng),
        },
        "cut-between" => {
            // The primary and one replica lose each other; with a witness,
            // sometimes a data member and the witness.
            let b = if shape.witness && rng.below(2) == 0 {
                Target::Witness
            } else {
                Target::Replica(rng.below(2) as u8)
            };
            Fault::CutBetween {
                a: Target::Primary,
                b,
                length: length(rng),
            }
        }
        "one-way" => Fault::OneWay {
            target: any_agent(rng),
            outgoing: rng.below(2) == 0,
            length: length(rng),
        },
        "lossy" => Fault::Lossy {
            target: any_agent(rng),
            percent: 10 + rng.below(41) as u8,
            length: length(rng),
        },
        "slow" => Fault::Slow {
            target: any_agent(rng),
            delay: Duration::from_millis(50 + rng.below(451)),
            length: length(rng),
        },
        "switchover" => Fault::Switchover {
            candidate: (rng.below(2) == 0).then(|| rng.below(2) as u8),
        },
        "restart" => Fault::Restart { target: data(rng) },
        "reinit" => Fault::Reinit {
            replica: rng.below(2) as u8,
        },
        "pause" => Fault::Pause {
            length: length(rng),
        },
        _ => Fault::AgentRestart {
            target: any_agent(rng),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(witness: bool) -> Shape {
        Shape {
            witness,
            ttl: Duration::from_secs(3),
            kinds: Vec::new(),
        }
    }

    #[test]
    fn given_the_same_seed_then_the_schedule_is_the_same_and_another_seed_differs() {
        let a = schedule(7, 200, &shape(true));
        assert_eq!(a, schedule(7, 200, &shape(true)));
        assert_ne!(a, schedule(8, 200, &shape(true)));
        assert_eq!(a.len(), 200);
    }

    #[test]
    fn given_many_faults_then_every_kind_is_drawn_and_lengths_straddle_the_ttl() {
        let faults = schedule(1, 2000, &shape(true));
        for kind in KINDS {
            assert!(
                faults.iter().any(|f| f.kind() == kind),
                "{kind} never drawn"
            );
        }
        let lengths: Vec<Duration> = faults
            .iter()
            .filter_map(|f| match f {
                Fault::Isolate { length, .. } | Fault::FreezeAgent { length, .. } => Some(*length),
                _ => None,
            })
            .collect();
        let ttl = Duration::from_secs(3);
        assert!(lengths.iter().any(|l| *l < ttl) && lengths.iter().any(|l| *l > ttl));
        assert!(lengths.iter().all(|l| *l >= ttl / 4 && *l <= ttl * 3));
    }

    #[test]
    fn given_no_witness_then_no_fault_targets_one() {
        let faults = schedule(3, 2000, &shape(false));
        assert!(!faults.iter().any(|f| f.to_string().contains("witness")));
        let with = schedule(3, 2000, &shape(true));
        assert!(with.iter().any(|f| f.to_string().contains("witness")));
    }

    #[test]
    fn given_only_some_kinds_then_only_those_are_drawn_and_unknown_names_are_named() {
        let s = Shape {
            kinds: vec!["isolate".into(), "pause".into()],
            ..shape(false)
        };
        let faults = schedule(5, 100, &s);
        assert!(faults
            .iter()
            .all(|f| matches!(f.kind(), "isolate" | "pause")));
        assert_eq!(
            unknown_kinds(&["isolate".into(), "flood".into()]),
            vec!["flood".to_string()]
        );
    }

    #[test]
    fn given_faults_then_they_print_their_parameters() {
        let f = Fault::OneWay {
            target: Target::Replica(1),
            outgoing: true,
            length: Duration::from_millis(2500),
        };
        assert_eq!(f.to_string(), "one-way(replica#1 drops outgoing, 2.5s)");
        assert_eq!(
            Fault::Switchover { candidate: None }.to_string(),
            "switchover(any)"
        );
    }
}
