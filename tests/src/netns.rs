//! Members in network namespaces, for partition tests: each member of a
//! [`NetCluster`] (its agent, PostgreSQL and fence guard) runs in a network
//! namespace of its own, wired by a veth pair to one bridge in the root
//! namespace. A test cuts a member off with [`NetCluster::partition`] while
//! the member keeps running, watches it from inside its namespace
//! ([`Node::status_inside`], a [`crate::writer::Writer`] started with
//! [`crate::writer::WriterOptions::netns`]) and from the majority's side
//! (the root namespace, which reaches every member over the bridge), then
//! heals it with [`NetCluster::heal`].
//!
//! The members are the harness's own [`Node`]s, placed at their
//! namespace's address ([`crate::Placement`]): what differs from loopback
//! is only where they listen and where their agent runs.
//!
//! # Layout
//! - [`Network`]: the bridge (`pgwbrX`, 10.213.X.1/24) and the namespaces
//!   (`pgwX-<member>`, member *i* at 10.213.X.(10+i)); X is picked per run.
//!   Dropping it kills whatever still runs in its namespaces and deletes
//!   them and the bridge.
//! - [`NetCluster`]: [`Node`]s in namespaces on one [`Network`] (API on
//!   port [`API_PORT`], PostgreSQL on [`PG_PORT`]), and the partitions.
//! - [`in_netns`]: runs a closure on a thread that entered a namespace.
//! - [`ConnectionStorm`]: every connection slot of a member's PostgreSQL
//!   taken from inside its namespace.
//!
//! Every address here exists only on the test's own bridge and veths: no
//! traffic leaves for anything the test did not create. Everything needs
//! root (`CAP_NET_ADMIN` for links, `CAP_SYS_ADMIN` for `setns`).

use std::fmt::Write as _;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;
use tokio::time::sleep;

use crate::writer::{block_on, bounded, connect, WriterTarget};
use crate::{MemberEntry, Node, Placement, TestDir};

/// The agents' API port, the same in every namespace.
pub const API_PORT: u16 = 8008;

/// PostgreSQL's port, the same in every namespace.
pub const PG_PORT: u16 = 5432;

/// How long one request of the harness to a member's API may take
/// (connecting included): a partitioned member costs the caller at most this.
pub const API_TIMEOUT: Duration = Duration::from_secs(2);

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

/// The handle of network namespace `netns`, for [`enter_netns`].
pub(crate) fn open_netns(netns: &str) -> Result<fs::File, String> {
    let path = Path::new("/run/netns").join(netns);
    fs::File::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// Moves the calling thread into the namespace `handle` refers to.
pub(crate) fn enter_netns(handle: &fs::File, netns: &str) -> Result<(), String> {
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

/// What only a node in a namespace of its own can be asked.
impl Node {
    /// `GET /status` from inside the node's own namespace (works while it
    /// is partitioned); from the test's namespace for a node without one.
    pub fn status_inside(&self) -> Option<serde_json::Value> {
        match &self.placement.netns {
            None => self.status(),
            Some(netns) => in_netns(netns, || self.status()).ok().flatten(),
        }
    }

    /// Runs SQL as the superuser over TCP from inside the node's namespace.
    pub fn sql_inside(&self, text: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        let pg = self.pg_addr();
        match &self.placement.netns {
            None => sql(pg, text),
            Some(netns) => in_netns(netns, move || sql(pg, text))?,
        }
    }
}

/// Data members in namespaces on one bridge, sharing one member list.
/// Dropping it stops everything and removes the namespaces, the bridge and
/// the files, in that order.
pub struct NetCluster {
    /// The nodes, in member order.
    pub nodes: Vec<Node>,
    /// Each node's place on the network, in the same order.
    pub places: Vec<Slot>,
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
        NetCluster::build(names, &[], ttl, loop_wait, |_| {})
    }

    /// [`NetCluster::new`] with `witnesses` among `names` (agents without
    /// PostgreSQL), each node passed to `configure` (replication mode, say)
    /// before the configurations are written.
    pub fn build(
        names: &[&str],
        witnesses: &[&str],
        ttl: &str,
        loop_wait: &str,
        configure: impl Fn(&mut Node),
    ) -> Result<NetCluster, String> {
        let slots = crate::slots::for_this_test(names.len());
        let dir = TestDir::new();
        let mut net = Network::create()?;
        let mut nodes = Vec::new();
        let mut places = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let slot = net.add_namespace(i as u8 + 1, name)?;
            let placement = Placement {
                addr: IpAddr::V4(slot.addr),
                netns: Some(slot.netns.clone()),
            };
            let mut node = Node::placed(dir.path(), name, placement);
            // Every namespace has its own ports: the usual ones do.
            node.api_port = API_PORT;
            node.pg_port = PG_PORT;
            node.api_timeout = API_TIMEOUT;
            node.pg_hba = vec![format!("host all all {} scram-sha-256", net.cidr())];
            node.extra_parameters = vec!["max_connections = 30".into()];
            node.ttl = ttl.to_string();
            node.loop_wait = loop_wait.to_string();
            configure(&mut node);
            nodes.push(node);
            places.push(slot);
        }
        let members: Vec<MemberEntry> = nodes
            .iter()
            .map(|n| MemberEntry::of(n, witnesses.contains(&n.name.as_str())))
            .collect();
        for node in &mut nodes {
            node.write_members(&members);
        }
        Ok(NetCluster {
            nodes,
            places,
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
    pub fn node(&self, name: &str) -> &Node {
        &self.nodes[self.index(name)]
    }

    /// Where the node called `name` is on the network.
    pub fn slot(&self, name: &str) -> &Slot {
        &self.places[self.index(name)]
    }

    fn index(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    /// Cuts the node called `name` off the bridge (its veth down); it keeps
    /// running.
    pub fn partition(&self, name: &str) {
        Network::set_link(self.slot(name), false).expect("partition");
    }

    /// Puts the node called `name` back on the bridge.
    pub fn heal(&self, name: &str) {
        Network::set_link(self.slot(name), true).expect("heal");
    }

    /// Every member, as the writer sees it.
    pub fn targets(&self) -> Vec<WriterTarget> {
        self.nodes.iter().map(WriterTarget::of).collect()
    }

    /// Every agent's log, one after the other.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let _ = writeln!(out, "--- {} ---\n{}", n.name, n.log_text());
        }
        out
    }

    /// The last `lines` lines of every agent's current log.
    pub fn logs_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let text = n.log_text();
            let all: Vec<&str> = text.lines().collect();
            let _ = writeln!(out, "--- {} (last {lines} lines) ---", n.name);
            for line in &all[all.len().saturating_sub(lines)..] {
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }

    /// Waits (from the root namespace) until `members` are one running
    /// primary and streaming replicas, for up to `limit`; returns the primary.
    pub fn wait_streaming(&self, members: &[&str], limit: Duration) -> String {
        crate::wait_streaming(&self.nodes, members, limit)
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
