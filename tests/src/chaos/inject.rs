//! Doing a fault to a [`NetCluster`] and undoing it: signals to processes,
//! links down, nftables rules and qdiscs inside a member's namespace,
//! operator requests. Each function returns once the fault has been held
//! for its length and healed; what the fault *did* is for the checks to
//! find out.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::netns::{NetCluster, Network, Slot};
use crate::{http_raw_to, operator_request, process_alive, Node, API_TOKEN};

/// The nftables table the faults put in a namespace (deleted to heal).
const TABLE: &str = "pgwarden_chaos";

/// What an injection reports besides success: an operator request the
/// cluster refused (a 409/412/503 is an answer, not a defect), or a note
/// (the qdisc used for a slow link).
#[derive(Debug, Default)]
pub struct Outcome {
    /// A note for the run's log.
    pub note: Option<String>,
    /// The operator request was refused (4xx or 503): nothing was done.
    pub refused: bool,
}

/// A defect an injection saw itself (an answer 500, an agent that would not
/// stop): a violation of the run's invariants.
pub type Defect = String;

/// Runs `program args` with `stdin`; the error carries its stderr.
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| format!("{program}: writing its input: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Loads the nftables `rules` (chain bodies for `input` and `output`) in
/// `slot`'s namespace, in a table of their own.
fn nft_rules(slot: &Slot, input: &[String], output: &[String]) -> Result<(), String> {
    let script = format!(
        "table inet {TABLE} {{\n\
         \tchain input {{ type filter hook input priority -10; policy accept;\n\t\t{}\n\t}}\n\
         \tchain output {{ type filter hook output priority -10; policy accept;\n\t\t{}\n\t}}\n}}\n",
        input.join("\n\t\t"),
        output.join("\n\t\t"),
    );
    run(
        "ip",
        &["netns", "exec", &slot.netns, "nft", "-f", "-"],
        Some(&script),
    )
}

/// Removes what [`nft_rules`] loaded.
fn nft_clear(slot: &Slot) -> Result<(), String> {
    run(
        "ip",
        &[
            "netns",
            "exec",
            &slot.netns,
            "nft",
            "delete",
            "table",
            "inet",
            TABLE,
        ],
        None,
    )
}

/// The pids of `pid`'s children (from `/proc/*/stat`).
fn children(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    // "pid (comm) state ppid ...": comm may hold spaces.
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// The postmaster of `node` and its children (backends, walsender, …).
fn postgres_processes(node: &Node) -> Vec<i32> {
    let Some(pm) = node.postmaster_pid().filter(|p| process_alive(*p)) else {
        return Vec::new();
    };
    let mut all = vec![pm];
    all.extend(children(pm));
    all
}

fn signal_all(pids: &[i32], sig: Signal) {
    for pid in pids {
        let _ = kill(Pid::from_raw(*pid), sig);
    }
}

/// kill -9 of `node`'s PostgreSQL: the postmaster and every child.
pub fn kill_postgres(node: &Node) -> Outcome {
    let pids = postgres_processes(node);
    signal_all(&pids, Signal::SIGKILL);
    Outcome {
        note: pids.is_empty().then(|| "no postmaster was running".into()),
        refused: false,
    }
}

/// kill -9 of the agent (and, `node_death`, of PostgreSQL), `down` of
/// nothing, then a new agent.
pub fn kill_and_restart(node: &mut Node, node_death: bool, down: Duration) -> Outcome {
    if node_death {
        let pids = postgres_processes(node);
        node.kill_agent();
        signal_all(&pids, Signal::SIGKILL);
    } else {
        node.kill_agent();
    }
    sleep(down);
    node.start();
    Outcome::default()
}

/// SIGSTOP of the agent for `length`.
pub fn freeze_agent(node: &Node, length: Duration) -> Outcome {
    let pids: Vec<i32> = node.agent_pid().into_iter().collect();
    signal_all(&pids, Signal::SIGSTOP);
    sleep(length);
    signal_all(&pids, Signal::SIGCONT);
    Outcome::default()
}

/// SIGSTOP of every PostgreSQL process of the node for `length`.
pub fn freeze_postgres(node: &Node, length: Duration) -> Outcome {
    let pids = postgres_processes(node);
    signal_all(&pids, Signal::SIGSTOP);
    sleep(length);
    // Processes forked while stopped (none can be: the postmaster is
    // stopped) would need no SIGCONT.
    signal_all(&pids, Signal::SIGCONT);
    Outcome {
        note: pids.is_empty().then(|| "no postmaster was running".into()),
        refused: false,
    }
}

/// The link of `slot` down for `length`.
pub fn isolate(slot: &Slot, length: Duration) -> Result<Outcome, String> {
    Network::set_link(slot, false)?;
    sleep(length);
    Network::set_link(slot, true)?;
    Ok(Outcome::default())
}

/// `a` drops everything from and to `b` for `length`.
pub fn cut_between(a: &Slot, b: &Slot, length: Duration) -> Result<Outcome, String> {
    nft_rules(
        a,
        &[format!("ip saddr {} drop", b.addr)],
        &[format!("ip daddr {} drop", b.addr)],
    )?;
    sleep(length);
    nft_clear(a)?;
    Ok(Outcome::default())
}

/// `slot` drops what it sends (`outgoing`) or receives on its link.
pub fn one_way(slot: &Slot, outgoing: bool, length: Duration) -> Result<Outcome, String> {
    let rule = |dir: &str| vec![format!("{dir} \"{}\" drop", slot.link)];
    if outgoing {
        nft_rules(slot, &[], &rule("oifname"))?;
    } else {
        nft_rules(slot, &rule("iifname"), &[])?;
    }
    sleep(length);
    nft_clear(slot)?;
    Ok(Outcome::default())
}

/// `slot` loses `percent` % of its packets each way.
pub fn lossy(slot: &Slot, percent: u8, length: Duration) -> Result<Outcome, String> {
    let rule = |dir: &str| {
        vec![format!(
            "{dir} \"{}\" numgen random mod 100 < {percent} drop",
            slot.link
        )]
    };
    nft_rules(slot, &rule("iifname"), &rule("oifname"))?;
    sleep(length);
    nft_clear(slot)?;
    Ok(Outcome::default())
}

/// `tc qdisc <verb> dev <dev> root <spec...>` inside `slot`'s namespace.
fn qdisc(slot: &Slot, verb: &str, dev: &str, spec: &[&str]) -> Result<(), String> {
    let mut args = vec![
        "netns",
        "exec",
        &slot.netns,
        "tc",
        "qdisc",
        verb,
        "dev",
        dev,
        "root",
    ];
    args.extend_from_slice(spec);
    run("ip", &args, None)
}

/// Whether this kernel has the netem qdisc; asked once per run (a kernel
/// without `sch_netem` answers "Specified qdisc kind is unknown").
pub fn netem_available(slot: &Slot) -> bool {
    let tried = qdisc(slot, "add", "lo", &["netem", "delay", "1ms"]);
    let _ = qdisc(slot, "del", "lo", &[]);
    tried.is_ok()
}

/// `slot`'s outgoing packets delayed by `delay` (netem), or, without
/// netem, its link slowed to 256 kbit/s with up to `delay` of queueing
/// (tbf): replication and the API slow down either way.
pub fn slow(
    slot: &Slot,
    delay: Duration,
    length: Duration,
    netem: bool,
) -> Result<Outcome, String> {
    let ms = format!("{}ms", delay.as_millis());
    let (spec, note) = if netem {
        (vec!["netem", "delay", ms.as_str()], None)
    } else {
        (
            vec![
                "tbf",
                "rate",
                "256kbit",
                "burst",
                "16kbit",
                "latency",
                ms.as_str(),
            ],
            Some("no netem in this kernel: tbf at 256 kbit/s instead".to_string()),
        )
    };
    qdisc(slot, "add", &slot.link, &spec)?;
    sleep(length);
    qdisc(slot, "del", &slot.link, &[])?;
    Ok(Outcome {
        note,
        refused: false,
    })
}

/// An operator request to `node`: a 2xx is done; 409, 412 and 503 are the
/// cluster refusing (an answer); anything else, or no answer from a
/// reachable agent, is a defect.
pub fn operate(node: &Node, method: &str, path: &str, body: &str) -> Result<Outcome, Defect> {
    let req = operator_request(method, path, body, Some(API_TOKEN));
    match http_raw_to(node.api_addr(), req.as_bytes(), Duration::from_secs(60)) {
        Ok(a) if (200..300).contains(&a.status) => Ok(Outcome::default()),
        Ok(a) if matches!(a.status, 409 | 412 | 503) => Ok(Outcome {
            note: Some(format!("{method} {path}: {} {}", a.status, a.body.trim())),
            refused: true,
        }),
        Ok(a) => Err(format!(
            "{method} {path} to {}: {} {}",
            node.name,
            a.status,
            a.body.trim()
        )),
        Err(e) => Err(format!("{method} {path} to {}: no answer: {e}", node.name)),
    }
}

/// `pause`, `length`, `resume`.
pub fn pause(node: &Node, length: Duration) -> Result<Outcome, Defect> {
    let paused = operate(node, "POST", "/pause", "")?;
    sleep(length);
    let resumed = operate(node, "POST", "/resume", "")?;
    Ok(Outcome {
        note: paused.note.or(resumed.note),
        refused: paused.refused,
    })
}

/// SIGTERM of the agent, a wait for it to exit, a new agent: PostgreSQL
/// must be the same postmaster afterwards.
pub fn agent_restart(node: &mut Node) -> Result<Outcome, Defect> {
    let before = node.postmaster_pid().filter(|p| process_alive(*p));
    node.signal_agent(Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(60);
    while node.agent_pid().is_some_and(process_alive) {
        if Instant::now() > deadline {
            return Err(format!(
                "{}: the agent did not exit within 60 s of SIGTERM",
                node.name
            ));
        }
        sleep(Duration::from_millis(50));
    }
    // Reap it (it exited): the harness's handle is then free for a start.
    node.kill_agent();
    node.start();
    let after = node.postmaster_pid().filter(|p| process_alive(*p));
    match (before, after) {
        (Some(b), a) if a != Some(b) => Err(format!(
            "{}: an agent restart stopped PostgreSQL (postmaster {b} before, {a:?} after)",
            node.name
        )),
        _ => Ok(Outcome::default()),
    }
}

/// Whether the kernel lets this run build what it needs (nft inside a
/// namespace): a clear error before the first fault rather than at the
/// hundredth.
pub fn preflight(c: &NetCluster) -> Result<(), String> {
    let slot = c
        .places
        .first()
        .ok_or_else(|| "no member in the cluster".to_string())?;
    nft_rules(slot, &[], &[]).map_err(|e| format!("nftables (apt-get install nftables): {e}"))?;
    nft_clear(slot)
}
