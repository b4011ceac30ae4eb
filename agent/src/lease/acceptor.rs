//! The acceptor: every member runs one. It promises ballots, accepts
//! leases, times them on its own clock, and forgets everything on restart.
//!
//! Rules, in the order they are applied to every message:
//!
//! 1. **Silent after a restart it cannot account for.** An acceptor that
//!    lost its notes (a reboot: its clock readings are from another boot;
//!    a damaged state file) answers nothing and ignores releases for `T`
//!    on its own clock: it cannot know what it promised or accepted in a
//!    previous life; after `T`, every lease it may have granted then has
//!    ended at its holder (whose view always ends first). An acceptor
//!    restarted on the same boot resumes from its notes
//!    ([`Acceptor::restore`]: the caller persisted [`Acceptor::state`]
//!    before each answer), and one that never answered anything has
//!    nothing to forget ([`Acceptor::fresh`]): both answer at once.
//! 2. **Promise** a prepare whose ballot is at least the highest promised,
//!    and report every unexpired lease accepted; otherwise **reject** it,
//!    naming the higher promise.
//! 3. **Accept** a proposal whose ballot is at least the highest promised,
//!    and time the lease from *now*, on this acceptor's clock — never from
//!    anything the proposer says about time.
//! 4. **Release** drops the leases of the releasing proposer's life with
//!    a ballot up to the released one.
//!
//! One departure from the paper's pseudo-code, on purpose: the paper's
//! acceptor keeps a single accepted proposal, so accepting a higher ballot
//! *overwrites* a lease that is still running. With diskless restarts that
//! is unsafe: a restarted acceptor may later accept a *lower* ballot than
//! one it promised in its previous life, the proposer of that lower ballot
//! then holds a lease whose record at some acceptor was overwritten, and the
//! owner of the overwriting ballot may renew on top of it. This acceptor
//! keeps **every** unexpired lease and reports them all, so a lease stays
//! visible at each acceptor that accepted it until it expires there. The
//! simulator plays the schedule that breaks the overwriting variant
//! (`play_forgotten_promise`) against both.

use super::ballot::{Ballot, MemberName};
use super::clock::{ceil_millis, LeaseConfig, LocalTime};
use super::messages::{LeaseReport, Prepare, PrepareReply, Propose, ProposeReply, Release};
#[cfg(test)]
use super::simulation::Fault;
use std::time::Duration;

/// How far above the highest counter an acceptor knows a ballot from the
/// network may go ([`Acceptor::screen`]): at one round per loop, more than
/// a century of rounds.
pub const MAX_COUNTER_STEP: u64 = 1 << 32;

/// One lease this acceptor accepted, timed on its own clock.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AcceptedLease {
    ballot: Ballot,
    expires_at: LocalTime,
}

/// Everything an acceptor must remember to resume after a restart on the
/// same boot: its promise and every lease it accepted, with expiries on
/// this member's clock. Persisted by the caller before each answer that
/// changed it ([`Acceptor::state`]); meaningless on another boot, whose
/// clock readings start elsewhere.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcceptorState {
    /// The highest ballot promised.
    pub promised: Option<Ballot>,
    /// Every accepted lease, with its end on this member's clock.
    pub accepted: Vec<(Ballot, LocalTime)>,
    /// The end of a post-restart silence on this member's clock (zero:
    /// never silent). Kept so that an agent restarted *during* its
    /// silence stays silent: the notes it wrote meanwhile say nothing of
    /// what it may have granted before the reboot (found by the lease
    /// simulator, seed 9716 of 100,000).
    pub silent_until: LocalTime,
}

impl AcceptorState {
    /// Nothing promised, nothing accepted, never silent: an acceptor in
    /// this state has nothing to forget.
    pub fn is_empty(&self) -> bool {
        self.promised.is_none()
            && self.accepted.is_empty()
            && self.silent_until == LocalTime::from_nanos(0)
    }
}

/// What an acceptor can tell about the lease, for status pages: the newest
/// unexpired lease it accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentLease {
    /// The member the lease was granted to.
    pub holder: MemberName,
    /// The accepted ballot; its counter is the term.
    pub ballot: Ballot,
    /// Time left on this acceptor's clock. The holder's own view ends a
    /// little earlier.
    pub remaining: Duration,
}

/// The acceptor half of a member. Pure: every call takes this member's
/// current monotonic time and returns the answer to send, if any.
#[derive(Clone, Debug)]
pub struct Acceptor {
    lease_len: Duration,
    silent_until: LocalTime,
    promised: Option<Ballot>,
    /// Every unexpired lease accepted, ascending by ballot.
    accepted: Vec<AcceptedLease>,
    #[cfg(test)]
    fault: Fault,
}

impl Acceptor {
    /// A freshly (re)started acceptor: it knows nothing and stays silent
    /// until `now + T` on its own clock (the diskless rule).
    pub fn new(config: LeaseConfig, now: LocalTime) -> Acceptor {
        Acceptor {
            lease_len: config.lease_len(),
            silent_until: now.saturating_add(config.lease_len()),
            promised: None,
            accepted: Vec::new(),
            #[cfg(test)]
            fault: Fault::None,
        }
    }

    /// An acceptor that never answered anything before: it has nothing to
    /// forget, so it answers at once (a new cluster elects without waiting).
    pub fn fresh(config: LeaseConfig) -> Acceptor {
        Acceptor {
            lease_len: config.lease_len(),
            silent_until: LocalTime::from_nanos(0),
            promised: None,
            accepted: Vec::new(),
            #[cfg(test)]
            fault: Fault::None,
        }
    }

    /// An acceptor resuming, on the same boot, from the notes its previous
    /// life persisted before each answer: it answers at once.
    pub fn restore(config: LeaseConfig, now: LocalTime, state: AcceptorState) -> Acceptor {
        let mut accepted: Vec<AcceptedLease> = state
            .accepted
            .into_iter()
            .map(|(ballot, expires_at)| AcceptedLease { ballot, expires_at })
            .collect();
        accepted.sort_by(|a, b| a.ballot.cmp(&b.ballot));
        accepted.dedup_by(|a, b| a.ballot == b.ballot);
        let mut acceptor = Acceptor {
            accepted,
            promised: state.promised,
            silent_until: state.silent_until,
            ..Acceptor::fresh(config)
        };
        acceptor.forget_expired(now);
        acceptor
    }

    /// Its notes, to persist before an answer is sent.
    pub fn state(&self) -> AcceptorState {
        AcceptorState {
            promised: self.promised.clone(),
            accepted: self
                .accepted
                .iter()
                .map(|l| (l.ballot.clone(), l.expires_at))
                .collect(),
            silent_until: self.silent_until,
        }
    }

    /// The same acceptor with a deliberate bug, for the simulator to catch.
    #[cfg(test)]
    pub(crate) fn with_fault(mut self, fault: Fault) -> Acceptor {
        if fault == Fault::AcceptorNeverWakes {
            self.silent_until = LocalTime::from_nanos(u64::MAX);
        }
        self.fault = fault;
        self
    }

    /// True while the acceptor is still in its post-restart silence.
    pub fn is_silent(&self, now: LocalTime) -> bool {
        now < self.silent_until
    }

    /// When the post-restart silence ends, on this member's clock.
    pub fn silent_until(&self) -> LocalTime {
        self.silent_until
    }

    /// The highest ballot promised so far in this life, if any.
    pub fn promised(&self) -> Option<&Ballot> {
        self.promised.as_ref()
    }

    /// Whether a ballot that came over the network may reach this
    /// acceptor at all: it must be a voter's, and its counter no more than
    /// [`MAX_COUNTER_STEP`] above every counter this acceptor knows. A
    /// proposer counts one above the highest counter it has seen, so a
    /// real ballot is never near that step; but a single promise of a
    /// counter near `u64::MAX` (or of a name above every member's) could
    /// never be outbid, and the notes keep it across restarts: one such
    /// message from a peer gone mad would leave the cluster without a
    /// leader for good (found by the API fuzz test).
    pub fn screen(&self, ballot: &Ballot, voters: &[MemberName]) -> Result<(), String> {
        if !voters.contains(&ballot.member) {
            let names: Vec<&str> = voters.iter().map(MemberName::as_str).collect();
            return Err(format!(
                "ballot {ballot} is of {:?}, not a voter of this cluster ({})",
                ballot.member.as_str(),
                names.join(", ")
            ));
        }
        let highest = self
            .promised
            .iter()
            .chain(self.accepted.iter().map(|l| &l.ballot))
            .map(|b| b.counter)
            .max()
            .unwrap_or(0);
        let limit = highest.saturating_add(MAX_COUNTER_STEP);
        if ballot.counter > limit {
            return Err(format!(
                "ballot {ballot} jumps to counter {} where the highest this acceptor knows is {highest}: no proposer counts that far",
                ballot.counter
            ));
        }
        Ok(())
    }

    /// Answers a prepare: a promise carrying every unexpired accepted lease,
    /// or a reject naming the higher promise; nothing while silent.
    pub fn on_prepare(&mut self, now: LocalTime, prepare: Prepare) -> Option<PrepareReply> {
        if self.is_silent(now) {
            return None;
        }
        self.forget_expired(now);
        if let Some(promised) = self.below_promise(&prepare.ballot) {
            return Some(PrepareReply::Reject {
                ballot: prepare.ballot,
                promised,
            });
        }
        self.raise_promise(&prepare.ballot);
        let leases = self
            .accepted
            .iter()
            .map(|lease| LeaseReport {
                ballot: lease.ballot.clone(),
                remaining_ms: ceil_millis(lease.expires_at.saturating_duration_since(now)),
            })
            .collect();
        Some(PrepareReply::Promise {
            ballot: prepare.ballot,
            leases,
        })
    }

    /// Answers a proposal: accepts it and times the lease from `now` on this
    /// clock, or rejects it; nothing while silent.
    pub fn on_propose(&mut self, now: LocalTime, propose: Propose) -> Option<ProposeReply> {
        self.accept(now, now, propose)
    }

    /// The broken variant the simulator must catch: the lease is timed from
    /// the proposer's clock reading when it sent the proposal, as if the two
    /// clocks were the same clock.
    #[cfg(test)]
    pub(crate) fn on_propose_timed_by_sender(
        &mut self,
        now: LocalTime,
        sender_clock_at_send: LocalTime,
        propose: Propose,
    ) -> Option<ProposeReply> {
        self.accept(now, sender_clock_at_send, propose)
    }

    fn accept(
        &mut self,
        now: LocalTime,
        lease_start: LocalTime,
        propose: Propose,
    ) -> Option<ProposeReply> {
        if self.is_silent(now) {
            return None;
        }
        self.forget_expired(now);
        let own_ms = u64::try_from(self.lease_len.as_millis()).unwrap_or(u64::MAX);
        if propose.lease_ms > own_ms {
            return Some(ProposeReply::LeaseTooLong {
                ballot: propose.ballot,
                max_lease_ms: own_ms,
            });
        }
        if let Some(promised) = self.below_promise(&propose.ballot) {
            return Some(ProposeReply::Rejected {
                ballot: propose.ballot,
                promised,
            });
        }
        self.raise_promise(&propose.ballot);
        let expires_at = lease_start.saturating_add(Duration::from_millis(propose.lease_ms));
        #[cfg(test)]
        if self.fault == Fault::AcceptorKeepsOnlyLatestLease {
            self.accepted.clear();
        }
        match self
            .accepted
            .binary_search_by(|lease| lease.ballot.cmp(&propose.ballot))
        {
            // A duplicate proposal: keeping the later expiry only makes the
            // record outlast the holder's view by more.
            Ok(i) => self.accepted[i].expires_at = self.accepted[i].expires_at.max(expires_at),
            Err(i) => self.accepted.insert(
                i,
                AcceptedLease {
                    ballot: propose.ballot.clone(),
                    expires_at,
                },
            ),
        }
        Some(ProposeReply::Accepted {
            ballot: propose.ballot,
        })
    }

    /// Drops the leases of the releasing proposer's life up to the released
    /// ballot. Its earlier ballots go too: a proposer releases its newest
    /// ballot and holds none of the older ones any more. Leases of other
    /// members, of another life, or of a newer ballot stay.
    pub fn on_release(&mut self, now: LocalTime, release: Release) {
        if self.is_silent(now) {
            return;
        }
        let released = &release.ballot;
        self.accepted.retain(|lease| {
            let same_life = lease.ballot.member == released.member
                && lease.ballot.incarnation == released.incarnation;
            !(same_life && lease.ballot.counter <= released.counter)
        });
    }

    /// The newest unexpired lease this acceptor accepted, for status.
    pub fn current_lease(&self, now: LocalTime) -> Option<CurrentLease> {
        self.accepted
            .iter()
            .rev()
            .find(|lease| now < lease.expires_at)
            .map(|lease| CurrentLease {
                holder: lease.ballot.member.clone(),
                ballot: lease.ballot.clone(),
                remaining: lease.expires_at.saturating_duration_since(now),
            })
    }

    fn forget_expired(&mut self, now: LocalTime) {
        self.accepted.retain(|lease| now < lease.expires_at);
    }

    /// The promise `ballot` falls below, if it does.
    fn below_promise(&self, ballot: &Ballot) -> Option<Ballot> {
        #[cfg(test)]
        if self.fault == Fault::AcceptorSkipsBallotCheck {
            return None;
        }
        self.promised
            .as_ref()
            .filter(|promised| ballot < *promised)
            .cloned()
    }

    fn raise_promise(&mut self, ballot: &Ballot) {
        if self
            .promised
            .as_ref()
            .is_none_or(|promised| ballot > promised)
        {
            self.promised = Some(ballot.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    fn config() -> LeaseConfig {
        LeaseConfig::new(T, 10_000).expect("valid config")
    }

    fn at(secs: u64) -> LocalTime {
        LocalTime::from_nanos(secs * 1_000_000_000)
    }

    fn ballot(counter: u64, member: &str) -> Ballot {
        Ballot::new(counter, MemberName::from(member), 1)
    }

    fn prepare(counter: u64, member: &str) -> Prepare {
        Prepare {
            ballot: ballot(counter, member),
        }
    }

    fn propose(counter: u64, member: &str) -> Propose {
        Propose {
            ballot: ballot(counter, member),
            lease_ms: 10_000,
        }
    }

    /// An acceptor started at 0 s, past its silence at 10 s.
    fn awake() -> Acceptor {
        Acceptor::new(config(), at(0))
    }

    fn reported(reply: Option<PrepareReply>) -> Vec<(Ballot, u64)> {
        match reply {
            Some(PrepareReply::Promise { leases, .. }) => leases
                .into_iter()
                .map(|l| (l.ballot, l.remaining_ms))
                .collect(),
            other => panic!("expected a promise, got {other:?}"),
        }
    }

    #[test]
    fn a_ballot_no_proposer_could_outbid_never_reaches_the_acceptor() {
        let voters: Vec<MemberName> = ["pg1", "pg2", "pg3"].map(MemberName::from).to_vec();
        let mut acceptor = awake();
        assert_eq!(acceptor.screen(&ballot(1, "pg1"), &voters), Ok(()));
        assert_eq!(
            acceptor.screen(&ballot(MAX_COUNTER_STEP, "pg3"), &voters),
            Ok(()),
            "a fresh acceptor takes any counter up to the step"
        );
        let too_far = acceptor.screen(&ballot(u64::MAX, "pg3"), &voters);
        assert!(
            too_far.as_ref().is_err_and(|e| e.contains("jumps")),
            "{too_far:?}"
        );
        let stranger = acceptor.screen(&ballot(2, "zzzz"), &voters);
        assert!(
            stranger.as_ref().is_err_and(|e| e.contains("not a voter")),
            "{stranger:?}"
        );
        // The step is measured from what it promised and accepted.
        acceptor.on_prepare(at(11), prepare(7, "pg2"));
        assert_eq!(
            acceptor.screen(&ballot(7 + MAX_COUNTER_STEP, "pg1"), &voters),
            Ok(())
        );
        assert!(acceptor
            .screen(&ballot(8 + MAX_COUNTER_STEP, "pg1"), &voters)
            .is_err());
    }

    #[test]
    fn given_a_restarted_acceptor_when_asked_within_t_then_it_answers_nothing() {
        let mut acceptor = Acceptor::new(config(), at(100));
        assert!(acceptor.is_silent(at(109)));
        assert_eq!(acceptor.on_prepare(at(109), prepare(1, "pg1")), None);
        assert_eq!(acceptor.on_propose(at(109), propose(1, "pg1")), None);
        assert_eq!(
            acceptor.promised(),
            None,
            "a silent acceptor promises nothing"
        );
        assert_eq!(acceptor.silent_until(), at(110));
    }

    #[test]
    fn given_an_acceptor_restarted_again_during_its_silence_then_it_stays_silent_until_the_first_silence_ends(
    ) {
        let silent = Acceptor::new(config(), at(100));
        let again = Acceptor::restore(config(), at(105), silent.state());
        assert!(again.is_silent(at(109)));
        assert_eq!(again.silent_until(), at(110));
        assert!(
            !silent.state().is_empty(),
            "a silent acceptor has something to forget"
        );
    }

    #[test]
    fn given_the_silence_is_over_when_prepared_then_it_promises_and_reports_no_lease() {
        let mut acceptor = awake();
        assert_eq!(
            acceptor.on_prepare(at(10), prepare(1, "pg1")),
            Some(PrepareReply::Promise {
                ballot: ballot(1, "pg1"),
                leases: vec![],
            })
        );
        assert_eq!(acceptor.promised(), Some(&ballot(1, "pg1")));
    }

    #[test]
    fn given_a_higher_promise_when_a_lower_ballot_prepares_or_proposes_then_it_is_rejected() {
        let mut acceptor = awake();
        acceptor.on_prepare(at(10), prepare(5, "pg2"));
        assert_eq!(
            acceptor.on_prepare(at(11), prepare(4, "pg3")),
            Some(PrepareReply::Reject {
                ballot: ballot(4, "pg3"),
                promised: ballot(5, "pg2"),
            })
        );
        assert_eq!(
            acceptor.on_propose(at(11), propose(5, "pg1")),
            Some(ProposeReply::Rejected {
                ballot: ballot(5, "pg1"),
                promised: ballot(5, "pg2"),
            }),
            "same counter, lower name: still lower"
        );
    }

    #[test]
    fn given_the_same_ballot_again_when_prepared_then_it_is_promised_again() {
        let mut acceptor = awake();
        acceptor.on_prepare(at(10), prepare(5, "pg2"));
        assert!(matches!(
            acceptor.on_prepare(at(10), prepare(5, "pg2")),
            Some(PrepareReply::Promise { .. })
        ));
    }

    #[test]
    fn given_an_accepted_lease_when_another_member_prepares_then_the_promise_reports_it() {
        let mut acceptor = awake();
        acceptor.on_prepare(at(10), prepare(1, "pg1"));
        assert_eq!(
            acceptor.on_propose(at(10), propose(1, "pg1")),
            Some(ProposeReply::Accepted {
                ballot: ballot(1, "pg1"),
            })
        );
        let reply = acceptor.on_prepare(at(13), prepare(2, "pg2"));
        assert_eq!(reported(reply), vec![(ballot(1, "pg1"), 7_000)]);
    }

    #[test]
    fn given_an_accepted_lease_when_t_has_passed_on_this_clock_then_it_is_no_longer_reported() {
        let mut acceptor = awake();
        acceptor.on_propose(at(10), propose(1, "pg1"));
        assert!(acceptor.current_lease(at(19)).is_some());
        assert_eq!(acceptor.current_lease(at(20)), None);
        assert_eq!(
            reported(acceptor.on_prepare(at(20), prepare(2, "pg2"))),
            vec![]
        );
    }

    #[test]
    fn given_a_running_lease_when_a_higher_ballot_is_accepted_then_both_stay_reported() {
        let mut acceptor = awake();
        acceptor.on_propose(at(10), propose(1, "pg1"));
        acceptor.on_propose(at(12), propose(2, "pg2"));
        let reply = acceptor.on_prepare(at(13), prepare(3, "pg3"));
        assert_eq!(
            reported(reply),
            vec![(ballot(1, "pg1"), 7_000), (ballot(2, "pg2"), 9_000)]
        );
        let current = acceptor.current_lease(at(13)).expect("a lease");
        assert_eq!(current.holder, MemberName::from("pg2"));
        assert_eq!(current.remaining, Duration::from_secs(9));
    }

    #[test]
    fn given_a_duplicate_proposal_when_accepted_again_then_one_lease_is_kept_with_the_later_end() {
        let mut acceptor = awake();
        acceptor.on_propose(at(10), propose(1, "pg1"));
        acceptor.on_propose(at(12), propose(1, "pg1"));
        let reply = acceptor.on_prepare(at(13), prepare(2, "pg2"));
        assert_eq!(reported(reply), vec![(ballot(1, "pg1"), 9_000)]);
    }

    #[test]
    fn given_a_release_when_it_names_that_ballot_then_only_that_life_s_leases_up_to_it_are_dropped()
    {
        let mut acceptor = awake();
        acceptor.on_propose(at(10), propose(1, "pg1"));
        acceptor.on_propose(at(10), propose(2, "pg2"));
        acceptor.on_propose(at(10), propose(3, "pg1"));

        // Another member's ballot, another life, or a lower ballot: no effect.
        acceptor.on_release(
            at(11),
            Release {
                ballot: ballot(9, "pg3"),
            },
        );
        acceptor.on_release(
            at(11),
            Release {
                ballot: Ballot::new(9, MemberName::from("pg1"), 2),
            },
        );
        acceptor.on_release(
            at(11),
            Release {
                ballot: ballot(0, "pg1"),
            },
        );
        assert_eq!(
            reported(acceptor.on_prepare(at(11), prepare(4, "pg3"))).len(),
            3
        );

        // pg1's ballot 1 only: its newer ballot 3 stays.
        acceptor.on_release(
            at(11),
            Release {
                ballot: ballot(1, "pg1"),
            },
        );
        let left: Vec<Ballot> = reported(acceptor.on_prepare(at(11), prepare(4, "pg3")))
            .into_iter()
            .map(|(b, _)| b)
            .collect();
        assert_eq!(left, vec![ballot(2, "pg2"), ballot(3, "pg1")]);

        // pg1's ballot 3: gone; pg2's lease stays.
        acceptor.on_release(
            at(11),
            Release {
                ballot: ballot(3, "pg1"),
            },
        );
        assert_eq!(
            acceptor.current_lease(at(11)).map(|l| l.holder),
            Some(MemberName::from("pg2"))
        );
    }

    #[test]
    fn given_a_proposal_longer_than_its_own_lease_then_it_refuses_and_says_why() {
        let mut acceptor = awake();
        let too_long = Propose {
            ballot: ballot(1, "pg1"),
            lease_ms: 10_001,
        };
        assert_eq!(
            acceptor.on_propose(at(10), too_long),
            Some(ProposeReply::LeaseTooLong {
                ballot: ballot(1, "pg1"),
                max_lease_ms: 10_000,
            })
        );
        assert_eq!(acceptor.current_lease(at(10)), None);
    }

    #[test]
    fn given_a_shorter_proposed_lease_then_it_is_timed_for_the_proposed_length() {
        let mut acceptor = awake();
        let short = Propose {
            ballot: ballot(1, "pg1"),
            lease_ms: 4_000,
        };
        acceptor.on_propose(at(10), short);
        assert!(acceptor.current_lease(at(13)).is_some());
        assert_eq!(acceptor.current_lease(at(14)), None);
    }
}
