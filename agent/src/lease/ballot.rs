//! Who is who: member names, and the ballots that order proposals.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The name of a cluster member, as written in the configuration
/// (`pg1`, `witness`). Every member is an acceptor; any may propose.
///
/// A newtype rather than a bare `String` so that a name cannot be mixed up
/// with any other string; it serialises as the plain string.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemberName(String);

impl MemberName {
    /// The member called `name`.
    pub fn new(name: impl Into<String>) -> MemberName {
        MemberName(name.into())
    }

    /// The name as written in the configuration.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemberName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for MemberName {
    fn from(name: &str) -> MemberName {
        MemberName::new(name)
    }
}

impl From<String> for MemberName {
    fn from(name: String) -> MemberName {
        MemberName(name)
    }
}

/// The number of one proposal: `(counter, member, incarnation)`, ordered in
/// that order — counter first, then member name, then incarnation.
///
/// - `counter` grows with every round a proposer starts; it is the lease's
///   **term** once the proposal wins.
/// - `member` makes ballots of different proposers distinct; it is also the
///   would-be lease **owner**: a proposer only ever proposes itself.
/// - `incarnation` makes ballots of two lives of the same member distinct.
///   A restarted proposer counts from its notes (or from 1) again; without
///   this, an accept sent to its previous life (delayed in the network)
///   would be counted for the new one, and that accept may predate the new
///   round's timer. The agent draws a random `u64` at startup.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ballot {
    /// Grows with every round; the term of the lease this ballot wins.
    pub counter: u64,
    /// The proposer, and so the owner of the lease it proposes.
    pub member: MemberName,
    /// Which life of `member` made this ballot.
    pub incarnation: u64,
}

impl Ballot {
    /// Ballot `counter` of `member` in its life `incarnation`.
    pub fn new(counter: u64, member: MemberName, incarnation: u64) -> Ballot {
        Ballot {
            counter,
            member,
            incarnation,
        }
    }

    /// The term of the lease this ballot proposes (its counter).
    pub fn term(&self) -> u64 {
        self.counter
    }

    /// The member this ballot proposes as lease holder.
    pub fn owner(&self) -> &MemberName {
        &self.member
    }
}

impl fmt::Display for Ballot {
    /// `8.pg2`: term 8 proposed by pg2 (the incarnation is left to `Debug`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.counter, self.member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ballot(counter: u64, member: &str, incarnation: u64) -> Ballot {
        Ballot::new(counter, MemberName::from(member), incarnation)
    }

    #[test]
    fn given_two_ballots_then_the_higher_counter_wins_whatever_the_names() {
        assert!(ballot(2, "a", 0) > ballot(1, "z", 9));
    }

    #[test]
    fn given_equal_counters_then_the_member_name_breaks_the_tie() {
        assert!(ballot(3, "pg2", 0) > ballot(3, "pg1", 7));
    }

    #[test]
    fn given_equal_counter_and_member_then_the_incarnation_keeps_them_distinct() {
        assert_ne!(ballot(3, "pg1", 1), ballot(3, "pg1", 2));
        assert!(ballot(3, "pg1", 2) > ballot(3, "pg1", 1));
    }

    #[test]
    fn given_a_ballot_then_it_reads_as_term_dot_member() {
        let b = ballot(8, "pg2", 42);
        assert_eq!(b.to_string(), "8.pg2");
        assert_eq!(b.term(), 8);
        assert_eq!(b.owner().as_str(), "pg2");
    }

    #[test]
    fn given_a_ballot_when_sent_as_json_then_it_comes_back_equal() {
        let b = ballot(8, "pg2", 42);
        let json = serde_json::to_string(&b).expect("serialise");
        assert_eq!(json, r#"{"counter":8,"member":"pg2","incarnation":42}"#);
        let back: Ballot = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, b);
    }
}
