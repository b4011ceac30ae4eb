//! `GET /metrics`: Prometheus metrics, from the node's view and the event
//! counters of [`crate::telemetry`] — never a query to PostgreSQL.
//!
//! Two families of names:
//! - `patroni_*`: Patroni's names, labels (`scope`, `name`) and meanings, so
//!   that dashboards and alerts written for Patroni keep working. Where
//!   pgwarden's answer differs from Patroni's, `docs/metrics.md` says how.
//! - `pgwarden_*`: what Patroni has no name for (the lease, fencing, the
//!   loop, the senders, the API).
//!
//! Every sample carries `scope` (the cluster) and `name` (the member).
//!
//! The metrics are built into a `prometheus-client` registry for each
//! scrape and encoded as OpenMetrics; a scraper that does not ask for
//! OpenMetrics gets the classic text format (`version=0.0.4`), translated
//! from it by [`to_prometheus_text`]. [`render`] is pure, so every value
//! is a unit test below.

use std::borrow::Cow;
use std::sync::atomic::AtomicU64;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::error::ApiError;
use super::health::{holds_lease_now, sync_state_on_primary};
use super::status::{lag_bytes, status_document, VERSION};
use super::ApiState;
use crate::status_doc::{Role, State as PgState, StatusDoc};
use crate::telemetry::{self, Telemetry};
use crate::view::NodeView;

/// The classic Prometheus text format's content type.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// OpenMetrics' content type.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which exposition format to answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`: what every scraper reads.
    Prometheus,
    /// OpenMetrics 1.0, for a scraper that asks for it.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header prefers: OpenMetrics when it is
    /// acceptable (q > 0) and weighs at least as much as plain text (as
    /// Prometheus asks: OpenMetrics first, `text/plain;q=0.5`), else the
    /// classic text (no header, `*/*`, `text/plain`).
    pub fn from_accept(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Prometheus;
        };
        let (mut openmetrics, mut plain) = (0.0f32, 0.0f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" | "*/*" => plain = plain.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= plain {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => PROMETHEUS_TEXT,
            Format::OpenMetrics => OPENMETRICS_TEXT,
        }
    }
}

/// `GET /metrics`.
pub async fn handler(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let format = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let rendered = render(
        &state.view.borrow(),
        Instant::now(),
        telemetry::global(),
        format,
    );
    match rendered {
        Ok(text) => ([(header::CONTENT_TYPE, format.content_type())], text).into_response(),
        // Only a failing writer fails encoding, and a String does not fail.
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {e}"),
        )
        .into_response(),
    }
}

/// Counts every API request by route and status code (a layer on the
/// whole router). The route is the matched template (`/status`), or
/// `unmatched` for the fallback: raw paths would give a series for every
/// path a scanner tries.
pub async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let response = next.run(request).await;
    telemetry::api_request(
        route.as_deref().unwrap_or("unmatched"),
        response.status().as_u16(),
    );
    response
}

/// The metrics of `view` at `now` (monotonic, for the lease), with the
/// event counters of `events`.
pub fn render(
    view: &NodeView,
    now: Instant,
    events: &Telemetry,
    format: Format,
) -> Result<String, std::fmt::Error> {
    let labels = [("scope", view.cluster.clone()), ("name", view.name.clone())];
    let mut registry = Registry::with_labels(
        labels
            .into_iter()
            .map(|(k, v)| (Cow::Borrowed(k), Cow::Owned(v))),
    );
    let doc = status_document(view, now);
    patroni_metrics(&mut registry, view, &doc, now);
    pgwarden_metrics(&mut registry, view, &doc, now, events);
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(match format {
        Format::OpenMetrics => text,
        Format::Prometheus => to_prometheus_text(&text),
    })
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

fn gauge_f64(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let g: Gauge<f64, AtomicU64> = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

/// Seconds since the epoch, fractional.
fn epoch_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// pgwarden's version as Patroni encodes its own: each dot-separated part
/// zero-padded to two digits, then read as a number (Patroni 3.2.1 is
/// `030201`, that is 30201; pgwarden 0.1.0 is `000100`, that is 100). A
/// pre-release suffix (`-rc1`) is dropped.
pub fn version_number(version: &str) -> i64 {
    let release = version.split(['-', '+']).next().unwrap_or_default();
    release
        .split('.')
        .take(3)
        .map(|part| part.parse::<i64>().unwrap_or(0).min(99))
        .chain(std::iter::repeat(0))
        .take(3)
        .fold(0, |acc, part| acc * 100 + part)
}

/// Patroni's `patroni_postgres_state` number for a state, from Patroni's
/// fixed numbering (`PostgresqlState` in `patroni/postgresql/misc.py`;
/// Patroni promises never to renumber it). pgwarden's states map so:
///
/// | pgwarden state  | Patroni state          | number |
/// |-----------------|------------------------|--------|
/// | `bootstrapping` | `initdb`               | 0      |
/// | `cloning`       | `creating_replica`     | 4      |
/// | `running`       | `running`              | 5      |
/// | `starting`      | `starting`             | 6      |
/// | `stopping`      | `stopping`             | 11     |
/// | `fencing`       | `stopping`             | 11     |
/// | `stopped`       | `stopped`              | 12     |
/// | `fenced`        | `stopped`              | 12     |
/// | `rewinding`     | `stopped`              | 12     |
/// | `paused`        | `stopped`              | 12     |
/// | `crashed`       | `crashed`              | 14     |
///
/// `rewinding` is `stopped` because pg_rewind runs on a stopped server (as
/// in Patroni, which has no state of its own for it); `paused` in the
/// status document is a server the agent leaves down while paused. Patroni
/// answers -1 for a state outside its list (`unknown`: it is running but
/// did not answer); so does pgwarden for a running server whose probe
/// failed, and for a witness, which has no PostgreSQL. pgwarden never
/// reports 1, 2, 3, 7, 8, 9, 10 or 13 (failed initdb, custom bootstrap,
/// failed start or stop, restarting): those show as `crashed` or `stopped`
/// with a reason in `/status`.
pub fn postgres_state_number(state: PgState, answered: bool, witness: bool) -> i64 {
    if witness {
        return -1;
    }
    match state {
        PgState::Bootstrapping => 0,
        PgState::Cloning => 4,
        PgState::Running if answered => 5,
        PgState::Running => -1,
        PgState::Starting => 6,
        PgState::Stopping | PgState::Fencing => 11,
        PgState::Stopped | PgState::Fenced | PgState::Rewinding | PgState::Paused => 12,
        PgState::Crashed => 14,
    }
}

/// Patroni's metrics, in Patroni's order, with its help texts.
fn patroni_metrics(r: &mut Registry, view: &NodeView, doc: &StatusDoc, now: Instant) {
    let obs = view.observation();
    let xlog = doc.xlog.clone().unwrap_or(crate::status_doc::XlogDoc {
        location: None,
        received_location: None,
        replayed_location: None,
        paused: None,
    });
    let replica = view.role == Role::Replica;
    let sync_state = if replica {
        sync_state_on_primary(view)
    } else {
        None
    };
    let to_i64 = |v: Option<u64>| v.map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX));

    gauge(
        r,
        "patroni_version",
        "Patroni semver without periods (here pgwarden's version: 0.1.0 is 000100)",
        version_number(VERSION),
    );
    gauge(
        r,
        "patroni_postgres_running",
        "Value is 1 if Postgres is running, 0 otherwise",
        flag(view.state == PgState::Running && obs.is_some()),
    );
    gauge_f64(
        r,
        "patroni_postmaster_start_time",
        "Epoch seconds since Postgres started",
        obs.and_then(|o| crate::rfc3339::parse(&o.start_time).ok())
            .map_or(0.0, epoch_seconds),
    );
    gauge(
        r,
        "patroni_primary",
        "Value is 1 if this node is the leader, 0 otherwise",
        flag(view.role == Role::Primary),
    );
    // Patroni types the three positions as counters; they are gauges here
    // (see docs/metrics.md): they drop to 0 when the role changes, and a
    // counter's name must end in `_total`, which would rename them.
    gauge(
        r,
        "patroni_xlog_location",
        "Current location of the Postgres transaction log, 0 if this node is not the leader",
        to_i64(xlog.location),
    );
    gauge(
        r,
        "patroni_standby_leader",
        "Value is 1 if this node is the standby_leader, 0 otherwise",
        0,
    );
    gauge(
        r,
        "patroni_replica",
        "Value is 1 if this node is a replica, 0 otherwise",
        flag(replica),
    );
    gauge(
        r,
        "patroni_sync_standby",
        "Value is 1 if this node is a sync standby replica, 0 otherwise",
        flag(sync_state.as_deref() == Some("sync")),
    );
    gauge(
        r,
        "patroni_quorum_standby",
        "Value is 1 if this node is a quorum standby replica, 0 otherwise",
        flag(sync_state.as_deref() == Some("quorum")),
    );
    gauge(
        r,
        "patroni_xlog_received_location",
        "Current location of the received Postgres transaction log, 0 if this node is not a replica",
        // Patroni falls back to the replayed position when nothing was received.
        to_i64(xlog.received_location.or(xlog.replayed_location)),
    );
    gauge(
        r,
        "patroni_xlog_replayed_location",
        "Current location of the replayed Postgres transaction log, 0 if this node is not a replica",
        to_i64(xlog.replayed_location),
    );
    // pg_last_xact_replay_timestamp() in epoch seconds; 0 when null (a
    // primary, a standby that replayed no transaction yet), as Patroni.
    gauge_f64(
        r,
        "patroni_xlog_replayed_timestamp",
        "Current timestamp of the replayed Postgres transaction log, 0 if null",
        obs.and_then(|o| o.replay_timestamp.as_ref())
            .map_or(0.0, |(_, epoch)| *epoch),
    );
    gauge(
        r,
        "patroni_xlog_paused",
        "Value is 1 if the Postgres xlog is paused, 0 otherwise",
        flag(xlog.paused == Some(true)),
    );
    // Patroni adds these two only when PostgreSQL answered its query.
    if let Some(o) = obs {
        let streaming = o.in_recovery && o.receiver_status() == Some("streaming");
        gauge(
            r,
            "patroni_postgres_streaming",
            "Value is 1 if Postgres is streaming, 0 otherwise",
            flag(streaming),
        );
        // pgwarden configures no restore_command: a standby never
        // replicates from an archive.
        gauge(
            r,
            "patroni_postgres_in_archive_recovery",
            "Value is 1 if Postgres is replicating from archive, 0 otherwise",
            0,
        );
    }
    gauge(
        r,
        "patroni_postgres_server_version",
        "Version of Postgres (if running), 0 otherwise",
        i64::from(obs.map_or(0, |o| o.version_num)),
    );
    let unlocked = view.leader.as_ref().is_none_or(|l| l.expires_at <= now);
    gauge(
        r,
        "patroni_cluster_unlocked",
        "Value is 1 if the cluster is unlocked, 0 if locked",
        flag(unlocked),
    );
    gauge(
        r,
        "patroni_failsafe_mode_is_active",
        "Value is 1 if failsafe mode is active, 0 if inactive",
        0,
    );
    gauge(
        r,
        "patroni_failsafe_mode_enabled",
        "Value is 1 if failsafe_mode is enabled, 0 otherwise",
        0,
    );
    gauge(
        r,
        "patroni_failsafe_member",
        "Value is 1 if this node is a member of failsafe, 0 otherwise",
        0,
    );
    gauge(
        r,
        "patroni_postgres_timeline",
        "Postgres timeline of this node (if running), 0 otherwise",
        i64::from(doc.timeline.unwrap_or(0)),
    );
    // pgwarden's DCS is the lease: when this member last knew of a valid
    // one (the same value as `/patroni`'s `dcs_last_seen`).
    gauge(
        r,
        "patroni_dcs_last_seen",
        "Epoch timestamp when DCS was last contacted successfully by Patroni (here: when this member last knew of a valid leader lease)",
        view.lease_seen_at.map_or(0, |t| epoch_seconds(t) as i64),
    );
    gauge(
        r,
        "patroni_pending_restart",
        "Value is 1 if the node needs a restart, 0 otherwise",
        flag(obs.is_some_and(|o| o.pending_restart)),
    );
    gauge(
        r,
        "patroni_is_paused",
        "Value is 1 if auto failover is disabled, 0 otherwise",
        flag(view.paused),
    );
    gauge(
        r,
        "patroni_postgres_state",
        "Numeric representation of Postgres state (0=initdb, 4=creating_replica, 5=running, 6=starting, 11=stopping, 12=stopped, 14=crashed, -1=unknown)",
        postgres_state_number(view.state, obs.is_some(), view.role == Role::Witness),
    );
    // As Patroni: 0 when tagged nofailover, else the failover_priority tag.
    gauge(
        r,
        "patroni_failover_priority",
        "Failover priority of this node",
        if view.tags.nofailover {
            0
        } else {
            i64::from(view.tags.failover_priority)
        },
    );
}

/// pgwarden's own metrics.
fn pgwarden_metrics(
    r: &mut Registry,
    view: &NodeView,
    doc: &StatusDoc,
    now: Instant,
    events: &Telemetry,
) {
    gauge(
        r,
        "pgwarden_lease_held",
        "Value is 1 if this member holds the leader lease now, 0 otherwise",
        flag(holds_lease_now(view, now)),
    );
    gauge(
        r,
        "pgwarden_lease_term",
        "Term of the leader lease as this member knows it, whoever holds it (0 if unknown)",
        view.leader
            .as_ref()
            .map_or(0, |l| i64::try_from(l.term).unwrap_or(i64::MAX)),
    );
    gauge_f64(
        r,
        "pgwarden_lease_remaining_seconds",
        "Time left on the leader lease as this member knows it, whoever holds it (0 if none)",
        view.leader.as_ref().map_or(0.0, |l| {
            l.expires_at.saturating_duration_since(now).as_secs_f64()
        }),
    );
    r.register(
        "pgwarden_lease_rounds",
        "Lease rounds this member ran (prepare and propose to every member), by outcome",
        events.lease_rounds.clone(),
    );
    r.register(
        "pgwarden_fence_events",
        "Times this agent fenced its PostgreSQL (stopped a primary that may no longer be one)",
        events.fences.clone(),
    );
    r.register(
        "pgwarden_fence_guard_events",
        "Commands this agent gave the fence guard, by event (started, armed: a deadline written or pushed, disarmed)",
        events.guard_events.clone(),
    );
    r.register(
        "pgwarden_ha_loop_duration_seconds",
        "Duration of HA loop iterations (long actions such as a clone included)",
        events.loop_duration.clone(),
    );
    r.register(
        "pgwarden_role_changes",
        "Role changes this agent recorded in the history since it started",
        events.role_changes.clone(),
    );
    r.register(
        "pgwarden_api_requests",
        "HTTP API requests answered, by route template and status code",
        events.api_requests.clone(),
    );
    if let Some(lag) = doc
        .wal
        .as_ref()
        .and_then(|w| w.lag_bytes)
        .or(lag_bytes(view))
    {
        gauge(
            r,
            "pgwarden_lag_bytes",
            "How far this member trails the leader's last reported position, in bytes (0 on a primary)",
            i64::try_from(lag).unwrap_or(i64::MAX),
        );
    }
    // The senders: lag by standby (a stable series to graph) and the
    // state as a label of its own metric (a state change moves that one
    // series, not the lag's history).
    let lag: Family<Vec<(&'static str, String)>, Gauge> = Family::default();
    let state: Family<Vec<(&'static str, String)>, Gauge> = Family::default();
    for s in &doc.wal_senders {
        let app = s.application_name.clone().unwrap_or_default();
        if let Some(bytes) = s.lag_bytes {
            lag.get_or_create(&vec![("application_name", app.clone())])
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        state
            .get_or_create(&vec![
                ("application_name", app),
                ("state", s.state.clone().unwrap_or_default()),
                ("sync_state", s.sync_state.clone().unwrap_or_default()),
            ])
            .set(1);
    }
    r.register(
        "pgwarden_wal_sender_lag_bytes",
        "Bytes a standby's replay trails this primary's position, by standby (pg_stat_replication)",
        lag,
    );
    r.register(
        "pgwarden_wal_sender_state",
        "Value is 1 for each WAL sender of this primary, labelled with its state and sync_state",
        state,
    );
    let problem: Family<Vec<(&'static str, String)>, Gauge> = Family::default();
    if let Some(text) = &view.wal_receiver_problem {
        problem
            .get_or_create(&vec![("kind", problem_kind(text).to_string())])
            .set(1);
    }
    r.register(
        "pgwarden_wal_receiver_problem",
        "Value is 1 while this standby does not stream, labelled with why (the kind of /status's wal_receiver_problem)",
        problem,
    );
    if let Some(pct) = view.progress_pct {
        gauge(
            r,
            "pgwarden_clone_progress_percent",
            "Progress of the running clone (pg_basebackup), percent",
            i64::from(pct),
        );
    }
}

/// The stable kind ([`crate::pg::diagnose::ReceiverProblem::kind`]) of a
/// receiver problem the view carries in words: the view keeps the
/// sentence for `/status`, and each kind's sentence begins its own way
/// (a test below holds the two together). `other` for anything else.
pub fn problem_kind(text: &str) -> &'static str {
    const KINDS: [(&str, &str); 10] = [
        ("cannot reach the primary", "primary_unreachable"),
        ("no password was sent for", "authentication_failed"),
        ("authentication failed for", "authentication_failed"),
        (
            "the primary's pg_hba.conf has no replication line",
            "no_hba_entry",
        ),
        ("replication slot ", "slot_missing"),
        ("the primary has already removed WAL", "wal_removed"),
        ("this standby's timeline diverged", "timeline_diverged"),
        (
            "the server this standby replicates from is on timeline",
            "primary_on_older_timeline",
        ),
        ("the primary is a different cluster", "different_cluster"),
        ("no WAL receiver is configured", "not_configured"),
    ];
    KINDS
        .iter()
        .find(|(start, _)| text.starts_with(start))
        .map_or("other", |(_, kind)| kind)
}

/// The classic text format (`version=0.0.4`) of an OpenMetrics text: the
/// two differ, for what is rendered here, only in that OpenMetrics names a
/// counter family without its `_total` suffix (`# TYPE x counter`, samples
/// `x_total`) where the classic format names it with (`# TYPE x_total
/// counter`; a classic parser would otherwise see samples of an unknown
/// family), and in its `# UNIT` and `# EOF` lines, which are dropped.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::probe::Observation;
    use crate::pg::Lsn;
    use crate::status_doc::{WalReceiver, WalSender};
    use crate::view::{LeaderView, PostgresView};
    use std::collections::HashMap;
    use std::time::Duration;

    /// `name{labels} value` lines of a text, by `name{labels}`.
    fn samples(text: &str) -> HashMap<String, f64> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (key, value) = l.rsplit_once(' ').expect("a sample line");
                (key.to_string(), value.parse::<f64>().expect("a number"))
            })
            .collect()
    }

    /// The value of `name` with only the member's labels.
    fn value(text: &str, name: &str) -> Option<f64> {
        samples(text)
            .get(&format!("{name}{{scope=\"main\",name=\"pg1\"}}"))
            .copied()
    }

    fn sender(app: &str, state: &str, sync: &str, lag: u64) -> WalSender {
        WalSender {
            application_name: Some(app.into()),
            state: Some(state.into()),
            sync_state: Some(sync.into()),
            replay_lsn: None,
            lag_bytes: Some(lag),
            other: serde_json::Map::new(),
        }
    }

    fn observation(in_recovery: bool) -> Observation {
        Observation {
            in_recovery,
            version_num: 150018,
            system_identifier: "7311".into(),
            timeline: Some(3),
            current_lsn: (!in_recovery).then_some(Lsn(0x5000148)),
            received_lsn: in_recovery.then_some(Lsn(0x5000100)),
            replayed_lsn: in_recovery.then_some(Lsn(0x5000000)),
            replay_paused: false,
            start_time: "2026-11-26T12:00:00Z".into(),
            replay_timestamp: None,
            pending_restart: in_recovery,
            wal_senders: if in_recovery {
                vec![]
            } else {
                vec![
                    sender("pg2", "streaming", "quorum", 0),
                    sender("pg3", "catchup", "async", 4096),
                ]
            },
            slots: vec![],
            wal_receiver: in_recovery.then(|| WalReceiver {
                status: "streaming".into(),
                sender_host: None,
                sender_port: None,
                slot_name: None,
                received_tli: Some(3),
                other: serde_json::Map::new(),
            }),
        }
    }

    /// A running member `pg1` of `main`; the primary holds the lease (term 7,
    /// 8 s left), a replica knows pg2 holds it.
    fn view(role: Role, now: Instant) -> NodeView {
        let primary = role == Role::Primary;
        let mut v = NodeView::initial("pg1", "main", false, Duration::from_secs(10), 1 << 20);
        v.role = role;
        v.state = PgState::Running;
        v.reason = None;
        v.loop_last = Some(now - Duration::from_millis(1500));
        v.lease_seen_at = Some(wall() - Duration::from_millis(1500));
        v.holds_lease = primary;
        v.leader = Some(LeaderView {
            name: if primary { "pg1" } else { "pg2" }.into(),
            term: 7,
            expires_at: now + Duration::from_secs(8),
        });
        v.leader_lsn = (!primary).then_some(Lsn(0x5000148));
        v.postgres = Some(PostgresView {
            pid: Some(4242),
            host: "127.0.0.1".into(),
            port: 5432,
            observation: Some(observation(!primary)),
            observed_at: Some(now),
        });
        v
    }

    fn wall() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn render_text(v: &NodeView, now: Instant, t: &Telemetry) -> String {
        render(v, now, t, Format::Prometheus).expect("rendered")
    }

    #[test]
    fn a_primary_reports_patronis_metrics_as_patroni_would() {
        let now = Instant::now();
        let text = render_text(&view(Role::Primary, now), now, &Telemetry::new());
        let v = |name| value(&text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        assert_eq!(v("patroni_version"), 100.0, "0.1.0 is 000100");
        assert_eq!(v("patroni_postgres_running"), 1.0);
        assert_eq!(v("patroni_postmaster_start_time"), 1_795_694_400.0);
        assert_eq!(v("patroni_primary"), 1.0);
        assert_eq!(v("patroni_replica"), 0.0);
        assert_eq!(v("patroni_standby_leader"), 0.0);
        assert_eq!(v("patroni_xlog_location"), 0x5000148 as f64);
        assert_eq!(v("patroni_xlog_received_location"), 0.0);
        assert_eq!(v("patroni_xlog_replayed_location"), 0.0);
        assert_eq!(v("patroni_xlog_replayed_timestamp"), 0.0);
        assert_eq!(v("patroni_postgres_streaming"), 0.0);
        assert_eq!(v("patroni_postgres_in_archive_recovery"), 0.0);
        assert_eq!(v("patroni_postgres_server_version"), 150018.0);
        assert_eq!(v("patroni_cluster_unlocked"), 0.0);
        assert_eq!(v("patroni_postgres_timeline"), 3.0);
        assert_eq!(
            v("patroni_dcs_last_seen"),
            1_799_999_998.0,
            "the lease known valid 1.5 s ago, whole seconds"
        );
        assert_eq!(v("patroni_pending_restart"), 0.0);
        assert_eq!(v("patroni_is_paused"), 0.0);
        assert_eq!(v("patroni_postgres_state"), 5.0);
        assert_eq!(v("patroni_failover_priority"), 1.0, "the default tag");
        assert_eq!(v("pgwarden_lease_held"), 1.0);
        assert_eq!(v("pgwarden_lease_term"), 7.0);
        let remaining = v("pgwarden_lease_remaining_seconds");
        assert!((7.9..=8.0).contains(&remaining), "{remaining}");
        assert_eq!(v("pgwarden_lag_bytes"), 0.0);
        let s = samples(&text);
        assert_eq!(
            s.get("pgwarden_wal_sender_lag_bytes{scope=\"main\",name=\"pg1\",application_name=\"pg3\"}"),
            Some(&4096.0)
        );
        assert_eq!(
            s.get("pgwarden_wal_sender_state{scope=\"main\",name=\"pg1\",application_name=\"pg2\",state=\"streaming\",sync_state=\"quorum\"}"),
            Some(&1.0)
        );
        assert!(!text.contains("pgwarden_wal_receiver_problem{"), "{text}");
        assert!(!text.contains("pgwarden_clone_progress_percent"), "{text}");
    }

    #[test]
    fn a_streaming_replica_reports_its_positions_and_the_primarys_lease() {
        let now = Instant::now();
        let text = render_text(&view(Role::Replica, now), now, &Telemetry::new());
        let v = |name| value(&text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        assert_eq!(v("patroni_primary"), 0.0);
        assert_eq!(v("patroni_replica"), 1.0);
        assert_eq!(v("patroni_xlog_location"), 0.0);
        assert_eq!(v("patroni_xlog_received_location"), 0x5000100 as f64);
        assert_eq!(v("patroni_xlog_replayed_location"), 0x5000000 as f64);
        assert_eq!(v("patroni_xlog_paused"), 0.0);
        assert_eq!(v("patroni_postgres_streaming"), 1.0);
        assert_eq!(v("patroni_pending_restart"), 1.0);
        assert_eq!(v("patroni_sync_standby"), 0.0, "no primary reported");
        assert_eq!(v("patroni_quorum_standby"), 0.0);
        assert_eq!(v("patroni_cluster_unlocked"), 0.0, "pg2 holds the lease");
        assert_eq!(v("pgwarden_lease_held"), 0.0);
        assert_eq!(v("pgwarden_lease_term"), 7.0);
        assert_eq!(
            v("pgwarden_lag_bytes"),
            0x148 as f64,
            "leader minus replayed"
        );
        assert!(!text.contains("pgwarden_wal_sender_lag_bytes{"), "{text}");
    }

    #[test]
    fn a_replica_that_replayed_a_transaction_reports_when_in_epoch_seconds() {
        let now = Instant::now();
        let mut v = view(Role::Replica, now);
        let text = render_text(&v, now, &Telemetry::new());
        assert_eq!(
            value(&text, "patroni_xlog_replayed_timestamp"),
            Some(0.0),
            "none yet"
        );
        if let Some(pg) = v.postgres.as_mut() {
            if let Some(o) = pg.observation.as_mut() {
                o.replay_timestamp =
                    Some(("2026-12-01 06:00:00.500000+00:00".into(), 1796104800.5));
            }
        }
        let text = render_text(&v, now, &Telemetry::new());
        assert_eq!(
            value(&text, "patroni_xlog_replayed_timestamp"),
            Some(1796104800.5)
        );
    }

    #[test]
    fn a_lease_that_ran_out_unlocks_the_cluster_and_a_dead_server_reports_zeroes() {
        let now = Instant::now();
        let mut v = view(Role::Primary, now);
        let later = now + Duration::from_secs(9);
        let text = render_text(&v, later, &Telemetry::new());
        assert_eq!(value(&text, "patroni_cluster_unlocked"), Some(1.0));
        assert_eq!(value(&text, "pgwarden_lease_held"), Some(0.0));
        assert_eq!(value(&text, "pgwarden_lease_remaining_seconds"), Some(0.0));

        v.state = PgState::Crashed;
        v.postgres.as_mut().expect("postgres").observation = None;
        v.leader = None;
        v.lease_seen_at = None;
        let text = render_text(&v, now, &Telemetry::new());
        assert_eq!(value(&text, "patroni_dcs_last_seen"), Some(0.0));
        assert_eq!(value(&text, "patroni_postgres_running"), Some(0.0));
        assert_eq!(value(&text, "patroni_postgres_state"), Some(14.0));
        assert_eq!(value(&text, "patroni_postgres_server_version"), Some(0.0));
        assert_eq!(value(&text, "patroni_postmaster_start_time"), Some(0.0));
        assert_eq!(value(&text, "patroni_cluster_unlocked"), Some(1.0));
        assert_eq!(
            value(&text, "patroni_postgres_streaming"),
            None,
            "Patroni leaves it out when PostgreSQL did not answer"
        );
    }

    #[test]
    fn sync_and_quorum_standby_follow_the_primarys_report_as_in_patroni() {
        let now = Instant::now();
        for (sync_state, sync, quorum) in [
            ("sync", 1.0, 0.0),
            ("quorum", 0.0, 1.0),
            ("async", 0.0, 0.0),
        ] {
            let mut v = view(Role::Replica, now);
            let doc: StatusDoc = serde_json::from_value(serde_json::json!({
                "name": "pg2", "cluster": "main", "role": "primary", "state": "running",
                "agent": {"version": "0", "uptime_s": 1, "loop_last_ms_ago": 1, "paused": false},
                "wal_senders": [{"application_name": "pg1", "state": "streaming", "sync_state": sync_state}],
                "synchronous": {"mode": "quorum", "k": 1, "standbys": ["pg1"], "missing": [], "writes_blocked": false}
            }))
            .expect("a status document");
            v.peers = vec![crate::peers::PeerView {
                name: "pg2".into(),
                api_url: "http://127.0.0.1:8008".into(),
                last: Some((now, doc)),
                error: None,
                fresh: true,
                asked_at: Some(now),
            }];
            let text = render_text(&v, now, &Telemetry::new());
            assert_eq!(
                value(&text, "patroni_sync_standby"),
                Some(sync),
                "{sync_state}"
            );
            assert_eq!(
                value(&text, "patroni_quorum_standby"),
                Some(quorum),
                "{sync_state}"
            );
        }
    }

    #[test]
    fn a_standby_that_does_not_stream_names_the_kind_a_clone_its_progress_and_tags_the_priority() {
        let now = Instant::now();
        let mut v = view(Role::Replica, now);
        v.wal_receiver_problem = Some(
            crate::pg::diagnose::ReceiverProblem::SlotMissing { slot: "pg1".into() }.to_string(),
        );
        v.progress_pct = Some(42);
        v.tags.failover_priority = 3;
        let text = render_text(&v, now, &Telemetry::new());
        let s = samples(&text);
        assert_eq!(
            s.get(
                "pgwarden_wal_receiver_problem{scope=\"main\",name=\"pg1\",kind=\"slot_missing\"}"
            ),
            Some(&1.0),
            "{text}"
        );
        assert_eq!(value(&text, "pgwarden_clone_progress_percent"), Some(42.0));
        assert_eq!(value(&text, "patroni_failover_priority"), Some(3.0));
        v.tags.nofailover = true;
        let text = render_text(&v, now, &Telemetry::new());
        assert_eq!(
            value(&text, "patroni_failover_priority"),
            Some(0.0),
            "nofailover"
        );
    }

    #[test]
    fn every_receiver_problem_sentence_maps_back_to_its_kind() {
        use crate::pg::diagnose::ReceiverProblem as P;
        let all = [
            P::PrimaryUnreachable {
                detail: "refused".into(),
            },
            P::AuthenticationFailed {
                user: Some("replicator".into()),
                detail: "password authentication failed".into(),
            },
            P::AuthenticationFailed {
                user: None,
                detail: "fe_sendauth: no password supplied".into(),
            },
            P::NoHbaEntry {
                host: "10.0.0.2".into(),
                user: "replicator".into(),
            },
            P::SlotMissing { slot: "pg2".into() },
            P::WalRemoved {
                segment: "000000010000000000000003".into(),
            },
            P::TimelineDiverged {
                detail: "fork".into(),
            },
            P::PrimaryOnOlderTimeline {
                primary: 1,
                standby: 2,
            },
            P::DifferentCluster,
            P::Other {
                line: "FATAL: something new".into(),
            },
            P::NotConfigured,
        ];
        for p in all {
            assert_eq!(problem_kind(&p.to_string()), p.kind(), "{p:?}");
        }
    }

    #[test]
    fn witnesses_and_failed_probes_are_unknown_states_and_the_rest_map_to_patronis_numbers() {
        assert_eq!(postgres_state_number(PgState::Running, true, true), -1);
        assert_eq!(postgres_state_number(PgState::Running, false, false), -1);
        for (state, n) in [
            (PgState::Bootstrapping, 0),
            (PgState::Cloning, 4),
            (PgState::Running, 5),
            (PgState::Starting, 6),
            (PgState::Stopping, 11),
            (PgState::Fencing, 11),
            (PgState::Stopped, 12),
            (PgState::Fenced, 12),
            (PgState::Rewinding, 12),
            (PgState::Paused, 12),
            (PgState::Crashed, 14),
        ] {
            assert_eq!(postgres_state_number(state, true, false), n, "{state:?}");
        }
    }

    #[test]
    fn versions_are_encoded_as_patroni_encodes_its_own() {
        assert_eq!(version_number("0.1.0"), 100);
        assert_eq!(version_number("3.2.1"), 30201);
        assert_eq!(version_number("4.0.0"), 40000);
        assert_eq!(version_number("1.2.3-rc1"), 10203);
        assert_eq!(version_number("1.2"), 10200);
    }

    #[test]
    fn events_appear_as_counters_and_the_loop_as_a_histogram() {
        let now = Instant::now();
        let t = Telemetry::new();
        t.lease_round(&crate::lease::Outcome::TimedOut);
        t.fence();
        t.fence_guard(telemetry::GuardEvent::Armed);
        t.role_change();
        t.api_request("/status", 200);
        t.loop_duration(Duration::from_millis(30));
        let text = render_text(&view(Role::Primary, now), now, &t);
        let s = samples(&text);
        let l = "scope=\"main\",name=\"pg1\"";
        assert_eq!(
            s.get(&format!(
                "pgwarden_lease_rounds_total{{{l},outcome=\"timed_out\"}}"
            )),
            Some(&1.0)
        );
        assert_eq!(
            s.get(&format!(
                "pgwarden_lease_rounds_total{{{l},outcome=\"acquired\"}}"
            )),
            Some(&0.0)
        );
        assert_eq!(
            s.get(&format!("pgwarden_fence_events_total{{{l}}}")),
            Some(&1.0)
        );
        assert_eq!(
            s.get(&format!(
                "pgwarden_fence_guard_events_total{{{l},event=\"armed\"}}"
            )),
            Some(&1.0)
        );
        assert_eq!(
            s.get(&format!("pgwarden_role_changes_total{{{l}}}")),
            Some(&1.0)
        );
        assert_eq!(
            s.get(&format!(
                "pgwarden_api_requests_total{{{l},route=\"/status\",code=\"200\"}}"
            )),
            Some(&1.0)
        );
        assert_eq!(
            s.get(&format!("pgwarden_ha_loop_duration_seconds_count{{{l}}}")),
            Some(&1.0)
        );
        assert_eq!(
            s.get(&format!(
                "pgwarden_ha_loop_duration_seconds_bucket{{{l},le=\"0.025\"}}"
            )),
            Some(&0.0)
        );
        assert_eq!(
            s.get(&format!(
                "pgwarden_ha_loop_duration_seconds_bucket{{{l},le=\"0.05\"}}"
            )),
            Some(&1.0)
        );
        // The classic format names counter families with their suffix.
        assert!(
            text.contains("# TYPE pgwarden_fence_events_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP pgwarden_fence_events_total "),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn openmetrics_keeps_its_own_counter_names_and_ends_with_eof() {
        let now = Instant::now();
        let text = render(
            &view(Role::Primary, now),
            now,
            &Telemetry::new(),
            Format::OpenMetrics,
        )
        .expect("rendered");
        assert!(
            text.contains("# TYPE pgwarden_fence_events counter\n"),
            "{text}"
        );
        assert!(text.contains("\npgwarden_fence_events_total{"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn the_accept_header_chooses_the_format() {
        let f = |a| Format::from_accept(a);
        assert_eq!(f(None), Format::Prometheus);
        assert_eq!(f(Some("*/*")), Format::Prometheus);
        assert_eq!(f(Some("text/plain")), Format::Prometheus);
        assert_eq!(f(Some("application/openmetrics-text")), Format::OpenMetrics);
        // What Prometheus sends.
        assert_eq!(
            f(Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")),
            Format::OpenMetrics
        );
        assert_eq!(
            f(Some("text/plain, application/openmetrics-text;q=0.5")),
            Format::Prometheus
        );
        assert_eq!(
            f(Some("application/openmetrics-text;q=0")),
            Format::Prometheus
        );
    }
}
