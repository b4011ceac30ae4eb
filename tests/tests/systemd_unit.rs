//! The shipped unit file passes `systemd-analyze verify` without a single
//! warning, and keeps the settings the agent depends on.

use std::path::Path;
use std::process::Command;

use pgwarden_tests::pgwarden_bin;

fn unit_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/pgwarden.service");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_unit_file_has_the_settings_the_agent_depends_on() {
    let unit = unit_text();
    for line in [
        "Type=notify",
        "User=postgres",
        "ExecStart=/usr/local/bin/pgwarden run --config /etc/pgwarden/pgwarden.toml",
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
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(line)),
            "missing {line:?}"
        );
    }
}

#[test]
fn systemd_analyze_verify_accepts_the_unit_without_warnings() {
    // verify checks that ExecStart's binary exists: point it at the build
    // under test when the unit's own path is not installed; nothing else changes.
    let unit = unit_text();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("pgwarden.service");
    let text = if Path::new("/usr/local/bin/pgwarden").is_file() {
        unit
    } else {
        unit.replace(
            "/usr/local/bin/pgwarden",
            &pgwarden_bin().display().to_string(),
        )
    };
    std::fs::write(&copy, text).unwrap();
    let out = match Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!("systemd-analyze is needed for this test (apt-get install systemd): {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {stderr}"
    );
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warned: {stderr}"
    );
}
