//! Members in network namespaces, for partition tests: each member of a
//! [`NetCluster`] (its agent, PostgreSQL and fence guard) runs in a network
//! namespace of its own, wired by a veth pair to one bridge in the root
//! namespace. A test cuts a member off with [`NetNode::partition`] while
//! the member keeps running, watches it from inside its namespace
//! ([`in_netns`], [`NetWriter::start_direct_in`]) and from the majority's
//! side (the root namespace, which reaches every member over the bridge),
//! then heals it with [`NetNode::heal`].
//!
//! # Layout
//! - [`Network`]: the bridge (`pgwbrX`, 10.213.X.1/24) and the namespaces
//!   (`pgwX-<member>`, member *i* at 10.213.X.(10+i)); X is picked per run.
//!   Dropping it kills whatever still runs in its namespaces and deletes
//!   them and the bridge.
//! - [`NetNode`], [`NetCluster`]: the harness's [`crate::Node`] and
//!   [`crate::Cluster`] for members that listen on their namespace's address
//!   (API on port [`API_PORT`], PostgreSQL on [`PG_PORT`]).
//! - [`in_netns`]: runs a closure on a thread that entered a namespace.
//! - [`NetWriter`]: the [`crate::writer`] client for members that are not on
//!   loopback, runnable from inside a namespace; it records when each write
//!   was sent and acknowledged, so that a test can prove two members never
//!   accepted writes at overlapping times.
//!
//! Every address here exists only on the test's own bridge and veths: no
//! traffic leaves for anything the test did not create. Everything needs
//! root (`CAP_NET_ADMIN` for links, `CAP_SYS_ADMIN` for `setns`).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::writer::{WriterReport, SUPERUSER_PASSWORD};
use crate::{pg_bin_dir, pgwarden_bin, process_alive, write_secret, HttpAnswer, TestDir};

/// The agents' API port, the same in every namespace.
pub const API_PORT: u16 = 8008;

/// PostgreSQL's port, the same in every namespace.
pub const PG_PORT: u16 = 5432;

/// How long one HTTP request to an agent may take (connecting included): a
/// partitioned member costs the caller at most this.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(1);

/// How long connecting (TCP and authentication) to PostgreSQL may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one statement may take before it counts as refused.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(2);

/// The writer stops by itself after this long, should a test forget to.
pub const MAX_RUN: Duration = Duration::from_secs(600);

/// The table the writers insert into: the same as [`crate::writer`]'s.
pub const CREATE_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS writer_ids (id bigint PRIMARY KEY, at timestamptz DEFAULT now())";

const INSERT: &str = "INSERT INTO writer_ids (id) VALUES ($1)";

/// The first and last third octet tried for 10.213.X.0/24.
const SUBNETS: std::ops::RangeInclusive<u16> = 20..=249;

/// Runs `ip` with `args`; the error carries its stderr.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip`: {e} (is iproute2 installed?)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The pids of the processes in network namespace `netns` (`ip netns pids`).
fn namespace_pids(netns: &str) -> Vec<i32> {
    ip(&["netns", "pids", netns])
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// SIGKILLs every process in `netns` until none is left (at most 10 s):
/// they can only be the test's own, since the namespace is.
fn kill_namespace(netns: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = namespace_pids(netns);
        if pids.is_empty() || Instant::now() > deadline {
            return;
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// When a test cannot build its namespaces (not root, or no `CAP_SYS_ADMIN`
/// in a container): `None` after printing "SKIPPED ..." outside CI, and a
/// failure in CI (`CI=true`), where a partition test must not silently not run.
pub fn or_skip<T>(test: &str, built: Result<T, String>) -> Option<T> {
    match built {
        Ok(v) => Some(v),
        Err(e) => {
            let msg = format!("{test}: cannot set up network namespaces: {e}");
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{msg}");
            }
            eprintln!("SKIPPED {msg}");
            None
        }
    }
}

/// One member's place in a [`Network`]: its namespace, the veth inside it
/// and its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The network namespace (`ip netns` name).
    pub netns: String,
    /// The veth inside the namespace (what [`Network::set_link`] toggles).
    pub link: String,
    /// The namespace's address on the bridge.
    pub addr: Ipv4Addr,
}

/// A bridge in the root namespace with namespaces hanging off it by veth
/// pairs, on 10.213.X.0/24. Dropping it deletes everything it created.
pub struct Network {
    /// The third octet X of 10.213.X.0/24.
    pub subnet: u8,
    /// The bridge's name.
    pub bridge: String,
    namespaces: Vec<String>,
    bridge_ports: Vec<String>,
}

impl Network {
    /// Creates the bridge with 10.213.X.1/24, X derived from the process id
    /// and moved on while an interface already has an address in that subnet
    /// or the bridge name is taken (another run of the test, in parallel).
    pub fn create() -> Result<Network, String> {
        let used = ip(&["-o", "-4", "addr", "show"])?;
        let count = usize::from(SUBNETS.end() - SUBNETS.start() + 1);
        let first = std::process::id() as usize % count;
        for k in 0..count {
            let x = (SUBNETS.start() + ((first + k) % count) as u16) as u8;
            if used.contains(&format!(" 10.213.{x}.")) {
                continue;
            }
            let bridge = format!("pgwbr{x}");
            // Creating the link is the atomic step that claims X.
            match ip(&["link", "add", &bridge, "type", "bridge"]) {
                Ok(_) => {}
                Err(e) if e.contains("File exists") => continue,
                Err(e) => return Err(e),
            }
            let net = Network {
                subnet: x,
                bridge,
                namespaces: Vec::new(),
                bridge_ports: Vec::new(),
            };
            ip(&[
                "addr",
                "add",
                &format!("{}/24", net.root_addr()),
                "dev",
                &net.bridge,
            ])?;
            ip(&["link", "set", &net.bridge, "up"])?;
            return Ok(net);
        }
        Err("every 10.213.X.0/24 subnet the tests use is taken".into())
    }

    /// The root namespace's address on the bridge (10.213.X.1): where the
    /// test's own connections to members come from.
    pub fn root_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, 1)
    }

    /// The subnet as a pg_hba address, `10.213.X.0/24`.
    pub fn cidr(&self) -> String {
        format!("10.213.{}.0/24", self.subnet)
    }

    /// Adds namespace `pgwX-<label>` with a veth on the bridge and address
    /// 10.213.X.(10+`index`); loopback up too (PostgreSQL and the agent use
    /// local connections).
    pub fn add_namespace(&mut self, index: u8, label: &str) -> Result<Slot, String> {
        let x = self.subnet;
        let netns = format!("pgw{x}-{label}");
        ip(&["netns", "add", &netns])?;
        self.namespaces.push(netns.clone());
        // Interface names stay within IFNAMSIZ (15): "pgw249n10" at most.
        let link = format!("pgw{x}n{index}");
        let port = format!("pgw{x}b{index}");
        ip(&[
            "link", "add", &port, "type", "veth", "peer", "name", &link, "netns", &netns,
        ])?;
        self.bridge_ports.push(port.clone());
        ip(&["link", "set", &port, "master", &self.bridge])?;
        ip(&["link", "set", &port, "up"])?;
        let addr = Ipv4Addr::new(10, 213, x, 10 + index);
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            &link,
        ])?;
        ip(&["-n", &netns, "link", "set", &link, "up"])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        Ok(Slot { netns, link, addr })
    }

    /// Sets `slot`'s veth up or down. Down is a partition that fails fast on
    /// the inside ("Network is unreachable") and by timeouts on the outside;
    /// the member still reaches its own address (it is local).
    pub fn set_link(slot: &Slot, up: bool) -> Result<(), String> {
        ip(&[
            "-n",
            &slot.netns,
            "link",
            "set",
            &slot.link,
            if up { "up" } else { "down" },
        ])
        .map(|_| ())
    }

    /// The namespaces, bridge and bridge ports this network created: what a
    /// test may check is gone after the drop.
    pub fn names(&self) -> (Vec<String>, Vec<String>) {
        let mut links = self.bridge_ports.clone();
        links.push(self.bridge.clone());
        (self.namespaces.clone(), links)
    }
}

impl Drop for Network {
    /// Whatever happened: no process of the test left in its namespaces, no
    /// namespace, veth or bridge left behind.
    fn drop(&mut self) {
        for netns in &self.namespaces {
            kill_namespace(netns);
            if let Err(e) = ip(&["netns", "del", netns]) {
                eprintln!("teardown: {e}");
            }
        }
        // Deleting a namespace deletes its veths and so their peers on the
        // bridge; a port whose namespace was never made is deleted here.
        for port in &self.bridge_ports {
            if ip(&["link", "show", port]).is_ok() {
                let _ = ip(&["link", "del", port]);
            }
        }
        if let Err(e) = ip(&["link", "del", &self.bridge]) {
            eprintln!("teardown: {e}");
        }
    }
}

/// Runs `f` on a thread of its own that entered network namespace `netns`
/// first, and returns its result: sockets `f` opens live in that namespace.
/// The calling thread's namespace does not change.
pub fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> Result<T, String> {
    let handle = open_netns(netns)?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                enter_netns(&handle, netns)?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn open_netns(netns: &str) -> Result<fs::File, String> {
    let path = Path::new("/run/netns").join(netns);
    fs::File::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// Moves the calling thread into the namespace `handle` refers to.
fn enter_netns(handle: &fs::File, netns: &str) -> Result<(), String> {
    // SAFETY: setns(2) only reads the descriptor, which `handle` keeps open
    // for the call, and changes the network namespace of the calling thread
    // alone; callers call it on threads of their own that live in it.
    let rc = unsafe { nix::libc::setns(handle.as_raw_fd(), nix::libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "cannot enter network namespace {netns}: {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// `GET path` on `addr`, bounded by `limit` for connecting and again for
/// the answer. Not the harness's `http`, which is on loopback only.
pub fn http_get(addr: SocketAddr, path: &str, limit: Duration) -> std::io::Result<HttpAnswer> {
    let mut s = TcpStream::connect_timeout(&addr, limit)?;
    s.set_read_timeout(Some(limit))?;
    s.set_write_timeout(Some(limit))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.take(1 << 20).read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok(HttpAnswer { status, body })
}

/// `GET /status` as JSON, when the agent at `api` answers 200.
fn status_at(api: SocketAddr) -> Option<serde_json::Value> {
    let a = http_get(api, "/status", HTTP_TIMEOUT * 2).ok()?;
    (a.status == 200)
        .then(|| serde_json::from_str(&a.body).ok())
        .flatten()
}

/// Whether a status document is a running primary's.
pub fn is_running_primary(doc: &serde_json::Value) -> bool {
    doc["role"] == "primary" && doc["state"] == "running"
}

/// Whether a status document is a replica's whose receiver streams.
pub fn is_streaming_replica(doc: &serde_json::Value) -> bool {
    doc["role"] == "replica" && doc["wal_receiver"]["status"] == "streaming"
}

/// Runs `work` to completion on a current-thread runtime on a thread of
/// its own: usable from a plain test and from inside a runtime alike.
fn block_on<T: Send>(work: impl Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime")
                    .block_on(work)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Runs `sql` (simple query protocol: every value as text) as the superuser
/// on PostgreSQL at `pg`, from the calling thread's namespace; the rows of
/// every statement, in order.
pub fn sql(pg: SocketAddr, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    block_on(async {
        let client = connect(pg).await.map_err(|e| e.to_string())?;
        let messages = bounded(Duration::from_secs(30), "query", client.simple_query(sql))
            .await
            .map_err(|e| e.to_string())?;
        Ok(messages
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    })
}

/// Which of `ids` the table `writer_ids` on PostgreSQL at `pg` holds.
pub fn present_ids(pg: SocketAddr, ids: &[i64]) -> Result<HashSet<i64>, String> {
    block_on(async {
        let client = connect(pg).await.map_err(|e| e.to_string())?;
        let rows = bounded(
            Duration::from_secs(30),
            "SELECT of the acknowledged ids",
            client.query("SELECT id FROM writer_ids WHERE id = ANY($1)", &[&ids]),
        )
        .await
        .map_err(|e| e.to_string())?;
        rows.iter()
            .map(|r| r.try_get::<_, i64>(0).map_err(|e| chain(&e)))
            .collect()
    })
}

/// One data member in its namespace: its files, and its agent when running.
pub struct NetNode {
    /// Member name.
    pub name: String,
    /// Where it lives on the network.
    pub slot: Slot,
    /// Its directory (configuration, logs, data, socket).
    pub dir: PathBuf,
    /// The configuration file.
    pub config: PathBuf,
    /// `data_dir`.
    pub data_dir: PathBuf,
    /// `socket_dir`.
    pub socket_dir: PathBuf,
    agent: Option<Child>,
    log: PathBuf,
}

impl NetNode {
    /// The agent's API address.
    pub fn api(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.slot.addr), API_PORT)
    }

    /// PostgreSQL's address.
    pub fn pg(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.slot.addr), PG_PORT)
    }

    /// The writer's view of this member.
    pub fn target(&self) -> WriteTarget {
        WriteTarget {
            name: self.name.clone(),
            api: self.api(),
            pg: self.pg(),
        }
    }

    /// Starts `ip netns exec <ns> pgwarden run` (which execs the agent, so
    /// the child is the agent), its log in the node's directory.
    pub fn start(&mut self) {
        assert!(self.agent.is_none(), "{} already running", self.name);
        let n = fs::read_dir(&self.dir).map(|d| d.count()).unwrap_or(0);
        self.log = self.dir.join(format!("agent-{n}.log"));
        let log = fs::File::create(&self.log).expect("log");
        let err = log.try_clone().expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.slot.netns])
            .arg(pgwarden_bin())
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env("PGWARDEN_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn ip netns exec pgwarden");
        self.agent = Some(child);
    }

    /// The agent's pid.
    pub fn agent_pid(&self) -> Option<i32> {
        self.agent.as_ref().map(|c| c.id() as i32)
    }

    /// kill -9 of the agent (PostgreSQL keeps running).
    pub fn kill_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The agent's log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The postmaster's pid from `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// `GET /status` from the root namespace (over the bridge: fails while
    /// the node is partitioned).
    pub fn status(&self) -> Option<serde_json::Value> {
        status_at(self.api())
    }

    /// `GET /status` from inside the node's own namespace (works while it is
    /// partitioned).
    pub fn status_inside(&self) -> Option<serde_json::Value> {
        let api = self.api();
        in_netns(&self.slot.netns, move || status_at(api))
            .ok()
            .flatten()
    }

    /// Runs SQL as the superuser over TCP from inside the node's namespace.
    pub fn sql_inside(&self, text: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        let pg = self.pg();
        in_netns(&self.slot.netns, move || sql(pg, text))?
    }

    /// Cuts the node off the bridge (its veth down).
    pub fn partition(&self) {
        Network::set_link(&self.slot, false).expect("partition");
    }

    /// Puts the node back on the bridge.
    pub fn heal(&self) {
        Network::set_link(&self.slot, true).expect("heal");
    }

    /// Waits until `/status` (from the root namespace) satisfies `pred`;
    /// the last document and the log are in the panic.
    pub fn wait_status(
        &self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        let mut last = None;
        loop {
            if let Some(doc) = self.status() {
                if pred(&doc) {
                    return doc;
                }
                last = Some(doc);
            }
            let exited = self.agent_pid().is_some_and(|pid| !process_alive(pid));
            if exited || Instant::now() > deadline {
                panic!(
                    "{}: {} waiting for {what}; last status: {}\nagent log:\n{}",
                    self.name,
                    if exited {
                        "the agent exited".to_string()
                    } else {
                        format!("timed out after {limit:?}")
                    },
                    last.map(|d| d.to_string()).unwrap_or_else(|| "none".into()),
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop_postgres_hard(&self) {
        if let Some(pid) = self.postmaster_pid() {
            let pid = Pid::from_raw(pid);
            if kill(pid, Signal::SIGQUIT).is_ok() {
                let deadline = Instant::now() + Duration::from_secs(10);
                while kill(pid, None).is_ok() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
    }

    /// The fence guard runs in its own process group, so it outlives a
    /// killed agent; it exits once the postmaster is gone, but do not rely
    /// on that in a teardown.
    fn kill_fence_guard(&self) {
        let pid_file = format!("{}.fence.pid", self.data_dir.display());
        let Some(pid) = fs::read_to_string(pid_file)
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse::<i32>().ok())
        else {
            return;
        };
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("fence-guard") {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

impl Drop for NetNode {
    /// Whatever happened, nothing this node started outlives it.
    fn drop(&mut self) {
        self.kill_agent();
        self.stop_postgres_hard();
        self.kill_fence_guard();
        if std::thread::panicking() {
            eprintln!("--- agent log of {} ---\n{}", self.name, self.log_text());
        }
    }
}

/// Data members in namespaces on one bridge, sharing one member list.
/// Dropping it stops everything and removes the namespaces, the bridge and
/// the files, in that order.
pub struct NetCluster {
    /// The nodes, in member order.
    pub nodes: Vec<NetNode>,
    /// Their network (dropped after the nodes).
    pub net: Network,
    /// The files.
    pub dir: TestDir,
    /// This test's share of the machine (dropped last: see [`crate::slots`]).
    _slots: Arc<crate::slots::Slots>,
}

impl NetCluster {
    /// Members `names`, each in a namespace of its own, configurations
    /// written (`ttl`, `loop_wait` as given; `fsync = off`; pg_hba lets the
    /// whole test subnet in with the superuser's password, for the test's
    /// own connections). Errors when the network cannot be built.
    pub fn new(names: &[&str], ttl: &str, loop_wait: &str) -> Result<NetCluster, String> {
        let slots = crate::slots::for_this_test(names.len());
        let dir = TestDir::new();
        let mut net = Network::create()?;
        let secrets = dir.path().join("secrets");
        fs::create_dir_all(&secrets).map_err(|e| format!("secrets dir: {e}"))?;
        write_secret(&secrets.join("cluster.secret"), "cluster-secret-for-tests");
        write_secret(&secrets.join("replicator.pass"), "rep'l:pass");
        write_secret(&secrets.join("postgres.pass"), SUPERUSER_PASSWORD);
        write_secret(&secrets.join("api.token"), "api-token");
        let mut nodes = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let slot = net.add_namespace(i as u8 + 1, name)?;
            let node_dir = dir.path().join(name);
            fs::create_dir_all(&node_dir).map_err(|e| format!("node dir: {e}"))?;
            fs::set_permissions(&node_dir, fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("chmod: {e}"))?;
            nodes.push(NetNode {
                name: name.to_string(),
                slot,
                config: node_dir.join("pgwarden.toml"),
                data_dir: node_dir.join("data"),
                socket_dir: node_dir.join("socket"),
                dir: node_dir,
                agent: None,
                log: PathBuf::new(),
            });
        }
        let mut members = String::new();
        for n in &nodes {
            let _ = writeln!(
                members,
                "  {{ name = \"{}\", api_url = \"http://{}\", host = \"{}\" }},",
                n.name,
                n.api(),
                n.slot.addr
            );
        }
        for n in &nodes {
            let text = format!(
                r#"[node]
name = "{name}"
data_dir = "{data}"
bin_dir = "{bin}"

[api]
listen = "{api}"
token_file = "{secrets}/api.token"

[cluster]
name = "test"
secret_file = "{secrets}/cluster.secret"
ttl = "{ttl}"
loop_wait = "{loop_wait}"
members = [
{members}]

[postgresql]
listen_addresses = "{addr}"
port = {pg_port}
socket_dir = "{socket}"
pg_hba = ["host all all {cidr} scram-sha-256"]
parameters = {{ fsync = false, shared_buffers = "16MB", max_connections = 30 }}

[replication]
password_file = "{secrets}/replicator.pass"
superuser_password_file = "{secrets}/postgres.pass"
"#,
                name = n.name,
                data = n.data_dir.display(),
                bin = pg_bin_dir().display(),
                api = n.api(),
                secrets = secrets.display(),
                addr = n.slot.addr,
                pg_port = PG_PORT,
                socket = n.socket_dir.display(),
                cidr = net.cidr(),
            );
            fs::write(&n.config, text).map_err(|e| format!("write config: {e}"))?;
        }
        Ok(NetCluster {
            nodes,
            net,
            dir,
            _slots: slots,
        })
    }

    /// Starts every agent.
    pub fn start_all(&mut self) {
        for n in &mut self.nodes {
            n.start();
        }
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> &NetNode {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    /// Every member, as the writer sees it.
    pub fn targets(&self) -> Vec<WriteTarget> {
        self.nodes.iter().map(NetNode::target).collect()
    }

    /// Every agent's log, one after the other.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let _ = writeln!(out, "--- {} ---\n{}", n.name, n.log_text());
        }
        out
    }

    /// Waits (from the root namespace) until `members` are one running
    /// primary and streaming replicas, for up to `limit`; returns the primary.
    pub fn wait_streaming(&self, members: &[&str], limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let docs: Vec<(String, Option<serde_json::Value>)> = members
                .iter()
                .map(|m| (m.to_string(), self.node(m).status()))
                .collect();
            let primaries: Vec<&String> = docs
                .iter()
                .filter(|(_, d)| d.as_ref().is_some_and(is_running_primary))
                .map(|(n, _)| n)
                .collect();
            let streaming = docs
                .iter()
                .filter(|(_, d)| d.as_ref().is_some_and(is_streaming_replica))
                .count();
            if primaries.len() == 1 && streaming == members.len() - 1 {
                return primaries[0].clone();
            }
            if Instant::now() > deadline {
                let brief: Vec<String> = docs
                    .iter()
                    .map(|(n, d)| match d {
                        Some(d) => format!(
                            "{n}: role={} state={} receiver={} reason={}",
                            d["role"], d["state"], d["wal_receiver"]["status"], d["reason"]
                        ),
                        None => format!("{n}: no answer"),
                    })
                    .collect();
                panic!(
                    "{members:?} did not become one primary and streaming replicas within {limit:?}: {brief:#?}"
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A member as a [`NetWriter`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteTarget {
    /// The member's name, as used in the log.
    pub name: String,
    /// The agent's API (`GET /primary`).
    pub api: SocketAddr,
    /// PostgreSQL.
    pub pg: SocketAddr,
}

/// The ids the writers of one test hand out, shared so that writers in
/// different namespaces never insert the same id: routed writes count up
/// from 1, direct checks down from -1.
#[derive(Debug)]
pub struct Ids {
    routed: AtomicI64,
    direct: AtomicI64,
}

impl Ids {
    /// Fresh counters, for an empty `writer_ids`, to share among writers.
    pub fn shared() -> Arc<Ids> {
        Arc::new(Ids {
            routed: AtomicI64::new(1),
            direct: AtomicI64::new(-1),
        })
    }

    fn next_routed(&self) -> i64 {
        self.routed.fetch_add(1, Ordering::SeqCst)
    }

    fn next_direct(&self) -> i64 {
        self.direct.fetch_sub(1, Ordering::SeqCst)
    }
}

/// One acknowledged write. The commit happened between `sent` and `acked`:
/// `acked` is an upper bound of its time, `sent` a lower bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The id inserted (routed > 0, direct < 0).
    pub id: i64,
    /// The member that acknowledged it.
    pub member: String,
    /// When the INSERT was sent.
    pub sent: Instant,
    /// When the OK came back.
    pub acked: Instant,
}

/// One failed write (or failed connection for one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The member.
    pub member: String,
    /// When the failure was seen.
    pub at: Instant,
    /// The error.
    pub why: String,
}

/// What one or more [`NetWriter`]s saw.
#[derive(Debug, Clone, Default)]
pub struct WriteLog {
    /// Acknowledged writes, in the order they were acknowledged.
    pub acks: Vec<Ack>,
    /// Failed writes, in time order.
    pub refusals: Vec<Refusal>,
    /// The moments the routed writer connected to the member `/primary` named.
    pub routes: Vec<(Instant, String)>,
}

impl WriteLog {
    /// Both logs in one, in time order.
    pub fn merged(mut self, other: WriteLog) -> WriteLog {
        self.acks.extend(other.acks);
        self.refusals.extend(other.refusals);
        self.routes.extend(other.routes);
        self.acks.sort_by_key(|a| a.acked);
        self.refusals.sort_by_key(|r| r.at);
        self.routes.sort_by_key(|(at, _)| *at);
        self
    }

    /// `member`'s acknowledged writes, in time order.
    pub fn acks_of<'a>(&'a self, member: &'a str) -> impl Iterator<Item = &'a Ack> + 'a {
        self.acks.iter().filter(move |a| a.member == member)
    }

    /// `member`'s last acknowledged write.
    pub fn last_ack(&self, member: &str) -> Option<&Ack> {
        self.acks
            .iter()
            .filter(|a| a.member == member)
            .max_by_key(|a| a.acked)
    }

    /// `member`'s first acknowledged write (by the time it was sent).
    pub fn first_ack(&self, member: &str) -> Option<&Ack> {
        self.acks
            .iter()
            .filter(|a| a.member == member)
            .min_by_key(|a| a.sent)
    }

    /// `member`'s first refusal strictly after `t`.
    pub fn first_refusal_after(&self, member: &str, t: Instant) -> Option<&Refusal> {
        self.refusals
            .iter()
            .find(|r| r.member == member && r.at > t)
    }

    /// The log as a [`WriterReport`] (accepts at acknowledgement time), for
    /// its reigns, overlaps and summary.
    pub fn report(&self, started: Instant, stopped: Instant) -> WriterReport {
        let mut report = WriterReport {
            started,
            stopped,
            acked: self
                .acks
                .iter()
                .map(|a| (a.id, a.member.clone(), a.acked))
                .collect(),
            accepts: Default::default(),
            refusals: Default::default(),
            routes: self.routes.clone(),
        };
        for a in &self.acks {
            report
                .accepts
                .entry(a.member.clone())
                .or_default()
                .push(a.acked);
        }
        for r in &self.refusals {
            report
                .refusals
                .entry(r.member.clone())
                .or_default()
                .push((r.at, r.why.clone()));
        }
        for accepts in report.accepts.values_mut() {
            accepts.sort();
        }
        report
    }
}

#[derive(Clone, Default)]
struct SharedLog(Arc<Mutex<WriteLog>>);

impl SharedLog {
    fn lock(&self) -> MutexGuard<'_, WriteLog> {
        // A panic while pushing leaves the vectors intact; keep recording.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn accepted(&self, id: i64, member: &str, sent: Instant) {
        let acked = Instant::now();
        self.lock().acks.push(Ack {
            id,
            member: member.to_string(),
            sent,
            acked,
        });
    }

    fn refused(&self, member: &str, why: String) {
        let at = Instant::now();
        self.lock().refusals.push(Refusal {
            member: member.to_string(),
            at,
            why,
        });
    }

    fn routed(&self, member: &str) {
        let at = Instant::now();
        self.lock().routes.push((at, member.to_string()));
    }
}

/// A writer like [`crate::writer::Writer`] for members on any address, on
/// a thread of its own (with its own tokio runtime), optionally inside a
/// network namespace. Two kinds of writes: *routed* ones go to the member
/// whose agent answers `GET /primary` with 200 and stay there while it
/// acknowledges; *direct* ones try every target every period, whatever the
/// agents say. The table must exist ([`CREATE_TABLE`]) before it starts.
/// [`NetWriter::stop`] ends it; dropping it stops it too.
pub struct NetWriter {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    log: SharedLog,
}

impl NetWriter {
    /// From the calling process's namespace: routed writes across
    /// `targets` and a direct check on each every `every`.
    pub fn start(targets: Vec<WriteTarget>, every: Duration, ids: Arc<Ids>) -> NetWriter {
        NetWriter::spawn(None, targets, true, every, ids).expect("start the writer")
    }

    /// From inside `netns`: direct checks only, on `target` every `every`
    /// (for a member the outside cannot reach while it is partitioned).
    pub fn start_direct_in(
        netns: &str,
        target: WriteTarget,
        every: Duration,
        ids: Arc<Ids>,
    ) -> Result<NetWriter, String> {
        NetWriter::spawn(Some(netns), vec![target], false, every, ids)
    }

    fn spawn(
        netns: Option<&str>,
        targets: Vec<WriteTarget>,
        routed: bool,
        every: Duration,
        ids: Arc<Ids>,
    ) -> Result<NetWriter, String> {
        let handle = netns.map(open_netns).transpose()?;
        let netns = netns.unwrap_or("the root namespace").to_string();
        let (stop, stop_rx) = watch::channel(false);
        let (entered, entered_rx) = std::sync::mpsc::channel();
        let log = SharedLog::default();
        let thread_log = log.clone();
        let thread = std::thread::Builder::new()
            .name("netns-writer".into())
            .spawn(move || {
                let entered_ok = handle
                    .as_ref()
                    .map(|h| enter_netns(h, &netns))
                    .unwrap_or(Ok(()));
                let failed = entered_ok.is_err();
                let _ = entered.send(entered_ok);
                if failed {
                    return;
                }
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the writer's tokio runtime");
                runtime.block_on(run(targets, routed, every, ids, thread_log, stop_rx));
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|e| format!("spawn the writer thread: {e}"))?;
        let writer = NetWriter {
            stop,
            thread: Some(thread),
            log,
        };
        entered_rx
            .recv()
            .map_err(|_| "the writer thread died".to_string())??;
        Ok(writer)
    }

    /// What it saw so far.
    pub fn snapshot(&self) -> WriteLog {
        self.log.lock().clone()
    }

    /// Stops writing, waits for the thread, and returns the log. Writes in
    /// flight are abandoned: neither acknowledged nor refused.
    pub fn stop(mut self) -> WriteLog {
        self.join();
        std::mem::take(&mut *self.log.lock())
    }

    fn join(&mut self) {
        self.stop.send_replace(true);
        if let Some(thread) = self.thread.take() {
            if let Err(panic) = thread.join() {
                if !std::thread::panicking() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }
}

impl Drop for NetWriter {
    /// A test that fails before `stop` leaves no writer behind.
    fn drop(&mut self) {
        self.join();
    }
}

/// The writer's tasks, until stopped or [`MAX_RUN`].
async fn run(
    targets: Vec<WriteTarget>,
    routed: bool,
    every: Duration,
    ids: Arc<Ids>,
    log: SharedLog,
    mut stop: watch::Receiver<bool>,
) {
    let mut tasks = JoinSet::new();
    if routed {
        tasks.spawn(routed_writes(targets.clone(), ids.clone(), log.clone()));
    }
    for target in targets {
        tasks.spawn(direct_checks(target, every, ids.clone(), log.clone()));
    }
    tokio::select! {
        // An error means the sender is gone: stop too.
        _ = stop.wait_for(|s| *s) => {}
        _ = sleep(MAX_RUN) => {}
    }
    // Dropping a task mid-statement abandons that write, which is what
    // stopping means.
    tasks.shutdown().await;
}

/// Why a write (or the connection for one) failed.
#[derive(Debug)]
enum Failure {
    Postgres(tokio_postgres::Error),
    TimedOut { what: &'static str, after: Duration },
}

impl Failure {
    /// A standby's refusal leaves the session usable; anything else may not.
    fn keeps_connection(&self) -> bool {
        matches!(self, Failure::Postgres(e) if e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Postgres(e) => f.write_str(&chain(e)),
            Failure::TimedOut { what, after } => write!(f, "{what} timed out after {after:?}"),
        }
    }
}

/// An error with its causes: tokio-postgres keeps the interesting part in
/// `source`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let _ = write!(text, ": {c}");
        cause = c.source();
    }
    text
}

async fn bounded<T>(
    limit: Duration,
    what: &'static str,
    work: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, Failure> {
    match timeout(limit, work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::Postgres(e)),
        Err(_) => Err(Failure::TimedOut { what, after: limit }),
    }
}

/// A superuser session on PostgreSQL at `pg`, from the calling thread's
/// namespace.
async fn connect(pg: SocketAddr) -> Result<Client, Failure> {
    let mut config = tokio_postgres::Config::new();
    config
        .hostaddr(pg.ip())
        .port(pg.port())
        .user("postgres")
        .password(SUPERUSER_PASSWORD)
        .dbname("postgres")
        .application_name("pgwarden-tests-netns-writer")
        .connect_timeout(CONNECT_TIMEOUT);
    let (client, connection) =
        bounded(CONNECT_TIMEOUT, "connecting", config.connect(NoTls)).await?;
    // The connection's own error reaches us through the next statement.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Whether the agent at `api` answers `GET /primary` with 200 within
/// [`HTTP_TIMEOUT`].
async fn answers_primary(api: SocketAddr) -> bool {
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(api).await?;
        stream
            .write_all(
                format!("GET /primary HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut answer = Vec::new();
        stream.take(1 << 20).read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    match timeout(HTTP_TIMEOUT, ask).await {
        Ok(Ok(answer)) => String::from_utf8_lossy(&answer)
            .split_whitespace()
            .nth(1)
            .is_some_and(|code| code == "200"),
        _ => false,
    }
}

/// The first target, in order, whose agent says it is the primary; all are
/// asked at once, so unreachable ones cost one timeout, not one each.
async fn find_primary(targets: &[WriteTarget]) -> Option<&WriteTarget> {
    let asks: Vec<_> = targets
        .iter()
        .map(|t| tokio::spawn(answers_primary(t.api)))
        .collect();
    let mut found = None;
    for (target, ask) in targets.iter().zip(asks) {
        if ask.await.unwrap_or(false) && found.is_none() {
            found = Some(target);
        }
    }
    found
}

/// Routed writes: find the primary, stay on it while it acknowledges (the
/// harshest client for fencing), find it again after a failure.
async fn routed_writes(targets: Vec<WriteTarget>, ids: Arc<Ids>, log: SharedLog) {
    loop {
        let Some(target) = find_primary(&targets).await else {
            sleep(Duration::from_millis(100)).await;
            continue;
        };
        let client = match connect(target.pg).await {
            Ok(client) => client,
            Err(e) => {
                log.refused(&target.name, format!("routed write: {e}"));
                sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        log.routed(&target.name);
        loop {
            // An id whose insert failed is never reused: it may have
            // committed anyway.
            let id = ids.next_routed();
            let sent = Instant::now();
            match bounded(STATEMENT_TIMEOUT, "INSERT", client.execute(INSERT, &[&id])).await {
                Ok(_) => {
                    log.accepted(id, &target.name, sent);
                    sleep(Duration::from_millis(10)).await;
                }
                Err(e) => {
                    log.refused(&target.name, format!("routed write of id {id}: {e}"));
                    break;
                }
            }
        }
        sleep(Duration::from_millis(100)).await;
    }
}

/// Direct checks on one member: an insert every `every`, whatever its
/// agent says.
async fn direct_checks(target: WriteTarget, every: Duration, ids: Arc<Ids>, log: SharedLog) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut session: Option<Client> = None;
    loop {
        tick.tick().await;
        let client = match session.take() {
            Some(client) if !client.is_closed() => client,
            _ => match connect(target.pg).await {
                Ok(client) => client,
                Err(e) => {
                    log.refused(&target.name, format!("direct check: {e}"));
                    continue;
                }
            },
        };
        let id = ids.next_direct();
        let sent = Instant::now();
        match bounded(STATEMENT_TIMEOUT, "INSERT", client.execute(INSERT, &[&id])).await {
            Ok(_) => {
                log.accepted(id, &target.name, sent);
                session = Some(client);
            }
            Err(e) => {
                log.refused(&target.name, format!("direct check of id {id}: {e}"));
                if e.keeps_connection() {
                    session = Some(client);
                }
            }
        }
    }
}

/// A connection storm on one member's PostgreSQL, from inside its
/// namespace: it takes every connection slot, and keeps the agent's own
/// probe out (its session is terminated, and the slot it freed taken
/// again) until dropped — the overloaded primary whose agent can no longer
/// see whether it takes writes, while sessions opened before still can.
pub struct ConnectionStorm {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    held: Arc<AtomicI64>,
}

impl ConnectionStorm {
    /// Starts the storm on `pg` from inside `netns`.
    pub fn start(netns: &str, pg: SocketAddr) -> Result<ConnectionStorm, String> {
        let handle = open_netns(netns)?;
        let netns = netns.to_string();
        let (stop, mut stop_rx) = watch::channel(false);
        let held = Arc::new(AtomicI64::new(0));
        let counter = held.clone();
        let thread = std::thread::Builder::new()
            .name("connection-storm".into())
            .spawn(move || {
                if let Err(e) = enter_netns(&handle, &netns) {
                    eprintln!("connection storm: {e}");
                    return;
                }
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the storm's tokio runtime");
                runtime.block_on(async move {
                    let mut clients = Vec::new();
                    loop {
                        // Take every free slot.
                        while let Ok(client) = connect(pg).await {
                            clients.push(client);
                            counter.store(clients.len() as i64, Ordering::Relaxed);
                        }
                        // Keep the agent's probe out: end its session; the
                        // slot it frees is taken at the next turn.
                        if let Some(c) = clients.first() {
                            let _ = c
                                .simple_query(
                                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                                     WHERE application_name = 'pgwarden'",
                                )
                                .await;
                        }
                        tokio::select! {
                            _ = stop_rx.wait_for(|s| *s) => break,
                            _ = sleep(Duration::from_millis(20)) => {}
                        }
                    }
                    drop(clients);
                });
            })
            .map_err(|e| format!("spawn the connection storm: {e}"))?;
        Ok(ConnectionStorm {
            stop,
            thread: Some(thread),
            held,
        })
    }

    /// How many sessions it holds.
    pub fn held(&self) -> i64 {
        self.held.load(Ordering::Relaxed)
    }
}

impl Drop for ConnectionStorm {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
