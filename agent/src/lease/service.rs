//! This member's acceptor as a shared service: the API's internal
//! endpoints and this member's own proposer both talk to it. It also owns
//! the member's clock, the only clock the lease ever reads, and the lease
//! notes on disk ([`super::durable`]): an answer that changed the
//! acceptor's state is sent only once the new state is durable.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::acceptor::{Acceptor, CurrentLease};
use super::clock::{LeaseConfig, LocalTime};
use super::durable::{Holding, Notes, NotesFile, Resume};
use super::messages::{Prepare, PrepareReply, Propose, ProposeReply, Release};

/// [`crate::boottime`] as [`LocalTime`]: nanoseconds since the machine
/// booted. Its readings are comparable across agent restarts within one
/// boot, which is what lets the lease notes survive a restart.
#[derive(Debug, Clone, Copy, Default)]
pub struct BootClock;

impl BootClock {
    /// The clock.
    pub fn new() -> BootClock {
        BootClock
    }

    /// The current local time.
    pub fn now(&self) -> LocalTime {
        LocalTime::from_nanos(crate::boottime::now_ns())
    }

    /// A local time as an `Instant`, for the rest of the agent.
    pub fn instant(&self, t: LocalTime) -> Instant {
        crate::boottime::to_instant(t.as_nanos())
    }
}

/// How this member's acceptor started, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// No notes: it answers at once.
    Fresh,
    /// It resumed from this boot's notes and answers at once.
    Resumed,
    /// It stays silent for one lease length, and why.
    Silent(String),
}

struct Inner {
    acceptor: Acceptor,
    holding: Option<Holding>,
    notes: Option<NotesFile>,
    /// When each member last sent a release (not persisted: it only
    /// shortens waits, never lengthens a lease).
    releases: std::collections::BTreeMap<super::ballot::MemberName, LocalTime>,
}

impl Inner {
    /// Persists the current state; `false` (logged) when it could not be.
    fn persist(&self) -> bool {
        let Some(file) = &self.notes else {
            return true;
        };
        let notes = Notes {
            acceptor: self.acceptor.state(),
            holding: self.holding.clone(),
        };
        match file.save(&notes) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("{e}");
                false
            }
        }
    }

    /// `reply`, sent only if the state it came from is durable.
    fn durable<R>(&self, before: &super::acceptor::AcceptorState, reply: Option<R>) -> Option<R> {
        let reply = reply?;
        if self.acceptor.state() == *before || self.persist() {
            Some(reply)
        } else {
            None
        }
    }
}

/// This member's acceptor, shared; every call reads the clock itself.
#[derive(Clone)]
pub struct AcceptorService {
    inner: Arc<Mutex<Inner>>,
    clock: BootClock,
}

impl std::fmt::Debug for AcceptorService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptorService").finish_non_exhaustive()
    }
}

impl AcceptorService {
    /// An acceptor without notes on disk: silent for one lease length after
    /// it starts (the diskless rule).
    pub fn new(config: LeaseConfig, clock: BootClock) -> AcceptorService {
        let acceptor = Acceptor::new(config, clock.now());
        AcceptorService::from_parts(acceptor, None, None, clock)
    }

    /// The acceptor of a member whose notes live in `file`: resumed from
    /// them when they are this boot's (see [`super::durable`]). Returns the
    /// lease this member still holds, if the notes say so, and how it started.
    pub fn open(
        config: LeaseConfig,
        clock: BootClock,
        file: NotesFile,
    ) -> (AcceptorService, Option<Holding>, Start) {
        let now = clock.now();
        let (acceptor, holding, start) = match file.load() {
            Resume::Fresh => (Acceptor::fresh(config), None, Start::Fresh),
            Resume::Restore(notes) => (
                Acceptor::restore(config, now, notes.acceptor),
                notes.holding.filter(|h| h.lease.expires_at > now),
                Start::Resumed,
            ),
            Resume::Silent(why) => (Acceptor::new(config, now), None, Start::Silent(why)),
        };
        let service = AcceptorService::from_parts(acceptor, holding.clone(), Some(file), clock);
        (service, holding, start)
    }

    fn from_parts(
        acceptor: Acceptor,
        holding: Option<Holding>,
        notes: Option<NotesFile>,
        clock: BootClock,
    ) -> AcceptorService {
        AcceptorService {
            inner: Arc::new(Mutex::new(Inner {
                acceptor,
                holding,
                notes,
                releases: Default::default(),
            })),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the acceptor half
        // updated in a way that matters more than losing the agent; keep going.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The clock this service reads.
    pub fn clock(&self) -> BootClock {
        self.clock
    }

    /// [`Acceptor::screen`]: whether a ballot from the network may reach
    /// this acceptor.
    pub fn screen(
        &self,
        ballot: &super::ballot::Ballot,
        voters: &[super::ballot::MemberName],
    ) -> Result<(), String> {
        self.lock().acceptor.screen(ballot, voters)
    }

    /// Answers a prepare; `None` while silent after a start, or when the
    /// promise could not be made durable.
    pub fn prepare(&self, msg: Prepare) -> Option<PrepareReply> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let before = inner.acceptor.state();
        let reply = inner.acceptor.on_prepare(now, msg);
        inner.durable(&before, reply)
    }

    /// Answers a propose; `None` while silent after a start, or when the
    /// accepted lease could not be made durable.
    pub fn propose(&self, msg: Propose) -> Option<ProposeReply> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let before = inner.acceptor.state();
        let reply = inner.acceptor.on_propose(now, msg);
        inner.durable(&before, reply)
    }

    /// Takes a release.
    pub fn release(&self, msg: Release) {
        let now = self.clock.now();
        let mut inner = self.lock();
        let before = inner.acceptor.state();
        if !inner.acceptor.is_silent(now) {
            inner.releases.insert(msg.ballot.member.clone(), now);
        }
        inner.acceptor.on_release(now, msg);
        if inner.acceptor.state() != before {
            inner.persist();
        }
    }

    /// Records the lease this member's proposer holds (or that it holds
    /// none), durably, so that a restarted agent knows. Before a release
    /// is sent, the notes must already say "none".
    pub fn set_holding(&self, holding: Option<Holding>) {
        let mut inner = self.lock();
        if inner.holding != holding {
            inner.holding = holding;
            inner.persist();
        }
    }

    /// Whether `member` released its lease at this acceptor after `since`.
    pub fn released_since(&self, member: &super::ballot::MemberName, since: LocalTime) -> bool {
        self.lock()
            .releases
            .get(member)
            .is_some_and(|at| *at > since)
    }

    /// The newest unexpired lease this acceptor accepted.
    pub fn current(&self) -> Option<CurrentLease> {
        let now = self.clock.now();
        self.lock().acceptor.current_lease(now)
    }

    /// Whether it still keeps silent after its start.
    pub fn is_silent(&self) -> bool {
        let now = self.clock.now();
        self.lock().acceptor.is_silent(now)
    }

    /// How long it stays silent still.
    pub fn silent_for(&self) -> Duration {
        let now = self.clock.now();
        self.lock()
            .acceptor
            .silent_until()
            .saturating_duration_since(now)
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
    use crate::lease::durable::{Holding, NotesFile};

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(secret_matches("abc", "abc"));
        assert!(!secret_matches("abd", "abc"));
        assert!(!secret_matches("ab", "abc"));
        assert!(!secret_matches("abcd", "abc"));
        assert!(!secret_matches("", "abc"));
    }

    fn ballot(counter: u64) -> crate::lease::Ballot {
        crate::lease::Ballot::new(counter, crate::lease::MemberName::from("pg2"), 9)
    }

    fn notes_in(dir: &std::path::Path, boot: &str) -> NotesFile {
        NotesFile::new(dir.join("data.lease"), boot.into())
    }

    #[test]
    fn given_an_agent_restart_on_the_same_boot_then_the_acceptor_answers_at_once_with_what_it_promised_and_accepted(
    ) {
        let cfg = LeaseConfig::new(Duration::from_secs(5), 10_000).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (first, held, start) =
            AcceptorService::open(cfg, BootClock::new(), notes_in(dir.path(), "b1"));
        assert_eq!(
            (held, start),
            (None, Start::Fresh),
            "no notes: fresh, answers at once"
        );
        assert!(!first.is_silent());
        assert!(first.prepare(Prepare { ballot: ballot(3) }).is_some());
        let accepted = first.propose(Propose {
            ballot: ballot(3),
            lease_ms: 5_000,
        });
        assert!(matches!(accepted, Some(ProposeReply::Accepted { .. })));
        drop(first);

        let (again, _, start) =
            AcceptorService::open(cfg, BootClock::new(), notes_in(dir.path(), "b1"));
        assert_eq!(start, Start::Resumed);
        assert!(!again.is_silent());
        assert_eq!(
            again.current().map(|c| c.ballot),
            Some(ballot(3)),
            "the accepted lease survived"
        );
        let lower = again.prepare(Prepare { ballot: ballot(2) });
        assert!(
            matches!(&lower, Some(PrepareReply::Reject { promised, .. }) if *promised == ballot(3)),
            "the promise survived: {lower:?}"
        );

        let (rebooted, _, start) =
            AcceptorService::open(cfg, BootClock::new(), notes_in(dir.path(), "b2"));
        assert!(matches!(start, Start::Silent(_)), "another boot: silent");
        assert!(rebooted.is_silent());
    }

    #[test]
    fn a_held_lease_is_resumed_until_its_end_and_forgotten_once_released() {
        let cfg = LeaseConfig::new(Duration::from_secs(5), 10_000).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let clock = BootClock::new();
        let (svc, _, _) = AcceptorService::open(cfg, clock, notes_in(dir.path(), "b1"));
        let holding = Holding {
            lease: crate::lease::HeldLease {
                ballot: ballot(4),
                expires_at: clock.now().saturating_add(Duration::from_secs(4)),
            },
            term: 4,
        };
        svc.set_holding(Some(holding.clone()));
        let (_, held, _) = AcceptorService::open(cfg, clock, notes_in(dir.path(), "b1"));
        assert_eq!(held, Some(holding));
        svc.set_holding(None);
        let (_, held, _) = AcceptorService::open(cfg, clock, notes_in(dir.path(), "b1"));
        assert_eq!(held, None);
    }

    #[test]
    fn an_answer_that_cannot_be_made_durable_is_not_sent() {
        let cfg = LeaseConfig::new(Duration::from_secs(5), 10_000).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = NotesFile::new(dir.path().join("gone/data.lease"), "b1".into());
        let (svc, _, _) = AcceptorService::open(cfg, BootClock::new(), file);
        assert_eq!(svc.prepare(Prepare { ballot: ballot(1) }), None);
    }

    #[test]
    fn a_new_acceptor_service_is_silent_for_one_lease() {
        let cfg = LeaseConfig::new(Duration::from_secs(5), 10_000).unwrap();
        let svc = AcceptorService::new(cfg, BootClock::new());
        assert!(svc.is_silent());
        assert!(svc.current().is_none());
    }
}
