//! The `pgwarden` command: parses the command line and hands over to the
//! library; it prints and chooses the exit code, nothing more.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use pgwarden::client::session::{confirm_on_terminal, ActionError, Connect, Io};
use pgwarden::client::{self, failover, pause, reinit, reload, restart, switchover};
use pgwarden::status_doc::Role;
use pgwarden::{config, daemon, demo};

/// A node-local agent that keeps a few PostgreSQL servers a replicated,
/// self-healing cluster.
#[derive(Parser)]
#[command(
    name = "pgwarden",
    version,
    about = "A node-local agent that turns a few PostgreSQL hosts into a replicated, self-healing cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent (foreground; logs to stderr; sd_notify when NOTIFY_SOCKET is set).
    Run {
        /// The node's configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration and print the effective one (secrets masked); exit 2 on problems.
    CheckConfig {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// This node's status.
    Status {
        /// Read the agent's address from this configuration.
        #[arg(long, short, conflicts_with = "url")]
        config: Option<PathBuf>,
        /// The agent's URL, e.g. http://10.0.0.1:8008.
        #[arg(long)]
        url: Option<String>,
        /// Print the raw status document.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        tls: TlsFlags,
    },
    /// The cluster as a table: member, host, role, state, timeline, lag, receiver, lease.
    List {
        /// Read the agent's address from this configuration.
        #[arg(long, short, conflicts_with = "url")]
        config: Option<PathBuf>,
        /// Any member's agent URL, e.g. http://10.0.0.1:8008.
        #[arg(long)]
        url: Option<String>,
        /// Print the raw cluster document.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        tls: TlsFlags,
    },
    #[command(flatten)]
    Action(Action),
    /// (internal) The fence guard the agent starts beside a primary's postmaster.
    #[command(hide = true)]
    FenceGuard {
        /// The deadline file the agent keeps pushing forward.
        #[arg(long)]
        deadline_file: PathBuf,
        /// The data directory whose postmaster it stops.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// (internal) Man pages and shell completions for the package (scripts/package).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: Generate,
    },
    /// Start a local cluster on loopback until Ctrl-C, then remove it.
    Demo {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: u32,
        /// Where to build it (default: a new temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Replication mode: off (asynchronous), on (one synchronous
        /// standby) or quorum (no acknowledged write lost on failover).
        #[arg(long, default_value = "off", value_parser = ["off", "on", "quorum"])]
        synchronous: String,
    },
}

/// What `pgwarden generate` writes.
#[derive(Subcommand)]
enum Generate {
    /// pgwarden.1 and one page per subcommand (pgwarden-run.1, ...), uncompressed.
    Man {
        /// The directory to write them into.
        #[arg(long)]
        out: PathBuf,
    },
    /// The completion script of one shell, under the name that shell looks for.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
        /// The directory to write it into.
        #[arg(long)]
        out: PathBuf,
    },
}

/// The operator actions: through the API, with the token.
#[derive(Subcommand)]
enum Action {
    /// Planned change of primary: the leader hands over to a standby; waits and reports the outcome.
    Switchover {
        #[command(flatten)]
        agent: AgentFlags,
        /// The member to hand over to (default: the best standby).
        #[arg(long, value_name = "NAME")]
        candidate: Option<String>,
        /// Schedule it, as RFC 3339 with an offset, e.g. 2026-12-01T02:00:00+01:00.
        #[arg(long, value_name = "RFC3339")]
        at: Option<String>,
        /// Do not ask for confirmation on a terminal.
        #[arg(long)]
        force: bool,
        /// Cancel a scheduled switchover instead.
        #[arg(long, conflicts_with_all = ["candidate", "at", "force"])]
        cancel: bool,
    },
    /// Promote a named member when there is no healthy primary (with one, a switchover to it).
    Failover {
        #[command(flatten)]
        agent: AgentFlags,
        /// The member to promote.
        #[arg(long, value_name = "NAME")]
        candidate: String,
        /// Promote it even if other members have transactions it lacks (they are lost); asks on a terminal.
        #[arg(long)]
        force: bool,
    },
    /// Restart PostgreSQL on a member (default: the agent asked), or on every member, the primary last.
    Restart {
        #[command(flatten)]
        agent: AgentFlags,
        /// The member to restart.
        #[arg(value_name = "NAME", conflicts_with = "all")]
        member: Option<String>,
        /// Every member, one at a time: replicas first, the primary last.
        #[arg(long)]
        all: bool,
        /// Only where a changed setting waits for a restart (pending_restart); others are skipped.
        #[arg(long)]
        pending: bool,
        /// Only members with this role; others are skipped.
        #[arg(long)]
        role: Option<RoleArg>,
        /// Schedule it, as RFC 3339 with an offset.
        #[arg(long, value_name = "RFC3339")]
        at: Option<String>,
        /// Cancel a scheduled restart instead.
        #[arg(long, conflicts_with_all = ["all", "pending", "role", "at"])]
        cancel: bool,
    },
    /// Make a member's agent re-read its configuration file (default: the agent asked).
    Reload {
        #[command(flatten)]
        agent: AgentFlags,
        /// The member to reload.
        #[arg(value_name = "NAME")]
        member: Option<String>,
    },
    /// Clone a replica afresh from the primary (its data directory is renamed aside), and wait until it streams.
    Reinit {
        #[command(flatten)]
        agent: AgentFlags,
        /// The member to reinitialize.
        #[arg(value_name = "NAME")]
        member: String,
        /// Return once cloning has started.
        #[arg(long)]
        no_wait: bool,
    },
    /// Stop every automatic action in the cluster (failover, restarts) until resumed.
    Pause {
        #[command(flatten)]
        agent: AgentFlags,
        /// Wait (up to a minute) until every member reports it.
        #[arg(long)]
        wait: bool,
    },
    /// Resume automatic actions after a pause.
    Resume {
        #[command(flatten)]
        agent: AgentFlags,
        /// Wait (up to a minute) until every member reports it.
        #[arg(long)]
        wait: bool,
    },
}

/// How a client command reaches an agent over HTTPS; each flag wins over
/// what `--config` says.
#[derive(Args)]
struct TlsFlags {
    /// PEM CA certificates to verify the agent with (default: api.tls_ca_file of --config, else the system's roots).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// PEM client certificate to present (default with --config: the node's api.tls_cert_file).
    #[arg(long, requires = "key_file")]
    cert_file: Option<PathBuf>,
    /// The client certificate's PEM private key.
    #[arg(long, requires = "cert_file")]
    key_file: Option<PathBuf>,
}

impl TlsFlags {
    fn files(self) -> config::ClientTlsFiles {
        config::ClientTlsFiles {
            ca_file: self.ca_file,
            cert_file: self.cert_file,
            key_file: self.key_file,
        }
    }
}

/// Where an operator action goes, and with what token.
#[derive(Args)]
struct AgentFlags {
    /// Read the agent's address, api.token_file and TLS files from this configuration.
    #[arg(long, short, conflicts_with = "url")]
    config: Option<PathBuf>,
    /// Any member's agent URL, e.g. http://10.0.0.1:8008.
    #[arg(long)]
    url: Option<String>,
    /// The file holding the agents' API token (default: api.token_file of --config).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    #[command(flatten)]
    tls: TlsFlags,
}

impl AgentFlags {
    fn connect(self) -> Connect {
        Connect {
            config: self.config,
            url: self.url,
            token_file: self.token_file,
            tls: self.tls.files(),
        }
    }
}

/// `--role`.
#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Primary,
    Replica,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Primary => Role::Primary,
            RoleArg::Replica => Role::Replica,
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One crypto provider for every TLS user in the process (reqwest, rustls).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let code = match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pgwarden: {e:#}");
            daemon::EXIT_RUNTIME
        }
    };
    ExitCode::from(code as u8)
}

/// Fetches a document from the agent named by `--config` or `--url` and
/// prints it, as a table or (`--json`) as it came.
fn show(
    config: Option<PathBuf>,
    url: Option<String>,
    tls: TlsFlags,
    json: bool,
    path: &str,
    render: fn(&serde_json::Value) -> Result<String, String>,
) -> anyhow::Result<i32> {
    let target = match client::target(config.as_deref(), url.as_deref(), &tls.files()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("pgwarden: {e}");
            return Ok(daemon::EXIT_CONFIG);
        }
    };
    for note in &target.notes {
        eprintln!("pgwarden: {note}");
    }
    let base = &target.base_url;
    let (_, doc) = runtime()?.block_on(client::get_json(&target.http, &format!("{base}{path}")))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(0);
    }
    match render(&doc) {
        Ok(text) => {
            print!("{text}");
            Ok(0)
        }
        Err(e) => {
            eprintln!("pgwarden: {e} (is {base} a pgwarden agent of this version?)");
            Ok(daemon::EXIT_RUNTIME)
        }
    }
}

/// Runs an operator action with stdout, stderr and the terminal, and
/// turns its outcome into the exit code.
fn act(action: Action) -> anyhow::Result<i32> {
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let mut confirm = confirm_on_terminal;
    let mut io = Io {
        out: &mut out,
        err: &mut err,
        confirm: &mut confirm,
    };
    let rt = runtime()?;
    let result: Result<(), ActionError> = match action {
        Action::Switchover {
            agent,
            cancel: true,
            ..
        } => rt.block_on(switchover::cancel(&agent.connect(), &mut io)),
        Action::Switchover {
            agent,
            candidate,
            at,
            force,
            cancel: false,
        } => {
            let request = switchover::Switchover {
                candidate,
                at,
                force,
            };
            rt.block_on(switchover::run(&agent.connect(), &request, &mut io))
        }
        Action::Failover {
            agent,
            candidate,
            force,
        } => {
            let request = failover::Failover { candidate, force };
            rt.block_on(failover::run(&agent.connect(), &request, &mut io))
        }
        Action::Restart {
            agent,
            member,
            all,
            pending,
            role,
            at,
            cancel,
        } => {
            let request = restart::Restart {
                member,
                all,
                pending,
                role: role.map(Role::from),
                at,
            };
            rt.block_on(restart::run(&agent.connect(), &request, cancel, &mut io))
        }
        Action::Reload { agent, member } => {
            rt.block_on(reload::run(&agent.connect(), member.as_deref(), &mut io))
        }
        Action::Reinit {
            agent,
            member,
            no_wait,
        } => {
            let wait = (!no_wait).then_some(reinit::REINIT_POLL);
            rt.block_on(reinit::run(&agent.connect(), &member, wait, &mut io))
        }
        Action::Pause { agent, wait } => {
            let wait = wait.then_some(pause::PAUSE_POLL);
            rt.block_on(pause::run(&agent.connect(), true, wait, &mut io))
        }
        Action::Resume { agent, wait } => {
            let wait = wait.then_some(pause::PAUSE_POLL);
            rt.block_on(pause::run(&agent.connect(), false, wait, &mut io))
        }
    };
    Ok(match result {
        Ok(()) => client::session::EXIT_OK,
        Err(e) => {
            eprintln!("pgwarden: {e}");
            e.exit_code()
        }
    })
}

fn real_main(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Cmd::Run { config } => {
            let logging = daemon::logging::Logging::init();
            Ok(runtime()?.block_on(daemon::run(&config, &logging)))
        }
        Cmd::CheckConfig { config } => match config::load_with_warnings(&config) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    eprintln!("warning: {w}");
                }
                print!("{}", config::effective_toml(&loaded.config));
                Ok(0)
            }
            Err(e) => {
                eprint!("{e}");
                Ok(daemon::EXIT_CONFIG)
            }
        },
        Cmd::Status {
            config,
            url,
            json,
            tls,
        } => show(config, url, tls, json, "/status", client::render_status),
        Cmd::List {
            config,
            url,
            json,
            tls,
        } => show(
            config,
            url,
            tls,
            json,
            pgwarden::api::CLUSTER_DOC_PATH,
            client::render_cluster,
        ),
        Cmd::FenceGuard {
            deadline_file,
            data_dir,
        } => Ok(pgwarden::pg::fence_guard::run_guard(
            &deadline_file,
            &data_dir,
        )),
        Cmd::Demo {
            nodes,
            dir,
            synchronous,
        } => {
            let sync = match synchronous.as_str() {
                "on" => config::SyncMode::On,
                "quorum" => config::SyncMode::Quorum,
                _ => config::SyncMode::Off,
            };
            Ok(runtime()?.block_on(demo::run(nodes, dir, sync))?)
        }
        Cmd::Generate { what } => generate(what),
        Cmd::Action(action) => act(action),
    }
}

/// Writes the man pages or a completion script from this command line's
/// definition; prints each file written.
fn generate(what: Generate) -> anyhow::Result<i32> {
    let written = match what {
        Generate::Man { out } => pgwarden::manual::write_man_pages(Cli::command(), &out)?,
        Generate::Completions { shell, out } => vec![pgwarden::manual::write_completions(
            Cli::command(),
            shell,
            &out,
        )?],
    };
    for path in written {
        println!("{}", path.display());
    }
    Ok(0)
}
