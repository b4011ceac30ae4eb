//! Member tags (`[node] tags`, Patroni's names) on real agents and real
//! PostgreSQL, changed the way an operator changes them: by editing one
//! node's file and reloading that node.
//!
//! - A real HAProxy routes with Patroni's checks: `?tag_dc=east` keeps
//!   only the east replicas, `noloadbalance` takes a replica out of the
//!   read pool, and `nofailover` on the primary moves the primary away.
//! - Cascading (`replicatefrom`), `nosync` in quorum mode, and
//!   `failover_priority` choosing between two equally advanced standbys.

use std::fmt::Write as _;
use std::fs;
use std::process::{Child, Command, Stdio};

use nix::sys::signal::Signal;
use pgwarden_tests::*;
use serde_json::Value;

const DATA: [&str; 3] = ["pg1", "pg2", "pg3"];
const TTL: &str = "5s";
const LOOP_WAIT: &str = "500ms";

/// Every member's entry, for rewriting one node's file.
fn members(c: &Cluster) -> Vec<(String, u16, bool)> {
    c.nodes
        .iter()
        .map(|n| (n.name.clone(), n.api_port, false))
        .collect()
}

/// Rewrites `name`'s file with `tags` and reloads its agent (SIGHUP).
fn retag(c: &mut Cluster, name: &str, tags: &str) {
    let list = members(c);
    let node = c.node(name);
    node.node_extra = vec![format!("tags = {tags}")];
    node.write_cluster_config(&list);
    node.signal_agent(Signal::SIGHUP);
}

fn status_of(c: &mut Cluster, name: &str) -> Value {
    c.node(name).status().unwrap_or(Value::Null)
}

/// A HAProxy in the foreground with a stats page, killed on drop.
struct Haproxy {
    child: Child,
    stats_port: u16,
}

impl Haproxy {
    /// Starts HAProxy with one TCP backend per `(name, check path)`, each
    /// over every node's PostgreSQL, checked on its agent's API.
    fn start(dir: &std::path::Path, nodes: &[&Node], backends: &[(&str, &str)]) -> Haproxy {
        let stats_port = free_port();
        let mut cfg = format!(
            "global\n    maxconn 100\n\ndefaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n    default-server inter 300ms fall 2 rise 1\n\nlisten stats\n    mode http\n    bind 127.0.0.1:{stats_port}\n    stats enable\n    stats uri /stats\n"
        );
        for (name, check) in backends {
            let _ = write!(
                cfg,
                "\nlisten {name}\n    bind 127.0.0.1:{}\n    option httpchk OPTIONS {check}\n    http-check expect status 200\n",
                free_port()
            );
            for n in nodes {
                let _ = writeln!(
                    cfg,
                    "    server {} 127.0.0.1:{} check port {}",
                    n.name, n.pg_port, n.api_port
                );
            }
        }
        let path = dir.join("haproxy.cfg");
        fs::write(&path, &cfg).expect("write haproxy.cfg");
        let check = Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("haproxy is installed (scripts/install-deps installs it)");
        assert!(
            check.status.success(),
            "haproxy -c: {}\n{cfg}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        Haproxy { child, stats_port }
    }

    /// The servers HAProxy has UP in `backend`, by name, sorted.
    fn up(&self, backend: &str) -> Vec<String> {
        let Ok(answer) = http(self.stats_port, "GET", "/stats;csv") else {
            return vec!["<stats page not answering>".into()];
        };
        let mut up: Vec<String> = answer
            .body
            .lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > 17 && f[0] == backend)
            .filter(|f| !matches!(f[1], "FRONTEND" | "BACKEND") && f[17].starts_with("UP"))
            .map(|f| f[1].to_string())
            .collect();
        up.sort();
        up
    }

    /// Waits until HAProxy has exactly `want` UP in `backend`.
    fn wait_up(&self, backend: &str, want: &[&str]) {
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        wait_for(
            SLOW,
            &format!("HAProxy's {backend} to have {want:?} up"),
            || (self.up(backend) == want).then_some(()),
        );
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn haproxy_routes_by_tag_filters_and_noloadbalance_and_nofailover_moves_the_primary() {
    if !require_root("tags through HAProxy") {
        return;
    }
    let root = TestDir::new();
    let mut c = Cluster::new(root.path(), &DATA, |_| false, TTL, LOOP_WAIT);
    let list = members(&c);
    for (name, dc) in [("pg1", "east"), ("pg2", "east"), ("pg3", "west")] {
        let node = c.node(name);
        node.node_extra = vec![format!("tags = {{ dc = \"{dc}\" }}")];
        node.write_cluster_config(&list);
    }
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    let replicas: Vec<&str> = DATA.iter().copied().filter(|n| *n != primary).collect();
    let east: Vec<&str> = replicas.iter().copied().filter(|n| *n != "pg3").collect();
    // Each member reports its own tags, as Patroni does.
    assert_eq!(
        status_of(&mut c, "pg3")["tags"],
        serde_json::json!({"dc": "west"})
    );

    let nodes: Vec<&Node> = c.nodes.iter().collect();
    let haproxy = Haproxy::start(
        root.path(),
        &nodes,
        &[
            ("primary", "/primary"),
            ("replicas", "/replica"),
            ("replicas_east", "/replica?tag_dc=east"),
            ("leader_tagged", "/leader?tag_dc=nowhere"),
        ],
    );
    haproxy.wait_up("primary", &[&primary]);
    haproxy.wait_up("replicas", &replicas);
    haproxy.wait_up("replicas_east", &east);
    // The leader check ignores tag filters, as Patroni's does.
    haproxy.wait_up("leader_tagged", &[&primary]);

    // Drain one replica: noloadbalance in its own file, reloaded.
    let drained = replicas[0];
    let kept = replicas[1];
    let drained_dc = if drained == "pg3" { "west" } else { "east" };
    retag(
        &mut c,
        drained,
        &format!("{{ dc = \"{drained_dc}\", noloadbalance = true }}"),
    );
    haproxy.wait_up("replicas", &[kept]);
    let kept_east: Vec<&str> = east.iter().copied().filter(|n| *n != drained).collect();
    haproxy.wait_up("replicas_east", &kept_east);
    let node = c.node(drained);
    assert_eq!(node.api("GET", "/replica").unwrap().status, 503);
    assert_eq!(node.api("GET", "/health").unwrap().status, 200);
    assert_eq!(
        node.status().unwrap()["tags"]["noloadbalance"],
        Value::Bool(true)
    );

    // nofailover on the primary, by a reload of its file: it steps down,
    // another member takes over, HAProxy follows, and it rejoins as a
    // replica that is never promoted.
    let primary_dc = if primary == "pg3" { "west" } else { "east" };
    retag(
        &mut c,
        &primary,
        &format!("{{ dc = \"{primary_dc}\", nofailover = true }}"),
    );
    let new_primary = wait_for(SLOW, "another member to be primary", || {
        replicas.iter().copied().find(|n| {
            c.nodes
                .iter()
                .find(|x| x.name == *n)
                .and_then(|x| x.status())
                .is_some_and(|d| d["role"] == "primary" && d["state"] == "running")
        })
    });
    haproxy.wait_up("primary", &[new_primary]);
    c.node(&primary)
        .wait_status(SLOW, "the old primary back as a replica", |d| {
            d["role"] == "replica" && d["wal_receiver"]["status"] == "streaming"
        });
}

#[test]
fn cascading_nosync_and_failover_priority() {
    if !require_root("cascading, nosync, failover_priority") {
        return;
    }
    let root = TestDir::new();
    let mut c = Cluster::new(root.path(), &DATA, |_| false, TTL, LOOP_WAIT);
    let list = members(&c);
    for node in &mut c.nodes {
        node.replication_extra
            .push("synchronous = \"quorum\"".into());
        node.write_cluster_config(&list);
    }
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    let replicas: Vec<String> = DATA
        .iter()
        .filter(|n| **n != primary)
        .map(|n| n.to_string())
        .collect();
    let (upstream, cascaded) = (replicas[0].clone(), replicas[1].clone());

    // The second standby streams from the first, is never a synchronous
    // standby, and is preferred among equals at the next failover.
    retag(
        &mut c,
        &cascaded,
        &format!("{{ replicatefrom = \"{upstream}\", nosync = true, failover_priority = 5 }}"),
    );
    let upstream_port = c.node(&upstream).pg_port;
    c.node(&cascaded)
        .wait_status(SLOW, "streaming from the upstream standby", |d| {
            d["wal_receiver"]["status"] == "streaming"
                && d["wal_receiver"]["sender_port"] == upstream_port
        });
    let on_upstream = c
        .node(&upstream)
        .psql("SELECT string_agg(application_name, ',') FROM pg_stat_replication")
        .unwrap();
    assert_eq!(on_upstream, cascaded, "the upstream standby sends to it");
    let doc = c.node(&primary).wait_status(SLOW, "nosync honoured", |d| {
        d["synchronous"]["nosync"] == serde_json::json!([cascaded.clone()])
    });
    assert_eq!(doc["synchronous"]["k"], 1);
    let names = c
        .node(&primary)
        .psql("SHOW synchronous_standby_names")
        .unwrap();
    assert_eq!(names, format!("ANY 1 (\"{upstream}\")"));

    // A commit acknowledged by the upstream reaches the cascaded standby.
    let p = c.node(&primary);
    p.psql("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .unwrap();
    let lsn = p.psql("SELECT pg_current_wal_lsn()").unwrap();
    for name in [&upstream, &cascaded] {
        let node = c.node(name);
        wait_for(SLOW, &format!("{name} to replay {lsn}"), || {
            node.psql(&format!(
                "SELECT pg_last_wal_replay_lsn() >= '{lsn}' AND (SELECT count(*) FROM t) = 1"
            ))
            .ok()
            .filter(|v| v == "t")
        });
    }

    // Both standbys equally advanced, the primary dies: the one with the
    // higher failover_priority is promoted, although the other comes
    // first by name.
    let pos = |c: &mut Cluster, n: &str| status_of(c, n)["wal"]["received_lsn"].clone();
    wait_for(SLOW, "both standbys at the same position", || {
        let (a, b) = (pos(&mut c, &upstream), pos(&mut c, &cascaded));
        (a == b && !a.is_null()).then_some(())
    });
    c.node(&primary).kill_node();
    let promoted = wait_for(SLOW, "a new primary", || {
        [&upstream, &cascaded].into_iter().find_map(|n| {
            let d = status_of(&mut c, n);
            (d["role"] == "primary" && d["state"] == "running").then(|| n.clone())
        })
    });
    assert_eq!(
        promoted, cascaded,
        "failover_priority = 5 goes first among equals"
    );
}
