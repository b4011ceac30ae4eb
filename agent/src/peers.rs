//! The other members, as their agents describe themselves: each HA loop
//! asks every other member's `GET /status` in parallel, with a short
//! timeout, and keeps the last answer with its age. A member that does not
//! answer keeps its last document (marked stale by its age) and the error.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinSet;

use crate::config::Member;
use crate::pg::Lsn;

/// What this agent knows of one other member.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerView {
    /// Member name.
    pub name: String,
    /// Its API.
    pub api_url: String,
    /// Its last status document, and when it arrived.
    pub last: Option<(Instant, Value)>,
    /// Why the last request failed, if it did.
    pub error: Option<String>,
    /// The last request succeeded (in this loop).
    pub fresh: bool,
}

impl PeerView {
    /// The last document, if any.
    pub fn doc(&self) -> Option<&Value> {
        self.last.as_ref().map(|(_, d)| d)
    }

    /// The last document, only when it arrived in this loop.
    pub fn fresh_doc(&self) -> Option<&Value> {
        if self.fresh {
            self.doc()
        } else {
            None
        }
    }

    /// A string field of the fresh document.
    pub fn fresh_str(&self, field: &str) -> Option<&str> {
        self.fresh_doc()?.get(field)?.as_str()
    }

    /// Its PostgreSQL position (current LSN on a primary, replayed on a standby).
    pub fn lsn(&self) -> Option<Lsn> {
        self.fresh_doc()?
            .get("wal")?
            .get("lsn")?
            .as_str()?
            .parse()
            .ok()
    }

    /// Its PostgreSQL `system_identifier`.
    pub fn system_identifier(&self) -> Option<&str> {
        self.fresh_doc()?
            .get("postgres")?
            .get("system_identifier")?
            .as_str()
    }

    /// Where its PostgreSQL is reached: (host, port).
    pub fn pg_endpoint(&self) -> Option<(String, u16)> {
        let pg = self.fresh_doc()?.get("postgres")?;
        let host = pg.get("host")?.as_str()?.to_string();
        let port = u16::try_from(pg.get("port")?.as_u64()?).ok()?;
        Some((host, port))
    }

    /// It answered and runs PostgreSQL as a primary that accepts connections.
    pub fn is_running_primary(&self) -> bool {
        self.fresh_str("role") == Some("primary") && self.fresh_str("state") == Some("running")
    }

    /// It answered and has no data directory yet, and is not making one
    /// (a member running initdb or a clone still reports no role).
    pub fn is_uninitialized(&self) -> bool {
        self.fresh_str("role") == Some("uninitialized")
            && !matches!(self.fresh_str("state"), Some("bootstrapping" | "cloning"))
    }
}

/// The other members' status, refreshed once per loop.
#[derive(Debug)]
pub struct Peers {
    views: BTreeMap<String, PeerView>,
    http: reqwest::Client,
}

impl Peers {
    /// Every member but `me`; requests bounded by `timeout`.
    pub fn new(me: &str, members: &[Member], timeout: Duration) -> Peers {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .unwrap_or_default();
        let mut peers = Peers {
            views: BTreeMap::new(),
            http,
        };
        peers.set_members(me, members);
        peers
    }

    /// Takes a new member list (a reload), keeping what is known of members that stay.
    pub fn set_members(&mut self, me: &str, members: &[Member]) {
        let mut views = BTreeMap::new();
        for m in members.iter().filter(|m| m.name != me) {
            let view = self.views.remove(&m.name).unwrap_or_else(|| PeerView {
                name: m.name.clone(),
                api_url: m.api_url.clone(),
                last: None,
                error: None,
                fresh: false,
            });
            views.insert(
                m.name.clone(),
                PeerView {
                    api_url: m.api_url.clone(),
                    ..view
                },
            );
        }
        self.views = views;
    }

    /// Asks every member for its status, in parallel, each bounded by the timeout.
    pub async fn refresh(&mut self) {
        let mut set = JoinSet::new();
        for view in self.views.values() {
            let url = format!("{}/status", view.api_url.trim_end_matches('/'));
            let name = view.name.clone();
            let http = self.http.clone();
            set.spawn(async move {
                let result = match http.get(&url).send().await {
                    Ok(resp) if resp.status().is_success() => resp
                        .json::<Value>()
                        .await
                        .map_err(|e| format!("{url}: not a status document: {e}")),
                    Ok(resp) => Err(format!("{url}: answered {}", resp.status())),
                    Err(e) => Err(format!("{url}: {e}")),
                };
                (name, result)
            });
        }
        for v in self.views.values_mut() {
            v.fresh = false;
        }
        while let Some(joined) = set.join_next().await {
            let Ok((name, result)) = joined else { continue };
            let Some(view) = self.views.get_mut(&name) else {
                continue;
            };
            match result {
                // A peer that names itself differently is misconfigured or
                // an impostor: its document is not this member's.
                Ok(doc) if doc.get("name").and_then(Value::as_str) != Some(name.as_str()) => {
                    view.error = Some(format!(
                        "{} answered as {:?}, not {name}: check cluster.members",
                        view.api_url,
                        doc.get("name")
                    ));
                }
                Ok(doc) => {
                    view.last = Some((Instant::now(), doc));
                    view.error = None;
                    view.fresh = true;
                }
                Err(e) => view.error = Some(e),
            }
        }
    }

    /// Every other member's view, by name.
    pub fn views(&self) -> impl Iterator<Item = &PeerView> {
        self.views.values()
    }

    /// One member's view.
    pub fn get(&self, name: &str) -> Option<&PeerView> {
        self.views.get(name)
    }
}
