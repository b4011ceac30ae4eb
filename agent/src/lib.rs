//! pgwarden: a node-local agent that turns a few hosts running PostgreSQL
//! into a replicated, self-healing cluster.
//!
//! # Layout
//!
//! - [`config`]: the node's TOML configuration, loaded, validated, printed.
//! - [`pg`]: everything about the local PostgreSQL and nothing else:
//!   binaries, rendered configuration, `initdb` & co, the postmaster, the probe.
//! - [`ha`]: the decision loop. [`ha::decide`] is pure; the executor acts.
//! - [`api`]: the HTTP API (status, Patroni-compatible health checks).
//! - [`state`]: the agent's own state file in the data directory.
//! - [`status_doc`]: the status document, the one wire format members read.
//! - [`patroni_doc`]: Patroni's documents (`/patroni`, `/cluster`,
//!   `/history`), for tools built for Patroni; nothing reads them back.
//! - [`peers`]: the other members' documents, fetched each loop.
//! - [`lease`]: the leader lease among the members.
//! - [`boottime`]: the clock deadlines are on.
//! - [`view`]: the snapshot the HA loop publishes and the API reads.
//! - [`telemetry`]: counters of events (lease rounds, fencing, loop times)
//!   for `GET /metrics`.
//! - [`daemon`]: `pgwarden run`: wires the loop, the API, signals and systemd.
//! - [`client`]: the CLI's side of the API (`status`, ...).
//! - [`tls`]: the API's HTTPS server and the TLS every client of it uses.
//! - [`manual`]: man pages and shell completions from the CLI's definition,
//!   for the Debian package.

pub mod api;
pub mod boottime;
pub mod client;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod ha;
pub mod lease;
pub mod manual;
pub mod notify;
pub mod patroni_doc;
pub mod peers;
pub mod pg;
pub mod rfc3339;
pub mod state;
pub mod status_doc;
pub mod sync_report;
pub mod telemetry;
pub mod tls;
pub mod view;
pub mod watchdog;
