//! Patroni's documents on a real three-member cluster: `GET /patroni` on
//! the primary and on the replicas, `GET /cluster` from every member,
//! `GET /history` on a fresh cluster and after a switchover, while
//! pgwarden's own documents stay at `/pgwarden/cluster` and
//! `/pgwarden/history` and `pgwarden list` reads them.

use std::time::{SystemTime, UNIX_EPOCH};

use pgwarden_tests::*;
use serde_json::Value;

const DATA: [&str; 3] = ["pg1", "pg2", "pg3"];

fn node<'a>(c: &'a Cluster, name: &str) -> &'a Node {
    c.nodes.iter().find(|n| n.name == name).expect("node")
}

fn get(node: &Node, path: &str) -> Value {
    let a = node
        .api("GET", path)
        .unwrap_or_else(|e| panic!("{}: GET {path}: {e}", node.name));
    assert_eq!(a.status, 200, "{}: GET {path}: {a:?}", node.name);
    a.json()
}

fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// Patroni's `pg_postmaster_start_time()`: `2026-11-26 12:00:00+00:00`.
fn is_postmaster_time(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 25 && s.as_bytes()[10] == b' ' && s.ends_with("+00:00") && s.starts_with("20")
    })
}

/// The `/cluster` member called `name`.
fn member<'a>(cluster: &'a Value, name: &str) -> &'a Value {
    cluster["members"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == name))
        .unwrap_or_else(|| panic!("{name} in {cluster}"))
}

/// `/cluster` as `from` sees it once it shows `leader` leading and the two
/// others streaming (each member's part is as of its last loop).
fn wait_patroni_cluster(from: &Node, leader: &str) -> Value {
    wait_for(
        SLOW,
        "/cluster: the leader and two streaming replicas",
        || {
            let c = get(from, "/cluster");
            let ms = c["members"].as_array()?;
            let settled = ms.len() == 3
                && ms.iter().all(|m| {
                    if m["name"] == leader {
                        m["role"] == "leader" && m["state"] == "running"
                    } else {
                        m["role"] == "replica" && m["state"] == "streaming" && m["lag"].is_u64()
                    }
                });
            settled.then_some(c)
        },
    )
}

#[test]
fn given_a_running_three_member_cluster_then_patroni_s_documents_describe_it_and_a_switchover_is_in_its_history(
) {
    if !require_root("Patroni's documents") {
        return;
    }
    let root = TestDir::new();
    let mut c = Cluster::new(root.path(), &DATA, |_| false, "5s", "500ms");
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    let standbys: Vec<&str> = DATA.iter().copied().filter(|n| *n != primary).collect();
    let p = node(&c, &primary);
    let status = p.status().expect("the primary's /status");
    let scope = status["cluster"]
        .as_str()
        .expect("a cluster name")
        .to_string();

    // `/patroni` on the primary (its replication rows as of its last loop)
    let doc = wait_for(
        SLOW,
        "the primary's /patroni with two streaming senders",
        || {
            let d = get(p, "/patroni");
            let rows = d["replication"].as_array()?;
            (rows.len() == 2 && rows.iter().all(|r| r["state"] == "streaming")).then_some(d)
        },
    );
    assert_eq!(doc["state"], "running", "{doc}");
    assert_eq!(doc["role"], "primary", "{doc}");
    assert!(is_postmaster_time(&doc["postmaster_start_time"]), "{doc}");
    assert!(
        doc["server_version"].as_u64().is_some_and(|v| v >= 150000),
        "{doc}"
    );
    assert!(
        doc["xlog"]["location"].as_u64().is_some_and(|l| l > 0),
        "{doc}"
    );
    assert_eq!(doc["xlog"].as_object().map(|o| o.len()), Some(1), "{doc}");
    assert_eq!(doc["timeline"], 1, "{doc}");
    assert!(doc.get("cluster_unlocked").is_none(), "{doc}");
    assert!(doc.get("pause").is_none(), "{doc}");
    assert!(
        doc["dcs_last_seen"]
            .as_u64()
            .is_some_and(|t| t.abs_diff(now_epoch()) < 60),
        "{doc}"
    );
    assert_eq!(
        doc["database_system_identifier"], status["postgres"]["system_identifier"],
        "{doc}"
    );
    assert_eq!(doc["patroni"]["name"], primary.as_str(), "{doc}");
    assert_eq!(doc["patroni"]["scope"], scope.as_str(), "{doc}");
    assert!(doc["patroni"]["version"].is_string(), "{doc}");
    for row in doc["replication"].as_array().expect("rows") {
        assert!(
            standbys.contains(&row["application_name"].as_str().unwrap_or_default()),
            "{row}"
        );
        assert_eq!(row["state"], "streaming", "{row}");
        assert_eq!(row["sync_state"], "async", "{row}");
        assert!(
            row["usename"].is_string() && row["sync_priority"].is_i64(),
            "{row}"
        );
        assert!(row.get("client_addr").is_some(), "{row}");
    }

    // `/patroni` on each replica
    for name in &standbys {
        let s = node(&c, name);
        let doc = wait_for(SLOW, "a replica's /patroni streaming", || {
            let d = get(s, "/patroni");
            (d["replication_state"] == "streaming").then_some(d)
        });
        assert_eq!(doc["state"], "running", "{doc}");
        assert_eq!(doc["role"], "replica", "{doc}");
        assert!(is_postmaster_time(&doc["postmaster_start_time"]), "{doc}");
        let xlog = &doc["xlog"];
        assert!(
            xlog["received_location"].is_u64() && xlog["replayed_location"].is_u64(),
            "{doc}"
        );
        assert_eq!(xlog["paused"], false, "{doc}");
        assert!(xlog.get("replayed_timestamp").is_some(), "{doc}");
        assert!(xlog.get("location").is_none(), "{doc}");
        assert_eq!(doc["timeline"], 1, "{doc}");
        assert!(doc.get("replication").is_none(), "{doc}");
        assert!(doc.get("sync_standby").is_none(), "asynchronous: {doc}");
        assert_eq!(doc["patroni"]["name"], *name, "{doc}");
    }

    // `/cluster` from every member: the same three members, Patroni's roles
    for n in DATA {
        let cluster = wait_patroni_cluster(node(&c, n), &primary);
        assert_eq!(cluster["scope"], scope.as_str(), "{cluster}");
        let names: Vec<&str> = cluster["members"]
            .as_array()
            .expect("members")
            .iter()
            .filter_map(|m| m["name"].as_str())
            .collect();
        assert_eq!(names, DATA, "sorted by name: {cluster}");
        let leader = member(&cluster, &primary);
        assert!(leader.get("lag").is_none(), "{leader}");
        assert_eq!(leader["timeline"], 1, "{leader}");
        assert_eq!(leader["host"], "127.0.0.1", "{leader}");
        assert_eq!(leader["port"], u64::from(p.pg_port), "{leader}");
        for s in &standbys {
            let m = member(&cluster, s);
            assert!(m["receive_lag"].is_u64() && m["replay_lag"].is_u64(), "{m}");
            assert!(m["lsn"].as_str().is_some_and(|l| l.contains('/')), "{m}");
        }
        // a member's api_url is its `/patroni`, as Patroni registers it
        let url = leader["api_url"].as_str().expect("api_url");
        assert_eq!(url, format!("http://127.0.0.1:{}/patroni", p.api_port));
    }

    // `/history` on a fresh cluster: no timeline switch yet
    assert_eq!(get(p, "/history"), Value::Array(vec![]));
    // pgwarden's own history keeps every role change, initdb included
    let own = get(p, "/pgwarden/history");
    assert!(
        own.as_array().is_some_and(|h| h
            .iter()
            .any(|e| e["reason"].as_str().is_some_and(|r| r.contains("initdb")))),
        "{own}"
    );

    // pgwarden's cluster document keeps its shape
    let own = get(node(&c, standbys[0]), "/pgwarden/cluster");
    assert_eq!(own["cluster"], scope.as_str(), "{own}");
    assert_eq!(own["leader"], primary.as_str(), "{own}");
    assert!(own["term"].is_u64(), "{own}");
    let members = own["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{own}");
    assert!(members[0]["status"]["wal"].is_object(), "{own}");

    // `pgwarden list` reads it
    let out = std::process::Command::new(pgwarden_bin())
        .args(["list", "--url"])
        .arg(format!("http://127.0.0.1:{}", p.api_port))
        .output()
        .expect("pgwarden list");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains(&format!("leader: {primary}")), "{table}");

    // a switchover: a timeline switch, in Patroni's arrays
    let target = standbys[0];
    let answer = p.operate(
        "POST",
        "/switchover",
        &format!(r#"{{"leader": "{primary}", "candidate": "{target}"}}"#),
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(c.wait_streaming(&DATA), target);
    let t = node(&c, target);
    let history = get(t, "/history");
    let lines = history.as_array().expect("an array");
    assert_eq!(lines.len(), 1, "{history}");
    let line = lines[0].as_array().expect("an array of arrays");
    assert_eq!(line.len(), 5, "{history}");
    assert_eq!(line[0], 1, "the timeline that ended: {history}");
    assert!(line[1].as_u64().is_some_and(|l| l > 0), "{history}");
    assert!(
        line[2].as_str().is_some_and(|r| r.contains("promoted")),
        "{history}"
    );
    assert!(
        line[3].as_str().is_some_and(|t| t.ends_with("+00:00")),
        "{history}"
    );
    assert_eq!(line[4], target, "{history}");
    let doc = get(t, "/patroni");
    assert_eq!(
        (&doc["role"], &doc["timeline"]),
        (&"primary".into(), &2.into()),
        "{doc}"
    );
    wait_patroni_cluster(node(&c, &primary), target);
}
