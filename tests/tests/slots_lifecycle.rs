//! Replication slots over a member's life, on real PostgreSQL with real
//! agents (issue 12, "Slots"): a failover keeps them usable (the standbys
//! kept a slot for every other member, so the new primary has the old
//! primary's slot before it rejoins, and it streams on it); a member away
//! past `member_slot_ttl` loses its slot and, since the WAL it needed is
//! gone, re-clones by itself when it comes back; a slot PostgreSQL reports
//! `lost` is recreated and its member re-clones. Each re-clone renames the
//! old data directory aside, never deletes it.

use std::path::PathBuf;
use std::time::Duration;

use pgwarden_tests::*;
use serde_json::Value;

const DATA: [&str; 3] = ["pg1", "pg2", "pg3"];

/// Three data members as in the failover tests, with extra
/// `[postgresql.parameters]` and `[replication]` lines.
fn cluster(root: &TestDir, parameters: &[&str], replication: &[&str]) -> Cluster {
    let mut c = Cluster::new(root.path(), &DATA, |_| false, "5s", "500ms");
    let members: Vec<(String, u16, bool)> = c
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.api_port, false))
        .collect();
    for node in &mut c.nodes {
        node.extra_parameters
            .extend(parameters.iter().map(|p| p.to_string()));
        node.replication_extra
            .extend(replication.iter().map(|r| r.to_string()));
        node.write_cluster_config(&members);
    }
    c
}

fn node<'a>(c: &'a Cluster, name: &str) -> &'a Node {
    c.nodes
        .iter()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("no node {name}"))
}

/// The slot `name` in a status document.
fn slot<'a>(doc: &'a Value, name: &str) -> Option<&'a Value> {
    doc["slots"].as_array()?.iter().find(|s| s["name"] == name)
}

/// The members of `DATA` but `but`.
fn others(but: &str) -> Vec<&'static str> {
    DATA.iter().copied().filter(|n| *n != but).collect()
}

/// The directories a re-clone renamed aside, beside the data directory.
fn set_aside(node: &Node) -> Vec<PathBuf> {
    let name = node
        .data_dir
        .file_name()
        .expect("data dir name")
        .to_string_lossy()
        .into_owned();
    let prefix = format!("{name}.reclone-");
    let parent = node.data_dir.parent().expect("data dir parent");
    std::fs::read_dir(parent)
        .expect("read the node's directory")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// The WAL segment file holding `lsn` (`0/3000060`) on `timeline`, as
/// `pg_walfile_name` names it (16 MB segments).
fn segment_of(timeline: u64, lsn: &str) -> String {
    let (hi, lo) = lsn.split_once('/').expect("an LSN");
    let lsn = (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap();
    let seg = lsn / (16 << 20);
    format!("{timeline:08X}{:08X}{:08X}", seg / 256, seg % 256)
}

/// One round of WAL on the primary: some rows, a switch to the next
/// segment, a checkpoint (which removes what nothing keeps any more).
fn wal_round(primary: &Node) {
    primary
        .psql("CREATE TABLE IF NOT EXISTS filler (x int); INSERT INTO filler SELECT generate_series(1, 1000)")
        .unwrap();
    primary.psql("SELECT pg_switch_wal()").unwrap();
    primary.psql("CHECKPOINT").unwrap();
}

/// `member` comes back, finds the WAL it needs removed, renames its data
/// directory aside, clones afresh and streams again on its own slot.
fn comes_back_and_reclones(c: &mut Cluster, primary: &str, member: &str) {
    c.node(member).start();
    let m = node(c, member);
    wait_for(SLOW, &format!("{member} to re-clone"), || {
        m.log_text().contains("re-cloning: ").then_some(())
    });
    let log = m.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("re-cloning: "))
        .unwrap_or_default();
    eprintln!("{member}: {line}");
    assert!(
        line.contains("has already removed WAL this standby needs"),
        "the log says why: {line}"
    );
    m.wait_status(SLOW, "streaming again on its own slot", |d| {
        d["wal_receiver"]["status"] == "streaming" && d["wal_receiver"]["slot_name"] == member
    });
    let aside = set_aside(m);
    assert_eq!(aside.len(), 1, "one directory renamed aside: {aside:?}");
    assert!(
        aside[0].join("PG_VERSION").is_file(),
        "the old data directory is kept whole: {}",
        aside[0].display()
    );
    node(c, primary).wait_status(SLOW, "the member's slot in use", |d| {
        slot(d, member).is_some_and(|s| s["active"] == true)
    });
    c.wait_streaming(&DATA);
    for line in node(c, primary)
        .log_text()
        .lines()
        .filter(|l| l.contains("replication slot"))
    {
        eprintln!("{primary}: {line}");
    }
}

#[test]
fn given_the_primary_dies_then_the_new_primary_already_has_its_slot_and_it_streams_on_it_when_it_rejoins(
) {
    if !require_root("slots across a failover") {
        return;
    }
    let root = TestDir::new();
    let mut c = cluster(&root, &[], &[]);
    c.start_all();
    let old = c.wait_streaming(&DATA);
    // Every standby keeps a slot for each other member, reserving WAL.
    for standby in others(&old) {
        node(&c, standby).wait_status(SLOW, "slots for the other members", |d| {
            others(standby)
                .iter()
                .all(|m| slot(d, m).is_some_and(|s| s["restart_lsn"].is_string()))
        });
    }
    node(&c, &old)
        .psql("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100)")
        .unwrap();
    c.node(&old).kill_node();
    let rest = others(&old);
    let new = wait_for(SLOW, "a new primary", || {
        rest.iter()
            .find(|n| {
                node(&c, n)
                    .api("GET", "/primary")
                    .is_ok_and(|a| a.status == 200)
            })
            .map(|n| n.to_string())
    });
    // Before the old primary is back: its slot is there, holding WAL.
    let doc = node(&c, &new).wait_status(SLOW, "the old primary's slot", |d| {
        d["role"] == "primary" && slot(d, &old).is_some()
    });
    let kept = slot(&doc, &old).unwrap();
    assert!(kept["restart_lsn"].is_string(), "it reserves WAL: {kept}");
    assert_eq!(kept["active"], false, "{kept}");
    let log = node(&c, &new).log_text();
    assert!(
        log.contains(&format!("replication slot {old} created on this standby")),
        "the slot was made while {new} was a standby: {log}"
    );
    // The old primary rejoins and streams on it.
    c.node(&old).start();
    c.wait_streaming(&DATA);
    node(&c, &old).wait_status(SLOW, "streaming on its own slot", |d| {
        d["wal_receiver"]["status"] == "streaming" && d["wal_receiver"]["slot_name"] == old.as_str()
    });
    node(&c, &new).wait_status(SLOW, "the old primary's slot in use", |d| {
        slot(d, &old).is_some_and(|s| s["active"] == true)
    });
    let old_node = node(&c, &old);
    wait_for(SLOW, "the rows on the old primary", || {
        (old_node.psql("SELECT count(*) FROM t").ok()? == "100").then_some(())
    });
    assert!(set_aside(old_node).is_empty(), "no re-clone on a failover");
}

#[test]
fn given_a_member_away_past_the_ttl_then_its_slot_is_dropped_and_it_reclones_when_it_comes_back() {
    if !require_root("slot TTL") {
        return;
    }
    let root = TestDir::new();
    // No WAL kept beyond slots: once the slot is gone, so is the WAL.
    let mut c = cluster(
        &root,
        &["wal_keep_size = \"0\""],
        &["member_slot_ttl = \"5s\""],
    );
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    let victim = others(&primary)[0];
    let before = node(&c, victim).wait_status(SLOW, "a replay position", |d| {
        d["wal"]["replayed_lsn"].is_string()
    });
    let needed = segment_of(
        before["timeline"].as_u64().unwrap(),
        before["wal"]["replayed_lsn"].as_str().unwrap(),
    );
    c.node(victim).kill_node();
    let p = node(&c, &primary);
    p.wait_status(SLOW, "the away member's slot dropped", |d| {
        d["slots"].is_array() && slot(d, victim).is_none()
    });
    let log = p.log_text();
    assert!(
        log.contains(&format!(
            "replication slot {victim} dropped: {victim} has been away"
        )),
        "the primary says why: {log}"
    );
    holds_for(
        Duration::from_secs(3),
        "no slot while it is away",
        || match p.psql(&format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{victim}'"
        )) {
            Ok(n) if n == "0" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    // Nothing keeps the WAL it needs: a few segments on, it is gone.
    wait_for(SLOW, "the member's WAL removed on the primary", || {
        wal_round(p);
        let left = p
            .psql(&format!(
                "SELECT count(*) FROM pg_ls_waldir() WHERE name = '{needed}'"
            ))
            .ok()?;
        (left == "0").then_some(())
    });
    comes_back_and_reclones(&mut c, &primary, victim);
}

#[test]
fn given_a_slot_postgresql_reports_lost_then_it_is_recreated_and_its_member_reclones() {
    if !require_root("lost slot") {
        return;
    }
    let root = TestDir::new();
    // Slots keep at most two segments (32 MB; at 1 MB PostgreSQL would
    // round to none and invalidate a streaming standby's slot too).
    let mut c = cluster(
        &root,
        &["wal_keep_size = \"0\"", "max_slot_wal_keep_size = \"32MB\""],
        &[],
    );
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    let victim = others(&primary)[0];
    c.node(victim).kill_node();
    let p = node(&c, &primary);
    let recreated = format!("replication slot {victim} dropped and created again");
    wait_for(SLOW, "the slot lost and recreated", || {
        wal_round(p);
        std::thread::sleep(Duration::from_millis(300));
        p.log_text().contains(&recreated).then_some(())
    });
    let log = p.log_text();
    let line = log
        .lines()
        .find(|l| l.contains(&recreated))
        .unwrap_or_default();
    assert!(
        line.contains("lost")
            && line.contains(&format!("{victim} can no longer stream"))
            && line.contains("re-clone"),
        "the log names the member and says it must re-clone: {line}"
    );
    assert!(
        p.psql("SHOW max_slot_wal_keep_size").unwrap() == "32MB",
        "the user's max_slot_wal_keep_size is in force"
    );
    comes_back_and_reclones(&mut c, &primary, victim);
}
