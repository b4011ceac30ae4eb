//! Scenarios of loading whole files: the examples in `config/`, each class
//! of mistake an operator makes, environment overrides, and the effective
//! configuration printed by `check-config`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;

/// A temporary directory holding a configuration file and its secret files.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A secret file with the given contents and mode.
    fn secret(&self, name: &str, contents: &str, mode: u32) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::write(&path, contents).expect("write secret");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod secret");
        path
    }

    /// The four usual secret files, mode 0600.
    fn secrets(&self) -> Secrets {
        Secrets {
            token: self.secret("api.token", "t0ken\n", 0o600),
            cluster: self.secret("cluster.secret", "c1uster\n", 0o600),
            replicator: self.secret("replicator.pass", "rep-pass\n", 0o600),
            postgres: self.secret("postgres.pass", "pg-pass\n", 0o600),
        }
    }

    fn write(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("pgwarden.toml");
        fs::write(&path, text).expect("write config");
        path
    }
}

struct Secrets {
    token: PathBuf,
    cluster: PathBuf,
    replicator: PathBuf,
    postgres: PathBuf,
}

impl Secrets {
    /// Environment overrides pointing every secret key at these files, as
    /// an operator testing the examples would set them.
    fn env(&self) -> Vec<(String, String)> {
        [
            ("PGWARDEN_API__TOKEN_FILE", &self.token),
            ("PGWARDEN_CLUSTER__SECRET_FILE", &self.cluster),
            ("PGWARDEN_REPLICATION__PASSWORD_FILE", &self.replicator),
            (
                "PGWARDEN_REPLICATION__SUPERUSER_PASSWORD_FILE",
                &self.postgres,
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.display().to_string()))
        .collect()
    }
}

/// A valid configuration of node `pg1` in a three-member cluster, naming
/// the fixture's secret files.
fn three_node(s: &Secrets) -> String {
    format!(
        r#"
[node]
name = "pg1"
data_dir = "/var/lib/postgresql/15/main"

[api]
listen = "0.0.0.0:8008"
token_file = "{token}"

[cluster]
name = "main"
secret_file = "{cluster}"
members = [
  {{ name = "pg1", api_url = "http://10.0.0.1:8008" }},
  {{ name = "pg2", api_url = "http://10.0.0.2:8008" }},
  {{ name = "pg3", api_url = "http://10.0.0.3:8008", host = "10.0.1.3" }},
]

[replication]
password_file = "{replicator}"
superuser_password_file = "{postgres}"
"#,
        token = s.token.display(),
        cluster = s.cluster.display(),
        replicator = s.replicator.display(),
        postgres = s.postgres.display(),
    )
}

const NO_ENV: [(&str, &str); 0] = [];

fn problems_of(result: Result<Loaded, ConfigError>) -> ConfigError {
    match result {
        Ok(loaded) => panic!(
            "expected problems, the configuration loaded: {:?}",
            loaded.config
        ),
        Err(e) => e,
    }
}

fn keys(e: &ConfigError) -> Vec<&str> {
    e.problems.iter().map(|p| p.key.as_str()).collect()
}

fn message<'a>(e: &'a ConfigError, key: &str) -> &'a str {
    e.problems
        .iter()
        .find(|p| p.key == key)
        .map(|p| p.message.as_str())
        .unwrap_or_else(|| panic!("no problem for {key}: {e}"))
}

/// An example file from `config/`. The module is compiled both inside the
/// agent crate (`agent/src/config`) and on its own from elsewhere, so look
/// next to the crate and next to this source file.
fn example(rel: &str) -> PathBuf {
    let candidates = [
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config")
            .join(rel),
        Path::new(file!())
            .ancestors()
            .nth(4)
            .unwrap_or(Path::new("."))
            .join("config")
            .join(rel),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| panic!("example {rel} not found in {candidates:?}"))
}

#[test]
fn given_its_secret_files_exist_the_single_node_example_loads_without_warnings() {
    let fx = Fixture::new();
    let s = fx.secrets();
    let loaded =
        load_with_env(&example("pgwarden.toml"), s.env()).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.node.name, "pg1");
    assert_eq!(c.cluster.members.len(), 1);
    assert_eq!(
        c.replication.password_file.as_deref(),
        Some(s.replicator.as_path())
    );
    assert_eq!(c.api.token_file.as_deref(), Some(s.token.as_path()));
    assert_eq!(
        c.postgresql.parameters["max_connections"],
        ParamValue::Int(200)
    );
}

#[test]
fn given_its_secret_files_exist_each_three_node_example_loads_and_they_agree_on_the_cluster() {
    let fx = Fixture::new();
    let s = fx.secrets();
    let mut clusters = Vec::new();
    for n in 1..=3 {
        let loaded = load_with_env(&example(&format!("three-node/pg{n}.toml")), s.env())
            .unwrap_or_else(|e| panic!("pg{n}: {e}"));
        assert!(loaded.warnings.is_empty(), "pg{n}: {:?}", loaded.warnings);
        let c = loaded.config;
        assert_eq!(c.node.name, format!("pg{n}"));
        assert_eq!(c.api_advertise_url(), format!("http://10.0.0.{n}:8008"));
        assert_eq!(c.pg_advertise_host(), format!("10.0.0.{n}"));
        clusters.push(c.cluster);
    }
    assert!(clusters.windows(2).all(|w| w[0] == w[1]), "{clusters:?}");
}

#[test]
fn given_missing_secret_files_the_example_names_each_key_and_file() {
    let fx = Fixture::new();
    let gone = |name: &str| fx.dir.path().join(name).display().to_string();
    let env = vec![
        ("PGWARDEN_API__TOKEN_FILE".to_string(), gone("api.token")),
        (
            "PGWARDEN_REPLICATION__PASSWORD_FILE".to_string(),
            gone("replicator.pass"),
        ),
        (
            "PGWARDEN_REPLICATION__SUPERUSER_PASSWORD_FILE".to_string(),
            gone("postgres.pass"),
        ),
    ];
    let e = problems_of(load_with_env(&example("pgwarden.toml"), env));
    assert_eq!(
        keys(&e),
        [
            "api.token_file",
            "replication.password_file",
            "replication.superuser_password_file"
        ]
    );
    let m = message(&e, "replication.password_file");
    assert!(m.contains(&gone("replicator.pass")), "{m}");
    assert!(m.contains("PGWARDEN_REPLICATION__PASSWORD_FILE"), "{m}");
}

#[test]
fn given_a_valid_file_then_load_returns_it_with_defaults_filled_in() {
    let fx = Fixture::new();
    let s = fx.secrets();
    let path = fx.write(&three_node(&s));
    let loaded = load_with_env(&path, NO_ENV).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.warnings, []);
    let c = loaded.config;
    assert_eq!(c.cluster.ttl, std::time::Duration::from_secs(10));
    assert_eq!(c.postgresql.port, 5432);
    assert_eq!(c.replication.max_lag_on_failover, ByteSize(1 << 20));
    assert_eq!(c.cluster.members[2].pg_host().as_deref(), Some("10.0.1.3"));
    assert_eq!(c.me().map(|m| m.name.as_str()), Some("pg1"));
}

#[test]
fn given_environment_overrides_then_they_win_over_the_file() {
    let fx = Fixture::new();
    let s = fx.secrets();
    let path = fx.write(&three_node(&s));
    let env = [
        ("PGWARDEN_POSTGRESQL__PORT", "5433"),
        ("PGWARDEN_CLUSTER__TTL", "30s"),
        ("PGWARDEN_REPLICATION__SLOTS", "false"),
        ("PGWARDEN_REPLICATION__SYNCHRONOUS", "quorum"),
        ("PGWARDEN_POSTGRESQL__PARAMETERS__WORK_MEM", "64MB"),
        ("PGWARDEN_LOG", "debug"),
    ];
    let c = load_with_env(&path, env)
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    assert_eq!(c.postgresql.port, 5433);
    assert_eq!(c.cluster.ttl, std::time::Duration::from_secs(30));
    assert!(!c.replication.slots);
    assert_eq!(c.replication.synchronous, SyncMode::Quorum);
    assert_eq!(
        c.postgresql.parameters["work_mem"],
        ParamValue::Text("64MB".into())
    );
}

#[test]
fn given_a_bad_value_from_the_environment_then_the_problem_names_the_variable() {
    let fx = Fixture::new();
    let s = fx.secrets();
    let path = fx.write(&three_node(&s));
    let e = problems_of(load_with_env(
        &path,
        [("PGWARDEN_POSTGRESQL__PORT", "70000")],
    ));
    assert_eq!(keys(&e), ["postgresql.port"]);
    let m = message(&e, "postgresql.port");
    assert!(
        m.contains("1 to 65535") && m.contains("PGWARDEN_POSTGRESQL__PORT"),
        "{m}"
    );
}

#[test]
fn given_unknown_keys_everywhere_then_each_is_listed_with_its_section_and_the_valid_keys() {
    let fx = Fixture::new();
    let s = fx.secrets();
    let text = three_node(&s)
        .replace("[node]\n", "[node]\nnmae = \"x\"\n")
        .replace("[api]\n", "[api]\nlisten_port = 8008\n")
        .replace(
            "{ name = \"pg2\", api_url = \"http://10.0.0.2:8008\" }",
            "{ name = \"pg2\", api_url = \"http://10.0.0.2:8008\", nofailvoer = true }",
        )
        + "\n[postgres]\nport = 5432\n";
    let path = fx.write(&text);
    let e = problems_of(load_with_env(&path, [("PGWARDEN_CLUSTER__LOOPWAIT", "2s")]));
    assert_eq!(
        keys(&e),
        [
            "cluster.loopwait",
            "postgres",
            "node.nmae",
            "api.listen_port",
            "cluster.members[1].nofailvoer"
        ]
    );
    assert!(
        message(&e, "node.nmae").contains(
            "unknown key \"nmae\" in [node]; did you mean \"name\"? valid keys: name, data_dir"
        ),
        "{e}"
    );
    assert!(
        message(&e, "api.listen_port").contains("valid keys: listen, advertise_url"),
        "{e}"
    );
    assert!(
        message(&e, "cluster.members[1].nofailvoer").contains("did you mean \"nofailover\"?"),
        "{e}"
    );
    assert!(
        message(&e, "postgres").contains("did you mean [postgresql]?"),
        "{e}"
    );
    assert!(
        message(&e, "cluster.loopwait").contains("PGWARDEN_CLUSTER__LOOPWAIT"),
        "{e}"
    );
}

#[test]
fn given_a_data_member_without_required_keys_then_every_missing_key_is_listed() {
    let fx = Fixture::new();
    let path = fx.write("[node]\nwitness = false\n\n[cluster]\nmembers = [\n  { name = \"pg1\", api_url = \"http://10.0.0.1:8008\" },\n  { name = \"pg2\", api_url = \"http://10.0.0.2:8008\" },\n  { name = \"pg3\", api_url = \"http://10.0.0.3:8008\" },\n]\n");
    let e = problems_of(load_with_env(&path, NO_ENV));
    assert_eq!(
        keys(&e),
        [
            "node.name",
            "node.data_dir",
            "cluster.name",
            "cluster.secret_file",
            "replication.password_file",
            "replication.superuser_password_file",
        ]
    );
    assert!(
        message(&e, "cluster.secret_file").contains("with 3 members"),
        "{e}"
    );
}

#[test]
fn given_a_witness_then_it_needs_neither_data_dir_nor_passwords() {
    let fx = Fixture::new();
    let s = fx.secrets();
    let text = format!(
        "[node]\nname = \"w1\"\nwitness = true\n\n[cluster]\nname = \"main\"\nsecret_file = \"{}\"\nmembers = [\n  {{ name = \"pg1\", api_url = \"http://10.0.0.1:8008\" }},\n  {{ name = \"pg2\", api_url = \"http://10.0.0.2:8008\" }},\n  {{ name = \"w1\", api_url = \"http://10.0.0.9:8008\", witness = true }},\n]\n",
        s.cluster.display()
    );
    let c = load_with_env(&fx.write(&text), NO_ENV)
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    assert!(c.node.witness);
    assert_eq!(c.data_members().count(), 2);
}

#[test]
fn given_bad_values_of_every_kind_then_each_names_its_key() {
    let fx = Fixture::new();
    let s = fx.secrets();
    let text = three_node(&s)
        .replace("name = \"pg1\"\ndata_dir", "name = \"PG-1\"\ndata_dir")
        .replace("listen = \"0.0.0.0:8008\"", "listen = \"localhost\"")
        .replace("name = \"main\"", "name = \"main\"\nttl = \"ten\"")
        .replace("http://10.0.0.2:8008", "10.0.0.2:8008")
        .replace(
            "[replication]\n",
            "[postgresql]\nport = 0\n\n[replication]\nsynchronous = \"maybe\"\nmax_lag_on_failover = \"5XB\"\n",
        );
    let e = problems_of(load_with_env(&fx.write(&text), NO_ENV));
    assert_eq!(
        keys(&e),
        [
            "node.name",
            "api.listen",
            "cluster.ttl",
            "cluster.members[1].api_url",
            "postgresql.port",
            "replication.synchronous",
            "replication.max_lag_on_failover",
        ]
    );
    assert!(
        message(&e, "node.name").contains("lowercase letters, digits and underscores"),
        "{e}"
    );
    assert!(message(&e, "api.listen").contains("not an ip:port"), "{e}");
    assert!(
        message(&e, "cluster.ttl").contains("\"ten\" is not a duration"),
        "{e}"
    );
    assert!(
        message(&e, "cluster.members[1].api_url").contains("http(s)://host:port"),
        "{e}"
    );
    assert!(message(&e, "postgresql.port").contains("1 to 65535"), "{e}");
    assert!(
        message(&e, "replication.synchronous").contains("\"off\", \"on\" or \"quorum\""),
        "{e}"
    );
    assert!(
        message(&e, "replication.max_lag_on_failover").contains("5XB"),
        "{e}"
    );
}

#[test]
fn given_secret_files_that_are_missing_or_empty_then_they_are_errors_and_loose_modes_are_warnings()
{
    let fx = Fixture::new();
    let mut s = fx.secrets();
    s.replicator = fx.dir.path().join("absent.pass");
    s.postgres = fx.secret("postgres.pass", "\n", 0o600);
    s.token = fx.secret("api.token", "t0ken\n", 0o644);
    let path = fx.write(&three_node(&s));
    let e = problems_of(load_with_env(&path, NO_ENV));
    assert_eq!(
        keys(&e),
        [
            "replication.password_file",
            "replication.superuser_password_file"
        ]
    );
    assert!(
        message(&e, "replication.password_file").contains("absent.pass"),
        "{e}"
    );
    assert!(
        message(&e, "replication.superuser_password_file").contains("empty"),
        "{e}"
    );

    s.replicator = fx.secret("replicator.pass", "rep\n", 0o600);
    s.postgres = fx.secret("postgres.pass", "pg\n", 0o640);
    let loaded =
        load_with_env(&fx.write(&three_node(&s)), NO_ENV).unwrap_or_else(|e| panic!("{e}"));
    let warned: Vec<&str> = loaded.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(warned, ["api.token_file"]);
    assert!(
        loaded.warnings[0].message.contains("mode 0644"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn given_members_that_contradict_each_other_or_this_node_then_each_contradiction_is_named() {
    let fx = Fixture::new();
    let s = fx.secrets();
    let text = three_node(&s)
        .replace("name = \"pg1\"\ndata_dir", "name = \"pg9\"\ndata_dir")
        .replace(
            "name = \"pg3\", api_url = \"http://10.0.0.3:8008\"",
            "name = \"pg2\", api_url = \"http://10.0.0.2:8008/\"",
        );
    let e = problems_of(load_with_env(&fx.write(&text), NO_ENV));
    assert_eq!(
        keys(&e),
        [
            "node.name",
            "cluster.members[2].name",
            "cluster.members[2].api_url"
        ]
    );
    assert!(
        message(&e, "node.name").contains("\"pg9\" is not in cluster.members (pg1, pg2, pg2)"),
        "{e}"
    );
    assert!(
        message(&e, "cluster.members[2].name").contains("listed twice"),
        "{e}"
    );
}

#[test]
fn given_node_witness_disagreeing_with_the_member_entry_then_both_values_are_shown() {
    let fx = Fixture::new();
    let s = fx.secrets();
    let text = three_node(&s).replace(
        "{ name = \"pg1\", api_url = \"http://10.0.0.1:8008\" }",
        "{ name = \"pg1\", api_url = \"http://10.0.0.1:8008\", witness = true }",
    );
    let e = problems_of(load_with_env(&fx.write(&text), NO_ENV));
    assert_eq!(keys(&e), ["node.witness"]);
    assert!(message(&e, "node.witness").contains("node.witness is false but this node's entry cluster.members[0] (pg1) has witness = true"), "{e}");
}

#[test]
fn given_a_lease_shorter_than_three_loops_then_both_keys_and_numbers_are_named() {
    let fx = Fixture::new();
    let s = fx.secrets();
    let text = three_node(&s).replace("name = \"main\"", "name = \"main\"\nttl = \"2s\"");
    let e = problems_of(load_with_env(
        &fx.write(&text),
        [("PGWARDEN_CLUSTER__LOOP_WAIT", "1s")],
    ));
    assert_eq!(keys(&e), ["cluster.ttl"]);
    let m = message(&e, "cluster.ttl");
    assert!(
        m.contains("cluster.ttl (2s)")
            && m.contains(
                "cluster.loop_wait (1s (set by environment variable PGWARDEN_CLUSTER__LOOP_WAIT))"
            ),
        "{m}"
    );
    assert!(m.contains("= 3s"), "{m}");

    let text = three_node(&s).replace("name = \"main\"", "name = \"main\"\nloop_wait = \"50ms\"");
    let e = problems_of(load_with_env(&fx.write(&text), NO_ENV));
    assert_eq!(keys(&e), ["cluster.loop_wait"]);
    assert!(message(&e, "cluster.loop_wait").contains("100ms"), "{e}");
}

#[test]
fn given_several_problems_then_the_error_lists_all_of_them_under_the_file_name() {
    let fx = Fixture::new();
    let path = fx.write("[node]\nname = \"pg1\"\ndata_dir = \"/d\"\nextra = 1\n\n[cluster]\nname = \"main\"\nttl = \"1s\"\nmembers = []\n\n[postgresql]\nport = \"x\"\n");
    let e = problems_of(load_with_env(&path, NO_ENV));
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("invalid configuration {} (", path.display())),
        "{text}"
    );
    for key in [
        "node.extra",
        "cluster.members",
        "postgresql.port",
        "replication.password_file",
        "replication.superuser_password_file",
        "cluster.ttl",
    ] {
        assert!(
            text.contains(&format!("\n  {key}: ")),
            "{key} missing from:\n{text}"
        );
    }
}

#[test]
fn given_a_missing_or_malformed_file_then_the_problem_is_about_the_file() {
    let fx = Fixture::new();
    let missing = fx.dir.path().join("nope.toml");
    let e = problems_of(load_with_env(&missing, NO_ENV));
    assert_eq!(keys(&e), ["(file)"]);
    assert!(e.problems[0].message.contains("nope.toml"), "{e}");

    let e = problems_of(load_with_env(&fx.write("[node]\nname = \"pg1\n"), NO_ENV));
    assert_eq!(keys(&e), ["(file)"]);
    assert!(e.problems[0].message.contains("line 2"), "{e}");
}

#[test]
fn the_effective_configuration_shows_secret_paths_but_never_secrets() {
    let fx = Fixture::new();
    let s = fx.secrets();
    let c = load_with_env(&fx.write(&three_node(&s)), NO_ENV)
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    let text = effective_toml(&c);
    for secret in ["t0ken", "c1uster", "rep-pass", "pg-pass"] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    let line = text
        .lines()
        .find(|l| l.starts_with("password_file = "))
        .unwrap_or_else(|| panic!("no password_file:\n{text}"));
    assert!(line.contains(&s.replicator.display().to_string()), "{line}");
    assert!(
        line.ends_with("# secret file: readable, mode 0600"),
        "{line}"
    );
    assert!(text.contains("ttl = \"10s\""), "{text}");
    assert!(
        text.contains("advertise_url = \"http://10.0.0.1:8008\"  # default: this member's api_url"),
        "{text}"
    );

    fs::remove_file(&s.replicator).expect("remove");
    let text = effective_toml(&c);
    assert!(text.contains("# secret file: NOT READABLE"), "{text}");
}

#[test]
fn the_effective_configuration_loads_back_to_the_same_configuration() {
    let fx = Fixture::new();
    let s = fx.secrets();
    let text = three_node(&s).replace("[replication]", "[postgresql]\npg_hba = [\"host all all 10.0.0.0/24 scram-sha-256\"]\n\n[postgresql.parameters]\nfsync = false\n\"auto_explain.log_min_duration\" = 1.0\nshared_buffers = \"128MB\"\n\n[replication]");
    let first = load_with_env(&fx.write(&text), NO_ENV)
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    let printed = effective_toml(&first);
    let second = load_with_env(&fx.write(&printed), NO_ENV)
        .unwrap_or_else(|e| panic!("{e}\n{printed}"))
        .config;
    // Only the comments may differ: derived values ("default: this
    // member's api_url") are explicit the second time.
    assert_eq!(
        without_comments(&effective_toml(&second)),
        without_comments(&printed)
    );
    assert_eq!(second.postgresql.parameters, first.postgresql.parameters);
    assert_eq!(second.replication, first.replication);
    assert_eq!(second.api_advertise_url(), first.api_advertise_url());
}

fn without_comments(toml: &str) -> String {
    toml.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split("  # ").next().unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn given_a_synchronous_mode_then_commits_that_do_not_wait_for_standbys_are_refused() {
    let fx = Fixture::new();
    let s = fx.secrets();
    let path = fx.write(&three_node(&s));
    for (value, refused) in [
        ("off", true),
        ("local", true),
        ("remote_write", false),
        ("on", false),
    ] {
        let env = [
            ("PGWARDEN_REPLICATION__SYNCHRONOUS", "quorum"),
            ("PGWARDEN_POSTGRESQL__PARAMETERS__SYNCHRONOUS_COMMIT", value),
        ];
        let result = load_with_env(&path, env);
        if refused {
            let e = problems_of(result);
            let text = message(&e, "postgresql.parameters.synchronous_commit");
            assert!(text.contains("before any standby has them"), "{value}: {e}");
        } else {
            let c = result.unwrap_or_else(|e| panic!("{value}: {e}")).config;
            assert_eq!(c.replication.synchronous, SyncMode::Quorum);
        }
    }
    let env = [
        ("PGWARDEN_REPLICATION__SYNCHRONOUS", "off"),
        ("PGWARDEN_POSTGRESQL__PARAMETERS__SYNCHRONOUS_COMMIT", "off"),
    ];
    assert!(
        load_with_env(&path, env).is_ok(),
        "asynchronous replication may skip the wait"
    );
    let env = [
        ("PGWARDEN_REPLICATION__SYNCHRONOUS", "on"),
        ("PGWARDEN_REPLICATION__MEMBER_SLOT_TTL", "5s"),
    ];
    let c = load_with_env(&path, env)
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    assert_eq!(c.replication.synchronous, SyncMode::On);
    assert_eq!(
        c.replication.member_slot_ttl,
        std::time::Duration::from_secs(5)
    );
}

#[test]
fn given_no_log_section_then_the_agent_logs_text_at_info() {
    let fx = Fixture::new();
    let s = fx.secrets();
    let c = load_with_env(&fx.write(&three_node(&s)), NO_ENV)
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    assert_eq!(c.log, LogSection::default());
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.log.level, "info");
}

#[test]
fn given_a_log_section_then_its_format_and_directives_are_read_and_printed_back() {
    let fx = Fixture::new();
    let s = fx.secrets();
    let text = format!(
        "{}\n[log]\nformat = \"json\"\nlevel = \"info,pgwarden::lease=debug\"\n",
        three_node(&s)
    );
    let c = load_with_env(&fx.write(&text), NO_ENV)
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.log.level, "info,pgwarden::lease=debug");
    let printed = effective_toml(&c);
    assert!(
        printed.contains("[log]\nformat = \"json\"\nlevel = \"info,pgwarden::lease=debug\"\n"),
        "{printed}"
    );
    let again = load_with_env(&fx.write(&printed), NO_ENV)
        .unwrap_or_else(|e| panic!("{e}\n{printed}"))
        .config;
    assert_eq!(again.log, c.log);

    // each level alone, in any case; the environment overrides like any key
    for level in ["trace", "debug", "INFO", "warn", "error", "off"] {
        let text = format!("{}\n[log]\nlevel = \"{level}\"\n", three_node(&s));
        let c = load_with_env(&fx.write(&text), NO_ENV).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.config.log.level, level);
    }
    let c = load_with_env(
        &fx.write(&three_node(&s)),
        [("PGWARDEN_LOG__LEVEL", "debug"), ("PGWARDEN_LOG", "warn")],
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .config;
    assert_eq!(
        c.log.level, "debug",
        "PGWARDEN_LOG is the agent's filter, not an override"
    );
}

#[test]
fn given_a_bad_log_format_or_level_then_each_names_its_key_and_what_is_accepted() {
    let fx = Fixture::new();
    let s = fx.secrets();
    let with = |log: &str| {
        let text = format!("{}\n[log]\n{log}\n", three_node(&s));
        problems_of(load_with_env(&fx.write(&text), NO_ENV))
    };

    let e = with("format = \"xml\"\nlevel = \"verbose\"");
    assert_eq!(keys(&e), ["log.format", "log.level"], "{e}");
    let m = message(&e, "log.format");
    assert!(
        m.contains("\"xml\"") && m.contains("\"text\" or \"json\""),
        "{m}"
    );
    let m = message(&e, "log.level");
    assert!(m.contains("\"verbose\" is not a log level"), "{m}");
    for accepted in [
        "\"trace\"",
        "\"debug\"",
        "\"info\"",
        "\"warn\"",
        "\"error\"",
        "\"off\"",
    ] {
        assert!(m.contains(accepted), "{accepted} missing from: {m}");
    }
    assert!(m.contains("info,pgwarden::lease=debug"), "{m}");

    // a directive list: the bad directive is named
    let e = with("level = \"info,pgwarden=loud\"");
    let m = message(&e, "log.level");
    assert!(m.contains("\"pgwarden=loud\""), "{m}");
    let e = with("level = \"info,=debug\"");
    assert!(message(&e, "log.level").contains("\"=debug\""), "{e}");

    // wrong types and empty values
    let e = with("format = 1\nlevel = \"\"");
    assert!(
        message(&e, "log.format").contains("expected \"text\" or \"json\""),
        "{e}"
    );
    assert!(message(&e, "log.level").contains("is empty"), "{e}");
    let e = with("levle = \"debug\"");
    assert!(
        message(&e, "log.levle").contains("did you mean \"level\"?"),
        "{e}"
    );
}

#[test]
fn given_node_tags_then_the_built_in_ones_are_typed_and_the_others_kept() {
    let fx = Fixture::new();
    let s = fx.secrets();
    let text = three_node(&s).replace(
        "data_dir = \"/var/lib/postgresql/15/main\"\n",
        "data_dir = \"/var/lib/postgresql/15/main\"\ntags = { noloadbalance = true, failover_priority = 3, replicatefrom = \"pg2\", dc = \"east\", weight = 2 }\n",
    );
    let loaded = load_with_env(&fx.write(&text), NO_ENV).expect("loads");
    let tags = &loaded.config.node.tags;
    assert!(tags.noloadbalance && !tags.nofailover && !tags.nosync);
    assert_eq!(tags.failover_priority, 3);
    assert_eq!(tags.replicatefrom.as_deref(), Some("pg2"));
    assert_eq!(tags.filter_value("dc").as_deref(), Some("east"));
    assert_eq!(tags.filter_value("weight").as_deref(), Some("2"));
    assert_eq!(tags.filter_value("noloadbalance").as_deref(), Some("true"));
    assert_eq!(tags.filter_value("nofailover"), None, "off is not set");
    // As Patroni reports them: built-in flags that are off are left out.
    let json = serde_json::to_value(tags).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"noloadbalance": true, "failover_priority": 3,
                           "replicatefrom": "pg2", "dc": "east", "weight": 2})
    );
    assert!(!tags.never_primary());
    let zero = Tags {
        failover_priority: 0,
        ..Tags::default()
    };
    assert!(zero.never_primary());
}

#[test]
fn given_bad_node_tags_then_each_problem_names_its_tag() {
    let fx = Fixture::new();
    let s = fx.secrets();
    let with = |tags: &str| {
        three_node(&s).replace(
            "data_dir = \"/var/lib/postgresql/15/main\"\n",
            &format!("data_dir = \"/var/lib/postgresql/15/main\"\ntags = {tags}\n"),
        )
    };
    let e = problems_of(load_with_env(
        &fx.write(&with(
            "{ failover_priority = -1, nosync = \"yes\", rack = [1] }",
        )),
        NO_ENV,
    ));
    assert!(message(&e, "node.tags.failover_priority").contains("0 or more"));
    assert!(message(&e, "node.tags.nosync").contains("true or false"));
    assert!(message(&e, "node.tags.rack").contains("string, number or boolean"));
    let e = problems_of(load_with_env(
        &fx.write(&with("{ replicatefrom = \"pg1\" }")),
        NO_ENV,
    ));
    assert!(message(&e, "node.tags.replicatefrom").contains("is this node"));
    let e = problems_of(load_with_env(
        &fx.write(&with("{ replicatefrom = \"pg9\" }")),
        NO_ENV,
    ));
    assert!(message(&e, "node.tags.replicatefrom").contains("not in cluster.members"));
    let e = problems_of(load_with_env(&fx.write(&with("\"drain\"")), NO_ENV));
    assert!(message(&e, "node.tags").contains("table"));
}
