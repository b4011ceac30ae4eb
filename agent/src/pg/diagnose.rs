//! Why a standby is not streaming, in words an operator can act on.
//!
//! The server log is the source because PostgreSQL tells the reason nowhere
//! else. `pg_stat_wal_receiver` has a row only while a walreceiver process
//! runs, and a receiver that fails exits at once: the view then shows
//! nothing, and the startup process starts a new receiver every
//! `wal_retrieve_retry_interval` (5 s), which fails again. What each attempt
//! ran into (connection refused, authentication, a missing slot, removed
//! WAL, a timeline fork) is written only to the server log, which the agent
//! sends to `<data_dir>/log/postgres.log`.
//!
//! [`read_log_tail`] reads the end of that file; [`diagnose`] is a pure
//! function from that text and the view's `status` to a [`ReceiverProblem`],
//! so every message PostgreSQL 15 was seen to write is a table test below.
//! The rules, most recent message first:
//!
//! - a receiver that streams has no problem, whatever the log says;
//! - a known failure of the walreceiver or the startup process is the answer;
//! - `started streaming` after it means the failure is over: no problem yet
//!   (the receiver logs that line before the primary accepts its start
//!   point, so a failure that follows within milliseconds shows on the next
//!   call);
//! - a change of `primary_conninfo` / `primary_slot_name` or a server start
//!   after it makes it stale: no problem until the next attempt says more;
//! - nothing relevant at all and no receiver row: `primary_conninfo` is
//!   empty, because a configured receiver fails loudly every 5 s.
//!
//! Only FATAL and PANIC count as failures: the walreceiver and the startup
//! process never survive an error, while `ERROR`s (and the FATALs of
//! connections *to* this server, such as a client's wrong password or a
//! cascaded standby's missing `pg_hba.conf` line) come from other sessions.
//! Authentication and `pg_hba.conf` failures therefore count only inside
//! the walreceiver's `could not connect to the primary server:` message.
//! Two startup-process messages are the exceptions: the timeline check's
//! `LOG:  new timeline N forked off ...`, repeated while the receiver stays
//! up in status `waiting`, and `WARNING:  specified neither primary_conninfo
//! nor restore_command` at start.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Why the WAL receiver of a standby does not stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiverProblem {
    /// The primary cannot be reached or went away (connection refused or
    /// timed out, no route, unknown host name, connection lost, primary
    /// shutting down, no message from it within `wal_receiver_timeout`).
    PrimaryUnreachable {
        /// libpq's reason, e.g. `connection to server at "10.0.0.1", port
        /// 5432 failed: Connection refused`.
        detail: String,
    },
    /// The primary rejected the replication user's password, or no password
    /// was sent.
    AuthenticationFailed {
        /// The user, when PostgreSQL names it (it does not for
        /// `no password supplied`).
        user: Option<String>,
        /// libpq's reason, with the password file it used if it says so.
        detail: String,
    },
    /// The primary's `pg_hba.conf` has no replication line for this standby.
    NoHbaEntry {
        /// The address the primary saw the standby connect from.
        host: String,
        /// The replication user.
        user: String,
    },
    /// `primary_slot_name` names a slot the primary does not have.
    SlotMissing {
        /// The slot's name.
        slot: String,
    },
    /// The primary already recycled WAL the standby still needs.
    WalRemoved {
        /// The WAL segment file asked for, e.g. `000000010000000000000003`.
        segment: String,
    },
    /// The standby wrote or replayed WAL past the point where the primary's
    /// timeline forked off: it can never follow without pg_rewind.
    TimelineDiverged {
        /// PostgreSQL's message, with the fork point when it gives one.
        detail: String,
    },
    /// The upstream is on an older timeline than the standby: the standby
    /// follows a primary that has since been replaced.
    PrimaryOnOlderTimeline {
        /// The upstream's highest timeline.
        primary: u32,
        /// The timeline this standby recovers on.
        standby: u32,
    },
    /// The upstream's database system identifier differs from the standby's:
    /// they are not copies of the same cluster.
    DifferentCluster,
    /// A walreceiver or startup failure without a more specific diagnosis.
    Other {
        /// The log line, as PostgreSQL wrote it.
        line: String,
    },
    /// The standby has no `primary_conninfo`, so no receiver ever starts.
    NotConfigured,
}

impl ReceiverProblem {
    /// A stable short name for machines (`/status`, metrics, alerts).
    pub fn kind(&self) -> &'static str {
        match self {
            ReceiverProblem::PrimaryUnreachable { .. } => "primary_unreachable",
            ReceiverProblem::AuthenticationFailed { .. } => "authentication_failed",
            ReceiverProblem::NoHbaEntry { .. } => "no_hba_entry",
            ReceiverProblem::SlotMissing { .. } => "slot_missing",
            ReceiverProblem::WalRemoved { .. } => "wal_removed",
            ReceiverProblem::TimelineDiverged { .. } => "timeline_diverged",
            ReceiverProblem::PrimaryOnOlderTimeline { .. } => "primary_on_older_timeline",
            ReceiverProblem::DifferentCluster => "different_cluster",
            ReceiverProblem::Other { .. } => "other",
            ReceiverProblem::NotConfigured => "not_configured",
        }
    }
}

/// What is wrong and what to do, in one sentence.
impl fmt::Display for ReceiverProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReceiverProblem::PrimaryUnreachable { detail } => write!(
                f,
                "cannot reach the primary ({detail}): check that PostgreSQL runs there \
                 and that this host can reach its address and port (DNS, firewall, listen_addresses)"
            ),
            ReceiverProblem::AuthenticationFailed { user, detail } => {
                let who = match user {
                    Some(user) => format!("replication user {user}"),
                    None => "the replication user".to_string(),
                };
                if detail.contains("no password supplied") {
                    write!(
                        f,
                        "no password was sent for {who} ({detail}): the password \
                         file named by passfile= in primary_conninfo is missing, has no line for this \
                         user, or is readable by group or others (libpq then ignores it); check it and \
                         replication.password_file"
                    )
                } else {
                    write!(
                        f,
                        "authentication failed for {who} ({detail}): the password in \
                         replication.password_file differs from the primary's, or pg_hba.conf rejects it; \
                         check both"
                    )
                }
            }
            ReceiverProblem::NoHbaEntry { host, user } => write!(
                f,
                "the primary's pg_hba.conf has no replication line for user {user} from host {host}: \
                 the agent writes one line per member address, so check that this member's address \
                 in the configuration is the one it connects from ({host}), then reload the primary"
            ),
            ReceiverProblem::SlotMissing { slot } => write!(
                f,
                "replication slot {slot} does not exist on the primary: the primary creates it when \
                 replication.slots = true; check the primary's agent"
            ),
            ReceiverProblem::WalRemoved { segment } => write!(
                f,
                "the primary has already removed WAL this standby needs (segment {segment}): re-clone \
                 it (`pgwarden reinit <member>`) or raise wal_keep_size / use slots"
            ),
            ReceiverProblem::TimelineDiverged { detail } => write!(
                f,
                "this standby's timeline diverged from the primary's ({detail}): it needs pg_rewind \
                 (the agent does this on rejoin) or a re-clone"
            ),
            ReceiverProblem::PrimaryOnOlderTimeline { primary, standby } => write!(
                f,
                "the server this standby replicates from is on timeline {primary}, behind this \
                 standby's timeline {standby}: it is an old primary; point this standby at the \
                 current primary (`pgwarden status` shows which member leads)"
            ),
            ReceiverProblem::DifferentCluster => write!(
                f,
                "the primary is a different cluster (its database system identifier differs from \
                 this standby's): this standby was cloned from another cluster or the primary was \
                 re-created; re-clone it (`pgwarden reinit <member>`)"
            ),
            ReceiverProblem::Other { line } => {
                write!(f, "the WAL receiver keeps failing: {line}")
            }
            ReceiverProblem::NotConfigured => write!(
                f,
                "no WAL receiver is configured (primary_conninfo is empty): this standby replays only \
                 the WAL it already has; the agent sets primary_conninfo once it knows the primary, \
                 so check that a member leads (`pgwarden status`)"
            ),
        }
    }
}

/// Why a standby is not streaming, from the end of its server log and the
/// `status` column of `pg_stat_wal_receiver` (`None`: no row).
///
/// Returns `None` when the receiver streams, and when nothing in the log
/// says what is wrong yet (see the module documentation for the rules).
/// Call it for standbys only: a primary has no receiver either.
pub fn diagnose(log_tail: &str, receiver_status: Option<&str>) -> Option<ReceiverProblem> {
    if receiver_status == Some("streaming") {
        return None;
    }
    let entries = parse(log_tail);
    for (i, entry) in entries.iter().enumerate().rev() {
        let before = i.checked_sub(1).and_then(|j| entries.get(j));
        match classify(entry, before) {
            Verdict::Problem(problem) => return Some(problem),
            Verdict::Streaming | Verdict::Stale => return None,
            Verdict::Irrelevant => {}
        }
    }
    // A configured receiver fails (and logs) every 5 s; silence from it and
    // no receiver row mean there is none. An empty tail is no evidence.
    if receiver_status.is_none() && !entries.is_empty() {
        return Some(ReceiverProblem::NotConfigured);
    }
    None
}

/// Reads at most the last `max_bytes` of the file at `path`, as lossy UTF-8,
/// starting at a line boundary: a first line cut by the limit is dropped.
pub fn read_log_tail(path: &Path, max_bytes: u64) -> io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(max_bytes);
    // Read one byte before the window: if it ends a line, the window's first
    // line is whole and kept.
    let from = start.saturating_sub(1);
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    // `take` because PostgreSQL may append while we read.
    file.take(max_bytes + (start - from))
        .read_to_end(&mut bytes)?;
    let window = if start == 0 {
        &bytes[..]
    } else {
        match bytes.iter().position(|&b| b == b'\n') {
            Some(newline) => &bytes[newline + 1..],
            None => &[],
        }
    };
    Ok(String::from_utf8_lossy(window).into_owned())
}

/// One message in the log: its first line and the lines that belong to it.
#[derive(Debug)]
struct Entry<'a> {
    /// The first line as written, prefix included.
    line: &'a str,
    /// `LOG`, `FATAL`, ...; `None` for lines PostgreSQL did not prefix, such
    /// as libpq's own warnings about the password file.
    severity: Option<&'a str>,
    /// The message after `SEVERITY:  `, then its tab-indented continuation
    /// lines (libpq's multi-line errors), one per line, trimmed.
    text: String,
    /// The `DETAIL:` / `HINT:` lines that followed, without the keyword.
    details: Vec<&'a str>,
}

impl Entry<'_> {
    /// The message's first line.
    fn message(&self) -> &str {
        self.text.lines().next().unwrap_or_default()
    }
}

/// Severities PostgreSQL writes as `SEVERITY:  message`.
const SEVERITIES: &[&str] = &[
    "DEBUG1", "DEBUG2", "DEBUG3", "DEBUG4", "DEBUG5", "INFO", "NOTICE", "WARNING", "ERROR", "LOG",
    "FATAL", "PANIC",
];

/// Keywords of the lines that belong to the message before them.
const ATTACHED: &[&str] = &[
    "DETAIL",
    "HINT",
    "CONTEXT",
    "QUERY",
    "STATEMENT",
    "LOCATION",
];

/// Splits a log line into its keyword and the text after `KEYWORD:  `.
///
/// `log_line_prefix` is configurable, so the prefix is not parsed: the first
/// known keyword followed by a colon and two spaces starts PostgreSQL's own
/// text. Later ones (`... failed: FATAL:  password ...`) are the primary's
/// words quoted inside the message.
fn split_keyword(line: &str) -> Option<(&str, &str)> {
    for (colon, _) in line.match_indices(":  ") {
        let head = &line[..colon];
        let word_start = head
            .rfind(|c: char| !c.is_ascii_alphanumeric())
            .map_or(0, |i| i + 1);
        let word = &head[word_start..];
        if SEVERITIES.contains(&word) || ATTACHED.contains(&word) {
            return Some((word, &line[colon + 3..]));
        }
    }
    None
}

/// Groups the log's lines into messages.
fn parse(log: &str) -> Vec<Entry<'_>> {
    let mut entries: Vec<Entry<'_>> = Vec::new();
    for line in log.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with('\t') {
            // PostgreSQL indents the continuation lines of a multi-line
            // message with a tab; they belong to the message before.
            if let Some(last) = entries.last_mut() {
                last.text.push('\n');
                last.text.push_str(line.trim());
                continue;
            }
        }
        match split_keyword(line) {
            Some((keyword, text)) if ATTACHED.contains(&keyword) => {
                // DETAIL and HINT come in the same write as their message.
                if let Some(last) = entries.last_mut() {
                    last.details.push(text);
                }
            }
            Some((severity, text)) => entries.push(Entry {
                line,
                severity: Some(severity),
                text: text.to_string(),
                details: Vec::new(),
            }),
            None => entries.push(Entry {
                line,
                severity: None,
                text: line.trim().to_string(),
                details: Vec::new(),
            }),
        }
    }
    entries
}

/// What one message says about the receiver.
#[derive(Debug)]
enum Verdict {
    /// A failure: this is why the standby does not stream.
    Problem(ReceiverProblem),
    /// A receiver started streaming: earlier failures are over.
    Streaming,
    /// The configuration changed or the server started: earlier failures may
    /// no longer apply.
    Stale,
    /// Nothing about the receiver.
    Irrelevant,
}

/// The walreceiver's prefixes for a failure of the connection to the
/// primary, after which libpq's or the primary's words follow.
const RECEIVER_PREFIXES: &[&str] = &[
    "could not connect to the primary server: ",
    "could not start WAL streaming: ",
    "could not receive data from WAL stream: ",
    "could not send data to WAL stream: ",
    "could not send end-of-streaming message to primary: ",
    "could not receive timeline history file from the primary server: ",
    "could not receive database system identifier and timeline ID from the primary server: ",
    "error reading result of streaming command: ",
    "error while shutting down streaming COPY: ",
    "unexpected result after CommandComplete: ",
];

/// libpq's and the kernel's words for "the primary is not there".
const UNREACHABLE: &[&str] = &[
    "Connection refused",
    "Connection timed out",
    "timeout expired",
    "No route to host",
    "Network is unreachable",
    "Connection reset by peer",
    "could not translate host name",
    "server closed the connection unexpectedly",
    // A Unix socket that is not there; the same errno elsewhere (a missing
    // certificate file) is no sign of an absent primary.
    "failed: No such file or directory",
    "could not receive data from server",
    "could not send data to server",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
    "the database system is in recovery mode",
];

/// Words of failures that are about replication, for [`ReceiverProblem::Other`].
const ABOUT_REPLICATION: &[&str] = &["primary", "WAL stream", "walreceiver", "timeline"];

/// What `entry` says; `before` is the message written just before it.
fn classify(entry: &Entry<'_>, before: Option<&Entry<'_>>) -> Verdict {
    let message = entry.message();
    match entry.severity {
        Some("LOG") => classify_log(message),
        Some("WARNING")
            if message.starts_with("specified neither primary_conninfo nor restore_command") =>
        {
            Verdict::Problem(ReceiverProblem::NotConfigured)
        }
        Some("FATAL") | Some("PANIC") => classify_failure(entry, before),
        _ => Verdict::Irrelevant,
    }
}

/// LOG lines: the receiver's successes, the startup process's timeline
/// check, and the configuration changes that make older failures stale.
fn classify_log(message: &str) -> Verdict {
    if message.starts_with("started streaming WAL from primary")
        || message.starts_with("restarted WAL streaming at")
    {
        return Verdict::Streaming;
    }
    // The startup process repeats this every retry; the receiver itself
    // only says "primary server contains no more WAL on requested timeline".
    if message.starts_with("new timeline ")
        && message.contains("forked off current database system timeline")
    {
        return Verdict::Problem(ReceiverProblem::TimelineDiverged {
            detail: message.to_string(),
        });
    }
    if message == r#"parameter "primary_conninfo" changed to """#
        || message.starts_with(r#"parameter "primary_conninfo" removed from configuration file"#)
    {
        return Verdict::Problem(ReceiverProblem::NotConfigured);
    }
    if message.starts_with(r#"parameter "primary_conninfo" "#)
        || message.starts_with(r#"parameter "primary_slot_name" "#)
        || message.starts_with("starting PostgreSQL ")
    {
        return Verdict::Stale;
    }
    Verdict::Irrelevant
}

/// FATAL and PANIC lines of the walreceiver and the startup process.
fn classify_failure(entry: &Entry<'_>, before: Option<&Entry<'_>>) -> Verdict {
    let message = entry.message();
    if message.starts_with("terminating walreceiver process due to administrator command") {
        // The startup process restarts the receiver after a configuration
        // change or a promotion; that is not a failure.
        return Verdict::Irrelevant;
    }
    if let Some(rest) = message.strip_prefix("could not connect to the primary server: ") {
        return Verdict::Problem(classify_connect(entry, rest, before));
    }
    let problem = if let Some(segment) = between(
        message,
        "requested WAL segment ",
        " has already been removed",
    ) {
        ReceiverProblem::WalRemoved {
            segment: segment.to_string(),
        }
    } else if let Some(slot) = message
        .strip_prefix("could not start WAL streaming: ")
        .and_then(|words| between(words, "replication slot \"", "\" does not exist"))
    {
        ReceiverProblem::SlotMissing {
            slot: slot.to_string(),
        }
    } else if message.contains("is not in this server's history")
        || message.contains("is not a child of this server's history")
        || message.starts_with("could not receive timeline history file")
    {
        ReceiverProblem::TimelineDiverged {
            detail: primary_words(entry),
        }
    } else if let Some((primary, standby)) = older_timeline(message) {
        ReceiverProblem::PrimaryOnOlderTimeline { primary, standby }
    } else if message
        .starts_with("database system identifier differs between the primary and standby")
    {
        ReceiverProblem::DifferentCluster
    } else if message.starts_with("terminating walreceiver due to timeout") {
        // The primary sent nothing within wal_receiver_timeout: it hangs or
        // the network dropped the connection without telling.
        ReceiverProblem::PrimaryUnreachable {
            detail: message.to_string(),
        }
    } else if RECEIVER_PREFIXES.iter().any(|p| message.starts_with(p))
        && UNREACHABLE.iter().any(|w| message.contains(w))
    {
        ReceiverProblem::PrimaryUnreachable {
            detail: tidy(message),
        }
    } else if RECEIVER_PREFIXES.iter().any(|p| message.starts_with(p))
        || ABOUT_REPLICATION.iter().any(|w| message.contains(w))
    {
        ReceiverProblem::Other {
            line: entry.line.trim().to_string(),
        }
    } else {
        return Verdict::Irrelevant;
    };
    Verdict::Problem(problem)
}

/// `could not connect to the primary server: <libpq's reason>`.
fn classify_connect(entry: &Entry<'_>, rest: &str, before: Option<&Entry<'_>>) -> ReceiverProblem {
    const AUTH: &[&str] = &[
        "password authentication failed",
        "no password supplied",
        "password is required",
        "SCRAM",
        "fe_sendauth",
    ];
    if AUTH.iter().any(|w| entry.text.contains(w)) {
        // libpq's continuation lines name the password file it used.
        let mut detail: Vec<String> = std::iter::once(rest)
            .chain(entry.text.lines().skip(1))
            .map(tidy)
            .collect();
        // libpq writes its warning about a group-readable password file
        // straight to stderr, unprefixed, just before the failure.
        if let Some(warning) = before
            .filter(|b| b.severity.is_none() && b.text.contains("password file"))
            .map(|b| b.text.clone())
        {
            detail.push(warning);
        }
        return ReceiverProblem::AuthenticationFailed {
            user: between(rest, "for user \"", "\"").map(str::to_string),
            detail: detail.join("; "),
        };
    }
    if let Some(found) = rest.find("no pg_hba.conf entry for replication connection from host \"") {
        let words = &rest[found..];
        if let (Some(host), Some(user)) = (
            between(words, "from host \"", "\""),
            between(words, "user \"", "\""),
        ) {
            return ReceiverProblem::NoHbaEntry {
                host: host.to_string(),
                user: user.to_string(),
            };
        }
    }
    if UNREACHABLE.iter().any(|w| rest.contains(w)) {
        return ReceiverProblem::PrimaryUnreachable { detail: tidy(rest) };
    }
    // The primary answered and refused for another reason (e.g. a role
    // without REPLICATION, too many walsenders): its words say it best.
    ReceiverProblem::Other {
        line: entry.line.trim().to_string(),
    }
}

/// `highest timeline 1 of the primary is behind recovery timeline 2` → (1, 2).
fn older_timeline(message: &str) -> Option<(u32, u32)> {
    let primary = between(message, "highest timeline ", " of the primary is behind")?;
    let standby = message.split("is behind recovery timeline ").nth(1)?;
    Some((primary.parse().ok()?, standby.trim().parse().ok()?))
}

/// The primary's own words inside a walreceiver message, with its DETAIL:
/// `could not start WAL streaming: ERROR:  x` + `DETAIL:  y` → `x (y)`.
fn primary_words(entry: &Entry<'_>) -> String {
    let message = entry.message();
    let mut words = RECEIVER_PREFIXES
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .unwrap_or(message);
    for severity in ["ERROR:  ", "FATAL:  "] {
        words = words.strip_prefix(severity).unwrap_or(words);
    }
    let details: Vec<&str> = entry
        .text
        .lines()
        .skip(1)
        .filter_map(|l| l.strip_prefix("DETAIL:  "))
        .chain(entry.details.iter().copied())
        .collect();
    if details.is_empty() {
        words.to_string()
    } else {
        format!("{words} ({})", details.join(" "))
    }
}

/// The text between the first `start` and the next `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// PostgreSQL's `KEYWORD:  text` quoted inside a message, with one space.
fn tidy(text: &str) -> String {
    text.trim().replace(":  ", ": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real PostgreSQL 15.18 stderr output (log_line_prefix '%m [%p] '),
    // collected from a primary and standbys on loopback; the experiment is
    // named above each fixture.

    /// Primary stopped with `pg_ctl -m immediate`, then stays down.
    const PRIMARY_CRASHED: &str = "\
2026-11-26 13:32:57.416 UTC [22598] LOG:  started streaming WAL from primary at 0/3000000 on timeline 1
2026-11-26 13:32:58.548 UTC [22598] FATAL:  could not receive data from WAL stream: server closed the connection unexpectedly
\t\tThis probably means the server terminated abnormally
\t\tbefore or while processing the request.
2026-11-26 13:32:58.557 UTC [22606] FATAL:  could not connect to the primary server: connection to server at \"127.0.0.1\", port 32795 failed: server closed the connection unexpectedly
\t\tThis probably means the server terminated abnormally
\t\tbefore or while processing the request.
2026-11-26 13:32:58.557 UTC [22597] LOG:  waiting for WAL to become available at 0/3000018
2026-11-26 13:33:03.558 UTC [22608] FATAL:  could not connect to the primary server: connection to server at \"127.0.0.1\", port 32795 failed: Connection refused
\t\tIs the server running on that host and accepting TCP/IP connections?
2026-11-26 13:33:03.559 UTC [22597] LOG:  waiting for WAL to become available at 0/3000018
";

    /// The first two lines of [`PRIMARY_CRASHED`]: the moment it went away.
    const PRIMARY_CRASHING: &str = "\
2026-11-26 13:32:57.416 UTC [22598] LOG:  started streaming WAL from primary at 0/3000000 on timeline 1
2026-11-26 13:32:58.548 UTC [22598] FATAL:  could not receive data from WAL stream: server closed the connection unexpectedly
\t\tThis probably means the server terminated abnormally
\t\tbefore or while processing the request.
";

    /// Primary stopped with `pg_ctl -m fast`: it says goodbye first.
    const PRIMARY_SHUT_DOWN: &str = "\
2026-11-26 13:33:08.568 UTC [22683] LOG:  started streaming WAL from primary at 0/3000000 on timeline 1
2026-11-26 13:33:10.903 UTC [22683] LOG:  replication terminated by primary server
2026-11-26 13:33:10.903 UTC [22683] DETAIL:  End of WAL reached on timeline 1 at 0/3000118.
2026-11-26 13:33:10.903 UTC [22683] FATAL:  could not send end-of-streaming message to primary: server closed the connection unexpectedly
\t\tThis probably means the server terminated abnormally
\t\tbefore or while processing the request.
\tno COPY in progress
2026-11-26 13:33:10.903 UTC [22597] LOG:  waiting for WAL to become available at 0/3000130
";

    /// primary_conninfo with `host=<socket dir>`, primary stopped.
    const SOCKET_GONE: &str = "\
2026-11-26 13:34:12.303 UTC [23045] FATAL:  could not connect to the primary server: connection to server on socket \"/tmp/diagexp/run/sock/.s.PGSQL.32795\" failed: No such file or directory
\t\tIs the server running locally and accepting connections on that socket?
2026-11-26 13:34:12.303 UTC [22597] LOG:  waiting for WAL to become available at 0/3000168
";

    /// Not provoked (it needs DNS, and the experiments stayed on loopback):
    /// libpq 15's format `could not translate host name "%s" to address: %s`
    /// with glibc's text for an unknown name.
    const UNKNOWN_HOST: &str = "\
2026-11-26 13:40:00.000 UTC [30001] FATAL:  could not connect to the primary server: could not translate host name \"pg9.example\" to address: Name or service not known
";

    /// Primary's walsender frozen with SIGSTOP, standby has
    /// `wal_receiver_timeout = 2s`.
    const PRIMARY_SILENT: &str = "\
2026-11-26 13:39:12.395 UTC [29234] LOG:  started streaming WAL from primary at 0/3000000 on timeline 1
2026-11-26 13:39:15.404 UTC [29234] FATAL:  terminating walreceiver due to timeout
";

    /// `password=wrong` in primary_conninfo.
    const WRONG_PASSWORD: &str = "\
2026-11-26 13:33:19.206 UTC [22597] LOG:  WAL receiver process shutdown requested
2026-11-26 13:33:19.207 UTC [22710] FATAL:  terminating walreceiver process due to administrator command
2026-11-26 13:33:19.222 UTC [22736] FATAL:  could not connect to the primary server: connection to server at \"127.0.0.1\", port 32795 failed: FATAL:  password authentication failed for user \"replicator\"
2026-11-26 13:33:19.233 UTC [22597] LOG:  waiting for WAL to become available at 0/3000130
";

    /// A passfile (as the agent writes) with the wrong password.
    const WRONG_PASSWORD_IN_PASSFILE: &str = "\
2026-11-26 13:37:46.225 UTC [28802] FATAL:  could not connect to the primary server: connection to server at \"127.0.0.1\", port 48611 failed: FATAL:  password authentication failed for user \"replicator\"
\tpassword retrieved from file \"/tmp/diagexp/run4/pf\"
";

    /// No password and no passfile in primary_conninfo.
    const NO_PASSWORD: &str = "\
2026-11-26 13:33:26.419 UTC [22809] FATAL:  could not connect to the primary server: connection to server at \"127.0.0.1\", port 32795 failed: fe_sendauth: no password supplied
2026-11-26 13:33:26.422 UTC [22597] LOG:  waiting for WAL to become available at 0/3000130
";

    /// The passfile has mode 0644: libpq warns on raw stderr and ignores it.
    const PASSFILE_READABLE_BY_OTHERS: &str = "\
WARNING: password file \"/tmp/diagexp/run4/pf\" has group or world access; permissions should be u=rw (0600) or less
2026-11-26 13:37:58.346 UTC [28834] FATAL:  could not connect to the primary server: connection to server at \"127.0.0.1\", port 48611 failed: fe_sendauth: no password supplied
";

    /// `user=nobody`, a role the primary does not have.
    const UNKNOWN_USER: &str = "\
2026-11-26 13:34:00.198 UTC [22947] FATAL:  could not connect to the primary server: connection to server at \"127.0.0.1\", port 32795 failed: FATAL:  password authentication failed for user \"nobody\"
";

    /// The `host replication` line removed from the primary's pg_hba.conf.
    const NO_HBA_LINE: &str = "\
2026-11-26 13:33:33.633 UTC [22838] FATAL:  could not connect to the primary server: connection to server at \"127.0.0.1\", port 32795 failed: FATAL:  no pg_hba.conf entry for replication connection from host \"127.0.0.1\", user \"replicator\", no encryption
2026-11-26 13:33:33.634 UTC [22597] LOG:  waiting for WAL to become available at 0/3000130
";

    /// `primary_slot_name = 'nope'`, a slot the primary does not have.
    const SLOT_MISSING: &str = "\
2026-11-26 13:33:46.828 UTC [22594] LOG:  parameter \"primary_slot_name\" changed to \"nope\"
2026-11-26 13:33:46.829 UTC [22597] LOG:  WAL receiver process shutdown requested
2026-11-26 13:33:46.829 UTC [22907] FATAL:  terminating walreceiver process due to administrator command
2026-11-26 13:33:46.859 UTC [22915] FATAL:  could not start WAL streaming: ERROR:  replication slot \"nope\" does not exist
2026-11-26 13:33:46.862 UTC [22597] LOG:  waiting for WAL to become available at 0/3000168
2026-11-26 13:33:48.627 UTC [22597] LOG:  invalid record length at 0/3000150: wanted 24, got 0
";

    /// Standbys cloned one after another from a primary with
    /// `wal_keep_size = 0` and no slots: each clone's checkpoint recycled
    /// the segment the previous clone starts streaming from.
    const WAL_REMOVED: &str = "\
2026-11-26 13:36:26.254 UTC [26892] LOG:  database system is ready to accept read-only connections
2026-11-26 13:36:26.266 UTC [26896] LOG:  started streaming WAL from primary at 0/6000000 on timeline 1
2026-11-26 13:36:26.267 UTC [26896] FATAL:  could not receive data from WAL stream: ERROR:  requested WAL segment 000000010000000000000006 has already been removed
2026-11-26 13:36:26.278 UTC [26898] LOG:  started streaming WAL from primary at 0/6000000 on timeline 1
2026-11-26 13:36:26.278 UTC [26898] FATAL:  could not receive data from WAL stream: ERROR:  requested WAL segment 000000010000000000000006 has already been removed
";

    /// One standby promoted, the old primary took writes, a standby that
    /// replayed them (less than a segment past the fork) re-pointed at the
    /// new primary. The receiver stays up (status `waiting`).
    const TIMELINE_FORKED: &str = "\
2026-11-26 13:34:34.055 UTC [23895] LOG:  fetching timeline history file for timeline 2 from primary server
2026-11-26 13:34:34.055 UTC [23895] LOG:  primary server contains no more WAL on requested timeline 1
2026-11-26 13:34:34.055 UTC [23852] LOG:  new timeline 2 forked off current database system timeline 1 before current recovery point 0/4025A50
2026-11-26 13:34:34.055 UTC [23852] LOG:  invalid record length at 0/4025A50: wanted 24, got 0
2026-11-26 13:34:39.059 UTC [23895] LOG:  primary server contains no more WAL on requested timeline 1
2026-11-26 13:34:39.059 UTC [23852] LOG:  new timeline 2 forked off current database system timeline 1 before current recovery point 0/4025A50
2026-11-26 13:34:39.059 UTC [23852] LOG:  waiting for WAL to become available at 0/4002000
";

    /// As [`TIMELINE_FORKED`], but the standby is segments past the fork,
    /// so the new primary refuses the start point.
    const TIMELINE_START_POINT_NOT_IN_HISTORY: &str = "\
2026-11-26 13:37:31.869 UTC [28754] LOG:  fetching timeline history file for timeline 2 from primary server
2026-11-26 13:37:31.870 UTC [28754] FATAL:  could not start WAL streaming: ERROR:  requested starting point 0/8000000 on timeline 1 is not in this server's history
\tDETAIL:  This server's history forked from timeline 1 at 0/5000000.
";

    /// A standby that follows the promoted one (timeline 2) re-pointed at
    /// the old primary, still on timeline 1.
    const PRIMARY_ON_OLDER_TIMELINE: &str = "\
2026-11-26 13:37:39.013 UTC [28730] FATAL:  terminating walreceiver process due to administrator command
2026-11-26 13:37:39.031 UTC [28777] FATAL:  highest timeline 1 of the primary is behind recovery timeline 2
2026-11-26 13:37:39.031 UTC [28700] LOG:  invalid record length at 0/50001B8: wanted 24, got 0
";

    /// A standby re-pointed at a separately initdb'ed cluster.
    const DIFFERENT_CLUSTER: &str = "\
2026-11-26 13:35:59.229 UTC [26160] FATAL:  database system identifier differs between the primary and standby
2026-11-26 13:35:59.229 UTC [26160] DETAIL:  The primary's identifier is 7712473452635948566, the standby's identifier is 7712473395641439640.
2026-11-26 13:35:59.230 UTC [26086] LOG:  invalid record length at 0/929EC40: wanted 24, got 0
";

    /// `user=norep`, a role with LOGIN but without REPLICATION.
    const ROLE_WITHOUT_REPLICATION: &str = "\
2026-11-26 13:39:24.729 UTC [29257] FATAL:  could not connect to the primary server: connection to server at \"127.0.0.1\", port 53387 failed: FATAL:  must be superuser or replication role to start walsender
";

    /// A standby restarted after `primary_conninfo` was emptied.
    const STARTED_WITHOUT_CONNINFO: &str = "\
2026-11-26 13:36:22.290 UTC [26802] LOG:  starting PostgreSQL 15.18 (Debian 15.18-0+deb12u1) on x86_64-pc-linux-gnu, compiled by gcc (Debian 12.2.0-14+deb12u1) 12.2.0, 64-bit
2026-11-26 13:36:22.293 UTC [26805] LOG:  database system was interrupted while in recovery at log time 2026-11-26 13:35:46 UTC
2026-11-26 13:36:22.293 UTC [26805] HINT:  If this has occurred more than once some data might be corrupted and you might need to choose an earlier recovery target.
2026-11-26 13:36:22.293 UTC [26805] WARNING:  specified neither primary_conninfo nor restore_command
2026-11-26 13:36:22.293 UTC [26805] HINT:  The database server will regularly poll the pg_wal subdirectory to check for files placed there.
2026-11-26 13:36:22.293 UTC [26805] LOG:  entering standby mode
2026-11-26 13:36:22.294 UTC [26805] LOG:  redo starts at 0/4000028
2026-11-26 13:36:22.295 UTC [26805] LOG:  consistent recovery state reached at 0/4000100
2026-11-26 13:36:22.295 UTC [26802] LOG:  database system is ready to accept read-only connections
2026-11-26 13:36:22.439 UTC [26805] LOG:  invalid record length at 0/929EC40: wanted 24, got 0
";

    /// `ALTER SYSTEM SET primary_conninfo = ''` and a reload, after
    /// the receiver had been failing.
    const CONNINFO_EMPTIED: &str = "\
2026-11-26 13:36:15.955 UTC [26785] FATAL:  could not connect to the primary server: connection to server at \"127.0.0.1\", port 39441 failed: Connection refused
\t\tIs the server running on that host and accepting TCP/IP connections?
2026-11-26 13:36:16.076 UTC [26083] LOG:  received SIGHUP, reloading configuration files
2026-11-26 13:36:16.077 UTC [26083] LOG:  parameter \"primary_conninfo\" changed to \"\"
";

    /// The slot was created on the primary after [`SLOT_MISSING`].
    const SLOT_CREATED_LATER: &str = "\
2026-11-26 13:33:53.650 UTC [22927] FATAL:  could not start WAL streaming: ERROR:  replication slot \"nope\" does not exist
2026-11-26 13:33:53.650 UTC [22597] LOG:  waiting for WAL to become available at 0/3000168
2026-11-26 13:33:58.649 UTC [22936] LOG:  started streaming WAL from primary at 0/3000000 on timeline 1
";

    /// A standby failing on a different cluster, then re-pointed at an
    /// address where a listener accepts and never answers: the walreceiver
    /// hangs in connect without a line (it ignores connect_timeout).
    const REPOINTED_AND_HANGING: &str = "\
2026-11-26 13:36:04.250 UTC [26211] FATAL:  database system identifier differs between the primary and standby
2026-11-26 13:36:04.250 UTC [26211] DETAIL:  The primary's identifier is 7712473452635948566, the standby's identifier is 7712473395641439640.
2026-11-26 13:36:06.934 UTC [26083] LOG:  received SIGHUP, reloading configuration files
2026-11-26 13:36:06.935 UTC [26083] LOG:  parameter \"primary_conninfo\" changed to \"host=127.0.0.1 port=39441 user=replicator password=secret connect_timeout=2 application_name=s3\"
";

    /// A reload with a new `primary_conninfo`: the startup process stops the
    /// running receiver to start one with the new settings.
    const RECEIVER_RESTARTED_FOR_NEW_CONNINFO: &str = "\
2026-11-26 13:33:19.205 UTC [22594] LOG:  received SIGHUP, reloading configuration files
2026-11-26 13:33:19.206 UTC [22594] LOG:  parameter \"primary_conninfo\" changed to \"host=127.0.0.1 port=32795 user=replicator password=wrong application_name=s\"
2026-11-26 13:33:19.206 UTC [22597] LOG:  WAL receiver process shutdown requested
2026-11-26 13:33:19.207 UTC [22710] FATAL:  terminating walreceiver process due to administrator command
";

    /// Connections *to* this standby failing, as its own log shows them:
    /// a client with a wrong password and a cascaded standby without a
    /// pg_hba.conf line. Neither is about this standby's receiver.
    const CONNECTIONS_TO_THIS_SERVER_REFUSED: &str = "\
2026-11-26 13:39:31.773 UTC [29266] FATAL:  password authentication failed for user \"postgres\"
2026-11-26 13:39:31.773 UTC [29266] DETAIL:  User \"postgres\" has no password assigned.
\tConnection matched pg_hba.conf line 91: \"host    all             all             127.0.0.1/32            scram-sha-256\"
2026-11-26 13:39:31.862 UTC [29275] FATAL:  no pg_hba.conf entry for replication connection from host \"127.0.0.1\", user \"replicator\", no encryption
2026-11-26 13:33:46.859 UTC [22917] ERROR:  replication slot \"nope\" does not exist
2026-11-26 13:33:46.859 UTC [22917] STATEMENT:  START_REPLICATION SLOT \"nope\" 0/3000000 TIMELINE 1
";

    /// A healthy standby's start, for a tail without any failure.
    const HEALTHY_START: &str = "\
2026-11-26 13:32:57.401 UTC [22597] LOG:  consistent recovery state reached at 0/2000100
2026-11-26 13:32:57.401 UTC [22594] LOG:  database system is ready to accept read-only connections
2026-11-26 13:32:57.416 UTC [22598] LOG:  started streaming WAL from primary at 0/3000000 on timeline 1
";

    /// Checkpoint chatter that says nothing about the receiver.
    const ONLY_CHECKPOINTS: &str = "\
2026-11-26 13:34:30.941 UTC [23822] LOG:  checkpoint starting: immediate force wait
2026-11-26 13:34:30.949 UTC [23822] LOG:  checkpoint complete: wrote 7 buffers (0.0%); 0 WAL file(s) added, 0 removed, 1 recycled; write=0.001 s, sync=0.001 s, total=0.008 s; sync files=0, longest=0.000 s, average=0.000 s; distance=11262 kB, estimate=11262 kB
";

    fn unreachable(detail: &str) -> Option<ReceiverProblem> {
        Some(ReceiverProblem::PrimaryUnreachable {
            detail: detail.to_string(),
        })
    }

    #[test]
    fn given_real_postgres_15_logs_when_the_receiver_is_down_then_the_cause_is_named() {
        use ReceiverProblem::*;
        let cases: &[(&str, &str, Option<&str>, Option<ReceiverProblem>)] = &[
            (
                "primary stopped: the newest attempt was refused",
                PRIMARY_CRASHED,
                None,
                unreachable(r#"connection to server at "127.0.0.1", port 32795 failed: Connection refused"#),
            ),
            (
                "primary crashing: the stream broke",
                PRIMARY_CRASHING,
                None,
                unreachable("could not receive data from WAL stream: server closed the connection unexpectedly"),
            ),
            (
                "primary shut down cleanly",
                PRIMARY_SHUT_DOWN,
                None,
                unreachable(
                    "could not send end-of-streaming message to primary: server closed the connection unexpectedly",
                ),
            ),
            (
                "primary's unix socket gone",
                SOCKET_GONE,
                None,
                unreachable(
                    r#"connection to server on socket "/tmp/diagexp/run/sock/.s.PGSQL.32795" failed: No such file or directory"#,
                ),
            ),
            (
                "primary's host name unknown",
                UNKNOWN_HOST,
                None,
                unreachable(r#"could not translate host name "pg9.example" to address: Name or service not known"#),
            ),
            (
                "primary silent past wal_receiver_timeout",
                PRIMARY_SILENT,
                None,
                unreachable("terminating walreceiver due to timeout"),
            ),
            (
                "wrong password",
                WRONG_PASSWORD,
                None,
                Some(AuthenticationFailed {
                    user: Some("replicator".into()),
                    detail: r#"connection to server at "127.0.0.1", port 32795 failed: FATAL: password authentication failed for user "replicator""#.into(),
                }),
            ),
            (
                "wrong password in the passfile",
                WRONG_PASSWORD_IN_PASSFILE,
                None,
                Some(AuthenticationFailed {
                    user: Some("replicator".into()),
                    detail: r#"connection to server at "127.0.0.1", port 48611 failed: FATAL: password authentication failed for user "replicator"; password retrieved from file "/tmp/diagexp/run4/pf""#.into(),
                }),
            ),
            (
                "no password at all",
                NO_PASSWORD,
                None,
                Some(AuthenticationFailed {
                    user: None,
                    detail: r#"connection to server at "127.0.0.1", port 32795 failed: fe_sendauth: no password supplied"#.into(),
                }),
            ),
            (
                "passfile readable by others",
                PASSFILE_READABLE_BY_OTHERS,
                None,
                Some(AuthenticationFailed {
                    user: None,
                    detail: r#"connection to server at "127.0.0.1", port 48611 failed: fe_sendauth: no password supplied; WARNING: password file "/tmp/diagexp/run4/pf" has group or world access; permissions should be u=rw (0600) or less"#.into(),
                }),
            ),
            (
                "unknown replication user",
                UNKNOWN_USER,
                None,
                Some(AuthenticationFailed {
                    user: Some("nobody".into()),
                    detail: r#"connection to server at "127.0.0.1", port 32795 failed: FATAL: password authentication failed for user "nobody""#.into(),
                }),
            ),
            (
                "no pg_hba.conf line on the primary",
                NO_HBA_LINE,
                None,
                Some(NoHbaEntry {
                    host: "127.0.0.1".into(),
                    user: "replicator".into(),
                }),
            ),
            (
                "slot missing on the primary",
                SLOT_MISSING,
                None,
                Some(SlotMissing { slot: "nope".into() }),
            ),
            (
                "WAL already removed on the primary",
                WAL_REMOVED,
                None,
                Some(WalRemoved {
                    segment: "000000010000000000000006".into(),
                }),
            ),
            (
                "timeline forked before the recovery point, receiver waiting",
                TIMELINE_FORKED,
                Some("waiting"),
                Some(TimelineDiverged {
                    detail: "new timeline 2 forked off current database system timeline 1 before current recovery point 0/4025A50".into(),
                }),
            ),
            (
                "start point not in the new primary's history",
                TIMELINE_START_POINT_NOT_IN_HISTORY,
                None,
                Some(TimelineDiverged {
                    detail: "requested starting point 0/8000000 on timeline 1 is not in this server's history (This server's history forked from timeline 1 at 0/5000000.)".into(),
                }),
            ),
            (
                "upstream on an older timeline",
                PRIMARY_ON_OLDER_TIMELINE,
                None,
                Some(PrimaryOnOlderTimeline { primary: 1, standby: 2 }),
            ),
            ("a different cluster", DIFFERENT_CLUSTER, None, Some(DifferentCluster)),
            (
                "role without REPLICATION",
                ROLE_WITHOUT_REPLICATION,
                None,
                Some(Other {
                    line: r#"2026-11-26 13:39:24.729 UTC [29257] FATAL:  could not connect to the primary server: connection to server at "127.0.0.1", port 53387 failed: FATAL:  must be superuser or replication role to start walsender"#.into(),
                }),
            ),
            ("started without primary_conninfo", STARTED_WITHOUT_CONNINFO, None, Some(NotConfigured)),
            ("primary_conninfo emptied by a reload", CONNINFO_EMPTIED, None, Some(NotConfigured)),
            ("no receiver and nothing about one in the log", ONLY_CHECKPOINTS, None, Some(NotConfigured)),
        ];
        for (scenario, log, status, expected) in cases {
            assert_eq!(&diagnose(log, *status), expected, "{scenario}");
        }
    }

    #[test]
    fn given_a_streaming_receiver_when_old_failures_are_logged_then_no_problem() {
        assert_eq!(diagnose(WAL_REMOVED, Some("streaming")), None);
        assert_eq!(diagnose(NO_HBA_LINE, Some("streaming")), None);
    }

    #[test]
    fn given_a_failure_when_streaming_started_after_it_then_the_failure_is_over() {
        // The failure alone is diagnosed; with the later start it is not.
        assert!(diagnose(SLOT_CREATED_LATER.lines().next().unwrap_or_default(), None).is_some());
        assert_eq!(diagnose(SLOT_CREATED_LATER, None), None);
        assert_eq!(diagnose(SLOT_CREATED_LATER, Some("starting")), None);
    }

    #[test]
    fn given_a_failure_when_primary_conninfo_changes_then_it_is_stale() {
        assert_eq!(diagnose(REPOINTED_AND_HANGING, Some("starting")), None);
        assert_eq!(diagnose(REPOINTED_AND_HANGING, None), None);
        // The receiver the change stopped is not a failure either.
        let restarted = format!("{SLOT_MISSING}{RECEIVER_RESTARTED_FOR_NEW_CONNINFO}");
        assert_eq!(diagnose(&restarted, None), None);
        let next_attempt = format!("{REPOINTED_AND_HANGING}{NO_HBA_LINE}");
        assert_eq!(
            diagnose(&next_attempt, None).map(|p| p.kind()),
            Some("no_hba_entry")
        );
    }

    #[test]
    fn given_a_receiver_failure_when_clients_of_this_standby_fail_after_it_then_it_stands() {
        let log = format!("{SLOT_MISSING}{CONNECTIONS_TO_THIS_SERVER_REFUSED}");
        assert_eq!(
            diagnose(&log, None),
            Some(ReceiverProblem::SlotMissing {
                slot: "nope".into()
            })
        );
        // Alone they are no receiver failure: a receiver row means it runs.
        assert_eq!(
            diagnose(CONNECTIONS_TO_THIS_SERVER_REFUSED, Some("starting")),
            None
        );
    }

    #[test]
    fn given_a_receiver_row_when_the_log_says_nothing_about_it_then_there_is_no_problem_yet() {
        assert_eq!(diagnose(ONLY_CHECKPOINTS, Some("starting")), None);
        assert_eq!(diagnose(HEALTHY_START, Some("waiting")), None);
        assert_eq!(diagnose(HEALTHY_START, None), None);
    }

    #[test]
    fn given_no_log_at_all_when_there_is_no_receiver_then_nothing_is_claimed() {
        assert_eq!(diagnose("", None), None);
        assert_eq!(diagnose("\n\n", None), None);
    }

    #[test]
    fn given_a_tail_that_starts_mid_message_when_diagnosing_then_the_fragment_is_harmless() {
        let cut = &PRIMARY_CRASHED[PRIMARY_CRASHED.len() / 2..];
        assert_eq!(
            diagnose(cut, None).map(|p| p.kind()),
            Some("primary_unreachable")
        );
        let cut_in_continuation = "\t\tbefore or while processing the request.\n";
        assert_eq!(
            diagnose(&format!("{cut_in_continuation}{SLOT_MISSING}"), None).map(|p| p.kind()),
            Some("slot_missing")
        );
    }

    #[test]
    fn given_a_custom_log_line_prefix_when_diagnosing_then_the_message_is_still_found() {
        let log = "[26896] user=,db=,app=,client= FATAL:  could not receive data from WAL stream: ERROR:  requested WAL segment 000000010000000000000006 has already been removed\n";
        assert_eq!(
            diagnose(log, None),
            Some(ReceiverProblem::WalRemoved {
                segment: "000000010000000000000006".into()
            })
        );
    }

    #[test]
    fn every_kind_has_a_stable_name_and_a_sentence_that_says_what_to_do() {
        use ReceiverProblem::*;
        let cases: Vec<(ReceiverProblem, &str, &str)> = vec![
            (
                PrimaryUnreachable { detail: "Connection refused".into() },
                "primary_unreachable",
                "cannot reach the primary (Connection refused): check",
            ),
            (
                AuthenticationFailed { user: Some("replicator".into()), detail: "x".into() },
                "authentication_failed",
                "authentication failed for replication user replicator (x): the password in replication.password_file differs from the primary's, or pg_hba.conf rejects it; check both",
            ),
            (
                AuthenticationFailed { user: None, detail: "fe_sendauth: no password supplied".into() },
                "authentication_failed",
                "no password was sent for the replication user (fe_sendauth: no password supplied): the password file",
            ),
            (
                NoHbaEntry { host: "10.0.0.3".into(), user: "replicator".into() },
                "no_hba_entry",
                "the primary's pg_hba.conf has no replication line for user replicator from host 10.0.0.3",
            ),
            (
                SlotMissing { slot: "pg2".into() },
                "slot_missing",
                "replication slot pg2 does not exist on the primary: the primary creates it when replication.slots = true; check the primary's agent",
            ),
            (
                WalRemoved { segment: "000000010000000000000003".into() },
                "wal_removed",
                "the primary has already removed WAL this standby needs (segment 000000010000000000000003): re-clone it (`pgwarden reinit <member>`) or raise wal_keep_size / use slots",
            ),
            (
                TimelineDiverged { detail: "d".into() },
                "timeline_diverged",
                "this standby's timeline diverged from the primary's (d): it needs pg_rewind (the agent does this on rejoin) or a re-clone",
            ),
            (
                PrimaryOnOlderTimeline { primary: 1, standby: 2 },
                "primary_on_older_timeline",
                "the server this standby replicates from is on timeline 1, behind this standby's timeline 2",
            ),
            (DifferentCluster, "different_cluster", "the primary is a different cluster"),
            (Other { line: "FATAL:  x".into() }, "other", "the WAL receiver keeps failing: FATAL:  x"),
            (NotConfigured, "not_configured", "no WAL receiver is configured (primary_conninfo is empty)"),
        ];
        for (problem, kind, sentence) in cases {
            assert_eq!(problem.kind(), kind);
            let text = problem.to_string();
            assert!(text.starts_with(sentence), "{kind}: {text}");
        }
    }

    /// A file in the system's temporary directory, removed when dropped.
    struct TempLog(std::path::PathBuf);

    impl TempLog {
        fn new(name: &str, bytes: &[u8]) -> TempLog {
            let path = std::env::temp_dir().join(format!(
                "pgwarden-diagnose-{}-{name}.log",
                std::process::id()
            ));
            std::fs::write(&path, bytes).expect("write the test log");
            TempLog(path)
        }
    }

    impl Drop for TempLog {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn given_a_log_smaller_than_the_limit_when_reading_the_tail_then_all_of_it_is_read() {
        let log = TempLog::new("small", b"first\nsecond\n");
        assert_eq!(
            read_log_tail(&log.0, 1024).expect("read"),
            "first\nsecond\n"
        );
    }

    #[test]
    fn given_a_limit_that_cuts_a_line_when_reading_the_tail_then_the_partial_line_is_dropped() {
        let log = TempLog::new("cut", b"first line\nsecond\nthird\n");
        // The last 16 bytes are "ne\nsecond\nthird\n".
        assert_eq!(read_log_tail(&log.0, 16).expect("read"), "second\nthird\n");
    }

    #[test]
    fn given_a_limit_that_falls_on_a_line_start_when_reading_the_tail_then_that_line_is_kept() {
        let log = TempLog::new("boundary", b"first\nsecond\nthird\n");
        assert_eq!(read_log_tail(&log.0, 13).expect("read"), "second\nthird\n");
    }

    #[test]
    fn given_one_line_longer_than_the_limit_when_reading_the_tail_then_nothing_is_returned() {
        let log = TempLog::new("long", b"a line without any end");
        assert_eq!(read_log_tail(&log.0, 8).expect("read"), "");
    }

    #[test]
    fn given_invalid_utf8_when_reading_the_tail_then_it_is_replaced_not_an_error() {
        let log = TempLog::new("utf8", b"x\nbad \xff byte\n");
        assert_eq!(
            read_log_tail(&log.0, 1024).expect("read"),
            "x\nbad \u{fffd} byte\n"
        );
    }

    #[test]
    fn given_no_log_file_when_reading_the_tail_then_the_error_says_not_found() {
        let missing = std::env::temp_dir().join("pgwarden-diagnose-no-such-file.log");
        let err = read_log_tail(&missing, 1024).expect_err("no file");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn given_a_real_log_on_disk_when_diagnosing_its_tail_then_the_newest_failure_is_found() {
        let mut log = HEALTHY_START.repeat(200).into_bytes();
        log.extend_from_slice(SLOT_MISSING.as_bytes());
        let log = TempLog::new("real", &log);
        let tail = read_log_tail(&log.0, 4096).expect("read");
        assert!(tail.len() <= 4096);
        assert_eq!(
            diagnose(&tail, None),
            Some(ReceiverProblem::SlotMissing {
                slot: "nope".into()
            })
        );
    }
}
