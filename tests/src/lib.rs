//! The cluster harness for pgwarden's integration tests: real agents (the
//! built `pgwarden` binary), real PostgreSQL, real HTTP, on loopback, each
//! test in its own temporary directory with ports from the OS, and a guard
//! that stops everything the test started even when it fails.

pub mod bench;
pub mod netns;
pub mod slots;
pub mod tls;
pub mod writer;

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
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
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(limit))?;
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

/// One node of a test cluster: its files, and its agent when running.
pub struct Node {
    /// Member name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The configuration file.
    pub config: PathBuf,
    /// The API port.
    pub api_port: u16,
    /// The PostgreSQL port.
    pub pg_port: u16,
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

    /// A node (no config written yet).
    pub fn new(root: &Path, name: &str) -> Node {
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
            api_port: free_port(),
            pg_port: free_port(),
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
    /// (name, api port, witness); this node is a witness when its entry says so.
    pub fn write_cluster_config(&mut self, members: &[(String, u16, bool)]) {
        let secrets = self.dir.parent().expect("root").join("secrets");
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut members_toml = String::new();
        for (n, p, w) in members {
            let _ = writeln!(
                members_toml,
                "  {{ name = \"{n}\", api_url = \"{scheme}://127.0.0.1:{p}\", witness = {w} }},"
            );
        }
        let api_tls = self.tls.as_ref().map(|t| t.api_toml()).unwrap_or_default();
        let witness = members.iter().any(|(n, _, w)| *w && *n == self.name);
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
listen = "127.0.0.1:{api}"
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
listen_addresses = "127.0.0.1"
port = {pg}
socket_dir = "{socket}"
parameters = {{ {params} }}

[replication]
password_file = "{secrets}/replicator.pass"
superuser_password_file = "{secrets}/postgres.pass"
{replication_extra}
"#,
            name = self.name,
            data = self.data_dir.display(),
            bin = pg_bin_dir().display(),
            api = self.api_port,
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
        let mut cmd = Command::new(&self.bin);
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
            None => http(self.api_port, method, path),
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
        http_raw_waiting(self.api_port, req.as_bytes(), Duration::from_secs(200))
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
        self.wait_status(SLOW, "a running primary", |d| {
            d["role"] == "primary" && d["state"] == "running"
        })
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
}

impl Drop for Node {
    /// Whatever happened, nothing the test started outlives it.
    fn drop(&mut self) {
        self.kill_agent();
        self.stop_postgres_hard();
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
        let members: Vec<(String, u16, bool)> = nodes
            .iter()
            .map(|n| (n.name.clone(), n.api_port, witness(&n.name)))
            .collect();
        for node in &mut nodes {
            node.ttl = ttl.to_string();
            node.loop_wait = loop_wait.to_string();
            node.write_cluster_config(&members);
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
        let deadline = Instant::now() + SLOW;
        loop {
            let docs: Vec<(String, Option<serde_json::Value>)> = self
                .nodes
                .iter()
                .filter(|n| data_members.contains(&n.name.as_str()))
                .map(|n| (n.name.clone(), n.status()))
                .collect();
            let primaries: Vec<&String> = docs
                .iter()
                .filter(|(_, d)| {
                    d.as_ref()
                        .is_some_and(|d| d["role"] == "primary" && d["state"] == "running")
                })
                .map(|(n, _)| n)
                .collect();
            let streaming = docs
                .iter()
                .filter(|(_, d)| {
                    d.as_ref().is_some_and(|d| {
                        d["role"] == "replica" && d["wal_receiver"]["status"] == "streaming"
                    })
                })
                .count();
            if primaries.len() == 1 && streaming == data_members.len() - 1 {
                return primaries[0].clone();
            }
            if Instant::now() > deadline {
                let mut logs = String::new();
                for n in &self.nodes {
                    logs.push_str(&format!("--- {} ---\n{}\n", n.name, n.log_text()));
                }
                panic!("the cluster did not converge within {SLOW:?}: {docs:?}\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
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
