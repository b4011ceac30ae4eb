//! Loading: the TOML file, then `PGWARDEN_<SECTION>__<KEY>` overrides,
//! merged by the `config` crate into one tree that `read.rs` turns into a
//! [`Config`], collecting every problem instead of stopping at the first.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use super::model::Config;
use super::report::Report;
use super::schema;

/// Environment variables starting with this are configuration overrides
/// when they have the `PGWARDEN_<SECTION>__<KEY>` shape.
pub const ENV_PREFIX: &str = "PGWARDEN_";

/// Separates the section from the key (and a parameter name from
/// `parameters`) in an override's name, as the `config` crate splits it.
const ENV_SEPARATOR: &str = "__";

/// One problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, as `section.key` (`cluster.members[1].api_url` inside a
    /// member entry, `(file)` for the file as a whole).
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Parser messages span several lines; keep continuation lines
        // indented so a list of problems stays readable.
        let message = self.message.replace('\n', "\n      ");
        write!(f, "{}: {}", self.key, message)
    }
}

/// A configuration that cannot be used: every problem found, at once.
#[derive(Debug, Clone)]
pub struct ConfigError {
    /// The file that was loaded.
    pub file: PathBuf,
    /// Every problem found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        let plural = if n == 1 { "problem" } else { "problems" };
        writeln!(
            f,
            "invalid configuration {} ({n} {plural}):",
            self.file.display()
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A configuration that can be used, and what deserves an operator's look
/// without stopping the agent (world-readable secret files, ...).
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// Things that work but are probably not what was meant.
    pub warnings: Vec<Problem>,
}

/// Loads and validates a node's configuration, with the process's
/// environment overrides. Warnings are dropped: use [`load_with_warnings`]
/// where they can be shown.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_warnings(path).map(|loaded| loaded.config)
}

/// Loads and validates a node's configuration, with the process's
/// environment overrides, and returns the warnings alongside.
pub fn load_with_warnings(path: &Path) -> Result<Loaded, ConfigError> {
    load_with_env(path, std::env::vars_os())
}

/// Loads and validates a node's configuration with the given environment
/// instead of the process's, so tests need not mutate global state.
///
/// Only variables named `PGWARDEN_<SECTION>__<KEY>` (or
/// `PGWARDEN_POSTGRESQL__PARAMETERS__<NAME>`) are overrides; other
/// `PGWARDEN_*` variables (`PGWARDEN_LOG`, ...) are left alone.
pub fn load_with_env<I, K, V>(path: &Path, env: I) -> Result<Loaded, ConfigError>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<OsString>,
    V: Into<OsString>,
{
    let (config, mut report) = read_file(path, env)?;
    super::validate::check(&config, &mut report);
    let (problems, warnings) = report.finish();
    if problems.is_empty() {
        Ok(Loaded { config, warnings })
    } else {
        Err(ConfigError {
            file: path.to_path_buf(),
            problems,
        })
    }
}

/// The file and its overrides read key by key into a [`Config`], with
/// what reading found; the rules across keys are not applied yet. Fails
/// only when there is no tree to read (no file, bad TOML).
pub(super) fn read_file<I, K, V>(path: &Path, env: I) -> Result<(Config, Report), ConfigError>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<OsString>,
    V: Into<OsString>,
{
    let fail = |problems| ConfigError {
        file: path.to_path_buf(),
        problems,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        fail(vec![Problem {
            key: "(file)".into(),
            message: format!(
                "cannot read {}: {e}; check the path given to --config and that the agent may read it",
                path.display()
            ),
        }])
    })?;

    let mut report = Report::default();
    let overrides = collect_overrides(env, &mut report);
    let tree = match merge(&text, &overrides) {
        Ok(tree) => tree,
        Err(problem) => return Err(fail(vec![problem])),
    };
    for (key, var) in &overrides.origins {
        report.note_env_origin(key, var);
    }

    let config = schema::read(&tree, &mut report);
    Ok((config, report))
}

/// The overrides found in the environment, checked against the schema.
#[derive(Debug, Default)]
struct Overrides {
    /// As the `config` crate expects them: variable name → value.
    vars: config::Map<String, String>,
    /// Dotted key → the variable that set it, to name it in messages.
    origins: BTreeMap<String, String>,
}

/// Picks the `PGWARDEN_<SECTION>__<KEY>` variables out of `env`. An
/// override of a key that does not exist is a problem, like an unknown key
/// in the file; such variables are not passed on, so that the tree holds
/// only keys the schema knows about.
fn collect_overrides<I, K, V>(env: I, report: &mut Report) -> Overrides
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<OsString>,
    V: Into<OsString>,
{
    let mut out = Overrides::default();
    let mut env: Vec<(OsString, OsString)> =
        env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    env.sort();
    for (name, value) in env {
        let Some(name) = name.to_str().map(str::to_string) else {
            continue; // not ours: our variables are ASCII
        };
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let lower = rest.to_ascii_lowercase();
        let Some((section, key)) = lower.split_once(ENV_SEPARATOR) else {
            // `PGWARDEN_POSTGRESQL_PORT`: a single underscore after a
            // section name is almost certainly a misspelt override, and
            // ignoring it silently would leave the operator puzzled.
            if let Some(section) = schema::SECTIONS
                .iter()
                .find(|s| lower.starts_with(&format!("{}_", s.name)))
            {
                let key = &lower[section.name.len() + 1..];
                report.error(
                    &format!("{}.{key}", section.name),
                    format!(
                        "environment variable {name} is not an override: write two underscores between section and key, {ENV_PREFIX}{}{ENV_SEPARATOR}{}",
                        section.name.to_ascii_uppercase(),
                        key.to_ascii_uppercase()
                    ),
                );
            }
            continue;
        };
        let dotted = format!("{section}.{}", key.replace(ENV_SEPARATOR, "."));
        if let Err(message) = schema::check_override_key(section, key) {
            report.error(
                &dotted,
                format!("{message} (set by environment variable {name})"),
            );
            continue;
        }
        let Some(value) = value.to_str().map(str::to_string) else {
            report.error(
                &dotted,
                format!("environment variable {name} is not valid UTF-8; set it to plain text"),
            );
            continue;
        };
        if value.is_empty() {
            // An empty variable is how templating tools say "unset"; using
            // it as an empty path or name would only produce a worse error.
            report.warn(
                &dotted,
                format!("environment variable {name} is empty and was ignored; unset it or give it a value"),
            );
            continue;
        }
        out.origins.insert(dotted, name.clone());
        out.vars.insert(name, value);
    }
    out
}

/// Merges the file and the overrides into one JSON tree (tables sorted by
/// key, so problems come out in a stable order).
fn merge(text: &str, overrides: &Overrides) -> Result<serde_json::Value, Problem> {
    let built = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX.trim_end_matches('_'))
                .prefix_separator("_")
                .separator(ENV_SEPARATOR)
                // Values stay strings: each key's reader parses them with
                // the key's own type, so `PGWARDEN_NODE__NAME=007` stays
                // "007" and a bad number is reported against its key.
                .try_parsing(false)
                .source(Some(overrides.vars.clone())),
        )
        .build()
        .and_then(|c| c.try_deserialize::<serde_json::Value>());
    built.map_err(|e| Problem {
        key: "(file)".into(),
        message: format!(
            "{}\nfix the TOML syntax at the place shown",
            e.to_string().trim_end()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn given_unrelated_pgwarden_variables_then_they_are_not_treated_as_overrides() {
        let mut report = Report::default();
        let o = collect_overrides(
            [
                ("PGWARDEN_BIN", "/x"),
                ("PGWARDEN_LOG", "debug"),
                ("PATH", "/bin"),
            ],
            &mut report,
        );
        assert!(o.vars.is_empty(), "{:?}", o.vars);
        let (problems, warnings) = report.finish();
        assert!(
            problems.is_empty() && warnings.is_empty(),
            "{problems:?} {warnings:?}"
        );
    }

    #[test]
    fn given_an_override_with_one_underscore_after_the_section_then_the_fix_is_spelt_out() {
        let mut report = Report::default();
        collect_overrides([("PGWARDEN_POSTGRESQL_PORT", "5433")], &mut report);
        let (problems, _) = report.finish();
        assert_eq!(keys(&problems), ["postgresql.port"]);
        assert!(
            problems[0].message.contains("PGWARDEN_POSTGRESQL__PORT"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn given_overrides_of_unknown_and_list_keys_then_each_is_a_problem_naming_the_variable() {
        let mut report = Report::default();
        let o = collect_overrides(
            [
                ("PGWARDEN_NODE__NAMEE", "pg1"),
                ("PGWARDEN_CLUSTR__TTL", "5s"),
                ("PGWARDEN_CLUSTER__MEMBERS", "pg1"),
                ("PGWARDEN_NODE__NAME", "pg1"),
            ],
            &mut report,
        );
        assert_eq!(o.vars.keys().collect::<Vec<_>>(), ["PGWARDEN_NODE__NAME"]);
        let (problems, _) = report.finish();
        assert_eq!(
            keys(&problems),
            ["cluster.members", "clustr.ttl", "node.namee"]
        );
        assert!(
            problems[2].message.contains("PGWARDEN_NODE__NAMEE"),
            "{}",
            problems[2]
        );
        assert!(
            problems[2].message.contains("did you mean \"name\"?"),
            "{}",
            problems[2]
        );
    }

    #[test]
    fn given_an_empty_override_then_it_is_ignored_with_a_warning() {
        let mut report = Report::default();
        let o = collect_overrides([("PGWARDEN_NODE__BIN_DIR", "")], &mut report);
        assert!(o.vars.is_empty());
        let (problems, warnings) = report.finish();
        assert!(problems.is_empty());
        assert_eq!(keys(&warnings), ["node.bin_dir"]);
    }

    #[test]
    fn given_a_toml_syntax_error_then_the_problem_shows_where() {
        let e = merge("[node]\nname = \n", &Overrides::default()).unwrap_err();
        assert_eq!(e.key, "(file)");
        assert!(e.message.contains("line 2"), "{}", e.message);
    }

    #[test]
    fn given_overrides_then_they_replace_file_values_and_keep_the_rest() {
        let mut report = Report::default();
        let o = collect_overrides(
            [
                ("PGWARDEN_POSTGRESQL__PORT", "5433"),
                ("PGWARDEN_POSTGRESQL__PARAMETERS__WORK_MEM", "8MB"),
            ],
            &mut report,
        );
        let tree = merge("[postgresql]\nport = 5432\nsocket_dir = \"/tmp\"\n", &o).unwrap();
        assert_eq!(tree["postgresql"]["port"], "5433");
        assert_eq!(tree["postgresql"]["socket_dir"], "/tmp");
        assert_eq!(tree["postgresql"]["parameters"]["work_mem"], "8MB");
    }

    #[test]
    fn problems_display_with_the_file_and_every_key() {
        let e = ConfigError {
            file: PathBuf::from("/etc/pgwarden/pgwarden.toml"),
            problems: vec![
                Problem {
                    key: "node.name".into(),
                    message: "missing".into(),
                },
                Problem {
                    key: "cluster.ttl".into(),
                    message: "too short\nsee docs".into(),
                },
            ],
        };
        let text = e.to_string();
        assert!(
            text.starts_with("invalid configuration /etc/pgwarden/pgwarden.toml (2 problems):\n"),
            "{text}"
        );
        assert!(text.contains("  node.name: missing\n"), "{text}");
        assert!(
            text.contains("  cluster.ttl: too short\n      see docs\n"),
            "{text}"
        );
    }
}
