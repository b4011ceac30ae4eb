//! High availability: what this node should do, and doing it.
//!
//! - `candidate.rs`: is this standby the best one to promote (pure).
//! - `decide.rs`: [`decide::decide`], pure: a [`decide::Situation`] in,
//!   an [`decide::Action`] out.
//! - `executor.rs`: carries an action out on the local PostgreSQL.
//! - `runner.rs`: the loop: observe, update the lease, decide, act, publish.

pub mod candidate;
pub mod decide;
pub mod executor;
pub mod runner;

pub use decide::{decide, Action, Situation};
