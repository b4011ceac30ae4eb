//! The five messages of PaxosLease, as they travel between members (JSON
//! over HTTP, carried by the transport; this module only defines them).
//!
//! No message carries a clock reading: clocks are not synchronised, so only
//! lengths of time (milliseconds) may cross from one member to another.

use super::ballot::{Ballot, MemberName};
use serde::{Deserialize, Serialize};

/// Phase 1 request, proposer → every acceptor: "promise to ignore ballots
/// below this one, and tell me which leases you hold".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepare {
    /// The round's ballot.
    pub ballot: Ballot,
}

/// An unexpired lease an acceptor has accepted, reported in a promise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseReport {
    /// The ballot that was accepted; its member is the lease owner.
    pub ballot: Ballot,
    /// Time left on the acceptor's clock, in milliseconds, rounded up. A
    /// hint for when to try again, never used to time a lease.
    pub remaining_ms: u64,
}

impl LeaseReport {
    /// The member the reported lease belongs to.
    pub fn owner(&self) -> &MemberName {
        self.ballot.owner()
    }
}

/// Phase 1 answer, acceptor → proposer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum PrepareReply {
    /// The acceptor promised `ballot` and reports every unexpired lease it
    /// has accepted (there can be several: see the acceptor's module doc).
    Promise {
        /// The ballot promised (the one in the prepare).
        ballot: Ballot,
        /// Every unexpired lease the acceptor holds, lowest ballot first.
        leases: Vec<LeaseReport>,
    },
    /// The acceptor has already promised a higher ballot.
    Reject {
        /// The ballot refused (the one in the prepare).
        ballot: Ballot,
        /// The higher ballot it promised: the proposer must go above it.
        promised: Ballot,
    },
}

impl PrepareReply {
    /// The ballot this reply answers.
    pub fn ballot(&self) -> &Ballot {
        match self {
            PrepareReply::Promise { ballot, .. } | PrepareReply::Reject { ballot, .. } => ballot,
        }
    }
}

/// Phase 2 request, proposer → every acceptor: "grant me the lease for
/// `lease_ms`". The owner is the ballot's member: a proposer only ever
/// proposes itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Propose {
    /// The round's ballot, already promised by a majority.
    pub ballot: Ballot,
    /// The lease length `T` in milliseconds. Each acceptor times it on its
    /// own clock from the moment it accepts.
    pub lease_ms: u64,
}

/// Phase 2 answer, acceptor → proposer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ProposeReply {
    /// The acceptor accepted the lease and times it from now, on its clock.
    Accepted {
        /// The ballot accepted.
        ballot: Ballot,
    },
    /// The acceptor has promised a higher ballot since.
    Rejected {
        /// The ballot refused.
        ballot: Ballot,
        /// The higher ballot it promised.
        promised: Ballot,
    },
    /// The proposed lease is longer than this acceptor's own `T`. Accepting
    /// it would be unsafe: after a restart the acceptor stays silent for its
    /// own `T` only. The members' configurations disagree.
    LeaseTooLong {
        /// The ballot refused.
        ballot: Ballot,
        /// The acceptor's own lease length, in milliseconds.
        max_lease_ms: u64,
    },
}

impl ProposeReply {
    /// The ballot this reply answers.
    pub fn ballot(&self) -> &Ballot {
        match self {
            ProposeReply::Accepted { ballot }
            | ProposeReply::Rejected { ballot, .. }
            | ProposeReply::LeaseTooLong { ballot, .. } => ballot,
        }
    }
}

/// Holder → every acceptor: "I no longer hold the lease of this ballot, nor
/// any earlier one of mine": acceptors drop those leases so that the next
/// holder need not wait for them to expire. No answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The latest ballot of the releasing proposer.
    pub ballot: Ballot,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use std::fmt::Debug;

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(message: &T) -> String {
        let json = serde_json::to_string(message).expect("serialise");
        let back: T = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(&back, message, "{json}");
        json
    }

    fn ballot(counter: u64, member: &str) -> Ballot {
        Ballot::new(counter, MemberName::from(member), 7)
    }

    #[test]
    fn given_each_message_when_sent_as_json_then_it_comes_back_equal() {
        round_trip(&Prepare {
            ballot: ballot(3, "pg1"),
        });
        let promise = round_trip(&PrepareReply::Promise {
            ballot: ballot(3, "pg1"),
            leases: vec![LeaseReport {
                ballot: ballot(2, "pg2"),
                remaining_ms: 1500,
            }],
        });
        assert!(promise.starts_with(r#"{"reply":"promise""#), "{promise}");
        round_trip(&PrepareReply::Reject {
            ballot: ballot(3, "pg1"),
            promised: ballot(4, "pg3"),
        });
        round_trip(&Propose {
            ballot: ballot(3, "pg1"),
            lease_ms: 10_000,
        });
        round_trip(&ProposeReply::Accepted {
            ballot: ballot(3, "pg1"),
        });
        round_trip(&ProposeReply::Rejected {
            ballot: ballot(3, "pg1"),
            promised: ballot(4, "pg3"),
        });
        let too_long = round_trip(&ProposeReply::LeaseTooLong {
            ballot: ballot(3, "pg1"),
            max_lease_ms: 5_000,
        });
        assert!(
            too_long.contains(r#""reply":"lease_too_long""#),
            "{too_long}"
        );
        round_trip(&Release {
            ballot: ballot(3, "pg1"),
        });
    }

    #[test]
    fn given_a_reply_then_it_names_the_ballot_it_answers() {
        let b = ballot(3, "pg1");
        let reject = PrepareReply::Reject {
            ballot: b.clone(),
            promised: ballot(4, "pg3"),
        };
        assert_eq!(reject.ballot(), &b);
        let too_long = ProposeReply::LeaseTooLong {
            ballot: b.clone(),
            max_lease_ms: 1,
        };
        assert_eq!(too_long.ballot(), &b);
    }
}
