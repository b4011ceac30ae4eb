//! The Debian package and the Ansible role, on this machine, as an
//! operator meets them:
//!
//! - the package built by `scripts/package` (from the binary under test)
//!   passes lintian, installs with `dpkg -i` and starts nothing, puts every
//!   file where Debian's tools look (unit, man page, completions, docs, the
//!   example as a conffile), its units pass `systemd-analyze verify`, its
//!   man page reads with `man -l`, `pgwarden check-config` accepts its
//!   example; removing and purging it leaves the data directory its
//!   configuration names as it was;
//! - `ansible-playbook site.yml` of `config/ansible/` against localhost
//!   installs that package, writes the secrets and the configuration,
//!   enables the service (starting left to the test), and a second run
//!   changes nothing; the agent started with the written configuration, as
//!   `postgres` like the unit runs it, answers `/health` 200, and a third
//!   run, now waiting for that, changes nothing either.
//!
//! Installing a package is machine-global: the two tests take turns (a
//! lock shared by every process), each starts by purging what an earlier,
//! interrupted run left and ends by purging the package. They refuse to
//! touch a pgwarden package this test did not install.
//!
//! Needs root, dpkg, lintian, man, systemd-analyze, cargo-deb and
//! ansible-playbook (`scripts/install-deps` installs them); without one of
//! them the test is skipped, or fails with `CI=true`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use nix::fcntl::{Flock, FlockArg};

use pgwarden_tests::{pgwarden_bin, require_root, Node, TestDir, SLOW};

/// The package's name, and where it puts things.
const PACKAGE: &str = "pgwarden";
const CONFIG_DIR: &str = "/etc/pgwarden";
const CONFFILE: &str = "/etc/pgwarden/pgwarden.toml";
const UNIT_DIR: &str = "/usr/lib/systemd/system";
const ENABLED_LINK: &str = "/etc/systemd/system/multi-user.target.wants/pgwarden.service";
/// Where the role copies the .deb it installs.
const ROLE_CACHE: &str = "/var/cache/pgwarden";
/// Present while this test has the package installed: a package found
/// installed without it is someone else's, and is left alone.
const OURS: &str = "/var/tmp/pgwarden-package-test.installed";
/// The secret files the role writes beside the configuration.
const SECRET_FILES: [&str; 4] = [
    "api.token",
    "cluster.secret",
    "replicator.pass",
    "postgres.pass",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

// ----------------------------------------------------------- prerequisites

fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Fails (CI) or skips with `why`; returns false when skipping.
fn skip_or_fail(test: &str, why: &str) -> bool {
    let msg = format!("{test}: {why}; run scripts/install-deps (as root) first");
    assert!(!in_ci(), "{msg}");
    eprintln!("SKIPPED {msg}");
    false
}

/// Whether `program args` runs at all (the tool is installed).
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Root and the package tools; false (the test returns) when skipped.
fn package_tools(test: &str) -> bool {
    if !require_root(test) {
        return false;
    }
    for (tool, args, package) in [
        ("dpkg", &["--version"][..], "dpkg"),
        ("lintian", &["--version"][..], "lintian"),
        ("man", &["--version"][..], "man-db"),
        ("systemd-analyze", &["--version"][..], "systemd"),
        (
            "cargo",
            &["deb", "--version"][..],
            "cargo-deb (cargo install)",
        ),
    ] {
        if !runs(tool, args) {
            return skip_or_fail(test, &format!("`{tool}` is missing (package {package})"));
        }
    }
    true
}

/// `ansible-playbook`: `PGWARDEN_ANSIBLE_PLAYBOOK`, else where
/// `scripts/install-deps` puts it, else `PATH`.
fn ansible_playbook() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PGWARDEN_ANSIBLE_PLAYBOOK") {
        return Some(PathBuf::from(p));
    }
    [
        PathBuf::from("/opt/pgwarden-ci/ansible-venv/bin/ansible-playbook"),
        workspace().join("target/ansible-venv/bin/ansible-playbook"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .or_else(|| runs("ansible-playbook", &["--version"]).then(|| "ansible-playbook".into()))
}

// ------------------------------------------------------------- machinery

/// Runs a command; panics if it cannot start.
fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed; its stdout.
fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether dpkg has the package installed (or half-installed): anything
/// but "not installed".
fn installed() -> bool {
    let out = run(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Status}", PACKAGE]));
    out.status.success() && {
        let status = String::from_utf8_lossy(&out.stdout);
        !status.trim().is_empty() && status.trim() != "not-installed"
    }
}

/// One test at a time may install the package, in this process (the
/// mutex) and on this machine (the file lock).
struct MachineTurn {
    _thread: std::sync::MutexGuard<'static, ()>,
    _machine: Flock<fs::File>,
}

fn take_turn() -> MachineTurn {
    static TURN: Mutex<()> = Mutex::new(());
    let thread = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/var/tmp/pgwarden-package-test.lock")
        .expect("lock file");
    let machine = Flock::lock(file, FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("cannot lock /var/tmp/pgwarden-package-test.lock: {e}"));
    MachineTurn {
        _thread: thread,
        _machine: machine,
    }
}

/// Leaves the machine as it was: the package purged, and what the role
/// wrote around it removed. Runs at the start (after an interrupted run)
/// and, through [`Cleanup`], at the end, pass or fail.
fn purge_what_we_left() {
    if installed() {
        assert!(
            Path::new(OURS).exists(),
            "the package {PACKAGE} is installed on this machine, and not by this test: \
             refusing to purge it; remove it yourself (dpkg --purge {PACKAGE}) to run this test"
        );
        run_ok(Command::new("dpkg").args(["--purge", PACKAGE]));
    }
    if Path::new(OURS).exists() {
        for name in SECRET_FILES {
            let _ = fs::remove_file(Path::new(CONFIG_DIR).join(name));
        }
        let _ = fs::remove_dir(CONFIG_DIR);
        let _ = fs::remove_dir_all(ROLE_CACHE);
        let _ = fs::remove_file(OURS);
    }
}

/// Purges at the end, however the test ends.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // never a second panic while unwinding
            let _ = std::panic::catch_unwind(purge_what_we_left);
        } else {
            purge_what_we_left();
        }
    }
}

/// Builds the package from the binary under test into `dir` with
/// `scripts/package`; its path.
fn build_package(dir: &Path) -> PathBuf {
    let stdout = run_ok(
        Command::new(workspace().join("scripts/package"))
            .arg("--bin")
            .arg(pgwarden_bin())
            .arg("--out")
            .arg(dir),
    );
    let deb = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(
        deb.is_file() && deb.starts_with(dir),
        "scripts/package printed no package path: {stdout}"
    );
    deb
}

/// Marks the package as this test's before dpkg or Ansible installs it.
fn mark_ours() {
    fs::write(
        OURS,
        "the package test installs pgwarden; see tests/tests/package.rs\n",
    )
    .expect("marker");
}

/// A directory's files and their contents, to compare before and after.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, u32)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("dir entry").path();
            let meta = fs::symlink_metadata(&path).expect("metadata");
            if meta.is_dir() {
                todo.push(path.clone());
                out.push((path, Vec::new(), meta.permissions().mode()));
            } else {
                let bytes = fs::read(&path).expect("read");
                out.push((path, bytes, meta.permissions().mode()));
            }
        }
    }
    out.sort();
    out
}

fn mode(path: &str) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path} is missing: {e}"))
        .permissions()
        .mode()
        & 0o7777
}

// ------------------------------------------------------------ the package

/// Man pages the package must have: the command's and one per subcommand.
const MAN_PAGES: [&str; 13] = [
    "pgwarden",
    "pgwarden-run",
    "pgwarden-check-config",
    "pgwarden-status",
    "pgwarden-list",
    "pgwarden-switchover",
    "pgwarden-failover",
    "pgwarden-restart",
    "pgwarden-reload",
    "pgwarden-reinit",
    "pgwarden-pause",
    "pgwarden-resume",
    "pgwarden-demo",
];

#[test]
fn the_debian_package_passes_lintian_installs_without_starting_and_its_purge_leaves_the_data_directory(
) {
    const TEST: &str = "package";
    if !package_tools(TEST) {
        return;
    }
    let _turn = take_turn();
    purge_what_we_left();
    let _cleanup = Cleanup;
    let tmp = TestDir::new();
    let deb = build_package(tmp.path());

    // lintian: no error, no warning (information is allowed; the package's
    // one override says why in the file itself)
    let lint = run(Command::new("lintian")
        .arg("--fail-on")
        .arg("error,warning")
        .arg(&deb));
    let said = String::from_utf8_lossy(&lint.stdout);
    assert!(
        lint.status.success()
            && !said
                .lines()
                .any(|l| l.starts_with("E:") || l.starts_with("W:")),
        "lintian found problems in {}:\n{said}{}",
        deb.display(),
        String::from_utf8_lossy(&lint.stderr)
    );

    // install: nothing started, nothing enabled, nothing secret made, and
    // the next step said
    mark_ours();
    let install = run_ok(Command::new("dpkg").arg("-i").arg(&deb));
    assert!(
        install.contains("pgwarden is installed and not started")
            && install.contains("systemctl enable --now pgwarden"),
        "dpkg -i did not say what to do next:\n{install}"
    );
    assert!(
        !Path::new(ENABLED_LINK).exists(),
        "installing enabled the service"
    );
    let listed: Vec<String> = fs::read_dir(CONFIG_DIR)
        .expect("/etc/pgwarden")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        listed,
        ["pgwarden.toml"],
        "{CONFIG_DIR} holds more than the example"
    );
    run_ok(Command::new("dpkg").args(["--verify", PACKAGE]));

    // the files, where Debian's tools look for them
    assert_eq!(mode("/usr/bin/pgwarden"), 0o755);
    let mut expected: Vec<String> = vec![
        format!("{UNIT_DIR}/pgwarden.service"),
        format!("{UNIT_DIR}/pgwarden@.service"),
        "/usr/share/doc/pgwarden/README.md".into(),
        "/usr/share/doc/pgwarden/copyright".into(),
        "/usr/share/doc/pgwarden/changelog.Debian.gz".into(),
        "/usr/share/doc/pgwarden/docs/operations.md".into(),
        "/usr/share/doc/pgwarden/docs/configuration.md".into(),
        "/usr/share/bash-completion/completions/pgwarden".into(),
        "/usr/share/zsh/vendor-completions/_pgwarden".into(),
        "/usr/share/fish/vendor_completions.d/pgwarden.fish".into(),
    ];
    expected.extend(
        MAN_PAGES
            .iter()
            .map(|p| format!("/usr/share/man/man1/{p}.1.gz")),
    );
    for path in &expected {
        assert_eq!(mode(path), 0o644, "{path}");
    }
    // where a merged /usr makes /lib the same directory, the unit is in both
    if fs::read_link("/lib").is_ok_and(|l| l == Path::new("usr/lib")) {
        assert!(Path::new("/lib/systemd/system/pgwarden.service").is_file());
    }
    let conffiles = run_ok(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", PACKAGE]));
    assert!(
        conffiles.lines().any(|l| l.trim().starts_with(CONFFILE)),
        "{CONFFILE} is not a conffile: {conffiles}"
    );
    assert_eq!(
        fs::read_to_string(CONFFILE).expect("conffile"),
        fs::read_to_string(workspace().join("config/pgwarden.toml")).expect("example"),
        "the conffile is not config/pgwarden.toml"
    );

    // the units: /usr/bin/pgwarden, and systemd-analyze has nothing to say
    for (unit, config) in [
        ("pgwarden.service", "/etc/pgwarden/pgwarden.toml"),
        ("pgwarden@.service", "/etc/pgwarden/%i.toml"),
    ] {
        let text = fs::read_to_string(format!("{UNIT_DIR}/{unit}")).expect("unit");
        let exec = format!("ExecStart=/usr/bin/pgwarden run --config {config}");
        assert!(text.lines().any(|l| l == exec), "{unit} lacks {exec:?}");
    }
    verify_quietly(Path::new(&format!("{UNIT_DIR}/pgwarden.service")));
    let instance = tmp.path().join("pgwarden@sales.service");
    fs::copy(format!("{UNIT_DIR}/pgwarden@.service"), &instance).expect("copy the template");
    verify_quietly(&instance);

    // the binary and its man pages
    let version = run_ok(Command::new("/usr/bin/pgwarden").arg("--version"));
    assert_eq!(
        version.trim(),
        format!("pgwarden {}", env!("CARGO_PKG_VERSION"))
    );
    for page in MAN_PAGES {
        let path = format!("/usr/share/man/man1/{page}.1.gz");
        let out = run(Command::new("man")
            .args(["--warnings", "-l", "-P", "cat"])
            .arg(&path)
            .env("MANWIDTH", "80")
            .env("LC_ALL", "C.UTF-8"));
        let text = String::from_utf8_lossy(&out.stdout);
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.contains("NAME") && text.contains(page),
            "man -l {path}: {text}{warnings}"
        );
        assert!(
            warnings.trim().is_empty(),
            "man -l {path} warned: {warnings}"
        );
    }
    let main_page =
        run_ok(Command::new("man").args(["-l", "-P", "cat", "/usr/share/man/man1/pgwarden.1.gz"]));
    for word in [
        "SUBCOMMANDS",
        "switchover",
        "FILES",
        "/etc/pgwarden/pgwarden.toml",
    ] {
        assert!(
            main_page.contains(word),
            "pgwarden(1) lacks {word:?}:\n{main_page}"
        );
    }
    let completion = run_ok(
        Command::new("bash")
            .arg("-c")
            .arg("source /usr/share/bash-completion/completions/pgwarden && complete -p pgwarden"),
    );
    assert!(
        completion.contains("pgwarden"),
        "bash completion: {completion}"
    );

    // check-config of the installed example: its secret files are missing
    // (named, exit 2); given them, it passes
    let refused =
        run(Command::new("/usr/bin/pgwarden").args(["check-config", "--config", CONFFILE]));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/etc/pgwarden/api.token"), "{stderr}");
    let secrets = tmp.path().join("secrets");
    fs::create_dir(&secrets).expect("secrets dir");
    let mut check = Command::new("/usr/bin/pgwarden");
    check.args(["check-config", "--config", CONFFILE]);
    for (key, file) in [
        ("PGWARDEN_API__TOKEN_FILE", "api.token"),
        ("PGWARDEN_REPLICATION__PASSWORD_FILE", "replicator.pass"),
        (
            "PGWARDEN_REPLICATION__SUPERUSER_PASSWORD_FILE",
            "postgres.pass",
        ),
    ] {
        let path = secrets.join(file);
        pgwarden_tests::write_secret(&path, "a-secret");
        check.env(key, &path);
    }
    let effective = run_ok(&mut check);
    assert!(effective.contains("[node]"), "{effective}");

    // an operator points the configuration at a data directory; removing
    // and purging the package leave it as it was
    let data = tmp.path().join("pg15/main");
    fs::create_dir_all(data.join("base/1")).expect("data dir");
    fs::write(data.join("PG_VERSION"), "15\n").expect("PG_VERSION");
    fs::write(data.join("base/1/16384"), [7u8; 8192]).expect("a relation");
    fs::write(data.join("postgresql.conf"), "# managed\n").expect("conf");
    let before = snapshot(&data);
    let edited = fs::read_to_string(CONFFILE).expect("conffile").replace(
        "data_dir = \"/var/lib/postgresql/15/main\"",
        &format!("data_dir = \"{}\"", data.display()),
    );
    assert!(
        edited.contains(&data.display().to_string()),
        "no data_dir line to edit"
    );
    fs::write(CONFFILE, edited).expect("edit the conffile");

    run_ok(Command::new("dpkg").args(["--remove", PACKAGE]));
    assert!(
        !Path::new("/usr/bin/pgwarden").exists(),
        "remove left the binary"
    );
    assert!(
        Path::new(CONFFILE).exists(),
        "remove took the edited conffile"
    );
    assert_eq!(
        snapshot(&data),
        before,
        "dpkg --remove touched the data directory"
    );

    run_ok(Command::new("dpkg").args(["--purge", PACKAGE]));
    assert!(
        !installed(),
        "the package is still known to dpkg after purge"
    );
    assert!(!Path::new(CONFFILE).exists(), "purge left the conffile");
    assert!(
        !Path::new(ENABLED_LINK).exists(),
        "purge left the service enabled"
    );
    assert_eq!(
        snapshot(&data),
        before,
        "dpkg --purge touched the data directory"
    );
}

/// `systemd-analyze verify` passes `unit` without a word.
fn verify_quietly(unit: &Path) {
    let out = run(Command::new("systemd-analyze").arg("verify").arg(unit));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify {}: {stderr}",
        unit.display()
    );
}

// ------------------------------------------------------------- the role

/// One `ansible-playbook site.yml` run; its output, and the PLAY RECAP
/// counters of the host (`ok`, `changed`, `failed`, ...).
struct PlaybookRun {
    output: String,
    recap: Vec<(String, u32)>,
}

impl PlaybookRun {
    /// The first line after the header of the task whose name starts with
    /// `task`: `ok: [pg1]`, `changed: [pg1]`, `skipping: [pg1]`, ...
    fn task_outcome(&self, task: &str) -> &str {
        let header = format!("TASK [pgwarden : {task}");
        let mut lines = self.output.lines().skip_while(|l| !l.starts_with(&header));
        lines.next();
        lines.find(|l| !l.trim().is_empty()).unwrap_or("").trim()
    }

    fn count(&self, what: &str) -> u32 {
        self.recap
            .iter()
            .find(|(k, _)| k == what)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {what}= in the recap:\n{}", self.output))
    }
}

fn playbook(ansible: &Path, inventory: &Path, tmp: &Path, extra: &[&str]) -> PlaybookRun {
    let out = run(Command::new(ansible)
        .current_dir(workspace().join("config/ansible"))
        .arg("-i")
        .arg(inventory)
        .arg("site.yml")
        .args(extra)
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
        .env("ANSIBLE_LOCAL_TEMP", tmp.join("ansible-local"))
        .env("ANSIBLE_REMOTE_TEMP", tmp.join("ansible-remote")));
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "ansible-playbook failed:\n{output}");
    let line = output
        .lines()
        .find(|l| l.starts_with("pg1 ") && l.contains("changed="))
        .unwrap_or_else(|| panic!("no PLAY RECAP line for pg1:\n{output}"));
    let recap = line
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect();
    PlaybookRun { output, recap }
}

#[test]
fn the_ansible_role_installs_configures_and_enables_and_a_second_run_changes_nothing() {
    const TEST: &str = "ansible";
    if !package_tools(TEST) {
        return;
    }
    let Some(ansible) = ansible_playbook() else {
        skip_or_fail(TEST, "ansible-playbook is missing (ansible-core from PyPI)");
        return;
    };
    let _turn = take_turn();
    purge_what_we_left();
    let _cleanup = Cleanup;
    let root = TestDir::new();
    let deb = build_package(root.path());

    // One member on loopback, its data and socket directories in the test's
    // directory; the node gives the ports and, later, runs the agent.
    let mut node = Node::new(root.path(), "pg1");
    node.config = PathBuf::from(CONFFILE);
    let inventory = root.path().join("inventory.yml");
    let data_dir = node.data_dir.display().to_string();
    fs::write(
        &inventory,
        format!(
            r#"pgwarden:
  hosts:
    pg1:
      ansible_connection: local
      ansible_python_interpreter: /usr/bin/python3
      pgwarden_deb: {deb}
      pgwarden_start_service: false
      # this machine's createcluster.conf is not the test's to change
      pgwarden_no_debian_main_cluster: false
      pgwarden_address: 127.0.0.1
      pgwarden_api_port: {api}
      pgwarden_api_listen: "127.0.0.1:{api}"
      pgwarden_pg_port: {pg}
      pgwarden_pg_listen_addresses: 127.0.0.1
      pgwarden_data_dir: {data_dir}
      pgwarden_socket_dir: {socket}
      pgwarden_loop_wait: 500ms
      pgwarden_pg_parameters: {{ fsync: false, shared_buffers: 16MB }}
      pgwarden_api_token: {token}
      pgwarden_cluster_secret: cluster-secret-of-the-ansible-test
      pgwarden_replication_password: "rep'l:pass"
      pgwarden_superuser_password: 'super "pass'
"#,
            deb = deb.display(),
            api = node.api_port,
            pg = node.pg_port,
            socket = node.socket_dir.display(),
            token = pgwarden_tests::API_TOKEN,
        ),
    )
    .expect("inventory");

    mark_ours();
    let first = playbook(&ansible, &inventory, root.path(), &[]);
    assert_eq!(first.count("failed"), 0, "{}", first.output);
    assert!(
        first.count("changed") > 0,
        "the first run changed nothing:\n{}",
        first.output
    );

    // what the role wrote
    for name in SECRET_FILES {
        let path = Path::new(CONFIG_DIR).join(name);
        let meta = fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            meta.permissions().mode() & 0o7777,
            0o600,
            "{}",
            path.display()
        );
        let postgres = nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .expect("no postgres user");
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&meta),
            postgres.uid.as_raw(),
            "{} is not postgres's",
            path.display()
        );
    }
    assert_eq!(
        fs::read_to_string(Path::new(CONFIG_DIR).join("api.token")).expect("token"),
        format!("{}\n", pgwarden_tests::API_TOKEN)
    );
    let config = fs::read_to_string(CONFFILE).expect("configuration");
    for line in [
        "name = \"pg1\"".to_string(),
        format!("data_dir = \"{data_dir}\""),
        format!(
            "{{ name = \"pg1\", api_url = \"http://127.0.0.1:{}\" }},",
            node.api_port
        ),
        format!("port = {}", node.pg_port),
        "fsync = false".to_string(),
    ] {
        assert!(
            config.contains(&line),
            "the configuration lacks {line:?}:\n{config}"
        );
    }
    assert!(
        fs::symlink_metadata(ENABLED_LINK).is_ok(),
        "the role did not enable pgwarden.service"
    );

    let second = playbook(&ansible, &inventory, root.path(), &[]);
    assert_eq!(
        (second.count("failed"), second.count("changed")),
        (0, 0),
        "the second run was not a no-op:\n{}",
        second.output
    );

    // The agent, as postgres with the written configuration (as the unit
    // runs it): PostgreSQL comes up and /health says so.
    node.start_as_postgres();
    let health = pgwarden_tests::wait_for(SLOW, "GET /health = 200", || {
        node.api("GET", "/health").ok().filter(|a| a.status == 200)
    });
    assert_eq!(health.json()["role"], "primary", "{}", health.body);

    // the role's own wait for /health, against the running agent
    let third = playbook(
        &ansible,
        &inventory,
        root.path(),
        &["-e", "pgwarden_wait_for_health=true"],
    );
    assert_eq!(
        (third.count("failed"), third.count("changed")),
        (0, 0),
        "the run that waits for /health was not a no-op:\n{}",
        third.output
    );
    assert_eq!(
        third.task_outcome("GET /health answers 200"),
        "ok: [pg1]",
        "the role did not wait for /health:\n{}",
        third.output
    );

    drop(node);
    assert!(
        Path::new(&data_dir).join("PG_VERSION").is_file(),
        "the data directory is gone"
    );
}
