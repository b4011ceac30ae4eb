//! The proposer: the half of a member that asks for the lease, renews it
//! and gives it back. One round at a time:
//!
//! 1. [`Proposer::start_acquire`] takes the time *first* — the lease it may
//!    win is timed from this instant on its own clock — and returns a
//!    `prepare` for every member, itself included.
//! 2. [`Proposer::on_prepare_reply`] collects promises. Once a majority of
//!    acceptors have promised **without reporting an unexpired lease of
//!    another member**, it returns a `propose` for every member. Leases of
//!    its own in the reports do not stand in the way: that is renewal.
//! 3. [`Proposer::on_propose_reply`] collects accepts. With a majority, the
//!    proposer holds the lease until `prepare time + holder_len` on its own
//!    clock, where `holder_len = T·(1−ρ)/(1+ρ)` (see
//!    [`LeaseConfig::holder_len`]), so its view ends before any acceptor's.
//!
//! A reject, a report that blocks a majority, a timeout or a late majority
//! ends the round with an [`Outcome`]; the caller decides when to try again
//! (with some randomness, so that two proposers do not keep pre-empting each
//! other). Replies for any other ballot than the round's are ignored, which
//! is what makes late, duplicated and reordered messages harmless.

use super::ballot::{Ballot, MemberName};
use super::clock::{LeaseConfig, LocalTime};
use super::messages::{LeaseReport, Prepare, PrepareReply, Propose, ProposeReply, Release};
#[cfg(test)]
use super::simulation::Fault;
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

/// The renewal rule: a holder starts a new round once no more than
/// `renew_margin` of its lease is left. The margin must cover a few round
/// trips and retries; half the lease is a comfortable default.
pub fn should_renew(now: LocalTime, expires_at: LocalTime, renew_margin: Duration) -> bool {
    now.saturating_add(renew_margin) >= expires_at
}

/// Why a [`Proposer`] cannot be built from a member list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembersError {
    /// The proposer's own name is not among the members.
    NotAMember(MemberName),
    /// A name appears twice: majorities would be miscounted.
    Duplicate(MemberName),
}

impl fmt::Display for MembersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MembersError::NotAMember(me) => write!(
                f,
                "this node's name {me} is not in the member list; add it or fix `name`"
            ),
            MembersError::Duplicate(name) => {
                write!(f, "member {name} is listed twice; each name must be unique")
            }
        }
    }
}

impl std::error::Error for MembersError {}

/// The lease this proposer holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldLease {
    /// The winning ballot; its counter is the term.
    pub ballot: Ballot,
    /// When the lease ends, on this member's clock.
    pub expires_at: LocalTime,
}

impl HeldLease {
    /// The lease's term: its ballot counter.
    pub fn term(&self) -> u64 {
        self.ballot.counter
    }
}

/// How a round ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A majority accepted: this member holds the lease until `expires_at`.
    Acquired {
        /// The winning ballot.
        ballot: Ballot,
        /// The end of the lease on this member's clock.
        expires_at: LocalTime,
    },
    /// Acceptors report another member's unexpired lease, so no majority is
    /// free: wait, roughly `remaining`, then try again.
    Blocked {
        /// The member whose lease stands in the way.
        holder: MemberName,
        /// Its time left, as the reporting acceptor saw it.
        remaining: Duration,
    },
    /// An acceptor promised a higher ballot; the next round goes above it.
    Preempted {
        /// The higher ballot.
        by: Ballot,
    },
    /// The majority came only after the lease the round would have won had
    /// already run out: nothing is held.
    TooLate,
    /// The caller gave up waiting for replies ([`Proposer::on_timeout`]).
    TimedOut,
    /// An acceptor's lease is shorter than ours: the members' configurations
    /// disagree, and no lease can be granted until they are fixed.
    LeaseTooLong {
        /// The refusing acceptor's lease length.
        max_lease: Duration,
    },
}

/// What to do after a reply to a prepare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrepareProgress {
    /// Not enough answers yet (or the reply was stale): keep waiting.
    Waiting,
    /// A majority promised with no other member's lease in the way: send
    /// these proposals.
    Propose(Vec<(MemberName, Propose)>),
    /// The round is over without a lease.
    Ended(Outcome),
}

#[derive(Clone, Debug)]
enum Phase {
    Preparing {
        /// Acceptors that promised and report no other member's lease.
        free: BTreeSet<MemberName>,
        /// Acceptors that promised but report another member's lease.
        blocked: BTreeSet<MemberName>,
        /// The longest-lasting foreign lease reported, for the outcome.
        blocker: Option<LeaseReport>,
    },
    Proposing {
        accepted: BTreeSet<MemberName>,
    },
}

#[derive(Clone, Debug)]
struct Round {
    ballot: Ballot,
    /// Taken before the prepare was sent: the lease is timed from here.
    started_at: LocalTime,
    phase: Phase,
}

/// The proposer half of a member. Pure: every call takes this member's
/// current monotonic time and returns the messages to send.
#[derive(Clone, Debug)]
pub struct Proposer {
    me: MemberName,
    incarnation: u64,
    members: Vec<MemberName>,
    config: LeaseConfig,
    /// The highest ballot counter seen anywhere, own ballots included.
    highest_counter: u64,
    round: Option<Round>,
    held: Option<HeldLease>,
    #[cfg(test)]
    fault: Fault,
}

impl Proposer {
    /// The proposer of member `me` among `members` (which must include
    /// `me`). `incarnation` must differ from every earlier life of this
    /// member — a random `u64` drawn at startup will do — so that messages
    /// addressed to a previous life are never mistaken for this one's.
    pub fn new(
        me: MemberName,
        members: Vec<MemberName>,
        config: LeaseConfig,
        incarnation: u64,
    ) -> Result<Proposer, MembersError> {
        let mut sorted = members;
        sorted.sort();
        if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(MembersError::Duplicate(pair[0].clone()));
        }
        if sorted.binary_search(&me).is_err() {
            return Err(MembersError::NotAMember(me));
        }
        Ok(Proposer {
            me,
            incarnation,
            members: sorted,
            config,
            highest_counter: 0,
            round: None,
            held: None,
            #[cfg(test)]
            fault: Fault::None,
        })
    }

    /// The same proposer with a deliberate bug, for the simulator to catch.
    #[cfg(test)]
    pub(crate) fn with_fault(mut self, fault: Fault) -> Proposer {
        self.fault = fault;
        self
    }

    /// This member's name.
    pub fn me(&self) -> &MemberName {
        &self.me
    }

    /// How many acceptors make a majority.
    pub fn majority(&self) -> usize {
        self.members.len() / 2 + 1
    }

    /// Starts a round to acquire the lease, or to renew it when held: takes
    /// the lease's start time *now*, before anything is sent, and returns a
    /// prepare for every member (itself included: its own acceptor is one
    /// vote like the others). A round still running is abandoned.
    pub fn start_acquire(&mut self, now: LocalTime) -> Vec<(MemberName, Prepare)> {
        // Saturating: a counter near u64::MAX would need 10^19 rounds, or a
        // peer gone mad, and stalling beats panicking.
        self.highest_counter = self.highest_counter.saturating_add(1);
        let ballot = Ballot::new(self.highest_counter, self.me.clone(), self.incarnation);
        self.round = Some(Round {
            ballot: ballot.clone(),
            started_at: now,
            phase: Phase::Preparing {
                free: BTreeSet::new(),
                blocked: BTreeSet::new(),
                blocker: None,
            },
        });
        self.members
            .iter()
            .map(|member| {
                (
                    member.clone(),
                    Prepare {
                        ballot: ballot.clone(),
                    },
                )
            })
            .collect()
    }

    /// Takes `from`'s answer to a prepare.
    pub fn on_prepare_reply(
        &mut self,
        now: LocalTime,
        from: &MemberName,
        reply: PrepareReply,
    ) -> PrepareProgress {
        // Learn counters from every reply, stale ones included: the next
        // ballot must go above anything already in use.
        match &reply {
            PrepareReply::Promise { leases, .. } => {
                for lease in leases {
                    self.learn(&lease.ballot);
                }
            }
            PrepareReply::Reject { promised, .. } => self.learn(promised),
        }
        if !self.is_current(reply.ballot(), from) {
            return PrepareProgress::Waiting;
        }
        let majority = self.majority();
        let voters = self.members.len();
        let me = self.me.clone();
        let lease_ms = self.config.lease_millis();
        let holder_len = self.holder_len();
        let Some(round) = self.round.as_mut() else {
            return PrepareProgress::Waiting;
        };
        let Phase::Preparing {
            free,
            blocked,
            blocker,
        } = &mut round.phase
        else {
            return PrepareProgress::Waiting;
        };
        if free.contains(from) || blocked.contains(from) {
            return PrepareProgress::Waiting;
        }
        match reply {
            PrepareReply::Reject { promised, .. } => {
                self.round = None;
                PrepareProgress::Ended(Outcome::Preempted { by: promised })
            }
            PrepareReply::Promise { leases, .. } => {
                let foreign = leases
                    .into_iter()
                    .filter(|lease| *lease.owner() != me)
                    .max_by_key(|lease| lease.remaining_ms);
                match foreign {
                    None => {
                        free.insert(from.clone());
                    }
                    Some(lease) => {
                        blocked.insert(from.clone());
                        if blocker
                            .as_ref()
                            .is_none_or(|b| b.remaining_ms < lease.remaining_ms)
                        {
                            *blocker = Some(lease);
                        }
                    }
                }
                // Any majority of free promises is enough, even if another
                // acceptor reported a lease: every majority overlaps the
                // majority that accepted that lease, so if this one is free
                // of it, the holder's own (shorter) view of it has ended
                // (the safety sketch in `lease/mod.rs`).
                if free.len() >= majority {
                    if now >= round.started_at.saturating_add(holder_len) {
                        self.round = None;
                        return PrepareProgress::Ended(Outcome::TooLate);
                    }
                    let ballot = round.ballot.clone();
                    round.phase = Phase::Proposing {
                        accepted: BTreeSet::new(),
                    };
                    let proposals = self
                        .members
                        .iter()
                        .map(|member| {
                            (
                                member.clone(),
                                Propose {
                                    ballot: ballot.clone(),
                                    lease_ms,
                                },
                            )
                        })
                        .collect();
                    return PrepareProgress::Propose(proposals);
                }
                // Too many acceptors report another member's lease for a
                // free majority to be possible: this round cannot win.
                if blocked.len() > voters - majority {
                    if let Some(lease) = blocker.take() {
                        self.round = None;
                        return PrepareProgress::Ended(Outcome::Blocked {
                            holder: lease.owner().clone(),
                            remaining: Duration::from_millis(lease.remaining_ms),
                        });
                    }
                }
                PrepareProgress::Waiting
            }
        }
    }

    /// Takes `from`'s answer to a proposal; returns the outcome once the
    /// round is decided.
    pub fn on_propose_reply(
        &mut self,
        now: LocalTime,
        from: &MemberName,
        reply: ProposeReply,
    ) -> Option<Outcome> {
        if let ProposeReply::Rejected { promised, .. } = &reply {
            self.learn(promised);
        }
        if !self.is_current(reply.ballot(), from) {
            return None;
        }
        let needed = self.accepts_needed();
        let holder_len = self.holder_len();
        let round = self.round.as_mut()?;
        let Phase::Proposing { accepted } = &mut round.phase else {
            return None;
        };
        match reply {
            ProposeReply::Accepted { .. } => {
                accepted.insert(from.clone());
                if accepted.len() < needed {
                    return None;
                }
                let ballot = round.ballot.clone();
                let expires_at = round.started_at.saturating_add(holder_len);
                self.round = None;
                if now >= expires_at {
                    return Some(Outcome::TooLate);
                }
                self.held = Some(HeldLease {
                    ballot: ballot.clone(),
                    expires_at,
                });
                Some(Outcome::Acquired { ballot, expires_at })
            }
            ProposeReply::Rejected { promised, .. } => {
                self.round = None;
                Some(Outcome::Preempted { by: promised })
            }
            ProposeReply::LeaseTooLong { max_lease_ms, .. } => {
                self.round = None;
                Some(Outcome::LeaseTooLong {
                    max_lease: Duration::from_millis(max_lease_ms),
                })
            }
        }
    }

    /// Abandons the running round, if any: replies to it will be ignored.
    /// A lease already held is kept until it expires.
    pub fn on_timeout(&mut self, _now: LocalTime) -> Option<Outcome> {
        self.round.take().map(|_| Outcome::TimedOut)
    }

    /// Gives the lease up at once: stops holding it, abandons any round,
    /// and returns a release for every member naming this life's newest
    /// ballot, so acceptors drop all of its leases and the next holder need
    /// not wait for them to expire. Nothing to send if there is no ballot.
    pub fn release(&mut self, _now: LocalTime) -> Vec<(MemberName, Release)> {
        let held = self.held.take().map(|lease| lease.ballot);
        let running = self.round.take().map(|round| round.ballot);
        // A held lease resumed from an earlier life has that life's
        // incarnation: release the newest ballot of each life involved.
        let mut newest: Vec<Ballot> = Vec::new();
        for ballot in held.into_iter().chain(running) {
            match newest
                .iter_mut()
                .find(|b| b.incarnation == ballot.incarnation)
            {
                Some(b) if *b < ballot => *b = ballot,
                Some(_) => {}
                None => newest.push(ballot),
            }
        }
        self.members
            .iter()
            .flat_map(|member| {
                newest.iter().map(|ballot| {
                    (
                        member.clone(),
                        Release {
                            ballot: ballot.clone(),
                        },
                    )
                })
            })
            .collect()
    }

    /// True while this member holds the lease, on its own clock.
    pub fn holds_lease(&self, now: LocalTime) -> bool {
        self.held_lease(now).is_some()
    }

    /// Resumes holding a lease that an earlier life of this member won on
    /// this boot (the lease notes): it is this member's lease, timed on the
    /// same clock, so holding it until the same end is what the earlier life
    /// would have done. Ballots go on above it.
    pub fn resume_holding(&mut self, lease: HeldLease, now: LocalTime) {
        if now < lease.expires_at {
            self.learn(&lease.ballot);
            self.held = Some(lease);
        }
    }

    /// The lease this member holds now, if any.
    pub fn held_lease(&self, now: LocalTime) -> Option<&HeldLease> {
        self.held.as_ref().filter(|lease| now < lease.expires_at)
    }

    /// When the held lease ends on this member's clock; `None` if not held.
    pub fn lease_expires_at(&self, now: LocalTime) -> Option<LocalTime> {
        self.held_lease(now).map(|lease| lease.expires_at)
    }

    /// When the running round started (its lease would be timed from
    /// then), so the caller can time it out; `None` between rounds.
    pub fn round_started_at(&self) -> Option<LocalTime> {
        self.round.as_ref().map(|round| round.started_at)
    }

    /// The running round's ballot, if any.
    pub fn round_ballot(&self) -> Option<&Ballot> {
        self.round.as_ref().map(|round| &round.ballot)
    }

    fn learn(&mut self, ballot: &Ballot) {
        self.highest_counter = self.highest_counter.max(ballot.counter);
    }

    /// A reply counts only if it answers the running round's ballot and
    /// comes from a member.
    fn is_current(&self, ballot: &Ballot, from: &MemberName) -> bool {
        self.round
            .as_ref()
            .is_some_and(|round| round.ballot == *ballot)
            && self.members.binary_search(from).is_ok()
    }

    /// How long a won lease is held, from the prepare: see
    /// [`LeaseConfig::holder_len`].
    fn holder_len(&self) -> Duration {
        #[cfg(test)]
        if self.fault == Fault::HolderIgnoresDrift {
            return self.config.lease_len();
        }
        self.config.holder_len()
    }

    fn accepts_needed(&self) -> usize {
        #[cfg(test)]
        if self.fault == Fault::ProposerCountsMinorityAccepts {
            return (self.majority() - 1).max(1);
        }
        self.majority()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    fn config() -> LeaseConfig {
        LeaseConfig::new(T, 10_000).expect("valid config")
    }

    fn at_ms(ms: u64) -> LocalTime {
        LocalTime::from_nanos(ms * 1_000_000)
    }

    fn name(n: &str) -> MemberName {
        MemberName::from(n)
    }

    fn pg1() -> Proposer {
        Proposer::new(
            name("pg1"),
            vec![name("pg1"), name("pg2"), name("pg3")],
            config(),
            7,
        )
        .expect("valid members")
    }

    fn promise(ballot: &Ballot, leases: Vec<LeaseReport>) -> PrepareReply {
        PrepareReply::Promise {
            ballot: ballot.clone(),
            leases,
        }
    }

    fn accepted(ballot: &Ballot) -> ProposeReply {
        ProposeReply::Accepted {
            ballot: ballot.clone(),
        }
    }

    fn lease_of(member: &str, counter: u64, remaining_ms: u64) -> LeaseReport {
        LeaseReport {
            ballot: Ballot::new(counter, name(member), 1),
            remaining_ms,
        }
    }

    /// Runs a round for `p` at time `start_ms` where every acceptor promises
    /// with no lease and accepts; returns the outcome.
    fn win(p: &mut Proposer, start_ms: u64) -> Option<Outcome> {
        let prepares = p.start_acquire(at_ms(start_ms));
        let ballot = prepares[0].1.ballot.clone();
        assert_eq!(
            p.on_prepare_reply(at_ms(start_ms + 1), &name("pg1"), promise(&ballot, vec![])),
            PrepareProgress::Waiting
        );
        let progress =
            p.on_prepare_reply(at_ms(start_ms + 1), &name("pg2"), promise(&ballot, vec![]));
        assert!(
            matches!(progress, PrepareProgress::Propose(_)),
            "{progress:?}"
        );
        assert_eq!(
            p.on_propose_reply(at_ms(start_ms + 2), &name("pg1"), accepted(&ballot)),
            None
        );
        p.on_propose_reply(at_ms(start_ms + 2), &name("pg2"), accepted(&ballot))
    }

    #[test]
    fn given_members_without_me_or_with_a_duplicate_then_the_proposer_is_refused() {
        assert_eq!(
            Proposer::new(name("pg9"), vec![name("pg1")], config(), 1).err(),
            Some(MembersError::NotAMember(name("pg9")))
        );
        assert_eq!(
            Proposer::new(name("pg1"), vec![name("pg1"), name("pg1")], config(), 1).err(),
            Some(MembersError::Duplicate(name("pg1")))
        );
    }

    #[test]
    fn given_a_new_proposer_when_it_starts_a_round_then_every_member_itself_included_gets_a_prepare(
    ) {
        let mut p = pg1();
        let prepares = p.start_acquire(at_ms(0));
        let to: Vec<&str> = prepares.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(to, vec!["pg1", "pg2", "pg3"]);
        assert_eq!(prepares[0].1.ballot, Ballot::new(1, name("pg1"), 7));
        assert_eq!(p.round_started_at(), Some(at_ms(0)));
    }

    #[test]
    fn given_a_majority_of_accepts_then_the_lease_is_held_from_the_prepare_time_for_holder_len() {
        let mut p = pg1();
        let outcome = win(&mut p, 1_000);
        let expires_at = at_ms(1_000).saturating_add(config().holder_len());
        assert_eq!(
            outcome,
            Some(Outcome::Acquired {
                ballot: Ballot::new(1, name("pg1"), 7),
                expires_at,
            })
        );
        assert!(p.holds_lease(at_ms(1_002)));
        assert_eq!(p.held_lease(at_ms(1_002)).map(HeldLease::term), Some(1));
        assert_eq!(p.lease_expires_at(at_ms(1_002)), Some(expires_at));
        assert!(
            !p.holds_lease(expires_at),
            "the lease ends at expires_at, not after"
        );
    }

    #[test]
    fn given_another_member_s_unexpired_lease_reported_by_a_majority_then_it_does_not_propose() {
        let mut p = pg1();
        let ballot = p.start_acquire(at_ms(0))[0].1.ballot.clone();
        let report = || vec![lease_of("pg2", 4, 3_000)];
        assert_eq!(
            p.on_prepare_reply(at_ms(1), &name("pg2"), promise(&ballot, report())),
            PrepareProgress::Waiting
        );
        assert_eq!(
            p.on_prepare_reply(at_ms(1), &name("pg3"), promise(&ballot, report())),
            PrepareProgress::Ended(Outcome::Blocked {
                holder: name("pg2"),
                remaining: Duration::from_secs(3),
            })
        );
        assert_eq!(p.round_ballot(), None);
        assert!(!p.holds_lease(at_ms(2)));
    }

    #[test]
    fn given_one_acceptor_reports_another_lease_when_a_majority_is_free_of_it_then_it_proposes() {
        let mut p = pg1();
        let ballot = p.start_acquire(at_ms(0))[0].1.ballot.clone();
        let stale = vec![lease_of("pg2", 4, 3_000)];
        assert_eq!(
            p.on_prepare_reply(at_ms(1), &name("pg2"), promise(&ballot, stale)),
            PrepareProgress::Waiting
        );
        assert_eq!(
            p.on_prepare_reply(at_ms(1), &name("pg1"), promise(&ballot, vec![])),
            PrepareProgress::Waiting
        );
        assert!(matches!(
            p.on_prepare_reply(at_ms(1), &name("pg3"), promise(&ballot, vec![])),
            PrepareProgress::Propose(_)
        ));
    }

    #[test]
    fn given_only_its_own_lease_reported_when_renewing_then_it_proposes_itself_again() {
        let mut p = pg1();
        win(&mut p, 0);
        let ballot = p.start_acquire(at_ms(5_000))[0].1.ballot.clone();
        assert_eq!(ballot.counter, 2);
        let own = || vec![lease_of("pg1", 1, 5_000)];
        p.on_prepare_reply(at_ms(5_001), &name("pg1"), promise(&ballot, own()));
        let progress = p.on_prepare_reply(at_ms(5_001), &name("pg2"), promise(&ballot, own()));
        let PrepareProgress::Propose(proposals) = progress else {
            panic!("expected proposals, got {progress:?}");
        };
        assert_eq!(proposals.len(), 3);
        assert_eq!(
            proposals[0].1,
            Propose {
                ballot: ballot.clone(),
                lease_ms: 10_000
            }
        );
        p.on_propose_reply(at_ms(5_002), &name("pg1"), accepted(&ballot));
        let outcome = p.on_propose_reply(at_ms(5_002), &name("pg3"), accepted(&ballot));
        assert!(
            matches!(outcome, Some(Outcome::Acquired { .. })),
            "{outcome:?}"
        );
        assert_eq!(
            p.lease_expires_at(at_ms(5_003)),
            Some(at_ms(5_000).saturating_add(config().holder_len())),
            "renewal extends from the new prepare time"
        );
    }

    #[test]
    fn given_replies_to_an_older_ballot_or_another_life_then_they_are_ignored() {
        let mut p = pg1();
        let old = p.start_acquire(at_ms(0))[0].1.ballot.clone();
        p.on_timeout(at_ms(100));
        let current = p.start_acquire(at_ms(200))[0].1.ballot.clone();
        let previous_life = Ballot::new(current.counter, name("pg1"), 6);
        for stale in [&old, &previous_life] {
            assert_eq!(
                p.on_prepare_reply(at_ms(201), &name("pg2"), promise(stale, vec![])),
                PrepareProgress::Waiting
            );
            assert_eq!(
                p.on_prepare_reply(at_ms(201), &name("pg3"), promise(stale, vec![])),
                PrepareProgress::Waiting
            );
            assert_eq!(
                p.on_propose_reply(at_ms(201), &name("pg2"), accepted(stale)),
                None
            );
            assert_eq!(
                p.on_propose_reply(at_ms(201), &name("pg3"), accepted(stale)),
                None
            );
        }
        assert!(!p.holds_lease(at_ms(202)));
        assert_eq!(
            p.round_ballot(),
            Some(&current),
            "the current round is untouched"
        );
    }

    #[test]
    fn given_duplicate_or_unknown_senders_then_they_do_not_make_a_majority() {
        let mut p = pg1();
        let ballot = p.start_acquire(at_ms(0))[0].1.ballot.clone();
        p.on_prepare_reply(at_ms(1), &name("pg2"), promise(&ballot, vec![]));
        assert_eq!(
            p.on_prepare_reply(at_ms(1), &name("pg2"), promise(&ballot, vec![])),
            PrepareProgress::Waiting
        );
        assert_eq!(
            p.on_prepare_reply(at_ms(1), &name("pg9"), promise(&ballot, vec![])),
            PrepareProgress::Waiting
        );
    }

    #[test]
    fn given_accepts_that_arrive_after_the_lease_timer_ran_out_then_nothing_is_held() {
        let mut p = pg1();
        let ballot = p.start_acquire(at_ms(0))[0].1.ballot.clone();
        p.on_prepare_reply(at_ms(1), &name("pg1"), promise(&ballot, vec![]));
        p.on_prepare_reply(at_ms(1), &name("pg2"), promise(&ballot, vec![]));
        let late = at_ms(0).saturating_add(config().holder_len());
        p.on_propose_reply(late, &name("pg1"), accepted(&ballot));
        assert_eq!(
            p.on_propose_reply(late, &name("pg2"), accepted(&ballot)),
            Some(Outcome::TooLate)
        );
        assert!(!p.holds_lease(late));
    }

    #[test]
    fn given_a_reject_then_the_round_ends_and_the_next_ballot_goes_above_the_rejecting_promise() {
        let mut p = pg1();
        let ballot = p.start_acquire(at_ms(0))[0].1.ballot.clone();
        let higher = Ballot::new(41, name("pg3"), 1);
        assert_eq!(
            p.on_prepare_reply(
                at_ms(1),
                &name("pg3"),
                PrepareReply::Reject {
                    ballot,
                    promised: higher.clone()
                }
            ),
            PrepareProgress::Ended(Outcome::Preempted { by: higher.clone() })
        );
        let next = p.start_acquire(at_ms(2))[0].1.ballot.clone();
        assert!(next > higher, "{next:?} must exceed {higher:?}");
        assert_eq!(next.counter, 42);
    }

    #[test]
    fn given_a_rejected_proposal_then_the_round_ends_preempted() {
        let mut p = pg1();
        let ballot = p.start_acquire(at_ms(0))[0].1.ballot.clone();
        p.on_prepare_reply(at_ms(1), &name("pg1"), promise(&ballot, vec![]));
        p.on_prepare_reply(at_ms(1), &name("pg2"), promise(&ballot, vec![]));
        let higher = Ballot::new(2, name("pg2"), 1);
        let reply = ProposeReply::Rejected {
            ballot,
            promised: higher.clone(),
        };
        assert_eq!(
            p.on_propose_reply(at_ms(2), &name("pg2"), reply),
            Some(Outcome::Preempted { by: higher })
        );
    }

    #[test]
    fn given_an_acceptor_with_a_shorter_lease_then_the_round_ends_saying_so() {
        let mut p = pg1();
        let ballot = p.start_acquire(at_ms(0))[0].1.ballot.clone();
        p.on_prepare_reply(at_ms(1), &name("pg1"), promise(&ballot, vec![]));
        p.on_prepare_reply(at_ms(1), &name("pg2"), promise(&ballot, vec![]));
        let reply = ProposeReply::LeaseTooLong {
            ballot,
            max_lease_ms: 5_000,
        };
        assert_eq!(
            p.on_propose_reply(at_ms(2), &name("pg2"), reply),
            Some(Outcome::LeaseTooLong {
                max_lease: Duration::from_secs(5)
            })
        );
    }

    #[test]
    fn given_a_holder_when_it_releases_then_it_stops_holding_and_tells_every_member() {
        let mut p = pg1();
        win(&mut p, 0);
        let releases = p.release(at_ms(10));
        assert_eq!(releases.len(), 3);
        assert_eq!(
            releases[2],
            (
                name("pg3"),
                Release {
                    ballot: Ballot::new(1, name("pg1"), 7)
                }
            )
        );
        assert!(!p.holds_lease(at_ms(10)));
        assert!(p.release(at_ms(11)).is_empty(), "nothing left to release");
    }

    #[test]
    fn given_a_holder_renewing_when_it_releases_then_the_release_names_the_newer_round() {
        let mut p = pg1();
        win(&mut p, 0);
        let renewal = p.start_acquire(at_ms(5_000))[0].1.ballot.clone();
        let releases = p.release(at_ms(5_001));
        assert_eq!(releases[0].1.ballot, renewal);
        assert_eq!(p.round_ballot(), None);
    }

    #[test]
    fn given_a_timeout_then_the_round_is_abandoned_but_a_held_lease_is_kept() {
        let mut p = pg1();
        win(&mut p, 0);
        p.start_acquire(at_ms(5_000));
        assert_eq!(p.on_timeout(at_ms(5_500)), Some(Outcome::TimedOut));
        assert_eq!(p.on_timeout(at_ms(5_600)), None);
        assert!(p.holds_lease(at_ms(5_600)));
    }

    #[test]
    fn given_the_renewal_margin_then_renewal_starts_exactly_when_that_much_is_left() {
        let expires = at_ms(10_000);
        let margin = Duration::from_secs(4);
        assert!(!should_renew(at_ms(5_999), expires, margin));
        assert!(should_renew(at_ms(6_000), expires, margin));
        assert!(
            should_renew(at_ms(12_000), expires, margin),
            "expired: renew at once"
        );
        assert!(!should_renew(at_ms(9_999), expires, Duration::ZERO));
    }
}
