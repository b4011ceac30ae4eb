//! `chaos`: a real cluster in network namespaces, a writer checking every
//! acknowledged write, and a seeded random schedule of faults (see
//! `pgwarden_tests::chaos`). Prints a summary; on a violation, the seed and
//! the schedule to replay it, and exits 1.
//!
//! Run as root after `cargo build --workspace --all-targets`:
//!
//! ```text
//! target/debug/chaos --faults 1000 --seed 42 --verbose
//! ```

use std::time::Duration;

use pgwarden_tests::chaos::schedule::{unknown_kinds, KINDS};
use pgwarden_tests::chaos::{run, Options};

const USAGE: &str = "usage: chaos [--faults N] [--seed N] [--witness] [--synchronous off|quorum]
             [--ttl 3s] [--loop-wait 500ms] [--converge-within 90s]
             [--only KIND,KIND...] [--verbose]";

fn usage(problem: &str) -> ! {
    eprintln!("chaos: {problem}\n{USAGE}\nkinds: {}", KINDS.join(", "));
    std::process::exit(2);
}

/// "3s", "500ms", "1.5s", "2m".
fn duration(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = number.parse().ok().filter(|n: &f64| *n > 0.0)?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

fn parse() -> Options {
    let mut o = Options {
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1),
        faults: 30,
        witness: false,
        quorum: false,
        ttl: Duration::from_secs(3),
        loop_wait: Duration::from_millis(500),
        converge_within: Duration::from_secs(90),
        kinds: Vec::new(),
        verbose: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let arg = argv[i].as_str();
        match arg {
            "--witness" => o.witness = true,
            "--verbose" | "-v" => o.verbose = true,
            "--help" | "-h" => {
                println!("{USAGE}\nkinds: {}", KINDS.join(", "));
                std::process::exit(0);
            }
            _ => {
                let Some(value) = argv.get(i + 1) else {
                    usage(&format!("{arg} needs a value, or is unknown"));
                };
                let bad =
                    |what: &str| -> ! { usage(&format!("{arg} takes {what}, got '{value}'")) };
                match arg {
                    "--faults" => o.faults = value.parse().unwrap_or_else(|_| bad("a number")),
                    "--seed" => o.seed = value.parse().unwrap_or_else(|_| bad("a number")),
                    "--ttl" => o.ttl = duration(value).unwrap_or_else(|| bad("a duration")),
                    "--loop-wait" => {
                        o.loop_wait = duration(value).unwrap_or_else(|| bad("a duration"))
                    }
                    "--converge-within" => {
                        o.converge_within = duration(value).unwrap_or_else(|| bad("a duration"))
                    }
                    "--synchronous" => match value.as_str() {
                        "quorum" => o.quorum = true,
                        "off" => o.quorum = false,
                        _ => bad("off or quorum"),
                    },
                    "--only" => {
                        o.kinds = value.split(',').map(str::to_string).collect();
                        let unknown = unknown_kinds(&o.kinds);
                        if !unknown.is_empty() {
                            bad(&format!("kinds of fault (unknown: {})", unknown.join(", ")))
                        }
                    }
                    _ => usage(&format!("unknown option {arg}")),
                }
                i += 1;
            }
        }
        i += 1;
    }
    o
}

extern "C" fn on_signal(_: nix::libc::c_int) {
    pgwarden_tests::chaos::request_stop();
}

/// SIGINT and SIGTERM end the run after the fault under way, so that the
/// cluster, its namespaces and its files are cleaned up and the summary
/// printed. (A handler, not a blocked mask: the agents inherit the mask,
/// and they must still take SIGTERM.)
fn stop_on_signals() {
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_signal),
        nix::sys::signal::SaFlags::SA_RESTART,
        nix::sys::signal::SigSet::empty(),
    );
    for sig in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
    ] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        if let Err(e) = unsafe { nix::sys::signal::sigaction(sig, &action) } {
            eprintln!(
                "chaos: cannot handle {sig}: {e} (an interrupted run leaves its cluster behind)"
            );
        }
    }
}

fn main() {
    let options = parse();
    stop_on_signals();
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("chaos: run as root (network namespaces, nftables, PostgreSQL as postgres)");
        std::process::exit(2);
    }
    eprintln!("chaos: {}", options.replay(options.faults));
    match run(&options) {
        Ok(report) => {
            print!("{}", report.summary(&options));
            if !report.violations.is_empty() {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("chaos: cannot run: {e}");
            std::process::exit(2);
        }
    }
}
