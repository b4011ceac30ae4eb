//! The cluster harness for pgwarden's integration tests: real agents (the
//! built `pgwarden` binary), real PostgreSQL, real HTTP, on loopback or in
//! network namespaces, each test in its own temporary directory with ports
//! from the OS, and a guard that stops everything the test started even
//! when it fails.
//!
//! # Layout
//! - [`TestDir`], [`Node`], [`Cluster`]: a test's files, one member (its
//!   configuration, its agent, requests to its API, psql), a member list.
//!   A node runs where its [`Placement`] says: loopback by default, or an
//!   address in a network namespace ([`netns`] builds those).
//! - [`writer`]: the client that writes through failovers and reports what
//!   it was told, for members on any address, from any namespace.
//! - [`netns`]: namespaces on a bridge, partitions, [`netns::NetCluster`].
//! - [`slots`]: how many agents run on the machine at once.
//! - [`tls`]: certificates and an HTTPS client for TLS clusters.

pub mod bench;
pub mod chaos;
pub mod netns;
pub mod slots;
pub mod tls;
pub mod writer;

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Generous bound for anything a cluster does on a loaded 2-core machine.
pub const SLOW: Duration = Duration::from_secs(90);

/// The API token every test cluster's `api.token_file` holds.
pub const API_TOKEN: &str = "api-token";

/// The `pgwarden` binary under test: `PGWARDEN_BIN`, else the debug build in
/// `CARGO_TARGET_DIR` or the workspace's `target/`.
pub fn pgwarden_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PGWARDEN_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let p = target.join("debug/pgwarden");
    assert!(
        p.is_file(),
        "{} does not exist: build it first (cargo build --workspace), or set PGWARDEN_BIN",
        p.display()
    );
    p
}

/// The PostgreSQL binaries directory used by the tests.
pub fn pg_bin_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("PGWARDEN_TEST_PG_BIN")
            .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
    )
}

/// Tests that run PostgreSQL need root here (the agent drops to `postgres`).
/// Returns false (the test should return early, and says so) when not root
/// outside CI; in CI (`CI=true`) a missing privilege is a failure.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    let msg = format!("{test}: needs root (the agent runs PostgreSQL as `postgres` from root); run the tests as root");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED {msg}");
    false
}

/// A free TCP port on loopback for a server a test starts later.
///
/// Not port 0's answer: that comes from the ephemeral range, where every
/// outgoing connection of every test (HTTP clients, psql, replication)
/// also takes its local port, so a port found free now may be some
/// client's by the time PostgreSQL binds it. Ports come instead from
/// 20000–31999, below the ephemeral range, each handed out once per
/// process (the start depends on the process id, so that concurrent test
/// binaries rarely meet), and checked free when handed out.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let start = (std::process::id() * 97) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (start + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-31999")
}

/// Polls `f` every 100 ms until it returns `Some`, or panics after `limit`
/// with `what` and the last state `describe` gives.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Checks `f` every 100 ms for `length`: panics with `what` and the
/// problem the first time it finds one (a property that must hold
/// throughout, such as "never primary").
pub fn holds_for(length: Duration, what: &str, mut f: impl FnMut() -> Result<(), String>) {
    let until = Instant::now() + length;
    while Instant::now() < until {
        if let Err(problem) = f() {
            panic!("{what} did not hold: {problem}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// Status code.
    pub status: u16,
    /// Body (empty for HEAD / OPTIONS).
    pub body: String,
}

impl HttpAnswer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Sends raw bytes to `port` and reads the whole answer (HTTP/1.1 with
/// `Connection: close`): lets tests send malformed requests too.
pub fn http_raw(port: u16, request: &[u8]) -> std::io::Result<HttpAnswer> {
    http_raw_waiting(port, request, Duration::from_secs(10))
}

/// [`http_raw`], waiting up to `limit` for the answer (operator actions
/// answer when they are over).
pub fn http_raw_waiting(port: u16, request: &[u8], limit: Duration) -> std::io::Result<HttpAnswer> {
    http_raw_to(loopback(port), request, limit)
}

/// `port` on 127.0.0.1.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// [`http_raw`] to `addr`, on any address: `limit` bounds connecting,
/// sending and waiting for the answer, so that an unreachable (partitioned)
/// agent costs the caller no more than that.
pub fn http_raw_to(
    addr: SocketAddr,
    request: &[u8],
    limit: Duration,
) -> std::io::Result<HttpAnswer> {
    let mut s = TcpStream::connect_timeout(&addr, limit)?;
    s.set_read_timeout(Some(limit))?;
    s.set_write_timeout(Some(limit))?;
    s.write_all(request)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
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

/// The raw text of an operator request with `token` and a JSON `body`.
pub fn operator_request(method: &str, path: &str, body: &str, token: Option<&str>) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A request with `method` on `path`.
pub fn http(port: u16, method: &str, path: &str) -> std::io::Result<HttpAnswer> {
    let req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    http_raw(port, req.as_bytes())
}

/// The tests' own directory: 0755 so that `postgres` can reach the data
/// directories inside; removed when dropped (a test's own scratch space).
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    /// A new directory.
    pub fn new() -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix("pgw-")
            .tempdir()
            .expect("temp dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        TestDir { dir }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes a 0600 secret file.
pub fn write_secret(path: &Path, secret: &str) {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("secret file");
    writeln!(f, "{secret}").expect("write secret");
}

/// Where a node runs and is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The address its agent's API and its PostgreSQL listen on, and that
    /// its peers and the harness connect to.
    pub addr: IpAddr,
    /// The network namespace (`ip netns` name) its agent, and so its
    /// PostgreSQL, runs in; `None`: the test's own.
    pub netns: Option<String>,
}

impl Placement {
    /// 127.0.0.1 in the test's own namespace: every node's unless a test
    /// says otherwise.
    pub fn loopback() -> Placement {
        Placement {
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            netns: None,
        }
    }
}

impl Default for Placement {
    fn default() -> Self {
        Placement::loopback()
    }
}

/// One entry of a cluster's member list, as a node's configuration
/// names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberEntry {
    /// Member name.
    pub name: String,
    /// Its agent's API address.
    pub api: SocketAddr,
    /// A witness (runs no PostgreSQL).
    pub witness: bool,
}

impl MemberEntry {
    /// `node`'s entry, at its placement's address.
    pub fn of(node: &Node, witness: bool) -> MemberEntry {
        MemberEntry {
            name: node.name.clone(),
            api: node.api_addr(),
            witness,
        }
    }
}

/// Whether a status document is a running primary's.
pub fn is_running_primary(doc: &serde_json::Value) -> bool {
    doc["role"] == "primary" && doc["state"] == "running"
}

/// Whether a status document is a replica's whose receiver streams.
pub fn is_streaming_replica(doc: &serde_json::Value) -> bool {
    doc["role"] == "replica" && doc["wal_receiver"]["status"] == "streaming"
}

/// How long one request of the harness to a node's API may take by
/// default: long enough for a loaded machine.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);

/// One node of a test cluster: its files, and its agent when running.
pub struct Node {
    /// Member name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The configuration file.
    pub config: PathBuf,
    /// Where it runs and is reached (loopback unless set otherwise before
    /// the configuration is written).
    pub placement: Placement,
    /// The API port.
    pub api_port: u16,
    /// The PostgreSQL port.
    pub pg_port: u16,
    /// How long one request to its API ([`Node::api`], [`Node::status`])
    /// may take.
    pub api_timeout: Duration,
    /// `postgresql.pg_hba` lines (none: the agent's defaults).
    pub pg_hba: Vec<String>,
    /// `data_dir`.
    pub data_dir: PathBuf,
    /// `socket_dir`.
    pub socket_dir: PathBuf,
    /// Extra `[postgresql.parameters]` lines.
    pub extra_parameters: Vec<String>,
    /// Extra `[replication]` lines (`synchronous = "quorum"`,
    /// `member_slot_ttl = "5s"`).
    pub replication_extra: Vec<String>,
    /// Extra `[node]` lines (`tags = { nofailover = true }`).
    pub node_extra: Vec<String>,
    /// `cluster.ttl` written into the configuration.
    pub ttl: String,
    /// `cluster.loop_wait` written into the configuration.
    pub loop_wait: String,
    /// The API's TLS (`https://` member URLs); `None`: plain HTTP. Every
    /// node of a cluster has it or none does.
    pub tls: Option<tls::NodeTls>,
    agent: Option<Child>,
    log: PathBuf,
    run_as: Option<(u32, u32)>,
    /// The binary this node runs (a copy `postgres` can reach, when it runs as `postgres`).
    bin: PathBuf,
    /// Members of the cluster in its configuration: the slots it takes.
    members: usize,
    /// Held from the first start until the node is dropped (after its
    /// processes are killed): see [`slots`].
    slots: Option<std::sync::Arc<slots::Slots>>,
}

impl Node {
    /// A one-member cluster's node in `root`, config written.
    pub fn single(root: &Path, name: &str) -> Node {
        let mut node = Node::new(root, name);
        node.write_config(&[(name.to_string(), node.api_port)]);
        node
    }

    /// A node on loopback (no config written yet).
    pub fn new(root: &Path, name: &str) -> Node {
        Node::placed(root, name, Placement::loopback())
    }

    /// A node at `placement` (no config written yet).
    pub fn placed(root: &Path, name: &str, placement: Placement) -> Node {
        let dir = root.join(name);
        fs::create_dir_all(&dir).expect("node dir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let secrets = root.join("secrets");
        if !secrets.exists() {
            fs::create_dir_all(&secrets).expect("secrets dir");
            write_secret(&secrets.join("cluster.secret"), "cluster-secret-for-tests");
            write_secret(&secrets.join("replicator.pass"), "rep'l:pass");
            write_secret(&secrets.join("postgres.pass"), "super-pass");
            write_secret(&secrets.join("api.token"), API_TOKEN);
        }
        Node {
            name: name.to_string(),
            config: dir.join("pgwarden.toml"),
            placement,
            api_port: free_port(),
            pg_port: free_port(),
            api_timeout: API_TIMEOUT,
            pg_hba: Vec::new(),
            data_dir: dir.join("data"),
            socket_dir: dir.join("socket"),
            dir,
            extra_parameters: Vec::new(),
            replication_extra: Vec::new(),
            node_extra: Vec::new(),
            ttl: "10s".into(),
            loop_wait: "500ms".into(),
            tls: None,
            agent: None,
            log: PathBuf::new(),
            run_as: None,
            bin: pgwarden_bin(),
            members: 1,
            slots: None,
        }
    }

    /// Writes this node's configuration for a cluster of data `members` (name, api port).
    pub fn write_config(&mut self, members: &[(String, u16)]) {
        let all: Vec<(String, u16, bool)> = members
            .iter()
            .map(|(n, p)| (n.clone(), *p, false))
            .collect();
        self.write_cluster_config(&all);
    }

    /// Writes this node's configuration for a cluster of `members`
    /// (name, api port, witness) on loopback; this node is a witness when
    /// its entry says so.
    pub fn write_cluster_config(&mut self, members: &[(String, u16, bool)]) {
        let entries: Vec<MemberEntry> = members
            .iter()
            .map(|(name, port, witness)| MemberEntry {
                name: name.clone(),
                api: loopback(*port),
                witness: *witness,
            })
            .collect();
        self.write_members(&entries);
    }

    /// Writes this node's configuration for a cluster of `members`, on
    /// any addresses; this node is a witness when its entry says so.
    pub fn write_members(&mut self, members: &[MemberEntry]) {
        let secrets = self.dir.parent().expect("root").join("secrets");
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut members_toml = String::new();
        for m in members {
            let _ = writeln!(
                members_toml,
                "  {{ name = \"{}\", api_url = \"{scheme}://{}\", witness = {} }},",
                m.name, m.api, m.witness
            );
        }
        let api_tls = self.tls.as_ref().map(|t| t.api_toml()).unwrap_or_default();
        let witness = members.iter().any(|m| m.witness && m.name == self.name);
        let pg_hba = if self.pg_hba.is_empty() {
            String::new()
        } else {
            let lines: Vec<String> = self.pg_hba.iter().map(|l| format!("{l:?}")).collect();
            format!("pg_hba = [{}]\n", lines.join(", "))
        };
        self.members = members.len();
        let mut params = vec![
            "fsync = false".to_string(),
            "shared_buffers = \"16MB\"".to_string(),
        ];
        params.extend(self.extra_parameters.iter().cloned());
        let text = format!(
            r#"[node]
name = "{name}"
data_dir = "{data}"
bin_dir = "{bin}"
witness = {witness}
{node_extra}

[api]
listen = "{api}"
token_file = "{secrets}/api.token"
{api_tls}
[cluster]
name = "test"
secret_file = "{secrets}/cluster.secret"
ttl = "{ttl}"
loop_wait = "{loop_wait}"
members = [
{members_toml}]

[postgresql]
listen_addresses = "{addr}"
port = {pg}
socket_dir = "{socket}"
{pg_hba}parameters = {{ {params} }}

[replication]
password_file = "{secrets}/replicator.pass"
superuser_password_file = "{secrets}/postgres.pass"
{replication_extra}
"#,
            name = self.name,
            data = self.data_dir.display(),
            bin = pg_bin_dir().display(),
            api = self.api_addr(),
            addr = self.placement.addr,
            secrets = secrets.display(),
            pg = self.pg_port,
            socket = self.socket_dir.display(),
            params = params.join(", "),
            ttl = self.ttl,
            loop_wait = self.loop_wait,
            replication_extra = self.replication_extra.join("\n"),
            node_extra = self.node_extra.join("\n"),
        );
        fs::write(&self.config, text).expect("write config");
    }

    /// Starts `pgwarden run` for this node, its log in the node's directory.
    pub fn start(&mut self) {
        self.start_with_env(&[]);
    }

    /// Starts `pgwarden run` as the `postgres` user (the systemd unit's
    /// case): the node's directory and the secrets are given to `postgres`
    /// first, and the agent runs from a copy of the binary in the node's
    /// directory, because `postgres` may not be able to reach the build
    /// (a clone under root's 0700 home directory).
    pub fn start_as_postgres(&mut self) {
        let copy = self.dir.join("pgwarden");
        fs::copy(pgwarden_bin(), &copy).expect("copy the pgwarden binary for postgres");
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod");
        self.bin = copy;
        let pg = nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .expect("no postgres user");
        let secrets = self.dir.parent().expect("root").join("secrets");
        for path in [self.dir.clone(), secrets.clone()].into_iter().chain(
            fs::read_dir(&secrets)
                .expect("secrets")
                .filter_map(|e| e.ok())
                .map(|e| e.path()),
        ) {
            nix::unistd::chown(&path, Some(pg.uid), Some(pg.gid)).expect("chown");
        }
        self.run_as = Some((pg.uid.as_raw(), pg.gid.as_raw()));
        self.start_with_env(&[]);
    }

    /// Starts `pgwarden run` with extra environment variables.
    pub fn start_with_env(&mut self, env: &[(&str, &str)]) {
        assert!(self.agent.is_none(), "{} already running", self.name);
        if self.slots.is_none() {
            self.slots = Some(slots::for_this_test(self.members));
        }
        let n = fs::read_dir(&self.dir).map(|d| d.count()).unwrap_or(0);
        self.log = self.dir.join(format!("agent-{n}.log"));
        let log = fs::File::create(&self.log).expect("log");
        let err = log.try_clone().expect("log");
        // `ip netns exec` execs the agent, so the child is the agent still.
        let mut cmd = match &self.placement.netns {
            None => Command::new(&self.bin),
            Some(netns) => {
                assert!(
                    self.run_as.is_none(),
                    "{}: an agent in a network namespace runs as root",
                    self.name
                );
                let mut ip = Command::new("ip");
                ip.args(["netns", "exec", netns]).arg(&self.bin);
                ip
            }
        };
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::process::CommandExt::uid(&mut cmd, uid);
            std::os::unix::process::CommandExt::gid(&mut cmd, gid);
            cmd.env("HOME", "/var/lib/postgresql").current_dir("/");
        }
        let child = cmd
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env("PGWARDEN_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn pgwarden");
        self.agent = Some(child);
    }

    /// Its agent's API address.
    pub fn api_addr(&self) -> SocketAddr {
        SocketAddr::new(self.placement.addr, self.api_port)
    }

    /// Its PostgreSQL's address.
    pub fn pg_addr(&self) -> SocketAddr {
        SocketAddr::new(self.placement.addr, self.pg_port)
    }

    /// The agent's pid.
    pub fn agent_pid(&self) -> Option<i32> {
        self.agent.as_ref().map(|c| c.id() as i32)
    }

    /// Sends a signal to the agent.
    pub fn signal_agent(&self, sig: Signal) {
        if let Some(pid) = self.agent_pid() {
            let _ = kill(Pid::from_raw(pid), sig);
        }
    }

    /// Waits for the agent to exit; returns its exit code.
    pub fn wait_agent(&mut self, limit: Duration) -> Option<i32> {
        let mut child = self.agent.take()?;
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "agent {} did not exit within {limit:?}\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// kill -9 of the agent (PostgreSQL keeps running).
    pub fn kill_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// kill -9 of the agent and then of its postmaster: the node is dead
    /// (its data directory stays, for a later [`Node::start`]).
    pub fn kill_node(&mut self) {
        let pm = self.postmaster_pid();
        self.kill_agent();
        if let Some(pm) = pm {
            let _ = kill(Pid::from_raw(pm), Signal::SIGKILL);
        }
    }

    /// The agent's log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A request to this node's API: plain HTTP, or HTTPS with the node's
    /// own certificate as the client's when it has TLS.
    pub fn api(&self, method: &str, path: &str) -> std::io::Result<HttpAnswer> {
        match &self.tls {
            None => {
                let req = format!(
                    "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                    self.placement.addr
                );
                http_raw_to(self.api_addr(), req.as_bytes(), self.api_timeout)
            }
            Some(t) => {
                tls::TlsClient::new(&t.ca, Some(&t.pair)).request(self.api_port, method, path)
            }
        }
    }

    /// An operator request with the test cluster's API token (`api.token`).
    pub fn operate(&self, method: &str, path: &str, body: &str) -> HttpAnswer {
        self.operate_with(method, path, body, Some(API_TOKEN))
    }

    /// An operator request with `token` (none: no Authorization header).
    pub fn operate_with(
        &self,
        method: &str,
        path: &str,
        body: &str,
        token: Option<&str>,
    ) -> HttpAnswer {
        let req = operator_request(method, path, body, token);
        http_raw_to(self.api_addr(), req.as_bytes(), Duration::from_secs(200))
            .unwrap_or_else(|e| panic!("{}: {method} {path}: {e}", self.name))
    }

    /// `GET /status` as JSON, when the agent answers.
    pub fn status(&self) -> Option<serde_json::Value> {
        let a = self.api("GET", "/status").ok()?;
        (a.status == 200)
            .then(|| serde_json::from_str(&a.body).ok())
            .flatten()
    }

    /// Waits until `/status` satisfies `pred`; the last document is in the panic.
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

    /// Waits for a running primary.
    pub fn wait_primary(&self) -> serde_json::Value {
        self.wait_status(SLOW, "a running primary", is_running_primary)
    }

    /// The postmaster's pid from `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Runs SQL through psql on the local socket as the superuser; the
    /// unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(pg_bin_dir().join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.pg_port.to_string())
            .arg("-c")
            .arg(sql)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
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
    /// killed agent; it exits once the postmaster is gone, but a teardown
    /// does not rely on that.
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

impl Drop for Node {
    /// Whatever happened, nothing the test started outlives it.
    fn drop(&mut self) {
        self.kill_agent();
        self.stop_postgres_hard();
        self.kill_fence_guard();
        if std::thread::panicking() {
            eprintln!("--- agent log of {} ---\n{}", self.name, self.log_text());
            let server =
                fs::read_to_string(format!("{}.log", self.data_dir.display())).unwrap_or_default();
            let tail: Vec<&str> = server.lines().rev().take(15).collect();
            eprintln!(
                "--- PostgreSQL log of {} (last lines) ---\n{}",
                self.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// A cluster of nodes sharing one member list.
pub struct Cluster {
    /// The nodes, in member order.
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Nodes named `names` in `root`; `witness(name)` says which run no
    /// PostgreSQL; `ttl` and `loop_wait` as written in the configuration.
    pub fn new(
        root: &Path,
        names: &[&str],
        witness: impl Fn(&str) -> bool,
        ttl: &str,
        loop_wait: &str,
    ) -> Cluster {
        Cluster::new_with_tls(root, names, witness, ttl, loop_wait, |_| None)
    }

    /// [`Cluster::new`], each node's API with the TLS `tls(name)` gives.
    pub fn new_with_tls(
        root: &Path,
        names: &[&str],
        witness: impl Fn(&str) -> bool,
        ttl: &str,
        loop_wait: &str,
        tls: impl Fn(&str) -> Option<tls::NodeTls>,
    ) -> Cluster {
        let mut nodes: Vec<Node> = names
            .iter()
            .map(|n| {
                let mut node = Node::new(root, n);
                node.tls = tls(n);
                node
            })
            .collect();
        let members: Vec<MemberEntry> = nodes
            .iter()
            .map(|n| MemberEntry::of(n, witness(&n.name)))
            .collect();
        for node in &mut nodes {
            node.ttl = ttl.to_string();
            node.loop_wait = loop_wait.to_string();
            node.write_members(&members);
        }
        Cluster { nodes }
    }

    /// Starts every agent.
    pub fn start_all(&mut self) {
        for n in &mut self.nodes {
            n.start();
        }
    }

    /// The node called `name`.
    pub fn node(&mut self, name: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .expect("no such node")
    }

    /// Waits until one member is a running primary and every other data
    /// member a running replica whose receiver streams; returns the primary.
    pub fn wait_streaming(&self, data_members: &[&str]) -> String {
        wait_streaming(&self.nodes, data_members, SLOW)
    }

    /// The members whose `/status` says they hold the lease (`/leader` 200), now.
    pub fn holders(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.api("GET", "/leader").is_ok_and(|a| a.status == 200))
            .map(|n| n.name.clone())
            .collect()
    }
}

/// Waits up to `limit` until one of `nodes` named in `data_members` is a
/// running primary and every other a running replica whose receiver
/// streams; returns the primary.
pub fn wait_streaming(nodes: &[Node], data_members: &[&str], limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let docs: Vec<(String, Option<serde_json::Value>)> = nodes
            .iter()
            .filter(|n| data_members.contains(&n.name.as_str()))
            .map(|n| (n.name.clone(), n.status()))
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
        if primaries.len() == 1 && streaming == data_members.len() - 1 {
            return primaries[0].clone();
        }
        if Instant::now() > deadline {
            let mut logs = String::new();
            for n in nodes {
                logs.push_str(&format!("--- {} ---\n{}\n", n.name, n.log_text()));
            }
            panic!("the cluster did not converge within {limit:?}: {docs:?}\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The effective uid of a process.
pub fn process_uid(pid: i32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Whether a process exists (and is not a zombie).
pub fn process_alive(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat
        .rsplit_once(')')
        .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
}
