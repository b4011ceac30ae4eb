//! Configuration: loading a node's TOML file with its environment
//! overrides, validating it (every problem at once), reading secret files,
//! and printing the effective configuration.
//!
//! The flow is file + `PGWARDEN_<SECTION>__<KEY>` variables → one merged
//! tree (the `config` crate) → typed [`Config`], read key by key so that
//! each bad key is its own [`Problem`] → rules across keys and checks of
//! the files named → [`Loaded`] (with warnings) or a [`ConfigError`]
//! listing every problem. The reference for users is
//! `docs/configuration.md`.
//!
//! - `model.rs`: the typed configuration and its defaults; what every other
//!   module reads.
//! - `load.rs`: entry points; the file and the environment merged.
//! - `schema.rs`: which sections and keys exist; the tree read into a `Config`.
//! - `fields.rs`: typed readers of one key, each reporting its own problem.
//! - `validate.rs`: rules on values (names, URLs) and across keys.
//! - `report.rs`: the collector of problems and warnings.
//! - `secrets.rs`: reading secret files and checking their modes.
//! - `pem.rs`: the API's TLS files (certificates, key, CAs) read into DER.
//! - `client.rs`: the lenient loading for client commands (`status`, ...).
//! - `render.rs`: the effective configuration as TOML, secrets masked.
//! - `reload.rs`: what a SIGHUP does with each key (the one reload plan).
//! - `units.rs`: sizes (`"16MB"`).
//!
//! Architecture invariant: this module does no networking and never keeps
//! a secret's contents; it only checks that secret files are usable.
//! It depends on nothing else in the crate, so it can be built and tested
//! on its own.

mod client;
mod fields;
mod load;
mod model;
pub mod pem;
mod reload;
mod render;
mod report;
mod schema;
mod secrets;
mod units;
mod validate;

pub use client::{load_for_client, ClientSettings};
pub use load::{load, load_with_env, load_with_warnings, ConfigError, Loaded, Problem, ENV_PREFIX};
pub use model::*;
pub use reload::{change_of, reload_plan, to_apply, Change, ReloadPlan, KEYS};
pub use render::effective_toml;
pub use secrets::{check_secret_file, read_secret, SecretError};
pub use units::{ByteSize, ByteSizeError};
pub use validate::min_wal_senders;

#[cfg(test)]
mod tests;
