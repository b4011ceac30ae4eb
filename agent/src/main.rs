//! The `pgwarden` command: parses the command line and hands over to the
//! library; it prints and chooses the exit code, nothing more.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use pgwarden::{client, config, daemon, demo};

/// A node-local agent that keeps a few PostgreSQL servers a replicated,
/// self-healing cluster.
#[derive(Parser)]
#[command(name = "pgwarden", version, about)]
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
    /// Start a local cluster on loopback until Ctrl-C, then remove it.
    Demo {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: u32,
        /// Where to build it (default: a new temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
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

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGWARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
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

fn real_main(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Cmd::Run { config } => {
            init_logging();
            Ok(runtime()?.block_on(daemon::run(&config)))
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
        } => show(config, url, tls, json, "/cluster", client::render_cluster),
        Cmd::FenceGuard {
            deadline_file,
            data_dir,
        } => Ok(pgwarden::pg::fence_guard::run_guard(
            &deadline_file,
            &data_dir,
        )),
        Cmd::Demo { nodes, dir } => Ok(runtime()?.block_on(demo::run(nodes, dir))?),
    }
}
