//! What the benchmark binaries share: their command line, the clusters
//! they make, how they print a figure, and the measurements more than one
//! binary makes (`bench` runs them all).
//!
//! - [`failover`]: node death of the primary, then a PostgreSQL-only crash;
//! - [`switchover`]: the write-unavailable window of `POST /switchover`;
//! - [`commit`]: pgbench in a `replication.synchronous` mode;
//! - [`load`]: HTTP load on an endpoint (`wrk`, or in-process);
//! - [`machine`]: the machine, and a process's memory and CPU from `/proc`.

pub mod commit;
pub mod failover;
pub mod load;
pub mod machine;
pub mod switchover;

use std::path::Path;

use crate::{Cluster, Node, SLOW};

/// The modes of `replication.synchronous`.
pub const SYNCHRONOUS_MODES: [&str; 3] = ["off", "on", "quorum"];

/// `--runs N --ttl D --loop-wait D`, the boolean flags a benchmark names,
/// and the options with a value it names.
#[derive(Debug, Clone)]
pub struct BenchArgs {
    /// How many runs.
    pub runs: usize,
    /// `cluster.ttl` for the clusters it makes.
    pub ttl: String,
    /// `cluster.loop_wait` for the clusters it makes.
    pub loop_wait: String,
    /// The boolean flags given.
    pub flags: Vec<String>,
    /// The options given with their values (`--synchronous`, `quorum`).
    pub values: Vec<(String, String)>,
}

impl BenchArgs {
    /// Whether `flag` was given.
    pub fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// The value given for `option`, the last one when it was given twice.
    pub fn value(&self, option: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(o, _)| o == option)
            .map(|(_, v)| v.as_str())
    }
}

/// The command line of benchmark `name`; exits 2 naming the problem.
/// Defaults: `runs`, ttl 10s, loop_wait 1s (the configuration's).
pub fn bench_args(name: &str, runs: usize, flags: &[&str]) -> BenchArgs {
    bench_args_with(name, runs, flags, &[])
}

/// [`bench_args`] with `options` that take a value: each `(option, what
/// it takes)`, as the usage line shows it (`("--synchronous",
/// "off|on|quorum")`).
pub fn bench_args_with(
    name: &str,
    runs: usize,
    flags: &[&str],
    options: &[(&str, &str)],
) -> BenchArgs {
    let usage = |problem: &str| -> ! {
        let extra: String = options
            .iter()
            .map(|(o, v)| format!(" [{o} {v}]"))
            .chain(flags.iter().map(|f| format!(" [{f}]")))
            .collect();
        eprintln!(
            "{name}: {problem}\nusage: {name} [--runs N] [--ttl 10s] [--loop-wait 1s]{extra}"
        );
        std::process::exit(2);
    };
    let mut a = BenchArgs {
        runs,
        ttl: "10s".into(),
        loop_wait: "1s".into(),
        flags: Vec::new(),
        values: Vec::new(),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let arg = argv[i].as_str();
        if flags.contains(&arg) {
            a.flags.push(arg.to_string());
            i += 1;
            continue;
        }
        let Some(value) = argv.get(i + 1).cloned() else {
            usage(&format!("{arg} needs a value, or is unknown"));
        };
        match arg {
            "--runs" => {
                a.runs = value
                    .parse()
                    .unwrap_or_else(|_| usage("--runs takes a number"))
            }
            "--ttl" => a.ttl = value,
            "--loop-wait" => a.loop_wait = value,
            option if options.iter().any(|(o, _)| *o == option) => {
                a.values.push((option.to_string(), value))
            }
            other => usage(&format!("unknown argument {other}")),
        }
        i += 2;
    }
    a
}

/// A cluster of data members named `names` in `root`, no witness, each
/// with `synchronous = "<mode>"` in `[replication]` when `synchronous` is
/// given (`None`: the key left out, asynchronous by default). Exits 2 on
/// a mode the configuration would refuse.
pub fn data_cluster(
    root: &Path,
    names: &[&str],
    ttl: &str,
    loop_wait: &str,
    synchronous: Option<&str>,
) -> Cluster {
    let mut c = Cluster::new(root, names, |_| false, ttl, loop_wait);
    let Some(mode) = synchronous else {
        return c;
    };
    if !SYNCHRONOUS_MODES.contains(&mode) {
        eprintln!("synchronous must be one of {SYNCHRONOUS_MODES:?}, not {mode:?}");
        std::process::exit(2);
    }
    let members: Vec<(String, u16, bool)> = c
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.api_port, false))
        .collect();
    for node in &mut c.nodes {
        node.replication_extra
            .push(format!("synchronous = \"{mode}\""));
        node.write_cluster_config(&members);
    }
    c
}

/// Waits until `primary` commits: in a synchronous mode, until its
/// `/status` says `synchronous.writes_blocked` is false (enough standbys
/// count); asynchronous, at once. Returns its `synchronous` document
/// (`null` when asynchronous).
pub fn wait_commits_flow(primary: &Node, mode: &str) -> serde_json::Value {
    if mode == "off" {
        return serde_json::Value::Null;
    }
    let doc = primary.wait_status(SLOW, "writes not blocked", |d| {
        d["role"] == "primary"
            && d["synchronous"]["mode"] == mode
            && d["synchronous"]["writes_blocked"] == false
    });
    doc["synchronous"].clone()
}

/// The median of `values` (NaN for none).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The `p`-th percentile of `values` (0 < p ≤ 100), by nearest rank: the
/// smallest value at least `p` % of them do not exceed (NaN for none).
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    if values.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// One line: the figure's name, median, max and every value.
pub fn print_stats(name: &str, values: &mut [f64]) {
    let median = median(values);
    let max = values.last().copied().unwrap_or(f64::NAN);
    println!(
        "{name:<56} median {median:>7.2}   max {max:>7.2}   ({} runs: {values:.2?})",
        values.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn the_99th_percentile_by_nearest_rank() {
        let mut hundred: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&mut hundred, 99.0), 99.0);
        assert_eq!(percentile(&mut hundred, 50.0), 50.0);
        assert_eq!(percentile(&mut [7.0], 99.0), 7.0);
        assert_eq!(percentile(&mut [2.0, 1.0], 99.0), 2.0);
        assert!(percentile(&mut [], 99.0).is_nan());
    }
}
