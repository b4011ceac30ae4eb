//! High availability: what this node should do, and doing it.
//!
//! - `situation.rs`: [`situation::situation`], pure: what the node and the
//!   other members look like, everything a decision needs but the lease.
//! - `candidate.rs`: the candidate rule: who may lead when nobody does (pure).
//! - `decide.rs`: [`decide::decide`] and [`decide::wants_lease`], pure: a
//!   situation and the lease in, an action out.
//! - `guard.rs`: what the fence guard is told, before and after an action (pure).
//! - `operator.rs`: whether an operator action (switchover, failover,
//!   restart, reinitialize) can be done now, and to whom (pure).
//! - `operation.rs`: operator requests between loop iterations: the one
//!   in progress, the scheduled ones, the switchover's next step (pure),
//!   the cluster-wide pause flag.
//! - `slot_plan.rs`: which replication slots to create, drop, recreate or
//!   advance, from the slots, the members and the time each was away (pure).
//! - `reclone.rs`: when a standby whose primary removed the WAL it needs
//!   re-clones by itself (pure).
//! - `backoff.rs`: the one retry back-off (crash restarts, clones).
//! - `executor.rs`: carries an action out on the local PostgreSQL; effects only.
//! - `runner.rs`: the loop: observe, situation, lease, decide, act, publish.
//! - `simulation.rs` (tests only): the deterministic simulation of the whole
//!   loop on every member, with a modelled PostgreSQL, network and fence
//!   guard, checking that no two servers are ever writable.

pub mod backoff;
pub mod candidate;
pub mod decide;
pub mod executor;
pub mod guard;
pub mod operation;
pub mod operator;
pub mod reclone;
pub mod runner;
#[cfg(test)]
mod simulation;
pub mod situation;
pub mod slot_plan;

pub use decide::{decide, Action, Lease};
pub use situation::Situation;
