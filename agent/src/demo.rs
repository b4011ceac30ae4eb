//! `pgwarden demo`: a complete local cluster on loopback in a temporary
//! directory — generated secrets, free ports, one agent per node — shown
//! as it converges, kept until Ctrl-C, then stopped and removed.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};

use crate::client;
use crate::config::SyncMode;

/// The demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A directory or file could not be made.
    #[error("cannot prepare {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An unsupported node count.
    #[error("--nodes {0}: choose 1 to 9 nodes")]
    Nodes(u32),
    /// A synchronous mode with a single node.
    #[error("--synchronous {0} needs at least two nodes: every commit would wait for a standby that does not exist")]
    SyncAlone(&'static str),
    /// An agent could not be started.
    #[error("cannot start the agent {0}")]
    Spawn(String),
    /// `--dir` already holds what the demo would make there.
    #[error("{0} already exists: the demo makes secrets/ and one directory per node inside --dir, and never overwrites anything; choose another directory")]
    InUse(PathBuf),
    /// No HTTP client to watch the agents with.
    #[error("cannot set up an HTTP client: {0}")]
    Http(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A free TCP port on loopback for a server started a moment later.
/// Taken below the ephemeral range (20000–31999), where no outgoing
/// connection can claim it in between; each is checked free when chosen.
pub fn free_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let start = (std::process::id() * 131) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (start + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free port in 20000-31999",
    ))
}

/// A random hex string from the kernel, for generated secrets.
fn random_secret() -> String {
    let mut buf = [0u8; 16];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut buf);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_secret(path: &Path) -> Result<(), DemoError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    writeln!(f, "{}", random_secret()).map_err(io(path))
}

/// One demo node's files and process.
struct DemoNode {
    name: String,
    config: PathBuf,
    api_url: String,
    child: Option<Child>,
}

/// Runs the demo until Ctrl-C; returns the exit code.
pub async fn run(nodes: u32, dir: Option<PathBuf>, sync: SyncMode) -> Result<i32, DemoError> {
    if !(1..=9).contains(&nodes) {
        return Err(DemoError::Nodes(nodes));
    }
    if nodes < 2 && sync != SyncMode::Off {
        return Err(DemoError::SyncAlone(sync.as_str()));
    }
    // The demo's agents speak plain HTTP on loopback.
    let http = crate::tls::ClientTls::system_roots()
        .map_err(|e| DemoError::Http(e.to_string()))?
        .client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| DemoError::Http(e.to_string()))?;
    let base = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("pgwarden-demo-{}", std::process::id())),
    };
    // What the demo makes, and so what it removes: the directory itself
    // when it made it, else only its own entries inside it.
    let entries: Vec<PathBuf> = std::iter::once("secrets".to_string())
        .chain((1..=nodes).map(|i| format!("pg{i}")))
        .map(|e| base.join(e))
        .collect();
    let made_base = !base.exists();
    if let Some(taken) = entries.iter().find(|e| e.exists()) {
        return Err(DemoError::InUse(taken.clone()));
    }
    fs::create_dir_all(&base).map_err(io(&base))?;
    if made_base {
        // PostgreSQL runs as `postgres` when the demo runs as root: it must reach its directories.
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).map_err(io(&base))?;
    }
    println!(
        "pgwarden demo: building a {nodes}-node cluster in {}",
        base.display()
    );
    let result = run_in(&base, nodes, sync, &http).await;
    if made_base {
        println!("pgwarden demo: removing {}", base.display());
        let _ = fs::remove_dir_all(&base);
    } else {
        println!(
            "pgwarden demo: removing what it made in {} (the directory stays)",
            base.display()
        );
        for entry in &entries {
            let _ = fs::remove_dir_all(entry);
        }
    }
    result
}

async fn run_in(
    base: &Path,
    nodes: u32,
    sync: SyncMode,
    http: &reqwest::Client,
) -> Result<i32, DemoError> {
    // Asynchronous, the demo need not wait for its commits to reach a
    // standby; a synchronous mode must (the configuration refuses "off").
    let commit = if sync == SyncMode::Off {
        "synchronous_commit = \"off\", "
    } else {
        ""
    };
    let secrets = base.join("secrets");
    fs::create_dir_all(&secrets).map_err(io(&secrets))?;
    for name in [
        "cluster.secret",
        "replicator.pass",
        "postgres.pass",
        "api.token",
    ] {
        write_secret(&secrets.join(name))?;
    }
    let mut members = Vec::new();
    for i in 1..=nodes {
        let api_port = free_port().map_err(io(base))?;
        members.push((format!("pg{i}"), api_port));
    }
    let members_toml: Vec<String> = members
        .iter()
        .map(|(n, p)| {
            format!(
                "  {{ name = \"{n}\", api_url = \"http://127.0.0.1:{p}\", host = \"127.0.0.1\" }},"
            )
        })
        .collect();
    let mut demo_nodes = Vec::new();
    for (name, api_port) in &members {
        let node_dir = base.join(name);
        fs::create_dir_all(&node_dir).map_err(io(&node_dir))?;
        fs::set_permissions(&node_dir, fs::Permissions::from_mode(0o755)).map_err(io(&node_dir))?;
        let pg_port = free_port().map_err(io(base))?;
        let config = node_dir.join("pgwarden.toml");
        let text = format!(
            r#"# generated by `pgwarden demo`
[node]
name = "{name}"
data_dir = "{data}"

[api]
listen = "127.0.0.1:{api_port}"
token_file = "{secrets}/api.token"

[cluster]
name = "demo"
secret_file = "{secrets}/cluster.secret"
ttl = "5s"
loop_wait = "500ms"
members = [
{members}
]

[postgresql]
listen_addresses = "127.0.0.1"
port = {pg_port}
socket_dir = "{socket}"
parameters = {{ fsync = false, {commit}full_page_writes = true, shared_buffers = "32MB" }}

[replication]
password_file = "{secrets}/replicator.pass"
superuser_password_file = "{secrets}/postgres.pass"
synchronous = "{sync}"
"#,
            sync = sync.as_str(),
            data = node_dir.join("data").display(),
            secrets = secrets.display(),
            members = members_toml.join("\n"),
            socket = node_dir.join("socket").display(),
        );
        fs::write(&config, text).map_err(io(&config))?;
        demo_nodes.push(DemoNode {
            name: name.clone(),
            config,
            api_url: format!("http://127.0.0.1:{api_port}"),
            child: None,
        });
    }
    let exe = std::env::current_exe().map_err(io(base))?;
    for node in &mut demo_nodes {
        let log_path = node.config.with_file_name("agent.log");
        let log = fs::File::create(&log_path).map_err(io(&log_path))?;
        let log_err = log.try_clone().map_err(io(&log_path))?;
        let child = Command::new(&exe)
            .arg("run")
            .arg("--config")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| DemoError::Spawn(format!("{}: {e}", node.name)))?;
        println!(
            "started agent {} (pid {}), log {}",
            node.name,
            child.id(),
            log_path.display()
        );
        node.child = Some(child);
    }
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        stop_all(&mut demo_nodes);
        return Ok(1);
    };
    let started = Instant::now();
    let mut last = String::new();
    println!(
        "waiting for the cluster to converge; Ctrl-C stops everything and removes {}",
        base.display()
    );
    loop {
        let mut table = None;
        for node in &demo_nodes {
            if let Ok((_, doc)) = client::get_json(
                http,
                &format!("{}{}", node.api_url, crate::api::CLUSTER_DOC_PATH),
            )
            .await
            {
                if let Ok(t) = client::render_cluster(&doc) {
                    table = Some(t);
                    break;
                }
            }
        }
        let table = table.unwrap_or_else(|| "  no agent answers yet\n".to_string());
        // Reprint when a role, state or receiver changed, not for every
        // tick of a number (lease time, ages, terms).
        let summary: String = table.chars().filter(|c| !c.is_ascii_digit()).collect();
        if summary != last {
            println!(
                "--- after {:.1} s ---\n{table}",
                started.elapsed().as_secs_f64()
            );
            last = summary;
        }
        let dead = demo_nodes.iter_mut().position(|n| {
            n.child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
        });
        if let Some(i) = dead {
            // Killing an agent is part of trying the demo: say so and keep
            // showing the others (the cluster carries on without it).
            let dead = &mut demo_nodes[i];
            dead.child = None;
            let log =
                fs::read_to_string(dead.config.with_file_name("agent.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            println!("agent {} exited; the end of its log:", dead.name);
            for line in tail.into_iter().rev() {
                println!("  {line}");
            }
            println!(
                "restart it with: {} run --config {}",
                exe.display(),
                dead.config.display()
            );
            if demo_nodes.iter().all(|n| n.child.is_none()) {
                break;
            }
        }
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
    println!("stopping the agents (each stops its PostgreSQL)");
    stop_all(&mut demo_nodes);
    Ok(0)
}

fn stop_all(nodes: &mut [DemoNode]) {
    for node in nodes.iter_mut() {
        if let Some(child) = &node.child {
            // SIGINT stops the node (PostgreSQL too); SIGTERM would leave it running.
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
        }
    }
    for node in nodes.iter_mut() {
        if let Some(mut child) = node.child.take() {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }
}
