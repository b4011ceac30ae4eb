//! Configuration: loading a node's TOML file with its environment
//! overrides, validating it (every problem at once), reading secret files,
//! and printing the effective configuration.
//!
//! - `model.rs`: the typed configuration and its defaults.
//! - `units.rs`: sizes (`"16MB"`).
//! - `load.rs`: file + `PGWARDEN_<SECTION>__<KEY>` environment → `Config`.
//! - `validate.rs`: cross-field rules, secret-file checks.
//! - `secrets.rs`: reading secret files.

mod load;
mod model;
mod secrets;
mod units;
mod validate;

pub use load::{effective_toml, load, ConfigError, Problem};
pub use model::*;
pub use secrets::{read_secret, SecretError};
pub use units::{ByteSize, ByteSizeError};
