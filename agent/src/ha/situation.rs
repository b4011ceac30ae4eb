//! The situation: everything a decision depends on except the lease,
//! computed purely from what the executor observed of the local node
//! ([`Local`]), what the other members said this loop ([`PeerReport`]) and
//! the settings. [`situation`] is the second step of the loop; the lease
//! round uses its [`super::decide::wants_lease`], and
//! [`super::decide::decide`] takes it with the lease.

use std::time::{Duration, Instant};

use crate::config::{Config, SyncMode};
use crate::pg::conf::StandbySource;
use crate::pg::files::DataDirState;
use crate::status_doc::{Position, Role, State, StatusDoc};

use super::candidate::{ahead, judge_in, members_to_compare, Candidacy, Contender};
use super::operation::PauseFlag;

/// The local PostgreSQL, as the loop found it this iteration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Postgres {
    /// No postmaster runs.
    NotRunning {
        /// It exited without being asked to, and a restart is not due yet.
        crash_backoff: bool,
    },
    /// A postmaster runs but did not answer the probe: starting up, or
    /// overloaded (out of connections, stuck) — in which case it may still
    /// take writes on sessions already open. Never a reason to disarm.
    Starting,
    /// It answers queries.
    Running {
        /// `pg_is_in_recovery()`.
        in_recovery: bool,
    },
}

/// What the executor observed of this node: plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    /// What the data directory holds.
    pub data: DataDirState,
    /// `standby.signal` exists.
    pub standby_signal: bool,
    /// The postmaster.
    pub postgres: Postgres,
    /// This agent (or its previous run) asked this postmaster to promote
    /// and has not seen it finish: "in recovery" may end any moment.
    pub promoting: bool,
    /// Its position, when PostgreSQL answered.
    pub position: Option<Position>,
    /// The cluster's system identifier: from PostgreSQL, else the state file.
    pub system_identifier: Option<String>,
    /// This standby's timeline forked off its upstream's.
    pub timeline_diverged: bool,
    /// A primary's directory started as a standby and not rewound since
    /// (`executor::REWIND_MARKER`).
    pub rewind_needed: bool,
    /// Crashes of the postmaster in a row.
    pub crashes_in_a_row: u32,
    /// The replication role and slots were ensured since PostgreSQL last
    /// started as primary.
    pub role_ensured: bool,
    /// This node fenced itself while holding the lease of this term: it may
    /// not be writable again before a new term.
    pub fenced_in_term: Option<u64>,
    /// The last position this node saw the primary at.
    pub last_leader: Option<Position>,
    /// A clone failed: the next one is due in this long.
    pub clone_retry_in: Option<Duration>,
    /// This primary hands its role over to another member (a switchover).
    pub handover: Option<Handover>,
    /// An operator chose this member to take over (a failover).
    pub designated: bool,
    /// The term of the lease in which PostgreSQL here was last writable
    /// (or in which this member made the cluster with initdb).
    pub writable_in_term: Option<u64>,
    /// A primary's own view of how far each standby trails it, from
    /// `pg_stat_replication` (by member name): fresher than their reports.
    pub sender_lag: Vec<(String, u64)>,
}

/// A switchover on the primary, as far as it has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// The member taking over.
    pub to: String,
    /// Where it stands.
    pub phase: HandoverPhase,
}

/// The steps of a switchover on the old primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoverPhase {
    /// Stop taking writes: CHECKPOINT, fast stop (`Action::HandOver`).
    Stop,
    /// Stopped; keep the lease until the target has replayed everything.
    Wait,
    /// The target has everything: let the lease go, come back as a standby.
    Release,
    /// The target did not catch up in time: start again as the primary
    /// (same term, same timeline; nothing was lost).
    Abort,
}

/// What another member said about itself this loop.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerReport {
    /// Member name.
    pub name: String,
    /// Its document arrived (and parsed) this loop.
    pub fresh: bool,
    /// Why it did not.
    pub error: Option<String>,
    /// Its role.
    pub role: Option<Role>,
    /// Its state.
    pub state: Option<State>,
    /// It runs PostgreSQL read-write.
    pub running_primary: bool,
    /// It says it holds the lease and runs as primary.
    pub claims_leadership: bool,
    /// The term it reports for its own lease.
    pub leader_term: Option<u64>,
    /// Its cluster's system identifier.
    pub system_identifier: Option<String>,
    /// Its position.
    pub position: Option<Position>,
    /// Where its PostgreSQL is reached.
    pub pg: Option<(String, u16)>,
    /// It has no data and is not making any.
    pub uninitialized: bool,
    /// ... and its former data directory was renamed aside.
    pub renamed_aside: bool,
    /// The last position it saw the primary at.
    pub last_leader: Option<Position>,
    /// Its WAL receiver streams.
    pub streaming: bool,
    /// It hands the primary role over to that member.
    pub handover_to: Option<String>,
    /// An operator chose it to take over.
    pub designated: bool,
    /// Its pause flag.
    pub pause: PauseFlag,
    /// How long before it answered its PostgreSQL was observed, in ms.
    pub observed_ms_ago: Option<u64>,
    /// Its own tags (`node.tags`), as it reports them.
    pub tags: crate::config::Tags,
    /// No later than the observation was made, on this node's clock: the
    /// time the request was sent minus [`PeerReport::observed_ms_ago`]
    /// ([`PeerReport::asked_at`]). A lower bound: the observation is at
    /// least this recent.
    pub observed_at: Option<Instant>,
}

impl PeerReport {
    /// A member's report from its document this loop (`None`: no answer).
    pub fn new(name: &str, doc: Option<&StatusDoc>, error: Option<String>) -> PeerReport {
        let Some(d) = doc else {
            return PeerReport {
                name: name.to_string(),
                error,
                ..PeerReport::default()
            };
        };
        // Before its first loop an agent knows nothing of its node (a
        // restarted agent serves "uninitialized, starting"): that is no
        // report, and taking it for one would count a member full of data
        // as empty.
        if d.agent.loop_last_ms_ago.is_none() {
            return PeerReport {
                name: name.to_string(),
                error: Some("its agent is starting and has not looked at its node yet".into()),
                ..PeerReport::default()
            };
        }
        PeerReport {
            name: name.to_string(),
            fresh: true,
            error: None,
            role: Some(d.role),
            state: Some(d.state),
            running_primary: d.is_running_primary(),
            claims_leadership: d.claims_leadership(),
            leader_term: d
                .leader
                .as_ref()
                .filter(|l| l.name == d.name)
                .map(|l| l.term),
            system_identifier: d.system_identifier().map(str::to_string),
            position: d.position(),
            pg: d.pg_endpoint(),
            uninitialized: d.is_uninitialized(),
            renamed_aside: d.renamed_aside,
            last_leader: d.last_leader_position,
            streaming: d
                .wal_receiver
                .as_ref()
                .is_some_and(|r| r.status == "streaming"),
            handover_to: d.handover_to.clone(),
            designated: d.designated,
            pause: PauseFlag {
                paused: d.agent.paused,
                version: d.agent.pause_version,
            },
            // An agent of an older version says only when its loop last
            // published (later than its observation: the bound is looser).
            observed_ms_ago: d.observed_ms_ago.or(d.agent.loop_last_ms_ago),
            observed_at: None,
            tags: d.tags.clone(),
        }
    }

    /// Dates the observation from `asked`, the time the request for the
    /// document was sent: the peer answered after it, and had observed
    /// its PostgreSQL `observed_ms_ago` before answering.
    pub fn asked_at(mut self, asked: Option<Instant>) -> PeerReport {
        self.observed_at = match (asked, self.observed_ms_ago) {
            (Some(t), Some(ms)) => t.checked_sub(Duration::from_millis(ms)),
            _ => None,
        };
        self
    }

    /// A running replica that streams: one a switchover can hand over to.
    pub fn streaming_replica(&self) -> bool {
        self.healthy_replica() && self.streaming
    }

    /// A running replica that could take over.
    fn healthy_replica(&self) -> bool {
        self.fresh && self.role == Some(Role::Replica) && self.state == Some(State::Running)
    }
}

/// One member as the configuration lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its name.
    pub name: String,
    /// Runs no PostgreSQL.
    pub witness: bool,
    /// Never promoted.
    pub nofailover: bool,
    /// Preferred clone source.
    pub clonefrom: bool,
}

/// The settings decisions depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// This member.
    pub me: String,
    /// This member runs no PostgreSQL.
    pub witness: bool,
    /// Every member, this one included.
    pub members: Vec<MemberInfo>,
    /// A physical slot per member.
    pub slots: bool,
    /// `replication.synchronous`: the candidate rule's `k`.
    pub synchronous: SyncMode,
    /// `replication.max_lag_on_failover` in bytes.
    pub max_lag: u64,
    /// A primary whose lease has less than this left stops PostgreSQL; no
    /// primary is made with less than this left.
    pub fence_margin: Duration,
    /// The operator paused automatic actions.
    pub paused: bool,
    /// Crashes in a row after which a primary hands over, if it can.
    pub crash_loop_after: u32,
    /// This member's `failover_priority` tag.
    pub failover_priority: u32,
    /// This member's `replicatefrom` tag.
    pub replicatefrom: Option<String>,
}

impl Settings {
    /// The settings of `cfg`.
    pub fn from_config(cfg: &Config) -> Settings {
        Settings {
            me: cfg.node.name.clone(),
            witness: cfg.node.witness,
            members: cfg
                .cluster
                .members
                .iter()
                .map(|m| {
                    // This member's own tags count as its entry's flags.
                    let own = (m.name == cfg.node.name).then_some(&cfg.node.tags);
                    MemberInfo {
                        name: m.name.clone(),
                        witness: m.witness,
                        nofailover: m.nofailover || own.is_some_and(|t| t.never_primary()),
                        clonefrom: m.clonefrom || own.is_some_and(|t| t.clonefrom),
                    }
                })
                .collect(),
            slots: cfg.replication.slots,
            synchronous: cfg.replication.synchronous,
            max_lag: cfg.replication.max_lag_on_failover.bytes(),
            fence_margin: fence_margin(cfg.cluster.ttl, cfg.cluster.loop_wait),
            paused: false,
            crash_loop_after: CRASH_LOOP_AFTER,
            failover_priority: cfg.node.tags.failover_priority,
            replicatefrom: cfg.node.tags.replicatefrom.clone(),
        }
    }

    /// A member that may never be primary: its entry in `cluster.members`
    /// says `nofailover`, or its own tags say so (`nofailover`,
    /// `failover_priority = 0`) as it last reported them in `report`.
    pub fn never_primary(&self, name: &str, report: Option<&PeerReport>) -> bool {
        self.member(name).is_some_and(|m| m.nofailover)
            || report.is_some_and(|p| p.tags.never_primary())
    }

    fn data_members(&self) -> impl Iterator<Item = &MemberInfo> {
        self.members.iter().filter(|m| !m.witness)
    }

    fn member(&self, name: &str) -> Option<&MemberInfo> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// Crashes in a row after which a primary gives its lease to another
/// candidate, when there is one.
pub const CRASH_LOOP_AFTER: u32 = 3;

/// Two loops, or a quarter of the lease, whichever is longer.
pub fn fence_margin(ttl: Duration, loop_wait: Duration) -> Duration {
    (loop_wait * 2).max(ttl / 4)
}

/// PostgreSQL keeps crashing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrashLoop {
    /// It does not.
    No,
    /// It does, and another member can take over: give the lease up.
    GiveUp {
        /// A member that could take over.
        to: String,
        /// Crashes in a row.
        crashes: u32,
    },
    /// It does, and no other member can take over: keep restarting it
    /// (with back-off) rather than leave the cluster without a primary.
    KeepTrying {
        /// Crashes in a row.
        crashes: u32,
    },
}

impl CrashLoop {
    /// Whether a step-down that `action` completed was the hand-over this
    /// crash loop asked for, after which the crash count starts over.
    ///
    /// Without that, a member that handed over and then won the lease
    /// again (it was the only one with the newest WAL, so nobody else
    /// could) saw the same count when it promoted, stepped down again, and
    /// did so every loop, a new timeline each second, until the crashes
    /// were forgotten after a minute of running, which a PostgreSQL
    /// restarted every second never reaches (the chaos run, seed 2, fault
    /// 26). The count stood for "this primary keeps crashing"; the hand-over
    /// is the remedy, and a new primary crashing again starts a new count.
    pub fn handed_over(&self, action: &super::decide::Action) -> bool {
        matches!(self, CrashLoop::GiveUp { .. })
            && matches!(action, super::decide::Action::Fence { .. })
    }
}

/// Everything a decision depends on but the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Situation {
    /// This member's name.
    pub me: String,
    /// This node runs no PostgreSQL.
    pub witness: bool,
    /// The cluster has no data members at all (a lease-only cluster): then
    /// a witness may hold the lease, there being no primary to protect.
    pub no_data_members: bool,
    /// This node is the only data member: nobody to compare positions with.
    pub solo_data_member: bool,
    /// The operator paused automatic actions.
    pub paused: bool,
    /// Tagged `nofailover`: never primary, not even to bootstrap.
    pub nofailover: bool,
    /// No primary is made, and a primary stops, with less lease than this.
    pub fence_margin: Duration,
    /// What the data directory holds.
    pub data: DataDirState,
    /// `standby.signal` exists.
    pub standby_signal: bool,
    /// The postmaster.
    pub postgres: Postgres,
    /// A promotion asked of it may still be under way.
    pub promoting: bool,
    /// How far its WAL goes, when PostgreSQL answered.
    pub position: Option<Position>,
    /// The replication role was ensured since PostgreSQL last started as primary.
    pub role_ensured: bool,
    /// This standby's timeline diverged from its upstream's.
    pub timeline_diverged: bool,
    /// This directory ran as a primary and was not rewound since it became
    /// a standby: rewound before it follows a leader.
    pub rewind_needed: bool,
    /// Fenced in this term: not writable again before a new one.
    pub fenced_in_term: Option<u64>,
    /// The term in which PostgreSQL here was last writable.
    pub writable_in_term: Option<u64>,
    /// A switchover this primary carries out.
    pub handover: Option<Handover>,
    /// How far each standby trails this primary, by its walsender.
    pub sender_lag: Vec<(String, u64)>,
    /// This data directory's system identifier, when known.
    pub system_identifier: Option<String>,
    /// PostgreSQL keeps crashing.
    pub crash_loop: CrashLoop,
    /// A new cluster may be created here (every data member reachable and
    /// empty; trivially true for a one-member cluster).
    pub bootstrap_allowed: bool,
    /// Why an empty member can neither bootstrap nor clone, in words.
    pub join_blocker: Option<String>,
    /// Where an empty member clones from: the member that leads, or a
    /// running member tagged `clonefrom`.
    pub clone_source: Option<StandbySource>,
    /// A clone failed: the next one is due in this long.
    pub clone_retry_in: Option<Duration>,
    /// Whether this member is the one to lead when nobody does.
    pub candidacy: Candidacy,
    /// What the candidate rule compared, when it ranked positions.
    pub ranking: Option<Ranking>,
    /// The slot this member streams from, when slots are on.
    pub slot: Option<String>,
    /// `replicatefrom`: the member this standby would rather stream from
    /// than from the primary (cascading).
    pub replicatefrom: Option<String>,
    /// The other members' reports.
    pub peers: Vec<PeerReport>,
}

impl Situation {
    /// PostgreSQL may accept writes: it runs as primary, or runs and does
    /// not answer while its directory is primary-shaped, or a promotion
    /// asked of it may finish any moment.
    pub fn may_be_writable(&self) -> bool {
        if self.promoting && matches!(self.postgres, Postgres::Running { .. } | Postgres::Starting)
        {
            return true;
        }
        match self.postgres {
            Postgres::Running { in_recovery } => !in_recovery,
            Postgres::Starting => !self.standby_signal,
            Postgres::NotRunning { .. } => false,
        }
    }

    /// Another member's report.
    pub fn peer(&self, name: &str) -> Option<&PeerReport> {
        self.peers.iter().find(|p| p.name == name)
    }

    /// The member named by `replicatefrom`, when this standby can stream
    /// from it now: it answered this loop, runs as a streaming replica of
    /// the same cluster, and does not itself (through others' tags) stream
    /// from this member — a cycle would leave every member of it without WAL.
    pub fn cascade_source(&self) -> Option<StandbySource> {
        let name = self.replicatefrom.as_deref()?;
        let up = self.peer(name)?;
        let usable = up.streaming_replica()
            && up.system_identifier.is_some()
            && up.system_identifier == self.system_identifier;
        if !usable {
            return None;
        }
        let mut next = up.tags.replicatefrom.as_deref();
        for _ in 0..=self.peers.len() {
            match next {
                None => return self.source_of(up),
                Some(n) if n == self.me => return None,
                Some(n) => next = self.peer(n).and_then(|p| p.tags.replicatefrom.as_deref()),
            }
        }
        None
    }

    /// Where this member streams from when `peer` is the primary.
    pub fn source_of(&self, peer: &PeerReport) -> Option<StandbySource> {
        peer.pg.clone().map(|(host, port)| StandbySource {
            host,
            port,
            slot: self.slot.clone(),
        })
    }
}

/// The situation, from what was observed.
pub fn situation(local: &Local, peers: &[PeerReport], settings: &Settings) -> Situation {
    let me = settings.me.as_str();
    let data_members = settings.data_members().count();
    let nofailover = settings.member(me).is_some_and(|m| m.nofailover);
    let data_peers: Vec<&PeerReport> = settings
        .data_members()
        .filter(|m| m.name != me)
        .filter_map(|m| peers.iter().find(|p| p.name == m.name))
        .collect();
    let slot = settings.slots.then(|| me.to_string());
    let mut s = Situation {
        me: me.to_string(),
        witness: settings.witness,
        no_data_members: data_members == 0,
        solo_data_member: !settings.witness && data_members == 1,
        paused: settings.paused,
        nofailover,
        fence_margin: settings.fence_margin,
        data: local.data,
        standby_signal: local.standby_signal,
        postgres: local.postgres.clone(),
        promoting: local.promoting,
        position: local.position,
        role_ensured: local.role_ensured,
        timeline_diverged: local.timeline_diverged,
        rewind_needed: local.rewind_needed,
        fenced_in_term: local.fenced_in_term,
        writable_in_term: local.writable_in_term,
        handover: local.handover.clone(),
        sender_lag: local.sender_lag.clone(),
        system_identifier: local.system_identifier.clone(),
        crash_loop: CrashLoop::No,
        bootstrap_allowed: false,
        join_blocker: None,
        clone_source: None,
        clone_retry_in: local.clone_retry_in,
        candidacy: Candidacy::NotBest("a witness never leads".into()),
        ranking: None,
        slot,
        replicatefrom: settings.replicatefrom.clone(),
        peers: peers.to_vec(),
    };
    if settings.witness {
        return s;
    }
    // Only a primary hands over for its crashes: a standby that crashes
    // keeps restarting (with back-off); its peers cannot see crash counts,
    // so withdrawing it from the candidacy could leave nobody to promote.
    s.crash_loop = if local.standby_signal {
        CrashLoop::No
    } else {
        crash_loop(local, &data_peers, settings)
    };
    (s.candidacy, s.ranking) = candidacy(local, &data_peers, settings, nofailover);
    let solo = settings.members.len() == 1;
    let all_empty = data_peers.len() + 1 == data_members
        && data_peers.iter().all(|p| p.fresh && p.uninitialized);
    s.bootstrap_allowed = local.data != DataDirState::Initialized && (solo || all_empty);
    if local.data == DataDirState::Empty {
        let leader = data_peers
            .iter()
            .find(|p| p.fresh && p.claims_leadership && p.running_primary);
        let clonefrom = || {
            data_peers.iter().find(|p| {
                (settings.member(&p.name).is_some_and(|m| m.clonefrom) || p.tags.clonefrom)
                    && p.fresh
                    && p.state == Some(State::Running)
                    && p.system_identifier.is_some()
            })
        };
        s.clone_source = leader.or_else(clonefrom).and_then(|p| s.source_of(p));
    }
    if local.data != DataDirState::Initialized && !s.bootstrap_allowed && s.clone_source.is_none() {
        s.join_blocker = Some(join_blocker(&data_peers));
    }
    s
}

fn join_blocker(data_peers: &[&PeerReport]) -> String {
    let unreachable: Vec<String> = data_peers
        .iter()
        .filter(|p| !p.fresh)
        .map(|p| {
            format!(
                "{} ({})",
                p.name,
                p.error.as_deref().unwrap_or("no answer yet")
            )
        })
        .collect();
    let with_data: Vec<&str> = data_peers
        .iter()
        .filter(|p| p.fresh && !p.uninitialized)
        .map(|p| p.name.as_str())
        .collect();
    if !unreachable.is_empty() {
        format!(
            "empty data directory: waiting for every data member before a new cluster is made; not reachable: {}",
            unreachable.join(", ")
        )
    } else if !with_data.is_empty() {
        format!(
            "empty data directory: {} {} data, but no running primary holding the leader lease to clone from yet",
            with_data.join(", "),
            if with_data.len() == 1 { "has" } else { "have" }
        )
    } else {
        "empty data directory: waiting for the leader lease to bootstrap".to_string()
    }
}

/// The candidate rule's inputs, kept so that [`Situation::candidacy_since`]
/// can judge again counting only positions observed since a given time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranking {
    mode: SyncMode,
    me: Contender,
    /// Each peer, with the earliest time its position may have been observed.
    peers: Vec<(Contender, Option<Instant>)>,
    needed: usize,
    max_lag: u64,
    /// An operator chose this member (a failover in a synchronous mode).
    designated: bool,
}

impl Situation {
    /// The candidacy counting as compared only the positions observed at or
    /// after `since` (this member's lease began then): the old primary
    /// stopped before this member could win the lease, so those include
    /// every commit it acknowledged. An operator's choice (switchover,
    /// failover) stands as it is; so does everything when `since` is
    /// unknown.
    pub fn candidacy_since(&self, since: Option<Instant>) -> Candidacy {
        let (Some(r), Some(since)) = (&self.ranking, since) else {
            return self.candidacy.clone();
        };
        let peers: Vec<Contender> = r
            .peers
            .iter()
            .map(|(c, at)| Contender {
                recent: at.is_some_and(|at| at >= since),
                ..c.clone()
            })
            .collect();
        let mut verdict = judge_in(r.mode, &r.me, &peers, r.needed, r.max_lag);
        if r.designated {
            verdict = designated_in_sync_mode(&r.me, &peers, r.needed, verdict);
        }
        match verdict {
            Candidacy::NotBest(why) if self.candidacy.is_best() => Candidacy::NotBest(format!(
                "comparing positions observed since this member won the leader lease: {why}"
            )),
            verdict => verdict,
        }
    }
}

/// An operator's failover candidate in a synchronous mode: chosen over
/// members as far ahead as it is (the ranking's tie rule, `max_lag`), but
/// never over one further ahead, nor without `needed` positions compared:
/// either could mean a commit acknowledged by quorum commit that it lacks.
fn designated_in_sync_mode(
    me: &Contender,
    peers: &[Contender],
    needed: usize,
    ranked: Candidacy,
) -> Candidacy {
    let why = match (&ranked, me.position) {
        (Candidacy::Best(_), _) => None,
        (_, None) => Some(ranked.reason().to_string()),
        (_, Some(mine)) => {
            let reached = 1 + peers
                .iter()
                .filter(|p| p.recent && (p.position.is_some() || p.empty))
                .count();
            let further = peers
                .iter()
                .find(|p| p.position.is_some_and(|t| ahead(t, mine)));
            match further {
                Some(p) => Some(format!("{} has more WAL", p.name)),
                None if reached < needed => Some(ranked.reason().to_string()),
                None => None,
            }
        }
    };
    match why {
        None => Candidacy::Best(format!(
            "{} was chosen by an operator to take over (failover), and holds every acknowledged commit it could compare",
            me.name
        )),
        Some(why) => Candidacy::NotBest(format!(
            "chosen by an operator to take over, but synchronous replication forbids it: {why}"
        )),
    }
}

fn candidacy(
    local: &Local,
    data_peers: &[&PeerReport],
    settings: &Settings,
    nofailover: bool,
) -> (Candidacy, Option<Ranking>) {
    let me = settings.me.as_str();
    if let Some(h) = local
        .handover
        .as_ref()
        .filter(|h| h.phase != HandoverPhase::Abort)
    {
        return (
            Candidacy::NotBest(format!("handing the primary role over to {}", h.to)),
            None,
        );
    }
    // An operator's choice (a switchover's target, a failover's candidate)
    // stands in for the ranking; it was checked when it was made.
    let fresh = || data_peers.iter().filter(|p| p.fresh);
    if let Some(p) = fresh().find(|p| p.handover_to.is_some()) {
        let to = p.handover_to.as_deref().unwrap_or_default();
        let verdict = if to == me && !nofailover {
            Candidacy::Best(format!(
                "{} hands the primary role over to {me} (switchover)",
                p.name
            ))
        } else {
            Candidacy::NotBest(format!("{} hands the primary role over to {to}", p.name))
        };
        return (verdict, None);
    }
    if let Some(p) = fresh().find(|p| p.running_primary) {
        return (
            Candidacy::NotBest(format!("{} reports a running primary", p.name)),
            None,
        );
    }
    // In a synchronous mode an operator's choice still must hold every
    // acknowledged commit: it is checked below, after the ranking.
    if local.designated && settings.synchronous == SyncMode::Off {
        return (
            Candidacy::Best(format!(
                "{me} was chosen by an operator to take over (failover)"
            )),
            None,
        );
    }
    if let Some(p) = fresh().find(|p| p.designated) {
        return (
            Candidacy::NotBest(format!("{} was chosen by an operator to take over", p.name)),
            None,
        );
    }
    let position = match local.postgres {
        Postgres::Running { .. } => local.position,
        _ => None,
    };
    let me = Contender {
        name: settings.me.clone(),
        position,
        system_identifier: local.system_identifier.clone(),
        running_primary: false,
        nofailover,
        priority: settings.failover_priority,
        last_leader: local.last_leader,
        empty: false,
        recent: true,
    };
    // Every fresh position counts here, where the rule decides whether to
    // ask for the lease; a promotion counts only those observed since the
    // lease was won ([`Situation::candidacy_since`]).
    let peers: Vec<(Contender, Option<Instant>)> = data_peers
        .iter()
        .filter(|p| p.fresh)
        .map(|p| {
            let contender = Contender {
                name: p.name.clone(),
                position: p.position,
                recent: true,
                system_identifier: p.system_identifier.clone(),
                running_primary: p.running_primary,
                nofailover: settings.never_primary(&p.name, Some(p)),
                priority: p.tags.failover_priority,
                last_leader: p.last_leader,
                // An empty member "has nothing", so it counts as compared
                // (a new cluster's first primary compares with members
                // still empty) — but in a synchronous mode not one whose
                // directory was renamed aside (a failed rewind, a
                // re-clone): it may have acknowledged commits it lost.
                empty: p.uninitialized
                    && (settings.synchronous == SyncMode::Off || !p.renamed_aside),
            };
            (contender, p.observed_at)
        })
        .collect();
    let needed = members_to_compare(
        settings.synchronous,
        settings.data_members().count(),
        settings.members.len(),
    );
    let contenders: Vec<Contender> = peers.iter().map(|(c, _)| c.clone()).collect();
    let mut verdict = judge_in(
        settings.synchronous,
        &me,
        &contenders,
        needed,
        settings.max_lag,
    );
    if local.designated {
        verdict = designated_in_sync_mode(&me, &contenders, needed, verdict);
    }
    let ranking = Ranking {
        mode: settings.synchronous,
        me,
        peers,
        needed,
        max_lag: settings.max_lag,
        designated: local.designated,
    };
    (verdict, Some(ranking))
}

fn crash_loop(local: &Local, data_peers: &[&PeerReport], settings: &Settings) -> CrashLoop {
    let crashes = local.crashes_in_a_row;
    if crashes < settings.crash_loop_after {
        return CrashLoop::No;
    }
    let other = data_peers.iter().find(|p| {
        p.healthy_replica()
            && !settings.never_primary(&p.name, Some(p))
            && p.system_identifier == local.system_identifier
    });
    match other {
        Some(p) => CrashLoop::GiveUp {
            to: p.name.clone(),
            crashes,
        },
        None => CrashLoop::KeepTrying { crashes },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::Lsn;

    fn settings(names: &[&str]) -> Settings {
        Settings {
            me: names[0].to_string(),
            witness: false,
            members: names
                .iter()
                .map(|n| MemberInfo {
                    name: n.to_string(),
                    witness: n.starts_with('w'),
                    nofailover: false,
                    clonefrom: false,
                })
                .collect(),
            slots: true,
            synchronous: SyncMode::Off,
            max_lag: 1 << 20,
            fence_margin: Duration::from_secs(2),
            paused: false,
            crash_loop_after: 3,
            failover_priority: crate::config::DEFAULT_FAILOVER_PRIORITY,
            replicatefrom: None,
        }
    }

    fn at(lsn: u64) -> Option<Position> {
        Some(Position {
            timeline: 1,
            lsn: Lsn(lsn),
        })
    }

    fn standby(lsn: u64) -> Local {
        Local {
            data: DataDirState::Initialized,
            standby_signal: true,
            postgres: Postgres::Running { in_recovery: true },
            promoting: false,
            position: at(lsn),
            system_identifier: Some("7311".into()),
            timeline_diverged: false,
            rewind_needed: false,
            crashes_in_a_row: 0,
            role_ensured: false,
            fenced_in_term: None,
            last_leader: None,
            clone_retry_in: None,
            handover: None,
            designated: false,
            sender_lag: Vec::new(),
            writable_in_term: None,
        }
    }

    fn empty() -> Local {
        Local {
            data: DataDirState::Empty,
            standby_signal: false,
            postgres: Postgres::NotRunning {
                crash_backoff: false,
            },
            position: None,
            system_identifier: None,
            ..standby(0)
        }
    }

    fn peer(name: &str, role: Role, lsn: Option<u64>) -> PeerReport {
        PeerReport {
            name: name.into(),
            fresh: true,
            role: Some(role),
            state: Some(State::Running),
            running_primary: role == Role::Primary,
            claims_leadership: role == Role::Primary,
            leader_term: (role == Role::Primary).then_some(3),
            system_identifier: (role != Role::Uninitialized).then(|| "7311".into()),
            position: lsn.and_then(at),
            pg: Some((format!("10.0.0.{}", &name[2..]), 5432)),
            uninitialized: role == Role::Uninitialized,
            observed_ms_ago: Some(300),
            ..PeerReport::default()
        }
    }

    fn down(name: &str) -> PeerReport {
        PeerReport::new(name, None, Some("connection refused".into()))
    }

    #[test]
    fn every_data_member_empty_and_reachable_allows_a_bootstrap() {
        let s = situation(
            &empty(),
            &[
                peer("pg2", Role::Uninitialized, None),
                peer("pg3", Role::Uninitialized, None),
            ],
            &settings(&["pg1", "pg2", "pg3"]),
        );
        assert!(s.bootstrap_allowed);
        assert_eq!(s.join_blocker, None);
    }

    #[test]
    fn a_member_down_at_first_bootstrap_blocks_it_and_is_named() {
        let s = situation(
            &empty(),
            &[peer("pg2", Role::Uninitialized, None), down("pg3")],
            &settings(&["pg1", "pg2", "pg3"]),
        );
        assert!(!s.bootstrap_allowed);
        let why = s.join_blocker.unwrap();
        assert!(why.contains("pg3 (connection refused)"), "{why}");
    }

    #[test]
    fn an_empty_member_clones_from_the_primary_that_claims_the_lease() {
        let s = situation(
            &empty(),
            &[
                peer("pg2", Role::Primary, Some(90)),
                peer("pg3", Role::Replica, Some(80)),
            ],
            &settings(&["pg1", "pg2", "pg3"]),
        );
        let source = s.clone_source.unwrap();
        assert_eq!((source.host.as_str(), source.port), ("10.0.0.2", 5432));
        assert_eq!(source.slot.as_deref(), Some("pg1"));
        assert!(!s.bootstrap_allowed);
    }

    #[test]
    fn the_best_standby_is_the_candidate_and_says_why_not_otherwise() {
        let cfg = settings(&["pg1", "pg2", "pg3"]);
        let s = situation(
            &standby(200),
            &[down("pg2"), peer("pg3", Role::Replica, Some(100))],
            &cfg,
        );
        assert!(s.candidacy.is_best(), "{:?}", s.candidacy);
        let alone = situation(&standby(200), &[down("pg2"), down("pg3")], &cfg);
        assert_eq!(
            alone.candidacy.reason(),
            "waiting: needs the WAL positions of 2 data members, reached 1"
        );
    }

    #[test]
    fn a_promotion_compares_only_positions_observed_since_the_lease_was_won() {
        // pg3 was observed before this member won the lease: its
        // PostgreSQL may have received (and acknowledged) more since.
        let cfg = settings(&["pg1", "pg2", "pg3"]);
        let won = Instant::now();
        let observed = |at: Instant| {
            PeerReport {
                observed_ms_ago: Some(200),
                ..peer("pg3", Role::Replica, Some(100))
            }
            .asked_at(Some(at))
        };
        let before = situation(&standby(200), &[down("pg2"), observed(won)], &cfg);
        assert!(before.candidacy.is_best(), "enough to ask for the lease");
        let since = before.candidacy_since(Some(won));
        assert_eq!(
            since.reason(),
            "comparing positions observed since this member won the leader lease: \
             waiting: needs the WAL positions of 2 data members, reached 1"
        );
        let after = situation(
            &standby(200),
            &[down("pg2"), observed(won + Duration::from_millis(200))],
            &cfg,
        );
        assert!(after.candidacy_since(Some(won)).is_best());
        // One observed before and ahead still rules this member out.
        let ahead = situation(
            &standby(200),
            &[
                down("pg2"),
                PeerReport {
                    observed_ms_ago: Some(200),
                    ..peer("pg3", Role::Replica, Some(300))
                }
                .asked_at(Some(won)),
            ],
            &cfg,
        );
        assert!(!ahead.candidacy_since(Some(won)).is_best());
        assert_eq!(
            before.candidacy_since(None),
            before.candidacy,
            "no holding known: as ranked"
        );
    }

    #[test]
    fn a_standby_that_won_the_lease_waits_for_positions_observed_since_then_promotes() {
        use crate::ha::decide::{decide, Action, Lease};
        let cfg = settings(&["pg1", "pg2", "pg3"]);
        let won = Instant::now();
        let lease = Lease {
            mine: true,
            holder: Some("pg1".into()),
            term: 7,
            remaining: Duration::from_secs(9),
            since: Some(won),
        };
        let report = |asked: Instant| {
            PeerReport {
                observed_ms_ago: Some(100),
                ..peer("pg3", Role::Replica, Some(100))
            }
            .asked_at(Some(asked))
        };
        let s = situation(&standby(200), &[down("pg2"), report(won)], &cfg);
        match decide(&s, &lease) {
            Action::Wait { reason } => assert!(reason.contains("not promoting yet"), "{reason}"),
            other => panic!("promoted on a position observed before the lease: {other:?}"),
        }
        let s = situation(
            &standby(200),
            &[down("pg2"), report(won + Duration::from_millis(500))],
            &cfg,
        );
        assert!(
            matches!(decide(&s, &lease), Action::Promote { .. }),
            "{:?}",
            decide(&s, &lease)
        );
    }

    #[test]
    fn an_operators_failover_candidate_in_a_synchronous_mode_must_hold_every_acknowledged_commit() {
        let mut cfg = settings(&["pg1", "pg2", "pg3"]);
        let lagging = Local {
            designated: true,
            // Far behind the primary's last position: the ranking alone
            // would refuse it (max_lag_on_failover); an operator may insist.
            last_leader: at(200 + (64 << 20)),
            ..standby(200)
        };
        for mode in [SyncMode::Off, SyncMode::Quorum, SyncMode::On] {
            cfg.synchronous = mode;
            let s = situation(
                &lagging,
                &[down("pg2"), peer("pg3", Role::Replica, Some(200))],
                &cfg,
            );
            assert!(s.candidacy.is_best(), "{mode:?}: {:?}", s.candidacy);
        }
        cfg.synchronous = SyncMode::Quorum;
        let behind = situation(
            &lagging,
            &[down("pg2"), peer("pg3", Role::Replica, Some(300))],
            &cfg,
        );
        assert!(
            behind
                .candidacy
                .reason()
                .contains("synchronous replication forbids it: pg3 has more WAL"),
            "{:?}",
            behind.candidacy
        );
        let alone = situation(&lagging, &[down("pg2"), down("pg3")], &cfg);
        assert!(!alone.candidacy.is_best(), "{:?}", alone.candidacy);
        cfg.synchronous = SyncMode::Off;
        let behind = situation(
            &lagging,
            &[down("pg2"), peer("pg3", Role::Replica, Some(300))],
            &cfg,
        );
        assert!(
            behind.candidacy.is_best(),
            "asynchronous: the operator decides"
        );
    }

    #[test]
    fn in_a_synchronous_mode_a_member_emptied_by_a_rename_aside_is_not_compared_with() {
        let mut cfg = settings(&["pg1", "pg2", "pg3"]);
        let emptied = PeerReport {
            renamed_aside: true,
            ..peer("pg3", Role::Uninitialized, None)
        };
        for (mode, renamed, best) in [
            (SyncMode::Off, true, true),
            (SyncMode::Quorum, false, true),
            (SyncMode::Quorum, true, false),
            (SyncMode::On, true, false),
        ] {
            cfg.synchronous = mode;
            let p3 = PeerReport {
                renamed_aside: renamed,
                ..emptied.clone()
            };
            let s = situation(&standby(200), &[down("pg2"), p3], &cfg);
            assert_eq!(
                s.candidacy.is_best(),
                best,
                "{mode:?}, renamed {renamed}: {:?}",
                s.candidacy
            );
        }
    }

    #[test]
    fn two_data_members_and_a_witness_let_the_survivor_stand_alone() {
        let s = situation(
            &standby(200),
            &[down("pg2"), down("w1")],
            &settings(&["pg1", "pg2", "w1"]),
        );
        assert!(s.candidacy.is_best(), "{:?}", s.candidacy);
    }

    #[test]
    fn a_stopped_directory_has_no_known_position_so_it_is_no_candidate() {
        let stopped = Local {
            standby_signal: false,
            postgres: Postgres::NotRunning {
                crash_backoff: false,
            },
            ..standby(500)
        };
        let s = situation(
            &stopped,
            &[peer("pg2", Role::Replica, Some(100))],
            &settings(&["pg1", "pg2", "pg3"]),
        );
        assert!(!s.candidacy.is_best());
    }

    #[test]
    fn a_switchover_target_is_the_candidate_and_everyone_else_stands_aside() {
        let cfg = settings(&["pg1", "pg2", "pg3"]);
        let handing = PeerReport {
            running_primary: false,
            handover_to: Some("pg1".into()),
            ..peer("pg2", Role::Primary, Some(300))
        };
        // pg1 is behind pg3 by name order and position alike, yet the target
        let s = situation(
            &standby(100),
            &[handing.clone(), peer("pg3", Role::Replica, Some(300))],
            &cfg,
        );
        assert!(s.candidacy.is_best(), "{:?}", s.candidacy);
        let to_other = PeerReport {
            handover_to: Some("pg3".into()),
            ..handing
        };
        let s = situation(
            &standby(900),
            &[to_other, peer("pg3", Role::Replica, Some(300))],
            &cfg,
        );
        assert_eq!(
            s.candidacy.reason(),
            "pg2 hands the primary role over to pg3"
        );
        let own = Local {
            handover: Some(Handover {
                to: "pg3".into(),
                phase: HandoverPhase::Stop,
            }),
            ..standby(900)
        };
        assert!(!situation(&own, &[down("pg2"), down("pg3")], &cfg)
            .candidacy
            .is_best());
    }

    #[test]
    fn an_operators_failover_choice_leads_unless_a_primary_runs() {
        let cfg = settings(&["pg1", "pg2", "pg3"]);
        let chosen = Local {
            designated: true,
            ..standby(100)
        };
        let s = situation(
            &chosen,
            &[peer("pg2", Role::Replica, Some(900)), down("pg3")],
            &cfg,
        );
        assert!(s.candidacy.is_best(), "{:?}", s.candidacy);
        let s = situation(
            &chosen,
            &[peer("pg2", Role::Primary, Some(900)), down("pg3")],
            &cfg,
        );
        assert!(!s.candidacy.is_best());
        let other = PeerReport {
            designated: true,
            ..peer("pg2", Role::Replica, Some(1))
        };
        let s = situation(&standby(900), &[other, down("pg3")], &cfg);
        assert_eq!(
            s.candidacy.reason(),
            "pg2 was chosen by an operator to take over"
        );
    }

    #[test]
    fn a_crash_loop_gives_the_lease_up_only_when_someone_can_take_over() {
        let cfg = settings(&["pg1", "pg2", "pg3"]);
        let crashing = Local {
            standby_signal: false,
            postgres: Postgres::NotRunning {
                crash_backoff: true,
            },
            crashes_in_a_row: 3,
            ..standby(0)
        };
        let s = situation(
            &crashing,
            &[peer("pg2", Role::Replica, Some(1)), down("pg3")],
            &cfg,
        );
        assert_eq!(
            s.crash_loop,
            CrashLoop::GiveUp {
                to: "pg2".into(),
                crashes: 3
            }
        );
        let s = situation(&crashing, &[down("pg2"), down("pg3")], &cfg);
        assert_eq!(s.crash_loop, CrashLoop::KeepTrying { crashes: 3 });
    }

    #[test]
    fn a_document_served_before_the_agents_first_loop_is_no_report() {
        let doc: StatusDoc = serde_json::from_value(serde_json::json!({
            "name": "pg2", "cluster": "main", "role": "uninitialized", "state": "starting",
            "agent": {"version": "0.1.0", "uptime_s": 0, "loop_last_ms_ago": null}
        }))
        .unwrap();
        let r = PeerReport::new("pg2", Some(&doc), None);
        assert!(!r.fresh && !r.uninitialized, "{r:?}");
        let s = situation(
            &empty(),
            &[r, peer("pg3", Role::Uninitialized, None)],
            &settings(&["pg1", "pg2", "pg3"]),
        );
        assert!(!s.bootstrap_allowed, "a restarting member may hold data");
    }

    #[test]
    fn a_report_reads_what_decisions_need_from_a_document() {
        let doc: StatusDoc = serde_json::from_value(serde_json::json!({
            "name": "pg2", "cluster": "main", "role": "primary", "state": "running",
            "agent": {"version": "0.1.0", "uptime_s": 3, "loop_last_ms_ago": 20},
            "postgres": {"version_num": 150018, "system_identifier": "7311", "timeline": 3,
                         "host": "10.0.0.2", "port": 5433, "pid": 42, "start_time": null},
            "wal": {"lsn": "0/5000148", "received_lsn": null, "replayed_lsn": null, "lag_bytes": 0},
            "leader": {"name": "pg2", "term": 9, "lease_remaining_ms": 8000},
            "timeline": 3
        }))
        .unwrap();
        let r = PeerReport::new("pg2", Some(&doc), None);
        assert!(r.fresh && r.running_primary && r.claims_leadership);
        assert_eq!(r.leader_term, Some(9));
        assert_eq!(r.pg, Some(("10.0.0.2".into(), 5433)));
        assert_eq!(
            r.position,
            Some(Position {
                timeline: 3,
                lsn: "0/5000148".parse().unwrap()
            })
        );
    }
}
