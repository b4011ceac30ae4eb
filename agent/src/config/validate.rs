//! Rules about values (the form of a name or URL) and rules across keys
//! (this node is a member, the lease outlasts several loop periods, secret
//! files are readable). Reading has already reported keys with the wrong
//! type; the rules here skip keys that failed, so one mistake is reported
//! once.

use std::collections::BTreeMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::model::{Config, Member, ParamValue, SyncMode};
use super::report::Report;
use super::secrets::{check_secret_file, loose_permissions, who_else};

/// Longest name PostgreSQL keeps for an identifier (NAMEDATALEN - 1).
const MAX_NAME_LEN: usize = 63;

/// Shortest sensible HA loop period: below it the agent would spend its
/// time probing PostgreSQL and talking to peers.
pub(super) const MIN_LOOP_WAIT: Duration = Duration::from_millis(100);

/// The leader renews its lease once per `loop_wait`; the lease must
/// survive this many missed renewals (a slow disk, a lost packet) before
/// it runs out and the leader has to stop accepting writes.
pub(super) const MIN_RENEWALS_PER_TTL: u32 = 3;

/// Longest Unix socket path the kernel accepts (`sun_path` is 108 bytes,
/// one of them the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A member or node name: it becomes the standby's `application_name` and
/// its replication slot's name, which PostgreSQL restricts to
/// `[a-z0-9_]`, at most 63 characters.
pub(super) fn member_name(name: &str) -> Result<(), String> {
    let bad: Vec<char> = name
        .chars()
        .filter(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
        .collect();
    if bad.is_empty() && name.len() <= MAX_NAME_LEN {
        return Ok(());
    }
    let mut suggestion: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    suggestion.truncate(MAX_NAME_LEN);
    let why = if bad.is_empty() {
        format!("it is {} characters long", name.chars().count())
    } else {
        let shown: String = bad
            .iter()
            .map(|c| format!("{c:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!("it contains {shown}")
    };
    Err(format!(
        "{name:?} cannot be used: {why}; the name becomes PostgreSQL's application_name and replication slot name, \
         so use only lowercase letters, digits and underscores, at most {MAX_NAME_LEN} characters (e.g. {suggestion:?})"
    ))
}

/// `replication.clone_max_rate`: what `pg_basebackup --max-rate` takes,
/// 32 kB to 1024 MB a second.
pub(super) fn clone_max_rate(rate: super::units::ByteSize) -> Result<(), String> {
    let kb = rate.bytes() / 1024;
    if (32..=1024 * 1024).contains(&kb) {
        Ok(())
    } else {
        Err(format!(
            "{rate} a second is outside what pg_basebackup --max-rate takes (32kB to 1024MB); choose a rate in that range, or remove the key for no limit"
        ))
    }
}

/// The levels `log.level` accepts, alone or after `target=`.
const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

/// `log.level`: a level, or comma-separated `tracing` directives, each a
/// level or `target=level` (`"info,pgwarden::lease=debug"`). Stricter than
/// `tracing`'s own parser, which reads a bare word as a target at every
/// level: `level = "verbose"` is a typo to report, not a filter that
/// silences everything but a module named `verbose`.
pub(super) fn log_level(text: &str) -> Result<(), String> {
    let accepted = || {
        format!(
            "write level = {}, or directives such as \"info,pgwarden::lease=debug\" (a level, then target=level pairs)",
            LOG_LEVELS
                .iter()
                .map(|l| format!("{l:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let is_level = |word: &str| LOG_LEVELS.contains(&word.trim().to_ascii_lowercase().as_str());
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let ok = match directive.rsplit_once('=') {
            None => is_level(directive),
            Some((target, level)) => !target.trim().is_empty() && is_level(level),
        };
        if !ok {
            let what = if text.contains(',') || text.contains('=') {
                format!("{directive:?} in {text:?} is neither a level nor a target=level directive")
            } else {
                format!("{text:?} is not a log level")
            };
            return Err(format!("{what}; {}", accepted()));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(text)
        .map(|_| ())
        .map_err(|e| format!("{text:?} is not a valid filter ({e}); {}", accepted()))
}

/// `cluster.name`: PostgreSQL's `cluster_name` and a metrics label.
pub(super) fn cluster_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} cannot be used: a cluster name may hold letters, digits, '_', '-' and '.', at most {MAX_NAME_LEN} characters (e.g. \"main\")"
        ))
    }
}

/// `replication.user`: written unquoted into SQL, `pg_hba.conf` and
/// connection strings, so a plain lowercase identifier.
pub(super) fn role_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
    let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if first_ok && rest_ok && name.len() <= MAX_NAME_LEN {
        Ok(())
    } else {
        Err(format!(
            "{name:?} cannot be used: the replication role must be a plain PostgreSQL identifier \
             (a lowercase letter or '_', then lowercase letters, digits or '_', at most {MAX_NAME_LEN} characters), e.g. \"replicator\""
        ))
    }
}

/// A parsed `api_url` / `advertise_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ApiUrl {
    /// `https://` rather than `http://`.
    pub(super) https: bool,
    /// Host name or IP address, IPv6 without brackets.
    pub(super) host: String,
    /// The port, always explicit.
    pub(super) port: u16,
}

impl ApiUrl {
    /// The URL in one spelling, to compare URLs that differ only in case
    /// or a trailing slash.
    pub(super) fn canonical(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let host = self.host.to_ascii_lowercase();
        if host.contains(':') {
            format!("{scheme}://[{host}]:{}", self.port)
        } else {
            format!("{scheme}://{host}:{}", self.port)
        }
    }
}

/// An agent's URL: `http(s)://host:port`, nothing more. The port is
/// required because the agent's API has no well-known port.
pub(super) fn api_url(url: &str) -> Result<ApiUrl, String> {
    const FIX: &str = "write http(s)://host:port, e.g. \"http://10.0.0.1:8008\"";
    let (https, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        return Err(format!("{url:?} is not an http:// or https:// URL; {FIX}"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) || rest.contains(char::is_whitespace) {
        return Err(format!(
            "{url:?} has more than a host and a port (a path, query, user or spaces); {FIX}"
        ));
    }
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(format!(
                "{url:?} has an unclosed '[' around its IPv6 address; {FIX}"
            ));
        };
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("{url:?}: {host:?} is not an IPv6 address; {FIX}"));
        }
        (host, after.strip_prefix(':'))
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host; {FIX}"));
    }
    if !host.contains(':')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        return Err(format!(
            "{url:?}: {host:?} is not a host name or IP address; {FIX}"
        ));
    }
    let Some(port) = port else {
        return Err(format!(
            "{url:?} has no port; the agent's API has no well-known port, so name it, e.g. \"{}://{}:8008\"",
            if https { "https" } else { "http" },
            rest
        ));
    };
    match port.parse::<u16>() {
        Ok(port) if port != 0 => Ok(ApiUrl {
            https,
            host: host.to_string(),
            port,
        }),
        _ => Err(format!(
            "{url:?}: {port:?} is not a port from 1 to 65535; {FIX}"
        )),
    }
}

/// `api.listen`: an IP address and a port to bind.
pub(super) fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    match text.trim().parse::<SocketAddr>() {
        Ok(addr) if addr.port() != 0 => Ok(addr),
        Ok(_) => Err(format!(
            "{text:?} has port 0, which binds a random port peers cannot know; use e.g. \"0.0.0.0:8008\""
        )),
        Err(_) => Err(format!(
            "{text:?} is not an ip:port address; write e.g. \"0.0.0.0:8008\" (all interfaces), \"10.0.0.1:8008\" or \"[::]:8008\" (host names are not resolved)"
        )),
    }
}

/// A host name or address as written into `pg_hba.conf` or a connection
/// string: one word, nothing that needs quoting.
pub(super) fn host(text: &str) -> Result<(), String> {
    if text.contains(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | '\\' | '#')) {
        Err(format!(
            "{text:?} is not a host name or IP address; write one word such as \"10.0.0.1\" or \"pg1.example.com\""
        ))
    } else {
        Ok(())
    }
}

/// One user line of `pg_hba.conf`: checked enough to catch a typo before
/// PostgreSQL refuses the whole file on reload.
pub(super) fn hba_line(line: &str) -> Result<(), String> {
    if line.contains(['\n', '\r']) {
        return Err("holds a line break; give each pg_hba line as its own list item".into());
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let (min, example) = match words.first().copied() {
        Some("local") => (4, "local all all peer"),
        Some("host" | "hostssl" | "hostnossl" | "hostgssenc" | "hostnogssenc") => {
            (5, "host all all 10.0.0.0/24 scram-sha-256")
        }
        Some("include" | "include_if_exists" | "include_dir") => (2, "include_if_exists /etc/postgresql/extra_hba.conf"),
        Some(other) => {
            return Err(format!(
                "{line:?} starts with {other:?}, not a connection type (local, host, hostssl, hostnossl, hostgssenc, hostnogssenc); e.g. \"host all all 10.0.0.0/24 scram-sha-256\""
            ))
        }
        None => return Err("is empty; remove it or write e.g. \"host all all 10.0.0.0/24 scram-sha-256\"".into()),
    };
    if words.len() < min {
        return Err(format!("{line:?} is incomplete; e.g. {example:?}"));
    }
    Ok(())
}

/// The rules across keys and the checks of files the configuration names.
pub(super) fn check(c: &Config, r: &mut Report) {
    // This node first: its check must see only reading problems, not the
    // duplicates check_members is about to report.
    check_this_node(c, r);
    check_members(c, r);
    check_required_for_role(c, r);
    check_timing(c, r);
    check_secret_files(c, r);
    check_tls(c, r);
    check_local_postgres(c, r);
    check_replication_parameters(c, r);
}

/// The fewest WAL senders (and replication slots) a cluster of `members`
/// needs: one per other member, and two more for a clone or a rewind
/// running beside them.
pub fn min_wal_senders(members: usize) -> usize {
    members + 2
}

/// Parameters the user may set, but not below what replication needs.
fn check_replication_parameters(c: &Config, r: &mut Report) {
    use super::model::ParamValue;
    let params = &c.postgresql.parameters;
    if let Some(level) = params.get("wal_level") {
        let ok = matches!(level, ParamValue::Text(t) if t == "replica" || t == "logical");
        if !ok {
            r.error(
                "postgresql.parameters.wal_level",
                "replication needs wal_level = \"replica\" (the agent's setting) or \"logical\"; remove the key or set one of those",
            );
        }
    }
    let need = min_wal_senders(c.cluster.members.len());
    for name in ["max_wal_senders", "max_replication_slots"] {
        let Some(value) = params.get(name) else {
            continue;
        };
        let n = match value {
            ParamValue::Int(n) => usize::try_from(*n).ok(),
            ParamValue::Text(t) => t.trim().parse().ok(),
            _ => None,
        };
        let enough = n.is_some_and(|n| n >= need);
        if !enough {
            r.error(
                &format!("postgresql.parameters.{name}"),
                format!(
                    "must be at least {need} for {} members (one per other member, and two for a clone or a rewind); remove the key to let the agent set it",
                    c.cluster.members.len()
                ),
            );
        }
    }
}

fn member_key(i: usize, field: &str) -> String {
    format!("cluster.members[{i}].{field}")
}

/// Whether entry `i` of `cluster.members` was read with a valid `field`.
fn entry_field_ok(r: &Report, i: usize, field: &str) -> bool {
    !r.has(&format!("cluster.members[{i}]")) && !r.has(&member_key(i, field))
}

fn check_members(c: &Config, r: &mut Report) {
    let members = &c.cluster.members;
    // Decided before this check records anything, so that a duplicate name
    // does not hide a duplicate URL in the same entry, nor the rules about
    // the list as a whole.
    let read_ok = !r.failed("cluster.members");
    let name_ok: Vec<bool> = (0..members.len())
        .map(|i| entry_field_ok(r, i, "name"))
        .collect();
    let url_ok: Vec<bool> = (0..members.len())
        .map(|i| entry_field_ok(r, i, "api_url"))
        .collect();
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut urls: BTreeMap<String, usize> = BTreeMap::new();
    for (i, m) in members.iter().enumerate() {
        if name_ok[i] {
            if let Some(first) = names.get(m.name.as_str()) {
                r.error(
                    &member_key(i, "name"),
                    format!(
                        "{:?} is listed twice (also cluster.members[{first}]); every member needs its own name",
                        m.name
                    ),
                );
            } else {
                names.insert(&m.name, i);
            }
        }
        if url_ok[i] {
            if let Ok(url) = api_url(&m.api_url) {
                if let Some(first) = urls.get(&url.canonical()) {
                    r.error(
                        &member_key(i, "api_url"),
                        format!(
                            "{:?} is also the api_url of cluster.members[{first}] ({}); every member's agent needs its own address",
                            m.api_url, members[*first].name
                        ),
                    );
                } else {
                    urls.insert(url.canonical(), i);
                }
            }
        }
        if m.witness && m.clonefrom {
            r.error(
                &member_key(i, "clonefrom"),
                format!(
                    "{} is a witness and runs no PostgreSQL, so it cannot be a clone source; remove clonefrom or witness",
                    m.name
                ),
            );
        }
    }
    if !read_ok || members.is_empty() {
        return;
    }
    if members.iter().all(|m| m.witness) {
        // Allowed, for testing the lease on its own: the witnesses then
        // hold the lease among themselves, and nothing runs PostgreSQL.
        r.warn(
            "cluster.members",
            "every member is a witness: a lease-only cluster, no member runs PostgreSQL (set witness = false on the data members)",
        );
    } else if c.data_members().all(|m| m.nofailover) && members.len() > 1 {
        r.warn(
            "cluster.members",
            "every member that runs PostgreSQL has nofailover = true, so no replica can ever be promoted; clear nofailover on at least one",
        );
    }
    let data_members = c.data_members().count();
    let mode = c.replication.synchronous;
    if mode != SyncMode::Off && data_members < 2 && !r.failed("replication.synchronous") {
        r.error(
            "replication.synchronous",
            format!(
                "{:?} needs at least two members that run PostgreSQL and there is {data_members}: \
                 every commit would wait for a standby that does not exist; use synchronous = \"off\" or add a member",
                mode.as_str()
            ),
        );
    }
    if mode != SyncMode::Off {
        if let Some(value) = c
            .postgresql
            .parameters
            .get("synchronous_commit")
            .and_then(commit_wait_skipped)
        {
            r.error(
                "postgresql.parameters.synchronous_commit",
                format!(
                    "synchronous_commit = {value:?} acknowledges commits before any standby has them, \
                     so replication.synchronous = {:?} could not keep its promise; remove it (the default \"on\" waits for the standbys) \
                     or set replication.synchronous = \"off\"",
                    mode.as_str()
                ),
            );
        }
    }
    if members.len() == 2 {
        r.warn(
            "cluster.members",
            "with two members, a majority is both: when either is down the other cannot take the leader lease; add a third member (a witness is enough)",
        );
    }
}

fn check_this_node(c: &Config, r: &mut Report) {
    let names_known = (0..c.cluster.members.len()).all(|i| entry_field_ok(r, i, "name"));
    if r.failed("node.name") || !names_known || c.cluster.members.is_empty() {
        return;
    }
    let Some((i, me)) = c
        .cluster
        .members
        .iter()
        .enumerate()
        .find(|(_, m)| m.name == c.node.name)
    else {
        let names: Vec<&str> = c.cluster.members.iter().map(|m| m.name.as_str()).collect();
        r.error(
            "node.name",
            format!(
                "{:?} is not in cluster.members ({}); add {{ name = {:?}, api_url = \"http://<this host>:8008\" }} to cluster.members on every node, or correct node.name",
                c.node.name,
                names.join(", "),
                c.node.name
            ),
        );
        return;
    };
    if !r.failed("node.witness") && c.node.witness != me.witness {
        r.error(
            "node.witness",
            format!(
                "node.witness is {} but this node's entry cluster.members[{i}] ({}) has witness = {}; make them agree, since every node must know which members run PostgreSQL",
                c.node.witness, me.name, me.witness
            ),
        );
    }
    check_own_api_address(c, r, i, me);
    check_tags(c, r);
}

/// `node.tags` that cannot work: cascading from oneself or from a member
/// that runs no PostgreSQL, a witness as a clone source.
fn check_tags(c: &Config, r: &mut Report) {
    let tags = &c.node.tags;
    if c.node.witness && tags.clonefrom {
        r.error(
            "node.tags.clonefrom",
            "this node is a witness and runs no PostgreSQL, so it cannot be a clone source; remove clonefrom",
        );
    }
    let Some(from) = &tags.replicatefrom else {
        return;
    };
    if r.failed("node.tags.replicatefrom") {
        return;
    }
    if *from == c.node.name {
        r.error(
            "node.tags.replicatefrom",
            format!("{from:?} is this node: a standby streams from another member (or leave replicatefrom out to stream from the primary)"),
        );
    } else if c.node.witness {
        r.error(
            "node.tags.replicatefrom",
            "this node is a witness and runs no PostgreSQL, so it streams from no one; remove replicatefrom",
        );
    } else {
        match c.cluster.members.iter().find(|m| m.name == *from) {
            None => {
                let names: Vec<&str> = c.data_members().map(|m| m.name.as_str()).collect();
                r.error(
                    "node.tags.replicatefrom",
                    format!(
                        "{from:?} is not in cluster.members; name a member that runs PostgreSQL ({})",
                        names.join(", ")
                    ),
                );
            }
            Some(m) if m.witness => r.error(
                "node.tags.replicatefrom",
                format!("{from:?} is a witness and runs no PostgreSQL; name a member that does"),
            ),
            Some(_) => {}
        }
    }
}

/// Peers reach this agent at its member entry's `api_url`; a different
/// port in `api.listen` usually means they cannot (unless a proxy sits in
/// between), so it is a warning, not an error.
fn check_own_api_address(c: &Config, r: &mut Report, i: usize, me: &Member) {
    let Ok(url) = api_url(&me.api_url) else {
        return;
    };
    check_own_scheme(c, r, i, &url);
    if !r.failed("api.listen") && c.api.listen.port() != url.port {
        r.warn(
            "api.listen",
            format!(
                "the API listens on port {} but this node's api_url in cluster.members[{i}] is {}; peers will not reach it unless something forwards the port",
                c.api.listen.port(),
                me.api_url
            ),
        );
    }
    if let Some(advertised) = &c.api.advertise_url {
        let same = api_url(advertised).is_ok_and(|a| a.canonical() == url.canonical());
        if !same && !r.failed("api.advertise_url") {
            r.warn(
                "api.advertise_url",
                format!(
                    "{advertised} differs from this node's api_url in cluster.members[{i}] ({}); peers use the members list, so clients and peers will disagree on this agent's address",
                    me.api_url
                ),
            );
        }
    }
}

fn check_required_for_role(c: &Config, r: &mut Report) {
    let n = c.cluster.members.len();
    if n > 1 && c.cluster.secret_file.is_none() && !r.failed("cluster.secret_file") {
        r.error(
            "cluster.secret_file",
            format!(
                "missing: with {n} members the agents authenticate each other's calls with a shared secret; \
                 write the same random string to a file on every node (openssl rand -hex 32 > /etc/pgwarden/cluster.secret; chmod 0600) \
                 and add secret_file = \"/etc/pgwarden/cluster.secret\" under [cluster]"
            ),
        );
    }
    if c.node.witness || r.failed("node.witness") {
        return;
    }
    if c.replication.password_file.is_none() && !r.failed("replication.password_file") {
        r.error(
            "replication.password_file",
            "missing: a member that runs PostgreSQL needs the replication role's password to stream from the primary; \
             add password_file = \"/etc/pgwarden/replicator.pass\" under [replication] (a file holding the password, mode 0600)",
        );
    }
    if c.replication.superuser_password_file.is_none()
        && !r.failed("replication.superuser_password_file")
    {
        r.error(
            "replication.superuser_password_file",
            "missing: a member that runs PostgreSQL needs the superuser's password to manage it and to run pg_rewind; \
             add superuser_password_file = \"/etc/pgwarden/postgres.pass\" under [replication] (mode 0600)",
        );
    }
}

fn check_timing(c: &Config, r: &mut Report) {
    let (ttl, loop_wait) = (c.cluster.ttl, c.cluster.loop_wait);
    if r.failed("cluster.loop_wait") {
        return;
    }
    if loop_wait < MIN_LOOP_WAIT {
        r.error(
            "cluster.loop_wait",
            format!(
                "{} is too short; the HA loop needs at least {} per round to probe PostgreSQL and reach its peers",
                humantime::format_duration(loop_wait),
                humantime::format_duration(MIN_LOOP_WAIT)
            ),
        );
        return;
    }
    let needed = loop_wait * MIN_RENEWALS_PER_TTL;
    if !r.failed("cluster.ttl") && ttl < needed {
        r.error(
            "cluster.ttl",
            format!(
                "cluster.ttl ({}{}) must be at least {MIN_RENEWALS_PER_TTL} × cluster.loop_wait ({}{}) = {}: \
                 the leader renews its lease once per loop and must survive a few missed renewals; \
                 raise ttl to {} or more, or lower loop_wait",
                humantime::format_duration(ttl),
                r.origin_note("cluster.ttl"),
                humantime::format_duration(loop_wait),
                r.origin_note("cluster.loop_wait"),
                humantime::format_duration(needed),
                humantime::format_duration(needed),
            ),
        );
    }
}

/// The keys that name secret files, with their paths when set.
pub(super) fn secret_files(c: &Config) -> [(&'static str, Option<&Path>); 5] {
    [
        ("api.token_file", c.api.token_file.as_deref()),
        ("api.tls_key_file", c.api.tls_key_file.as_deref()),
        ("cluster.secret_file", c.cluster.secret_file.as_deref()),
        (
            "replication.password_file",
            c.replication.password_file.as_deref(),
        ),
        (
            "replication.superuser_password_file",
            c.replication.superuser_password_file.as_deref(),
        ),
    ]
}

fn check_secret_files(c: &Config, r: &mut Report) {
    for (key, path) in secret_files(c) {
        let Some(path) = path else { continue };
        if r.failed(key) {
            continue;
        }
        match check_secret_file(path) {
            Err(e) => r.error(key, e.to_string()),
            Ok(mode) if loose_permissions(mode) => r.warn(
                key,
                format!(
                    "secret file {} has mode {mode:04o}: {}; chmod 0600 {} (or 0640 for the agent's group)",
                    path.display(),
                    who_else(mode),
                    path.display()
                ),
            ),
            Ok(_) => {}
        }
    }
}

fn check_tls(c: &Config, r: &mut Report) {
    let api = &c.api;
    match (&api.tls_cert_file, &api.tls_key_file) {
        (Some(_), None) if !r.failed("api.tls_key_file") => r.error(
            "api.tls_key_file",
            "missing: tls_cert_file is set and TLS needs the certificate's private key too; add tls_key_file = \"/etc/pgwarden/api.key\" under [api]",
        ),
        (None, Some(_)) if !r.failed("api.tls_cert_file") => r.error(
            "api.tls_cert_file",
            "missing: tls_key_file is set and TLS needs the certificate too; add tls_cert_file = \"/etc/pgwarden/api.crt\" under [api]",
        ),
        _ => {}
    }
    if api.tls_client_ca_file.is_some()
        && api.tls_cert_file.is_none()
        && !r.failed("api.tls_cert_file")
    {
        r.error(
            "api.tls_client_ca_file",
            "needs tls_cert_file and tls_key_file: clients present certificates only over TLS; set them or remove tls_client_ca_file",
        );
    }
    check_verify_client(c, r);
    check_tls_files(c, r);
}

/// `api.verify_client` against the CA that client certificates are checked with.
fn check_verify_client(c: &Config, r: &mut Report) {
    use super::model::VerifyClient;
    let api = &c.api;
    if r.failed("api.verify_client") {
        return;
    }
    match (api.verify_client, &api.tls_client_ca_file) {
        (Some(mode @ (VerifyClient::Optional | VerifyClient::Required)), None)
            if !r.failed("api.tls_client_ca_file") =>
        {
            r.error(
                "api.verify_client",
                format!(
                    "{:?} needs tls_client_ca_file, the CA that client certificates must be signed by; add tls_client_ca_file = \"/etc/pgwarden/ca.crt\" under [api], or remove verify_client",
                    mode.as_str()
                ),
            );
        }
        (Some(VerifyClient::None), Some(ca)) => r.warn(
            "api.verify_client",
            format!(
                "\"none\" asks clients for no certificate, so tls_client_ca_file ({}) is not used; remove one of the two",
                ca.display()
            ),
        ),
        _ => {}
    }
}

/// The PEM files: readable, of the right kind, the key the certificate's.
fn check_tls_files(c: &Config, r: &mut Report) {
    let api = &c.api;
    let mut cert_ok = false;
    if let Some(cert) = api
        .tls_cert_file
        .as_deref()
        .filter(|_| !r.failed("api.tls_cert_file"))
    {
        match super::pem::read_certificates(cert) {
            Ok(_) => cert_ok = true,
            Err(e) => r.error("api.tls_cert_file", e.to_string()),
        }
    }
    // An unreadable key file is reported once, as a secret file.
    if let (true, Some(cert), Some(key)) = (cert_ok, &api.tls_cert_file, &api.tls_key_file) {
        if !r.failed("api.tls_key_file") {
            if let Err(e) = super::pem::read_certified_key(cert, key) {
                r.error("api.tls_key_file", e.to_string());
            }
        }
    }
    for (key, path) in [
        ("api.tls_client_ca_file", &api.tls_client_ca_file),
        ("api.tls_ca_file", &api.tls_ca_file),
    ] {
        let Some(path) = path else { continue };
        if r.failed(key) {
            continue;
        }
        if let Err(e) = super::pem::read_roots(path) {
            r.error(key, e.to_string());
        }
    }
}

/// An agent that serves TLS is reached with `https://`; `http://` in its
/// own entry would leave every peer unable to talk to it.
fn check_own_scheme(c: &Config, r: &mut Report, i: usize, url: &ApiUrl) {
    if r.failed("api.tls_cert_file") || r.failed("api.tls_key_file") {
        return;
    }
    let me = &c.cluster.members[i];
    if c.api.serves_tls() && !url.https {
        r.error(
            &member_key(i, "api_url"),
            format!(
                "{} is http:// but api.tls_cert_file is set, so this agent speaks HTTPS only; write https://{} in cluster.members on every node",
                me.api_url,
                me.api_url.trim_start_matches("http://")
            ),
        );
    } else if !c.api.serves_tls() && url.https {
        r.warn(
            &member_key(i, "api_url"),
            format!(
                "{} is https:// but this agent speaks plain HTTP (api.tls_cert_file is not set); peers will not reach it unless a proxy in front of it terminates TLS",
                me.api_url
            ),
        );
    }
    if let Some(advertised) = &c.api.advertise_url {
        let plain = api_url(advertised).is_ok_and(|a| !a.https);
        if c.api.serves_tls() && plain && !r.failed("api.advertise_url") {
            r.error(
                "api.advertise_url",
                format!(
                    "{advertised} is http:// but api.tls_cert_file is set, so this agent speaks HTTPS only; write https://"
                ),
            );
        }
    }
}

/// Checks of the local PostgreSQL installation that would otherwise only
/// fail when the agent first starts it. A witness runs no PostgreSQL.
fn check_local_postgres(c: &Config, r: &mut Report) {
    if c.node.witness {
        return;
    }
    if let Some(bin_dir) = &c.node.bin_dir {
        if !r.failed("node.bin_dir") && !bin_dir.join("postgres").is_file() {
            // A warning: configuration management may well write the
            // configuration before it installs the packages.
            r.warn(
                "node.bin_dir",
                format!(
                    "{} holds no postgres executable; install PostgreSQL there or point bin_dir at the directory that has postgres, initdb and pg_ctl",
                    bin_dir.display()
                ),
            );
        }
    }
    let dir = &c.postgresql.socket_dir;
    let socket = dir.join(format!(".s.PGSQL.{}", c.postgresql.port));
    let len = socket.as_os_str().len();
    if !r.failed("postgresql.socket_dir") && len > MAX_SOCKET_PATH {
        r.error(
            "postgresql.socket_dir",
            format!(
                "the socket path {} is {len} bytes, and Unix sockets allow at most {MAX_SOCKET_PATH}; choose a shorter directory",
                socket.display()
            ),
        );
    }
}

/// The `synchronous_commit` values that do not wait for a standby.
fn commit_wait_skipped(value: &ParamValue) -> Option<String> {
    let text = match value {
        ParamValue::Text(t) => t.trim().to_ascii_lowercase(),
        ParamValue::Bool(false) => "off".to_string(),
        ParamValue::Int(0) => "0".to_string(),
        _ => return None,
    };
    matches!(text.as_str(), "off" | "local" | "false" | "no" | "0").then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_must_be_usable_as_slot_names() {
        assert!(member_name("pg1").is_ok());
        assert!(member_name("node_2").is_ok());
        let e = member_name("PG-1").unwrap_err();
        assert!(
            e.contains("'P'") && e.contains("'-'") && e.contains("\"pg_1\""),
            "{e}"
        );
        assert!(
            e.contains("lowercase letters, digits and underscores"),
            "{e}"
        );
        let long = "a".repeat(64);
        assert!(member_name(&long)
            .unwrap_err()
            .contains("64 characters long"));
        assert!(member_name(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn api_urls_need_a_scheme_a_host_and_a_port_and_nothing_else() {
        let ok = api_url("http://10.0.0.1:8008").unwrap();
        assert_eq!(
            (ok.https, ok.host.as_str(), ok.port),
            (false, "10.0.0.1", 8008)
        );
        let v6 = api_url("https://[fd00::1]:8008/").unwrap();
        assert_eq!(
            (v6.https, v6.host.as_str(), v6.canonical().as_str()),
            (true, "fd00::1", "https://[fd00::1]:8008")
        );
        assert!(api_url("http://pg1.example.com:8008").is_ok());
        for (bad, why) in [
            ("10.0.0.1:8008", "not an http"),
            ("http://10.0.0.1", "no port"),
            ("http://10.0.0.1:0", "not a port"),
            ("http://10.0.0.1:8008/api", "more than a host"),
            ("http://:8008", "no host"),
            ("http://[zz]:8008", "not an IPv6"),
            ("http://pg_1:8008", "not a host name"),
        ] {
            let e = api_url(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn api_urls_differing_only_in_case_or_a_trailing_slash_are_the_same() {
        let a = api_url("http://PG1.example:8008/").unwrap();
        let b = api_url("http://pg1.example:8008").unwrap();
        assert_eq!(a.canonical(), b.canonical());
    }

    #[test]
    fn listen_addresses_are_ip_and_port() {
        assert_eq!(listen_addr("0.0.0.0:8008").unwrap().port(), 8008);
        assert!(listen_addr("[::]:8008").is_ok());
        assert!(listen_addr("localhost:8008")
            .unwrap_err()
            .contains("not an ip:port"));
        assert!(listen_addr("0.0.0.0:0").unwrap_err().contains("port 0"));
    }

    #[test]
    fn hba_lines_with_a_typo_or_missing_fields_are_refused() {
        assert!(hba_line("host all all 10.0.0.0/24 scram-sha-256").is_ok());
        assert!(hba_line("local all all peer").is_ok());
        assert!(hba_line("hots all all 10.0.0.0/24 trust")
            .unwrap_err()
            .contains("\"hots\""));
        assert!(hba_line("host all all").unwrap_err().contains("incomplete"));
        assert!(hba_line("host all all 0/0 trust\nlocal all all trust").is_err());
        assert!(hba_line("  ").is_err());
    }

    #[test]
    fn role_and_cluster_names_follow_their_own_rules() {
        assert!(role_name("replicator").is_ok());
        assert!(role_name("1rep").is_err());
        assert!(role_name("Rep").is_err());
        assert!(cluster_name("pg-main.eu").is_ok());
        assert!(cluster_name("my cluster").is_err());
    }
}
