//! `pgwarden run`: loads the configuration, binds the API, starts the HA
//! loop, and turns signals into its controls (SIGINT: stop the node;
//! SIGTERM: exit and leave PostgreSQL running for the next agent;
//! SIGHUP: reload). Returns the process exit code.
//!
//! - `logging.rs`: the log on stderr, text or JSON, switched by a reload.

use std::path::Path;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};

use crate::api::{self, ApiState};
use crate::config::{self, Config};
use crate::ha::executor::LocalPostgres;
use crate::ha::runner::{Control, Runner};
use crate::lease::durable::{boot_id, NotesFile};
use crate::lease::service::Start;
use crate::lease::{AcceptorService, BootClock, LeaseClient, LeaseConfig, QuorumLease, SoloLease};
use crate::notify::Notifier;
use crate::pg::binaries::{data_dir_major, Binaries};
use crate::pg::runas::RunAs;
use crate::tls::AgentTls;
use crate::view::NodeView;

pub mod logging;

use logging::Logging;

/// Exit codes (SPEC): runtime failure.
pub const EXIT_RUNTIME: i32 = 1;
/// Exit codes (SPEC): bad usage or invalid configuration.
pub const EXIT_CONFIG: i32 = 2;

/// Runs the agent until SIGINT (stop the node) or SIGTERM (exit, leaving
/// PostgreSQL running for the next agent); returns the exit code. `logging`
/// is the installed log, set to `[log]` here and on every reload.
pub async fn run(config_path: &Path, logging: &Logging) -> i32 {
    let cfg = match config::load_with_warnings(config_path) {
        Ok(loaded) => {
            logging.set_member(&loaded.config.node.name);
            logging.apply(&loaded.config.log);
            for w in &loaded.warnings {
                tracing::warn!("{}: {w}", config_path.display());
            }
            loaded.config
        }
        Err(e) => {
            eprint!("{e}");
            return EXIT_CONFIG;
        }
    };
    let local = if cfg.node.witness {
        tracing::info!(
            "{} is a witness: it votes for the leader lease and runs no PostgreSQL",
            cfg.node.name
        );
        None
    } else {
        match prepare_local(&cfg) {
            Ok(local) => Some(local),
            Err(message) => {
                tracing::error!("{message}");
                eprintln!("pgwarden: {message}");
                return EXIT_RUNTIME;
            }
        }
    };
    let tls = match AgentTls::load(&cfg.api) {
        Ok(tls) => tls,
        Err(e) => {
            let message = format!("cannot set up TLS for the API: {e}");
            tracing::error!("{message}");
            eprintln!("pgwarden: {message}");
            return EXIT_CONFIG;
        }
    };
    let listener = match tokio::net::TcpListener::bind(cfg.api.listen).await {
        Ok(l) => l,
        Err(e) => {
            let message = format!(
                "cannot listen on api.listen = {} ({}): {e} (another agent running? choose a free port)",
                cfg.api.listen,
                config_path.display()
            );
            tracing::error!("{message}");
            eprintln!("pgwarden: {message}");
            return EXIT_RUNTIME;
        }
    };
    let (view_tx, view_rx) = watch::channel(NodeView::initial(
        &cfg.node.name,
        &cfg.cluster.name,
        cfg.node.witness,
        cfg.cluster.ttl,
        cfg.replication.max_lag_on_failover.bytes(),
    ));
    let quorum = if cfg.cluster.members.len() > 1 {
        match quorum_parts(&cfg, &tls) {
            Ok(parts) => Some(parts),
            Err(message) => {
                tracing::error!("{message}");
                eprintln!("pgwarden: {message}");
                return EXIT_RUNTIME;
            }
        }
    } else {
        None
    };
    let (api_stop_tx, api_stop_rx) = oneshot::channel::<()>();
    let (control_tx, control_rx) = mpsc::channel(8);
    let reload_path = config_path.to_path_buf();
    let reload_tls = tls.clone();
    let reload_logging = logging.clone();
    let app = api::router(ApiState {
        view: view_rx,
        internal: quorum.as_ref().map(|(internal, _)| internal.clone()),
        operator: Some(api::actions::Operator {
            control: control_tx.clone(),
            token_file: cfg.api.token_file.clone(),
            reload: std::sync::Arc::new(move || {
                reload_config(&reload_path, &reload_tls, &reload_logging)
            }),
        }),
    });
    tracing::info!(
        "API listening on {} (advertised as {}){}",
        cfg.api.listen,
        cfg.api_advertise_url(),
        match &tls.server {
            None => String::new(),
            Some(_) => format!(
                ", HTTPS, client certificates {}",
                cfg.api.verify_client().as_str()
            ),
        }
    );
    let server_tls = tls.server.clone();
    let api_task = tokio::spawn(async move {
        let shutdown = async {
            let _ = api_stop_rx.await;
        };
        match server_tls {
            None => api::serve::serve(listener, app, shutdown).await,
            Some(server_tls) => {
                api::serve::serve(server_tls.listener(listener), app, shutdown).await
            }
        }
    });

    let notifier = Notifier::from_env();
    let loop_task = match quorum {
        None => {
            let lease = SoloLease::new(&cfg.node.name, cfg.cluster.ttl);
            spawn_loop(
                cfg.clone(),
                local,
                lease,
                view_tx,
                notifier,
                control_rx,
                (&tls, None),
            )
        }
        Some((internal, lease)) => {
            tracing::info!(
                "leader lease among {} members (majority {}), ttl {:?}",
                cfg.cluster.members.len(),
                cfg.cluster.members.len() / 2 + 1,
                cfg.cluster.ttl
            );
            spawn_loop(
                cfg.clone(),
                local,
                lease,
                view_tx,
                notifier,
                control_rx,
                (&tls, Some(internal.secret)),
            )
        }
    };

    let code = supervise_signals(config_path, &control_tx, loop_task, (&tls, logging)).await;
    let _ = api_stop_tx.send(());
    let _ = api_task.await;
    code
}

fn spawn_loop<L: LeaseClient + 'static>(
    cfg: Config,
    local: Option<LocalPostgres>,
    lease: L,
    view: watch::Sender<NodeView>,
    notifier: Notifier,
    control: mpsc::Receiver<Control>,
    (tls, secret): (&AgentTls, Option<String>),
) -> tokio::task::JoinHandle<()> {
    let mut runner = Runner::new(cfg, local, lease, view, notifier, &tls.client);
    if let Some(secret) = secret {
        runner.set_cluster_secret(secret);
    }
    tokio::spawn(runner.run(control))
}

/// The clock-rate drift the lease tolerates between members (1 %: real
/// monotonic clocks drift by parts per million).
pub const LEASE_MAX_DRIFT_PPM: u32 = 10_000;

/// The acceptor (shared with the API) and the proposer side of the quorum lease.
fn quorum_parts(
    cfg: &Config,
    tls: &AgentTls,
) -> Result<(api::internal::InternalState, QuorumLease), String> {
    let secret_file = cfg
        .cluster
        .secret_file
        .as_deref()
        .ok_or("cluster.secret_file is required with more than one member")?;
    let secret =
        config::read_secret(secret_file).map_err(|e| format!("cluster.secret_file: {e}"))?;
    let lease_cfg = LeaseConfig::new(cfg.cluster.ttl, LEASE_MAX_DRIFT_PPM)
        .map_err(|e| format!("cluster.ttl: {e}"))?;
    let (acceptor, resumed) = if cfg.node.data_dir.as_os_str().is_empty() {
        tracing::warn!(
            "node.data_dir is not set: this witness keeps no lease notes, so its acceptor stays silent for one ttl ({:?}) after every start; set node.data_dir to a path whose parent directory the agent may write (the notes go to <data_dir>.lease)",
            cfg.cluster.ttl
        );
        (AcceptorService::new(lease_cfg, BootClock::new()), None)
    } else {
        let file = NotesFile::new(NotesFile::beside(&cfg.node.data_dir), boot_id());
        let path = file.path().display().to_string();
        let (acceptor, resumed, start) = AcceptorService::open(lease_cfg, BootClock::new(), file);
        match &start {
            Start::Fresh => tracing::info!("lease notes: {path} is new; this member's acceptor answers at once"),
            Start::Resumed => tracing::info!(
                "lease notes: resumed from {path}; this member's acceptor answers at once{}",
                if resumed.is_some() { ", and this member still holds the leader lease it held before the restart" } else { "" }
            ),
            Start::Silent(why) => tracing::warn!(
                "lease notes: {why}; this member's acceptor stays silent for one ttl ({:?}) before it votes",
                cfg.cluster.ttl
            ),
        }
        (acceptor, resumed)
    };
    let members: Vec<(String, String)> = cfg
        .cluster
        .members
        .iter()
        .map(|m| (m.name.clone(), m.api_url.clone()))
        .collect();
    // Each phase of a round gets one loop period (at most 2 s): a loaded
    // machine answers late, and a renewal has ttl/4 or more to spare.
    let round_timeout = cfg
        .cluster
        .loop_wait
        .clamp(Duration::from_millis(200), Duration::from_secs(2));
    let lease = QuorumLease::new(
        &cfg.node.name,
        &members,
        lease_cfg,
        acceptor.clone(),
        secret.clone(),
        round_timeout,
        cfg.cluster.loop_wait,
        resumed,
        &tls.client,
    )
    .map_err(|e| e.to_string())?;
    let voters = members
        .iter()
        .map(|(name, _)| crate::lease::MemberName::new(name.clone()))
        .collect();
    Ok((
        api::internal::InternalState {
            acceptor,
            secret,
            voters,
        },
        lease,
    ))
}

/// Binaries, the PostgreSQL user, version checks.
fn prepare_local(cfg: &Config) -> Result<LocalPostgres, String> {
    let bins = Binaries::locate(cfg.node.bin_dir.as_deref()).map_err(|e| e.to_string())?;
    crate::pg::conf::recovery_layout(bins.major).map_err(|e| e.to_string())?;
    if let Some(major) = data_dir_major(&cfg.node.data_dir) {
        if major != bins.major {
            return Err(format!(
                "{} holds a PostgreSQL {major} cluster but the binaries in {} are PostgreSQL {} (set node.bin_dir to the right version)",
                cfg.node.data_dir.display(),
                bins.dir.display(),
                bins.major
            ));
        }
    }
    let runas = RunAs::for_data_dir(&cfg.node.data_dir).map_err(|e| e.to_string())?;
    if runas.switch {
        tracing::info!(
            "running as root: PostgreSQL and its tools will run as {} (uid {}), never as root",
            runas.user,
            runas.uid
        );
    }
    tracing::info!("PostgreSQL {} from {}", bins.major, bins.dir.display());
    Ok(LocalPostgres::new(cfg.clone(), bins, runas))
}

/// Waits for signals until the loop has shut down; returns the exit code.
async fn supervise_signals(
    config_path: &Path,
    control: &mpsc::Sender<Control>,
    mut loop_task: tokio::task::JoinHandle<()>,
    (tls, logging): (&AgentTls, &Logging),
) -> i32 {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        eprintln!("pgwarden: cannot install signal handlers");
        return EXIT_RUNTIME;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: the agent exits and leaves PostgreSQL running (a restart or an upgrade: the next agent adopts it; to stop this node, send SIGINT, which `systemctl stop` does)");
                return stop(control, loop_task, Control::Detach).await;
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping this node: PostgreSQL, then the leader lease");
                return stop(control, loop_task, Control::Shutdown).await;
            }
            _ = hup.recv() => match reload_config(config_path, tls, logging) {
                Ok(cfg) => {
                    let _ = control.send(Control::Reload(Box::new(cfg), None)).await;
                }
                Err(e) => tracing::error!("SIGHUP: keeping the running configuration, the new one is invalid: {e}"),
            },
            result = &mut loop_task => {
                tracing::error!("the HA loop ended unexpectedly: {result:?}");
                return EXIT_RUNTIME;
            }
        }
    }
}

/// The configuration file again (SIGHUP, `POST /reload`), with the TLS
/// files re-read on every reload, changed paths or not: rotation replaces
/// the files in place. `[log]` applies here, before the HA loop logs what
/// the reload did, so that its lines are in the new format already.
fn reload_config(path: &Path, tls: &AgentTls, logging: &Logging) -> Result<Config, String> {
    let cfg = config::load(path).map_err(|e| e.to_string())?;
    logging.apply(&cfg.log);
    tracing::debug!("{}: read again for a reload", path.display());
    tls.reload(&cfg.api);
    Ok(cfg)
}

async fn stop(
    control: &mpsc::Sender<Control>,
    loop_task: tokio::task::JoinHandle<()>,
    how: fn(oneshot::Sender<()>) -> Control,
) -> i32 {
    let (done_tx, done_rx) = oneshot::channel();
    if control.send(how(done_tx)).await.is_err() {
        return EXIT_RUNTIME;
    }
    let _ = done_rx.await;
    let _ = loop_task.await;
    tracing::info!("stopped");
    0
}
