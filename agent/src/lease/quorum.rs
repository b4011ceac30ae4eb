//! The members' quorum lease as the HA loop sees it: [`QuorumLease`]
//! drives this member's [`Proposer`] over the HTTP transport, with this
//! member's own acceptor answering locally, and reports who holds the lease.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::ballot::MemberName;
use super::clock::{LeaseConfig, LocalTime};
use super::durable::Holding;
use super::messages::{Prepare, PrepareReply, Propose, ProposeReply, Release};
use super::port::{LeaseClient, LeaseStatus};
use super::proposer::{Outcome, PrepareProgress, Proposer};
use super::service::AcceptorService;
use super::transport::{PeerTransport, PREPARE_PATH, PROPOSE_PATH, RELEASE_PATH};

/// The quorum lease of a multi-member cluster.
pub struct QuorumLease {
    me: MemberName,
    proposer: Proposer,
    acceptor: AcceptorService,
    peers: BTreeMap<MemberName, String>,
    transport: PeerTransport,
    round_timeout: Duration,
    retry_spread: Duration,
    /// The last update asked for the lease.
    wanted: bool,
    not_before: LocalTime,
    /// Another member's lease that blocked this member's last round.
    known_holder: Option<KnownHolder>,
    jitter: u64,
    /// The ballot counter that first won the lease now held: renewals win
    /// higher ballots, but the term only changes with a new holding.
    held_term: Option<u64>,
}

/// Another member's lease that this member waits for.
#[derive(Debug, Clone)]
struct KnownHolder {
    holder: MemberName,
    /// Its end, as the longest report had it.
    until: LocalTime,
    /// When the round that learned of it began: a release from the holder
    /// after this moment ends the wait. The start, not the end: the
    /// replies that named the holder may predate a release that reached
    /// this member's acceptor while the round was still waiting for them.
    since: LocalTime,
}

/// Why the quorum lease could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum QuorumLeaseError {
    /// The member list is unusable.
    #[error("cluster.members: {0}")]
    Members(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client for the lease: {0}")]
    Http(String),
}

impl QuorumLease {
    /// The lease among `members` (name, API URL), this member being `me`.
    /// `round_timeout` bounds each phase of a round; `retry_spread` is the
    /// range of the random pause after a round lost to a competitor.
    /// `resumed`: the lease an earlier life of this agent held on this
    /// boot, from the lease notes ([`AcceptorService::open`]). `tls`: what
    /// the requests to `https://` members trust and present.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: &str,
        members: &[(String, String)],
        config: LeaseConfig,
        acceptor: AcceptorService,
        secret: String,
        round_timeout: Duration,
        retry_spread: Duration,
        resumed: Option<Holding>,
        tls: &crate::tls::ClientTls,
    ) -> Result<QuorumLease, QuorumLeaseError> {
        let me = MemberName::new(me);
        let names: Vec<MemberName> = members
            .iter()
            .map(|(n, _)| MemberName::new(n.clone()))
            .collect();
        let incarnation = random_u64();
        let mut proposer = Proposer::new(me.clone(), names, config, incarnation)
            .map_err(|e| QuorumLeaseError::Members(e.to_string()))?;
        let held_term = resumed.map(|h| {
            proposer.resume_holding(h.lease, acceptor.clock().now());
            h.term
        });
        let peers = members
            .iter()
            .filter(|(n, _)| n != me.as_str())
            .map(|(n, u)| (MemberName::new(n.clone()), u.clone()))
            .collect();
        let transport = PeerTransport::new(secret, round_timeout, tls)
            .map_err(|e| QuorumLeaseError::Http(e.to_string()))?;
        Ok(QuorumLease {
            me,
            proposer,
            acceptor,
            peers,
            transport,
            round_timeout,
            retry_spread,
            not_before: LocalTime::from_nanos(0),
            known_holder: None,
            jitter: incarnation | 1,
            held_term,
            wanted: false,
        })
    }

    fn now(&self) -> LocalTime {
        self.acceptor.clock().now()
    }

    /// A pseudo-random pause in `[0, spread)` (xorshift: only needs to
    /// differ between members, not to be unpredictable).
    ///
    /// The pause only separates members because the HA loop wakes for it
    /// ([`LeaseClient::retry_at`]): rounded up to the next `loop_wait`, two
    /// members that preempted each other retried in lockstep (measured: a
    /// handover took 6–10 s on a loaded machine).
    fn random_pause(&mut self, spread: Duration) -> Duration {
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let spread = spread.as_millis().max(1) as u64;
        Duration::from_millis(self.jitter % spread)
    }

    /// One round: prepare to all, then propose to all, each phase bounded.
    async fn round(&mut self) -> Outcome {
        let prepares = self.proposer.start_acquire(self.now());
        let mut replies: JoinSet<(MemberName, Option<PrepareReply>)> = JoinSet::new();
        for (to, msg) in prepares {
            self.spawn_prepare(&mut replies, to, msg);
        }
        let deadline = tokio::time::Instant::now() + self.round_timeout;
        let proposals = loop {
            let Some((from, reply)) = next_reply(&mut replies, deadline).await else {
                return self.timed_out();
            };
            tracing::debug!("lease prepare reply from {from}: {reply:?}");
            match self.proposer.on_prepare_reply(self.now(), &from, reply) {
                PrepareProgress::Waiting => {}
                PrepareProgress::Propose(proposals) => break proposals,
                PrepareProgress::Ended(outcome) => return outcome,
            }
        };
        // Late promises are dropped with the set: the proposer has moved on.
        drop(replies);
        let mut accepts: JoinSet<(MemberName, Option<ProposeReply>)> = JoinSet::new();
        for (to, msg) in proposals {
            self.spawn_propose(&mut accepts, to, msg);
        }
        let deadline = tokio::time::Instant::now() + self.round_timeout;
        loop {
            let Some((from, reply)) = next_reply(&mut accepts, deadline).await else {
                return self.timed_out();
            };
            tracing::debug!("lease propose reply from {from}: {reply:?}");
            if let Some(outcome) = self.proposer.on_propose_reply(self.now(), &from, reply) {
                return outcome;
            }
        }
    }

    /// A phase ran out of time or of answers.
    fn timed_out(&mut self) -> Outcome {
        self.proposer
            .on_timeout(self.now())
            .unwrap_or(Outcome::TimedOut)
    }

    fn spawn_prepare(
        &self,
        set: &mut JoinSet<(MemberName, Option<PrepareReply>)>,
        to: MemberName,
        msg: Prepare,
    ) {
        let local = (to == self.me).then(|| self.acceptor.prepare(msg.clone()));
        self.spawn_call(set, to, msg, PREPARE_PATH, local);
    }

    fn spawn_propose(
        &self,
        set: &mut JoinSet<(MemberName, Option<ProposeReply>)>,
        to: MemberName,
        msg: Propose,
    ) {
        let local = (to == self.me).then(|| self.acceptor.propose(msg.clone()));
        self.spawn_call(set, to, msg, PROPOSE_PATH, local);
    }

    /// Adds `to`'s answer to `set`: `local` when `to` is this member (its
    /// acceptor answered in-process), else the answer over HTTP, `None`
    /// when it failed.
    fn spawn_call<M, R>(
        &self,
        set: &mut JoinSet<(MemberName, Option<R>)>,
        to: MemberName,
        msg: M,
        path: &'static str,
        local: Option<Option<R>>,
    ) where
        M: serde::Serialize + Send + Sync + 'static,
        R: serde::de::DeserializeOwned + Send + 'static,
    {
        if let Some(reply) = local {
            set.spawn(async move { (to, reply) });
            return;
        }
        let Some(url) = self.peers.get(&to).cloned() else {
            return;
        };
        let transport = self.transport.clone();
        set.spawn(async move {
            let reply = match transport.call::<_, R>(&url, path, &msg).await {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::debug!("lease {path} to {to}: {e}");
                    None
                }
            };
            (to, reply)
        });
    }

    fn after_round(&mut self, outcome: &Outcome, began: LocalTime) {
        let now = self.now();
        match outcome {
            Outcome::Acquired { .. } => self.known_holder = None,
            Outcome::Blocked { holder, remaining } => {
                // Someone holds it: asking again before it can have ended
                // would only disturb the holder's renewals. Every waiting
                // member saw the same end: a little jitter keeps them from
                // all starting at that instant and duelling.
                let jitter = self.random_pause(self.retry_spread / 2);
                self.not_before = now.saturating_add(*remaining).saturating_add(jitter);
                self.known_holder = Some(KnownHolder {
                    holder: holder.clone(),
                    until: now.saturating_add(*remaining),
                    since: began,
                });
            }
            Outcome::Preempted { .. } | Outcome::TooLate | Outcome::TimedOut => {
                let pause = self.random_pause(self.retry_spread);
                self.not_before = now.saturating_add(pause);
            }
            Outcome::LeaseTooLong { max_lease } => {
                tracing::error!(
                    "a member refuses leases longer than {max_lease:?}: cluster.ttl differs between members; set the same ttl everywhere"
                );
                let pause = self.retry_spread * 10;
                self.not_before = now.saturating_add(pause);
            }
        }
    }

    fn status(&self) -> LeaseStatus {
        let now = self.now();
        let clock = self.acceptor.clock();
        if let Some(held) = self.proposer.held_lease(now) {
            return LeaseStatus {
                holder: Some(self.me.as_str().to_string()),
                term: self.held_term.unwrap_or(held.term()),
                expires_at: Some(clock.instant(held.expires_at)),
                mine: true,
            };
        }
        if let Some(current) = self.acceptor.current() {
            if current.holder != self.me {
                return LeaseStatus {
                    holder: Some(current.holder.as_str().to_string()),
                    term: current.ballot.term(),
                    expires_at: Some(clock.instant(now.saturating_add(current.remaining))),
                    mine: false,
                };
            }
        }
        match &self.known_holder {
            Some(known) if known.until > now => LeaseStatus {
                holder: Some(known.holder.as_str().to_string()),
                term: 0,
                expires_at: Some(clock.instant(known.until)),
                mine: false,
            },
            _ => LeaseStatus::default(),
        }
    }

    async fn send_release(&mut self) {
        let msgs = self.proposer.release(self.now());
        // The notes first: a restart after this must not resume the lease.
        self.acceptor.set_holding(None);
        let mut set: JoinSet<()> = JoinSet::new();
        for (to, msg) in msgs {
            self.release_to(&mut set, to, msg);
        }
        let deadline = tokio::time::Instant::now() + self.round_timeout;
        while let Ok(Some(_)) = tokio::time::timeout_at(deadline, set.join_next()).await {}
    }

    fn release_to(&self, set: &mut JoinSet<()>, to: MemberName, msg: Release) {
        if to == self.me {
            self.acceptor.release(msg);
            return;
        }
        let Some(url) = self.peers.get(&to).cloned() else {
            return;
        };
        let transport = self.transport.clone();
        set.spawn(async move {
            if let Err(e) = transport
                .call::<_, serde_json::Value>(&url, RELEASE_PATH, &msg)
                .await
            {
                tracing::debug!("lease release to {to}: {e}");
            }
        });
    }
}

impl QuorumLease {
    /// The holder of a lease this member waited for sent this member's
    /// acceptor a release since (a release goes to every acceptor): stop
    /// waiting, so that the next holder takes over in its next loop rather
    /// than at the end of a lease nobody holds any more.
    fn notice_release(&mut self, now: LocalTime) {
        let Some(known) = &self.known_holder else {
            return;
        };
        if now < known.until && self.acceptor.released_since(&known.holder, known.since) {
            tracing::debug!("{} released the leader lease before its end", known.holder);
            self.known_holder = None;
            self.not_before = now;
        }
    }
}

impl LeaseClient for QuorumLease {
    async fn update(&mut self, want: bool) -> LeaseStatus {
        self.wanted = want;
        let now = self.now();
        self.notice_release(now);
        let holding = self.proposer.holds_lease(now);
        if !holding {
            // A lease won after this one lapsed is a new holding: a new term.
            self.held_term = None;
        }
        if want && (holding || now >= self.not_before) {
            let began = now;
            let mut outcome = self.round().await;
            crate::telemetry::lease_round(&outcome);
            // A holder's round that only learned a higher ballot (typically
            // its own, from before an agent restart, whose last round may
            // have reached some acceptors and not others) tries again at
            // once above it rather than lose a loop. A member that does not
            // hold the lease backs off instead: retrying at once would only
            // turn an election into a duel.
            for _ in 0..2 {
                if !holding || !matches!(outcome, Outcome::Preempted { .. }) {
                    break;
                }
                outcome = self.round().await;
                crate::telemetry::lease_round(&outcome);
            }
            tracing::debug!("lease round: {outcome:?}");
            self.after_round(&outcome, began);
        } else if !want && holding {
            self.send_release().await;
        }
        let now = self.now();
        let holding = self.proposer.held_lease(now).map(|held| Holding {
            term: self.held_term.unwrap_or(held.term()),
            lease: held.clone(),
        });
        self.held_term = holding.as_ref().map(|h| h.term);
        self.acceptor.set_holding(holding);
        self.status()
    }

    async fn release(&mut self) {
        if self.proposer.holds_lease(self.now()) {
            self.send_release().await;
        }
    }

    fn current(&self) -> LeaseStatus {
        self.status()
    }

    fn retry_at(&self) -> Option<Instant> {
        let now = self.now();
        (self.wanted && !self.proposer.holds_lease(now))
            .then(|| self.acceptor.clock().instant(self.not_before.max(now)))
    }
}

/// The next usable answer of a phase, or `None` once every member has
/// answered (or failed to) or the phase's deadline has passed.
async fn next_reply<R: Send + 'static>(
    set: &mut JoinSet<(MemberName, Option<R>)>,
    deadline: tokio::time::Instant,
) -> Option<(MemberName, R)> {
    loop {
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(Some(Ok((from, Some(reply))))) => return Some((from, reply)),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return None,
        }
    }
}

/// A random `u64` from the kernel (the proposer's incarnation: it must
/// differ from every earlier life of this member).
fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut buf);
    }
    let from_kernel = u64::from_le_bytes(buf);
    if from_kernel != 0 {
        return from_kernel;
    }
    // No /dev/urandom: the time in nanoseconds is still unique per start.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}
