//! The leader lease among the members: PaxosLease (Trencseni, Gazsó,
//! Reinhardt, arXiv:1209.4187) as pure state machines. Only the holder of
//! the lease may run PostgreSQL as a primary.
//!
//! This module does no I/O and reads no clock. Each call takes the member's
//! own monotonic time ([`LocalTime`]) and returns the messages to send; the
//! HTTP transport and the agent's loop live elsewhere and call it.
//!
//! # The protocol
//!
//! Every member runs an [`Acceptor`]; any member may run a [`Proposer`].
//! Ballots are `(counter, member, incarnation)`, totally ordered and unique
//! ([`Ballot`]).
//!
//! - **Acquire.** The proposer notes the time, *then* sends
//!   `prepare(ballot)` to every member. An acceptor promises if the ballot is
//!   at least the highest it promised, reporting every unexpired lease it
//!   accepted; otherwise it rejects. Once a majority promised without
//!   reporting another member's live lease, the proposer sends
//!   `propose(ballot, T)`. An acceptor accepts unless it promised a higher
//!   ballot since, and times the lease `T` on its own clock from that moment.
//!   With a majority of accepts the proposer holds the lease until
//!   `prepare time + T·(1−ρ)/(1+ρ)` on its own clock.
//! - **Renew.** The holder runs the same round before its lease ends; its
//!   own lease in the reports does not stand in its way.
//! - **Release.** The holder stops holding, then tells every acceptor to
//!   drop its leases, so the next holder need not wait for them to expire.
//! - **Restart.** An acceptor persists its promise and accepted leases
//!   (with times on `CLOCK_BOOTTIME` and the boot id) before each answer
//!   that changed them ([`durable`]). Restarted on the same boot it
//!   resumes from these notes and answers at once; one that never answered
//!   anything answers at once too. After a reboot, or with damaged notes,
//!   it answers nothing for `T` on its own clock: after `T` every lease it
//!   might have granted before has ended at its holder. A proposer's held
//!   lease is in the notes too: an agent restarted on the same boot still
//!   holds it until the end it computed before, so a restart does not
//!   cost the primary its lease.
//!
//! # Assumptions
//!
//! - **Bounded clock-rate drift**: every member's clock runs at a rate
//!   within `1 ± ρ` of real time ([`LeaseConfig::max_drift_ppm`]). Clocks
//!   need not agree on the time — no clock reading ever crosses the network.
//! - **A majority** of the configured members must answer for a lease to be
//!   granted or renewed; the member list is the same on every member.
//! - **The same `T`** everywhere; an acceptor refuses a longer proposal.
//! - Members follow the protocol (no Byzantine members). A restarted
//!   proposer takes a new incarnation number.
//! - A member's lease notes are not deleted while the cluster runs, and a
//!   machine replaced with an empty disk comes back no sooner than `T`
//!   after the one it replaces stopped (an absent notes file reads as
//!   "never answered anything").
//!
//! Messages may be lost, duplicated, delayed for any time and reordered;
//! members may crash and restart at any moment.
//!
//! # Guarantees
//!
//! - **Safety**: at no instant of real time do two members each believe,
//!   by their own clocks, that they hold the lease. It depends on nothing
//!   but the assumptions above: not on message delays, not on disks.
//!   Sketch: let P hold ballot `p` and Q ≠ P hold `q > p`. The majority
//!   that accepted `p` and the majority that promised `q` share an acceptor
//!   A. If A promised `q` before accepting `p`, it must have restarted in
//!   between (it never accepts below its promise), so it accepted `p` at
//!   least `T` after Q's prepare — after Q's lease had ended. If it accepted
//!   `p` first, then when it promised `q` it reported P's lease unless that
//!   lease had expired at A, been released by P, or been forgotten in a
//!   restart `T` ago — and in each case P's own, shorter view had ended.
//!   A reported lease of P stops Q. Hence acceptors keep *every* unexpired
//!   lease, not only the latest (see [`acceptor`]).
//! - **Not guaranteed**: liveness in general. Two proposers can keep
//!   pre-empting each other (callers retry after a random back-off), and
//!   nothing is granted without a majority. The simulator checks that a
//!   connected majority does elect within a bound.
//! - **Not guaranteed**: that the holder can act on its lease in time. A
//!   paused holder believes its lease until its clock says otherwise; the
//!   agent fences PostgreSQL before the lease ends, and a fence guard
//!   outside the agent covers a frozen agent.
//!
//! # Files
//!
//! - [`clock`]: [`LocalTime`], and [`LeaseConfig`] with the holder's shortened
//!   lease `T·(1−ρ)/(1+ρ)`.
//! - [`ballot`]: [`MemberName`] and [`Ballot`].
//! - [`messages`]: the five messages, serialisable for the HTTP transport.
//! - [`durable`]: the lease notes on disk, and how a start resumes from them.
//! - [`acceptor`]: the acceptor's rules.
//! - [`proposer`]: rounds to acquire, renew and release, and the renewal
//!   rule [`should_renew`].
//! - `simulation.rs` (tests only): the deterministic simulator that checks
//!   safety at every step and liveness in every healthy period, over
//!   thousands of seeds, and catches deliberately broken variants.
//! - [`port`]: [`LeaseClient`], the HA loop's one view of the lease.
//! - [`service`]: this member's acceptor shared between the API and its
//!   own proposer, and the monotonic clock.
//! - [`transport`]: the messages over HTTP with the cluster secret.
//! - [`quorum`]: [`QuorumLease`], rounds over the transport for the loop.
//! - [`solo`]: [`SoloLease`], the lease of a one-member cluster.

#![warn(missing_docs)]

pub mod acceptor;
pub mod ballot;
pub mod clock;
pub mod durable;
pub mod messages;
pub mod port;
pub mod proposer;
pub mod quorum;
pub mod service;
#[cfg(test)]
mod simulation;
pub mod solo;
pub mod transport;

pub use acceptor::{Acceptor, AcceptorState, CurrentLease};
pub use ballot::{Ballot, MemberName};
pub use clock::{LeaseConfig, LeaseConfigError, LocalTime, MAX_DRIFT_PPM};
pub use messages::{LeaseReport, Prepare, PrepareReply, Propose, ProposeReply, Release};
pub use port::{LeaseClient, LeaseStatus};
pub use proposer::{should_renew, HeldLease, MembersError, Outcome, PrepareProgress, Proposer};
pub use quorum::{QuorumLease, QuorumLeaseError};
pub use service::{secret_matches, AcceptorService, BootClock};
pub use solo::SoloLease;
