//! TLS for the API with real agents: a cluster whose agents require each
//! other's certificates, clients that are refused, the CLI over HTTPS,
//! certificate rotation by SIGHUP, optional client certificates, and the
//! validation of the TLS keys. Certificates are made with `openssl` in the
//! test's directory (`pgwarden_tests::tls`).

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pgwarden_tests::tls::{read_certs, CertPair, NodeTls, TestCa, TlsClient};
use pgwarden_tests::*;

const DATA: [&str; 3] = ["pg1", "pg2", "pg3"];

/// The `pgwarden` command with `args`.
fn pgwarden(args: &[&str]) -> Output {
    Command::new(pgwarden_bin())
        .args(args)
        .output()
        .expect("run pgwarden")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// kill -9 of the agent and its postmaster: the node is dead.
fn kill_node(node: &mut Node) {
    let pm = node.postmaster_pid();
    node.kill_agent();
    if let Some(pm) = pm {
        let _ = kill(Pid::from_raw(pm), Signal::SIGKILL);
    }
}

/// Replaces a certificate's files in place, as an operator's rotation
/// does: the new contents arrive under the old names (temp file, rename).
fn install(new: &CertPair, at: &CertPair) {
    for (from, to) in [(&new.cert, &at.cert), (&new.key, &at.key)] {
        let tmp = to.with_extension("new");
        fs::copy(from, &tmp).expect("copy");
        fs::rename(&tmp, to).expect("rename");
    }
}

/// One TLS node of a one-member cluster, configuration written.
fn single_tls_node(root: &Path, tls: NodeTls) -> Node {
    let mut node = Node::new(root, "pg1");
    node.tls = Some(tls);
    let me = (node.name.clone(), node.api_port);
    node.write_config(&[me]);
    node
}

#[test]
fn given_three_members_requiring_client_certificates_then_they_converge_refuse_strangers_serve_the_cli_and_fail_over(
) {
    if !require_root("TLS cluster") {
        return;
    }
    let root = TestDir::new();
    let ca = TestCa::new(root.path(), "ca");
    let rogue = TestCa::new(root.path(), "rogue");
    let mut c = Cluster::new_with_tls(
        root.path(),
        &DATA,
        |_| false,
        "5s",
        "500ms",
        |n| Some(NodeTls::mutual(&ca, n)),
    );
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    eprintln!("{primary} is primary; pg1..pg3 reach each other over mutual TLS");

    // Clients the agents must refuse: no certificate, a certificate of
    // another CA, plain HTTP. Each is refused at the handshake.
    let intruder = rogue.issue("intruder");
    for node in &c.nodes {
        let port = node.api_port;
        let none = TlsClient::new(&ca.cert, None).request(port, "GET", "/status");
        assert!(
            none.is_err(),
            "{}: served a client without a certificate: {none:?}",
            node.name
        );
        let foreign = TlsClient::new(&ca.cert, Some(&intruder)).request(port, "GET", "/status");
        assert!(
            foreign.is_err(),
            "{}: served another CA's client: {foreign:?}",
            node.name
        );
        let plain = http(port, "GET", "/status");
        assert!(
            !plain.as_ref().is_ok_and(|a| a.status == 200),
            "{}: answered plain HTTP: {plain:?}",
            node.name
        );
    }
    // Clients that connect and never speak hold a handshake each, not the
    // accept loop: a good client is served while they wait.
    let p = c.node(&primary).api_port;
    let idle: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(("127.0.0.1", p)).expect("connect"))
        .collect();
    let asked = Instant::now();
    let doc = c
        .node(&primary)
        .api("GET", "/primary")
        .expect("served beside idle clients");
    assert_eq!(doc.status, 200, "{}", doc.body);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "a good client waited {:?} behind clients that never speak",
        asked.elapsed()
    );
    drop(idle);
    let log = c.node(&primary).log_text();
    assert!(log.contains("refused: TLS handshake failed"), "{log}");
    // The agents kept working through all that.
    assert_eq!(c.wait_streaming(&DATA), primary);

    // The CLI: --config reads the node's CA and certificate ...
    let cfg = c.node(&primary).config.display().to_string();
    let out = pgwarden(&["status", "--config", &cfg]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("role            primary"), "{stdout}");
    // ... and --url takes them as flags.
    let cli = ca.issue("cli");
    let url = format!("https://127.0.0.1:{}", c.node("pg2").api_port);
    let (ca_file, cert, key) = (
        ca.cert.display().to_string(),
        cli.cert.display().to_string(),
        cli.key.display().to_string(),
    );
    // pg2 lists the others as of its last poll of them, up to a loop
    // older than what each said of itself a moment ago: wait for it.
    let table = wait_for(SLOW, "pg2's list to show two streaming replicas", || {
        let out = pgwarden(&[
            "list",
            "--url",
            &url,
            "--ca-file",
            &ca_file,
            "--cert-file",
            &cert,
            "--key-file",
            &key,
        ]);
        assert!(out.status.success(), "{}", text(&out));
        let table = String::from_utf8_lossy(&out.stdout).into_owned();
        (table.matches("streaming").count() == 2).then_some(table)
    });
    for name in DATA {
        assert!(
            table.contains(&format!("| {name} ")),
            "{name} missing:\n{table}"
        );
    }
    assert!(!table.contains("unreachable"), "{table}");
    // Without the cluster's CA the agent is not trusted; without a
    // certificate the agent does not answer.
    let out = pgwarden(&[
        "list",
        "--url",
        &url,
        "--cert-file",
        &cert,
        "--key-file",
        &key,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        stderr.contains("UnknownIssuer") && stderr.contains("--ca-file"),
        "{}",
        text(&out)
    );
    eprintln!("without the CA: {}", stderr.trim());
    let out = pgwarden(&["list", "--url", &url, "--ca-file", &ca_file]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains("--cert-file"), "{}", text(&out));
    eprintln!("without a certificate: {}", stderr.trim());

    // Failover works over TLS as over plain HTTP.
    let killed = Instant::now();
    kill_node(c.node(&primary));
    let rest: Vec<&str> = DATA.iter().copied().filter(|n| *n != primary).collect();
    let new = c.wait_streaming(&rest);
    assert_ne!(new, primary);
    eprintln!(
        "{new} took over {:?} after {primary} died",
        killed.elapsed()
    );
}

#[test]
fn given_new_certificate_files_and_a_sighup_then_new_connections_get_the_new_certificate_and_a_bad_file_changes_nothing(
) {
    if !require_root("TLS rotation") {
        return;
    }
    let root = TestDir::new();
    let ca = TestCa::new(root.path(), "ca");
    let tls = NodeTls::mutual(&ca, "pg1");
    let installed = tls.pair.clone();
    let mut node = single_tls_node(root.path(), tls);
    node.start();
    node.wait_primary();
    let client = TlsClient::new(&ca.cert, Some(&ca.issue("cli")));
    let served = |node: &Node| client.served_certificate(node.api_port).ok();
    let first = read_certs(&installed.cert)[0].as_ref().to_vec();
    assert_eq!(served(&node), Some(first.clone()));

    let second = ca.issue("pg1");
    install(&second, &installed);
    node.signal_agent(Signal::SIGHUP);
    let second_der = read_certs(&second.cert)[0].as_ref().to_vec();
    assert_ne!(first, second_der, "a new serial makes a new certificate");
    wait_for(SLOW, "the new certificate to be served", || {
        (served(&node)? == second_der).then_some(())
    });
    assert!(
        node.log_text().contains("SIGHUP: API certificate re-read"),
        "{}",
        node.log_text()
    );
    assert_eq!(
        client
            .request(node.api_port, "GET", "/primary")
            .expect("served")
            .status,
        200
    );

    // A certificate file that is not a certificate: the configuration is
    // refused as a whole and the agent keeps serving the one it has.
    fs::write(&installed.cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").expect("write");
    node.signal_agent(Signal::SIGHUP);
    wait_for(SLOW, "the bad file to be refused", || {
        node.log_text()
            .contains("keeping the running configuration")
            .then_some(())
    });
    assert!(
        node.log_text().contains("api.tls_cert_file"),
        "{}",
        node.log_text()
    );
    assert_eq!(served(&node), Some(second_der));
    assert_eq!(
        client
            .request(node.api_port, "GET", "/primary")
            .expect("served")
            .status,
        200
    );
}

#[test]
fn given_verify_client_optional_then_a_client_without_a_certificate_is_served_and_a_foreign_one_refused(
) {
    if !require_root("TLS optional client certificates") {
        return;
    }
    let root = TestDir::new();
    let ca = TestCa::new(root.path(), "ca");
    let rogue = TestCa::new(root.path(), "rogue");
    let mut tls = NodeTls::mutual(&ca, "pg1");
    tls.verify_client = Some("optional".into());
    let mut node = single_tls_node(root.path(), tls);
    node.start();
    node.wait_primary();
    // What a load balancer's check-ssl does: a handshake without a
    // certificate, then the health check.
    let anonymous = TlsClient::new(&ca.cert, None);
    for (method, path) in [
        ("GET", "/primary"),
        ("OPTIONS", "/primary"),
        ("GET", "/health"),
    ] {
        let a = anonymous
            .request(node.api_port, method, path)
            .expect("served without a certificate");
        assert_eq!(a.status, 200, "{method} {path}: {}", a.body);
    }
    let foreign = TlsClient::new(&ca.cert, Some(&rogue.issue("intruder")));
    let refused = foreign.request(node.api_port, "GET", "/status");
    assert!(
        refused.is_err(),
        "a certificate of another CA was accepted: {refused:?}"
    );
    let member = TlsClient::new(&ca.cert, Some(&ca.issue("cli")));
    assert_eq!(
        member
            .request(node.api_port, "GET", "/status")
            .expect("served")
            .status,
        200
    );
}

#[test]
fn check_config_names_the_tls_key_that_is_wrong() {
    let root = TestDir::new();
    let ca = TestCa::new(root.path(), "ca");
    let other = ca.issue("other");
    let node = single_tls_node(root.path(), NodeTls::mutual(&ca, "pg1"));
    let good = fs::read_to_string(&node.config).expect("config");
    let cfg = node.config.display().to_string();
    let check = |text: &str| {
        fs::write(&node.config, text).expect("write config");
        pgwarden(&["check-config", "--config", &cfg])
    };
    let out = check(&good);
    assert!(out.status.success(), "{}", text(&out));
    let effective = String::from_utf8_lossy(&out.stdout);
    assert!(
        effective.contains("verify_client = \"required\"  # default"),
        "{effective}"
    );

    let tls = node.tls.as_ref().expect("tls");
    let key_line = format!("tls_key_file = \"{}\"\n", tls.pair.key.display());
    let cases: Vec<(String, &str, &str)> = vec![
        (
            good.replace(&key_line, ""),
            "api.tls_key_file: missing",
            "cert without key",
        ),
        (
            good.replace(
                &key_line,
                &format!("tls_key_file = \"{}\"\n", other.key.display()),
            ),
            "api.tls_key_file: the private key in",
            "the key of another certificate",
        ),
        (
            good.replace(
                &tls.pair.cert.display().to_string(),
                &ca.key().display().to_string(),
            ),
            "api.tls_cert_file:",
            "a key where the certificate belongs",
        ),
        (
            good.replace("tls_client_ca_file", "# tls_client_ca_file")
                .replace("[api]\n", "[api]\nverify_client = \"required\"\n"),
            "api.verify_client: \"required\" needs tls_client_ca_file",
            "required without a CA",
        ),
        (
            good.replace("https://", "http://"),
            "cluster.members[0].api_url",
            "an http:// URL for a TLS agent",
        ),
        (
            good.replace("[api]\n", "[api]\nverify_client = \"sometimes\"\n"),
            "api.verify_client: \"sometimes\" is not a client verification mode",
            "a bad mode",
        ),
    ];
    for (config, expected, what) in cases {
        let out = check(&config);
        assert_eq!(out.status.code(), Some(2), "{what}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(expected),
            "{what}: expected {expected:?} in {}",
            text(&out)
        );
    }
}
