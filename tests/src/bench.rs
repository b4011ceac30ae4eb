//! What the benchmark binaries share: their command line and how they
//! print a figure.

/// `--runs N --ttl D --loop-wait D`, and the boolean flags a benchmark
/// names.
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
}

impl BenchArgs {
    /// Whether `flag` was given.
    pub fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// The command line of benchmark `name`; exits 2 naming the problem.
/// Defaults: `runs`, ttl 10s, loop_wait 1s (the configuration's).
pub fn bench_args(name: &str, runs: usize, flags: &[&str]) -> BenchArgs {
    let usage = |problem: &str| -> ! {
        let extra: String = flags.iter().map(|f| format!(" [{f}]")).collect();
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
            other => usage(&format!("unknown argument {other}")),
        }
        i += 2;
    }
    a
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
}
