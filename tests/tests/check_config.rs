//! `pgwarden check-config --config FILE`, run as the built binary, the way
//! Ansible or Salt run it before a reload: the examples in `config/` pass
//! and print their effective configuration (exit 0); each class of mistake
//! is refused with exit code 2 and a message naming the key and the file;
//! several mistakes are all listed at once.
//!
//! The binary is `$PGWARDEN_BIN`, else `target/debug/pgwarden` of this
//! workspace (or of `$CARGO_TARGET_DIR`): build it first with `cargo build`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use pgwarden_tests::pgwarden_bin;

// ---------------------------------------------------------------- helpers

/// An example configuration from `config/`.
fn example(rel: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config")
        .join(rel);
    assert!(path.is_file(), "example {} is missing", path.display());
    path
}

/// What one run of `check-config` did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `pgwarden check-config --config FILE` with exactly the given
/// `PGWARDEN_*` variables: the ones of this process are removed, so an
/// override set in the developer's shell cannot change the outcome.
fn check_config(file: &Path, env: &[(&str, String)]) -> Run {
    let mut cmd = Command::new(pgwarden_bin());
    cmd.arg("check-config").arg("--config").arg(file);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PGWARDEN_") {
            cmd.env_remove(name);
        }
    }
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", pgwarden_bin().display()));
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A temporary directory for configuration files and secret files.
struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Self {
        Dir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A file with the given contents and mode.
    fn file(&self, name: &str, contents: &str, mode: u32) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, contents).expect("write file");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    /// The four secret files of a data member, mode 0600.
    fn secrets(&self) -> Secrets {
        Secrets {
            token: self.file("api.token", "token-CONTENTS\n", 0o600),
            cluster: self.file("cluster.secret", "cluster-CONTENTS\n", 0o600),
            replicator: self.file("replicator.pass", "replicator-CONTENTS\n", 0o600),
            postgres: self.file("postgres.pass", "postgres-CONTENTS\n", 0o600),
        }
    }
}

struct Secrets {
    token: PathBuf,
    cluster: PathBuf,
    replicator: PathBuf,
    postgres: PathBuf,
}

/// The secret contents written by `Dir::secrets`, which must never be printed.
const SECRET_CONTENTS: [&str; 4] = [
    "token-CONTENTS",
    "cluster-CONTENTS",
    "replicator-CONTENTS",
    "postgres-CONTENTS",
];

impl Secrets {
    /// Overrides pointing every secret key of the examples at these files.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PGWARDEN_API__TOKEN_FILE", self.token.display().to_string()),
            (
                "PGWARDEN_CLUSTER__SECRET_FILE",
                self.cluster.display().to_string(),
            ),
            (
                "PGWARDEN_REPLICATION__PASSWORD_FILE",
                self.replicator.display().to_string(),
            ),
            (
                "PGWARDEN_REPLICATION__SUPERUSER_PASSWORD_FILE",
                self.postgres.display().to_string(),
            ),
        ]
    }
}

/// The members list of [`three_node`].
const MEMBERS: &str = r#"members = [
  { name = "pg1", api_url = "http://10.0.0.1:8008" },
  { name = "pg2", api_url = "http://10.0.0.2:8008" },
  { name = "pg3", api_url = "http://10.0.0.3:8008" },
]"#;

/// A valid configuration of node pg1 in a three-member cluster, with its
/// secret files named in the file itself. Cases below break one thing in it.
fn three_node(s: &Secrets) -> String {
    format!(
        r#"[node]
name = "pg1"
data_dir = "/var/lib/postgresql/15/main"

[api]
listen = "0.0.0.0:8008"
token_file = "{token}"

[cluster]
name = "main"
secret_file = "{cluster}"
ttl = "10s"
loop_wait = "1s"
{MEMBERS}

[postgresql]
port = 5432

[replication]
password_file = "{replicator}"
superuser_password_file = "{postgres}"
synchronous = "off"
max_lag_on_failover = "1MB"
"#,
        token = s.token.display(),
        cluster = s.cluster.display(),
        replicator = s.replicator.display(),
        postgres = s.postgres.display(),
    )
}

/// `text` with `from` replaced by `to`; panics when `from` is absent, so a
/// case cannot silently test the unmodified, valid file.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "{from:?} not in the base configuration"
    );
    text.replacen(from, to, 1)
}

/// Checks that a run refused the file with exit code 2 and named the file
/// and every key; returns a description of what is wrong, if anything.
fn refused(run: &Run, file: &Path, keys: &[&str]) -> Option<String> {
    let mut wrong = Vec::new();
    if run.code != Some(2) {
        wrong.push(format!("exit code {:?}, expected 2", run.code));
    }
    if !run.stderr.contains(&file.display().to_string()) {
        wrong.push(format!("stderr does not name the file {}", file.display()));
    }
    for key in keys {
        if !run.stderr.contains(&format!("{key}: ")) {
            wrong.push(format!("stderr does not name the key {key}"));
        }
    }
    (!wrong.is_empty()).then(|| format!("{}\n--- stderr:\n{}", wrong.join("; "), run.stderr))
}

// ------------------------------------------------------------------ tests

#[test]
fn given_their_secret_files_exist_the_examples_pass_and_print_the_effective_configuration() {
    let dir = Dir::new();
    let secrets = dir.secrets();
    for (rel, node) in [
        ("pgwarden.toml", "pg1"),
        ("three-node/pg1.toml", "pg1"),
        ("three-node/pg2.toml", "pg2"),
        ("three-node/pg3.toml", "pg3"),
    ] {
        let run = check_config(&example(rel), &secrets.env());
        assert_eq!(run.code, Some(0), "{rel}: {run:?}");
        assert!(
            !run.stderr.contains("warning"),
            "{rel}: unexpected warnings:\n{}",
            run.stderr
        );
        let out = &run.stdout;
        for section in [
            "[node]",
            "[api]",
            "[cluster]",
            "[postgresql]",
            "[replication]",
            "[log]",
        ] {
            assert!(out.contains(section), "{rel}: no {section} in:\n{out}");
        }
        // The tags are shown with their defaults, as every other key.
        assert!(
            out.contains("tags = { nofailover = false, noloadbalance = false, nosync = false, failover_priority = 1, clonefrom = false }"),
            "{rel}:\n{out}"
        );
        assert!(out.contains(&format!("name = \"{node}\"")), "{rel}:\n{out}");
        // Defaults filled in, overrides applied.
        assert!(out.contains("ttl = \"10s\""), "{rel}:\n{out}");
        let replicator = secrets.replicator.display().to_string();
        let line = out
            .lines()
            .find(|l| l.starts_with("password_file = ") && l.contains(&replicator))
            .unwrap_or_else(|| panic!("{rel}: password_file is not {replicator}:\n{out}"));
        assert!(line.contains("readable"), "{rel}: {line}");
        for secret in SECRET_CONTENTS {
            assert!(
                !out.contains(secret),
                "{rel}: secret {secret} printed:\n{out}"
            );
        }
    }
}

#[test]
fn the_base_configuration_of_these_tests_is_valid() {
    // Every refusal below is one edit away from this file: if it did not
    // pass, the refusals would prove nothing.
    let dir = Dir::new();
    let file = dir.file("pgwarden.toml", &three_node(&dir.secrets()), 0o644);
    let run = check_config(&file, &[]);
    assert_eq!(run.code, Some(0), "{run:?}");
}

/// One way to get the configuration wrong.
struct Case {
    what: &'static str,
    text: String,
    env: Vec<(&'static str, String)>,
    /// Keys that must each start a problem line (`key: ...`).
    keys: Vec<&'static str>,
    /// Words the messages must contain: a variable, a file, another key.
    mentions: Vec<String>,
}

fn case(what: &'static str, text: String, keys: &[&'static str]) -> Case {
    Case {
        what,
        text,
        env: Vec::new(),
        keys: keys.to_vec(),
        mentions: Vec::new(),
    }
}

impl Case {
    fn env(mut self, name: &'static str, value: impl ToString) -> Self {
        self.env.push((name, value.to_string()));
        self
    }

    fn mentions(mut self, word: impl ToString) -> Self {
        self.mentions.push(word.to_string());
        self
    }
}

#[test]
fn each_class_of_mistake_is_refused_with_exit_2_naming_the_key_and_the_file() {
    let dir = Dir::new();
    let secrets = dir.secrets();
    let base = three_node(&secrets);
    let empty = dir.file("empty.pass", "\n", 0o600);
    let absent = dir.path("absent.pass");
    let line = |key: &str, path: &Path| format!("{key} = \"{}\"\n", path.display());

    let cases = vec![
        // Unknown keys, anywhere.
        case(
            "unknown key in a section",
            edit(&base, "ttl = \"10s\"", "tll = \"10s\""),
            &["cluster.tll"],
        )
        .mentions("ttl"),
        case(
            "unknown key in a member entry",
            edit(
                &base,
                "api_url = \"http://10.0.0.2:8008\"",
                "api_url = \"http://10.0.0.2:8008\", nofailvoer = true",
            ),
            &["cluster.members[1].nofailvoer"],
        )
        .mentions("nofailover"),
        case(
            "unknown section",
            format!("{base}\n[postgres]\nport = 5432\n"),
            &["postgres"],
        )
        .mentions("postgresql"),
        case(
            "unknown key from the environment",
            base.clone(),
            &["node.namee"],
        )
        .env("PGWARDEN_NODE__NAMEE", "pg1")
        .mentions("PGWARDEN_NODE__NAMEE"),
        // Missing required keys.
        case(
            "missing node.name",
            edit(&base, "name = \"pg1\"\ndata_dir", "data_dir"),
            &["node.name"],
        ),
        case(
            "missing node.data_dir",
            edit(&base, "data_dir = \"/var/lib/postgresql/15/main\"\n", ""),
            &["node.data_dir"],
        ),
        case(
            "missing cluster.name",
            edit(&base, "name = \"main\"\n", ""),
            &["cluster.name"],
        ),
        case(
            "empty cluster.members",
            edit(&base, MEMBERS, "members = []"),
            &["cluster.members"],
        ),
        case(
            "missing replication.password_file",
            edit(&base, &line("password_file", &secrets.replicator), ""),
            &["replication.password_file"],
        ),
        case(
            "missing replication.superuser_password_file",
            edit(
                &base,
                &line("superuser_password_file", &secrets.postgres),
                "",
            ),
            &["replication.superuser_password_file"],
        ),
        case(
            "missing cluster.secret_file with three members",
            edit(&base, &line("secret_file", &secrets.cluster), ""),
            &["cluster.secret_file"],
        ),
        // Bad values and wrong types.
        case(
            "port out of range",
            edit(&base, "port = 5432", "port = 70000"),
            &["postgresql.port"],
        ),
        case(
            "port of the wrong type",
            edit(&base, "port = 5432", "port = \"5432\""),
            &["postgresql.port"],
        ),
        case(
            "port out of range from the environment",
            base.clone(),
            &["postgresql.port"],
        )
        .env("PGWARDEN_POSTGRESQL__PORT", "70000")
        .mentions("PGWARDEN_POSTGRESQL__PORT"),
        case(
            "ttl not a duration",
            edit(&base, "ttl = \"10s\"", "ttl = \"ten\""),
            &["cluster.ttl"],
        ),
        case(
            "max_lag_on_failover not a size",
            edit(
                &base,
                "max_lag_on_failover = \"1MB\"",
                "max_lag_on_failover = \"5XB\"",
            ),
            &["replication.max_lag_on_failover"],
        ),
        case(
            "synchronous not a mode",
            edit(&base, "synchronous = \"off\"", "synchronous = \"maybe\""),
            &["replication.synchronous"],
        ),
        case(
            "listen not ip:port",
            edit(&base, "listen = \"0.0.0.0:8008\"", "listen = \"localhost\""),
            &["api.listen"],
        ),
        case(
            "api_url not http(s)://host:port",
            edit(&base, "\"http://10.0.0.2:8008\"", "\"10.0.0.2:8008\""),
            &["cluster.members[1].api_url"],
        ),
        case(
            "member name unsafe as a slot name",
            edit(&base, "name = \"pg2\"", "name = \"PG-2\""),
            &["cluster.members[1].name"],
        )
        .mentions("lowercase"),
        case(
            "node name unsafe as a slot name, from the environment",
            base.clone(),
            &["node.name"],
        )
        .env("PGWARDEN_NODE__NAME", "pg.1")
        .mentions("PGWARDEN_NODE__NAME"),
        // Secret files.
        case(
            "missing secret file",
            base.clone(),
            &["replication.password_file"],
        )
        .env("PGWARDEN_REPLICATION__PASSWORD_FILE", absent.display())
        .mentions(absent.display()),
        case("empty secret file", base.clone(), &["cluster.secret_file"])
            .env("PGWARDEN_CLUSTER__SECRET_FILE", empty.display())
            .mentions(empty.display()),
        case(
            "secret file that is a directory",
            base.clone(),
            &["api.token_file"],
        )
        .env("PGWARDEN_API__TOKEN_FILE", dir.dir.path().display()),
        // Parameters the agent owns, or needs above a minimum.
        case(
            "wal_level below replica",
            edit(&base, "[postgresql]\nport = 5432", "[postgresql]\nport = 5432\nparameters = { wal_level = \"minimal\" }"),
            &["postgresql.parameters.wal_level"],
        )
        .mentions("replica"),
        case(
            "hot_standby off",
            edit(&base, "[postgresql]\nport = 5432", "[postgresql]\nport = 5432\nparameters = { hot_standby = false }"),
            &["postgresql.parameters.hot_standby"],
        ),
        case(
            "no WAL senders",
            edit(&base, "[postgresql]\nport = 5432", "[postgresql]\nport = 5432\nparameters = { max_wal_senders = 0, max_replication_slots = 2 }"),
            &["postgresql.parameters.max_wal_senders", "postgresql.parameters.max_replication_slots"],
        )
        .mentions("at least 5"),
        case(
            "wal_log_hints off",
            edit(&base, "[postgresql]\nport = 5432", "[postgresql]\nport = 5432\nparameters = { wal_log_hints = false }"),
            &["postgresql.parameters.wal_log_hints"],
        )
        .mentions("pg_rewind"),
        case(
            "a port of its own",
            edit(&base, "[postgresql]\nport = 5432", "[postgresql]\nport = 5432\nparameters = { port = 5433 }"),
            &["postgresql.parameters.port"],
        )
        .mentions("postgresql.port"),
        case(
            "a recovery target",
            edit(&base, "[postgresql]\nport = 5432", "[postgresql]\nport = 5432\nparameters = { recovery_target_lsn = \"0/3000000\" }"),
            &["postgresql.parameters.recovery_target_lsn"],
        ),
        // This node and the members list.
        case(
            "node.name not in cluster.members",
            edit(
                &base,
                "name = \"pg1\"\ndata_dir",
                "name = \"pg4\"\ndata_dir",
            ),
            &["node.name"],
        )
        .mentions("pg4"),
        case(
            "duplicate member names",
            edit(&base, "name = \"pg3\"", "name = \"pg2\""),
            &["cluster.members[2].name"],
        ),
        case(
            "duplicate api_url",
            edit(&base, "http://10.0.0.3:8008", "http://10.0.0.2:8008"),
            &["cluster.members[2].api_url"],
        ),
        case(
            "node.witness disagreeing with the member entry",
            edit(
                &base,
                "api_url = \"http://10.0.0.1:8008\"",
                "api_url = \"http://10.0.0.1:8008\", witness = true",
            ),
            &["node.witness"],
        ),
        // Lease timing.
        case(
            "ttl shorter than 3 loop_waits",
            edit(&base, "ttl = \"10s\"", "ttl = \"2s\""),
            &["cluster.ttl"],
        )
        .mentions("cluster.loop_wait")
        .mentions("3s"),
        case(
            "loop_wait under 100ms",
            edit(&base, "loop_wait = \"1s\"", "loop_wait = \"50ms\""),
            &["cluster.loop_wait"],
        )
        .mentions("100ms"),
    ];

    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let file = dir.file(&format!("case-{i}.toml"), &c.text, 0o644);
        let run = check_config(&file, &c.env);
        let mut wrong: Vec<String> = refused(&run, &file, &c.keys).into_iter().collect();
        for word in &c.mentions {
            if !run.stderr.contains(word.as_str()) {
                wrong.push(format!(
                    "stderr does not mention {word}\n--- stderr:\n{}",
                    run.stderr
                ));
            }
        }
        if !wrong.is_empty() {
            failures.push(format!("{}: {}", c.what, wrong.join("\n")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn an_unreadable_secret_file_is_refused() {
    let dir = Dir::new();
    let secrets = dir.secrets();
    let locked = dir.file("locked.pass", "x\n", 0o000);
    if fs::read(&locked).is_ok() {
        // Root reads mode 0000 files: there is no permission to deny here.
        eprintln!("skipped: this process may read mode 0000 files (running as root)");
        return;
    }
    let file = dir.file("pgwarden.toml", &three_node(&secrets), 0o644);
    let env = vec![(
        "PGWARDEN_REPLICATION__PASSWORD_FILE",
        locked.display().to_string(),
    )];
    let run = check_config(&file, &env);
    if let Some(wrong) = refused(&run, &file, &["replication.password_file"]) {
        panic!("{wrong}");
    }
    assert!(run.stderr.contains("ermission denied"), "{}", run.stderr);
}

#[test]
fn a_world_readable_secret_file_is_a_warning_not_an_error() {
    let dir = Dir::new();
    let mut secrets = dir.secrets();
    secrets.replicator = dir.file("replicator.pass", "replicator-CONTENTS\n", 0o644);
    let file = dir.file("pgwarden.toml", &three_node(&secrets), 0o644);
    let run = check_config(&file, &[]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stderr.contains("replication.password_file"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("0644"), "{}", run.stderr);
    assert!(run.stdout.contains("[replication]"), "{}", run.stdout);
}

#[test]
fn given_several_problems_then_all_are_listed_at_once() {
    let dir = Dir::new();
    let secrets = dir.secrets();
    let text = edit(&three_node(&secrets), "ttl = \"10s\"", "ttl = \"ten\"");
    let text = edit(
        &text,
        "port = 5432",
        "port = 0\nsocket_directory = \"/tmp\"",
    );
    let text = edit(&text, "synchronous = \"off\"", "synchronous = \"maybe\"");
    let text = edit(
        &text,
        "name = \"pg1\"\ndata_dir",
        "name = \"pg9\"\ndata_dir",
    );
    let file = dir.file("pgwarden.toml", &text, 0o644);
    let env = vec![("PGWARDEN_API__LISTEN", "8008".to_string())];
    let run = check_config(&file, &env);
    let keys = [
        "cluster.ttl",
        "postgresql.port",
        "postgresql.socket_directory",
        "replication.synchronous",
        "node.name",
        "api.listen",
    ];
    if let Some(wrong) = refused(&run, &file, &keys) {
        panic!("{wrong}");
    }
    assert!(
        run.stdout.is_empty(),
        "nothing is printed on stdout for a refused file: {}",
        run.stdout
    );
}
