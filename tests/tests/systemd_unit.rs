//! The shipped unit files — `pgwarden.service` and the template
//! `pgwarden@.service` for hosts with more than one cluster — pass
//! `systemd-analyze verify` without a single warning, keep the settings the
//! agent depends on, and differ only where the instance name goes.
//! (`package.rs` verifies the units the Debian package installs.)

use std::path::Path;
use std::process::Command;

use pgwarden_tests::pgwarden_bin;

/// Where the repository's units run the agent from (a source install).
const SOURCE_BIN: &str = "/usr/local/bin/pgwarden";

fn unit_text(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../systemd")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The lines every unit must have, `config` being its `--config` argument.
fn required_lines(config: &str) -> Vec<String> {
    let mut lines: Vec<String> = [
        "Type=notify",
        "User=postgres",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillMode=process",
        "KillSignal=SIGINT",
        "RestartKillSignal=SIGTERM",
        "Restart=always",
        "WatchdogSec=",
        "TimeoutStopSec=",
        "NoNewPrivileges=yes",
        "ProtectSystem=full",
        "ProtectHome=yes",
        "PrivateTmp=yes",
    ]
    .map(String::from)
    .to_vec();
    lines.push(format!("ExecStart={SOURCE_BIN} run --config {config}"));
    lines
}

fn assert_has_lines(name: &str, unit: &str, lines: &[String]) {
    for line in lines {
        assert!(
            unit.lines().any(|l| l.starts_with(line.as_str())),
            "{name}: missing {line:?}"
        );
    }
}

#[test]
fn the_unit_file_has_the_settings_the_agent_depends_on() {
    assert_has_lines(
        "pgwarden.service",
        &unit_text("pgwarden.service"),
        &required_lines("/etc/pgwarden/pgwarden.toml"),
    );
}

#[test]
fn the_template_unit_reads_the_instances_configuration_file() {
    assert_has_lines(
        "pgwarden@.service",
        &unit_text("pgwarden@.service"),
        &required_lines("/etc/pgwarden/%i.toml"),
    );
}

#[test]
fn the_template_unit_differs_from_the_unit_only_in_the_instance() {
    // Comments aside, the two may differ in Description and ExecStart only:
    // a setting changed in one and forgotten in the other fails here.
    let settings = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| !l.starts_with("Description=") && !l.starts_with("ExecStart="))
            .map(String::from)
            .collect()
    };
    assert_eq!(
        settings(&unit_text("pgwarden.service")),
        settings(&unit_text("pgwarden@.service")),
        "pgwarden.service and pgwarden@.service drifted apart"
    );
}

/// Runs `systemd-analyze verify` on `unit_file` (a path); panics with
/// what it said unless it passed without a word.
fn verify_quietly(unit_file: &Path) {
    let out = match Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit_file)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!("systemd-analyze is needed for this test (apt-get install systemd): {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify {} failed: {stderr}",
        unit_file.display()
    );
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify {} warned: {stderr}",
        unit_file.display()
    );
}

/// `unit`'s text pointed at the build under test when the source install's
/// binary is absent (verify checks that ExecStart's binary exists);
/// nothing else changes.
fn runnable(unit: String) -> String {
    if Path::new(SOURCE_BIN).is_file() {
        unit
    } else {
        unit.replace(SOURCE_BIN, &pgwarden_bin().display().to_string())
    }
}

#[test]
fn systemd_analyze_verify_accepts_the_unit_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("pgwarden.service");
    std::fs::write(&copy, runnable(unit_text("pgwarden.service"))).unwrap();
    verify_quietly(&copy);
}

#[test]
fn systemd_analyze_verify_accepts_an_instance_of_the_template_without_warnings() {
    // An instance, so that %i is expanded and ExecStart checked as it runs.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("pgwarden@sales.service");
    std::fs::write(&copy, runnable(unit_text("pgwarden@.service"))).unwrap();
    verify_quietly(&copy);
}
