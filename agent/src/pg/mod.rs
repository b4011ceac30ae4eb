//! Everything about the local PostgreSQL, and nothing else: this module
//! never talks to peers and knows nothing of leases.
//!
//! - `binaries.rs`: find the installation, its major version.
//! - `conf.rs`: render the managed configuration (pure, per version).
//! - `files.rs`: write managed files atomically; data directory states.
//! - `runas.rs`: run PostgreSQL as the data directory's owner, never root.
//! - `ctl.rs`: `initdb` and the other tools.
//! - `postmaster.rs`: start, adopt, watch and stop the postmaster.
//! - `probe.rs`: one query per loop → [`probe::Observation`].
//! - `fence_guard.rs`: the process that stops the postmaster when its deadline passes.
//! - `diagnose.rs`: why a standby does not stream, from the server log.
//! - `roles.rs`: the replication role.
//! - `lsn.rs`: WAL positions.

pub mod binaries;
pub mod conf;
pub mod ctl;
pub mod diagnose;
pub mod fence_guard;
pub mod files;
pub mod history;
pub mod lsn;
pub mod postmaster;
pub mod probe;
pub mod roles;
pub mod runas;

pub use lsn::Lsn;
