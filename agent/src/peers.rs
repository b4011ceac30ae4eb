//! The other members, as their agents describe themselves: each HA loop
//! asks every other member's `GET /status` in parallel, with a short
//! timeout, and keeps the last answer with its age. A member that does not
//! answer, or answers with something that is not a status document, is
//! unreachable for this loop (with the reason); its last good document is
//! kept for `/cluster`, marked stale by its age.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::config::Member;
use crate::status_doc::StatusDoc;
use crate::tls::ClientTls;

/// What this agent knows of one other member.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerView {
    /// Member name.
    pub name: String,
    /// Its API.
    pub api_url: String,
    /// Its last status document, and when it arrived.
    pub last: Option<(Instant, StatusDoc)>,
    /// Why the last request failed, if it did.
    pub error: Option<String>,
    /// The last request succeeded (in this loop).
    pub fresh: bool,
    /// When the request that brought the last document was sent: the
    /// document's ages count back from no earlier than this.
    pub asked_at: Option<Instant>,
}

impl PeerView {
    /// The last document, only when it arrived in this loop.
    pub fn fresh_doc(&self) -> Option<&StatusDoc> {
        self.last.as_ref().filter(|_| self.fresh).map(|(_, d)| d)
    }
}

/// The other members' status, refreshed once per loop.
#[derive(Debug)]
pub struct Peers {
    views: BTreeMap<String, PeerView>,
    http: reqwest::Client,
    /// The cluster secret, for `/internal/wake`.
    secret: Option<String>,
}

impl Peers {
    /// Every member but `me`; requests bounded by `timeout`, with `tls`
    /// for members reached over `https://`.
    pub fn new(me: &str, members: &[Member], timeout: Duration, tls: &ClientTls) -> Peers {
        let http = tls
            .client_builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .unwrap_or_else(|e| {
                tracing::error!("cannot build the HTTP client for the peers' status: {e}");
                reqwest::Client::new()
            });
        let mut peers = Peers {
            views: BTreeMap::new(),
            http,
            secret: None,
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
                asked_at: None,
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

    /// The cluster secret, which [`Peers::wake`] presents.
    pub fn set_secret(&mut self, secret: String) {
        self.secret = Some(secret);
    }

    /// Asks `name`'s agent to run its loop now (`POST /internal/wake`),
    /// without waiting for the answer: a hint, lost at no cost.
    pub fn wake(&self, name: &str) {
        let (Some(view), Some(secret)) = (self.views.get(name), &self.secret) else {
            return;
        };
        let url = format!("{}/internal/wake", view.api_url.trim_end_matches('/'));
        let request = self.http.post(url).bearer_auth(secret);
        tokio::spawn(async move {
            if let Err(e) = request.send().await {
                tracing::debug!("wake: {e}");
            }
        });
    }

    /// Asks every member for its status, in parallel, each bounded by the timeout.
    pub async fn refresh(&mut self) {
        let asked_at = Instant::now();
        let mut set = JoinSet::new();
        for view in self.views.values() {
            let url = format!("{}/status", view.api_url.trim_end_matches('/'));
            let name = view.name.clone();
            let http = self.http.clone();
            set.spawn(async move {
                let result = match http.get(&url).send().await {
                    Ok(resp) if resp.status().is_success() => match resp.bytes().await {
                        Ok(body) => serde_json::from_slice::<StatusDoc>(&body)
                            .map_err(|e| format!("{url}: not a status document: {e}")),
                        Err(e) => Err(format!("{url}: {e}")),
                    },
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
            let error = match result {
                // A peer that names itself differently is misconfigured or
                // an impostor: its document is not this member's.
                Ok(doc) if doc.name != name => Some(format!(
                    "{} answered as {:?}, not {name}: check cluster.members",
                    view.api_url, doc.name
                )),
                Ok(doc) => {
                    view.last = Some((Instant::now(), doc));
                    view.fresh = true;
                    view.asked_at = Some(asked_at);
                    None
                }
                Err(e) => Some(e),
            };
            if let Some(e) = error.as_deref().filter(|_| error != view.error) {
                // A member that answers with something unreadable is worth
                // a warning; one that is down says so in its own way.
                if e.contains("not a status document") || e.contains("answered as") {
                    tracing::warn!("{name} counts as unreachable: {e}");
                } else {
                    tracing::info!("{name} is unreachable: {e}");
                }
            }
            view.error = error;
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
