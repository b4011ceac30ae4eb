//! Quorum commit (`replication.synchronous = "quorum"`) on real PostgreSQL
//! with real agents: no acknowledged write is lost when the primary dies,
//! however often and whichever member comes back first; commits wait,
//! visibly, while too few standbys are connected.
//!
//! The rule under test (DESIGN.md, "Zero acknowledged-write loss"): with N
//! data members and M the majority of the lease's voters, the primary
//! commits on `ANY k (<the other data members>)` with k = max(1, N − M),
//! and a candidate promotes only after it has compared WAL positions with
//! N − k data members, itself included, and has the highest.
//!
//! Where three data members alone would hide the rule behind the lease
//! (one member out of three cannot win the lease whatever it thinks of its
//! WAL; a primary without both standbys loses its lease and fences), the
//! cluster also has two witnesses: five voters, M = 3, still k = 1 and
//! N − k = 2, but now one data member plus the witnesses is a majority, so
//! only the quorum rule holds a lone standby back and a primary keeps its
//! lease with both standbys gone. Five data members (k = 2) cannot have
//! that: any witness would lower k.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pgwarden_tests::writer::{Writer, WriterReport, WriterTarget};
use pgwarden_tests::*;
use serde_json::Value;

const DATA: [&str; 3] = ["pg1", "pg2", "pg3"];

/// Three data members and two witnesses: see the module doc.
const WITH_WITNESSES: [&str; 5] = ["pg1", "pg2", "pg3", "w1", "w2"];
const WITNESSES: [&str; 2] = ["w1", "w2"];

const FIVE: [&str; 5] = ["pg1", "pg2", "pg3", "pg4", "pg5"];

/// `cluster.ttl` and `cluster.loop_wait`, as in the failover tests.
const TTL: &str = "5s";
const TTL_SECS: u64 = 5;
const LOOP_WAIT: &str = "500ms";

/// How long a member that must not promote is watched: three lease lives,
/// time enough for any member that wanted the lease to have taken it.
const NO_PROMOTION_WINDOW: Duration = Duration::from_secs(3 * TTL_SECS);

/// A cluster of `names` (`witnesses` among them) whose every member has
/// `synchronous = mode` in `[replication]`.
fn cluster(root: &TestDir, names: &[&str], witnesses: &[&str], mode: &str) -> Cluster {
    let is_witness = |n: &str| witnesses.contains(&n);
    let mut c = Cluster::new(root.path(), names, is_witness, TTL, LOOP_WAIT);
    let members: Vec<(String, u16, bool)> = c
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.api_port, is_witness(&n.name)))
        .collect();
    for node in &mut c.nodes {
        node.replication_extra
            .push(format!("synchronous = \"{mode}\""));
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

fn code(node: &Node, path: &str) -> u16 {
    node.api("GET", path).map(|a| a.status).unwrap_or(0)
}

/// The member among `names` whose agent answers `/primary` with 200, now.
fn primary_among(c: &Cluster, names: &[String]) -> Option<String> {
    names
        .iter()
        .find(|n| code(node(c, n), "/primary") == 200)
        .cloned()
}

fn others(all: &[&str], but: &[&str]) -> Vec<String> {
    all.iter()
        .filter(|n| !but.contains(n))
        .map(|n| n.to_string())
        .collect()
}

fn name_set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn set(names: &[String]) -> BTreeSet<String> {
    names.iter().cloned().collect()
}

/// What the primary's `/status` should say under `synchronous`.
struct Expected<'a> {
    k: u64,
    standbys: &'a [String],
    missing: &'a [String],
    writes_blocked: bool,
}

/// Waits until the primary's `/status` shows quorum commit as `expected`;
/// returns the `synchronous` document.
fn wait_quorum_doc(primary: &Node, what: &str, expected: Expected) -> Value {
    let doc = primary.wait_status(SLOW, what, |d| {
        let s = &d["synchronous"];
        d["role"] == "primary"
            && s["mode"] == "quorum"
            && s["k"] == expected.k
            && name_set(&s["standbys"]) == set(expected.standbys)
            && name_set(&s["missing"]) == set(expected.missing)
            && s["writes_blocked"] == expected.writes_blocked
    });
    doc["synchronous"].clone()
}

/// A report over every id acknowledged so far, by any of the test's
/// writers: what each new primary must hold.
fn everything_acknowledged(acked: &[(i64, String, Instant)]) -> WriterReport {
    let now = Instant::now();
    WriterReport {
        started: now,
        stopped: now,
        acked: acked.to_vec(),
        accepts: BTreeMap::new(),
        refusals: BTreeMap::new(),
        routes: Vec::new(),
    }
}

/// The health checks of a standby the primary counts in its quorum: every
/// standby of a three-member cluster in quorum mode (`ANY 1 (a, b)`:
/// pg_stat_replication says `quorum` for both).
fn wait_counted_in_quorum(standby: &Node) {
    wait_for(
        SLOW,
        &format!("{} to be counted in the quorum (/sync 200)", standby.name),
        || (code(standby, "/sync") == 200).then_some(()),
    );
    for (path, want) in [
        ("/sync", 200),
        ("/synchronous", 200),
        ("/quorum", 200),
        ("/read-only-sync", 200),
        ("/async", 503),
    ] {
        assert_eq!(
            code(standby, path),
            want,
            "GET {path} on {}, a standby in the quorum; status: {:?}",
            standby.name,
            standby.status()
        );
    }
}

/// `synchronous = "on"` (`FIRST 1 (...)`): the primary counts exactly one
/// standby (`sync`), the other is `potential`: `/sync` answers 200 on one,
/// `/async` on the other, `/quorum` on neither.
fn wait_first_one(c: &Cluster, primary: &str, standbys: &[String]) {
    let doc = node(c, primary).wait_status(
        SLOW,
        "synchronous mode \"on\" with one standby counted",
        |d| {
            let s = &d["synchronous"];
            d["role"] == "primary"
                && s["mode"] == "on"
                && s["k"] == 1
                && s["standbys"].as_array().is_some_and(|a| a.len() == 1)
                && s["writes_blocked"] == false
        },
    );
    let sync = doc["synchronous"]["standbys"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(standbys.contains(&sync), "{sync} is not a standby: {doc}");
    let sync_node = node(c, &sync);
    wait_for(SLOW, &format!("{sync} to answer /sync"), || {
        (code(sync_node, "/sync") == 200).then_some(())
    });
    assert_eq!(
        code(sync_node, "/quorum"),
        503,
        "{sync}: /quorum under FIRST 1"
    );
    for other in standbys.iter().filter(|s| **s != sync) {
        let other = node(c, other);
        wait_for(SLOW, &format!("{} to answer /async", other.name), || {
            (code(other, "/async") == 200).then_some(())
        });
        assert_eq!(
            code(other, "/sync"),
            503,
            "{}: a potential standby",
            other.name
        );
    }
}

/// Where the reason a member gives for not promoting says it has compared
/// WAL positions with too few data members (`needed` of them, `reached`).
fn waits_for_positions(reason: &Value, needed: usize, reached: usize) -> bool {
    reason.as_str().is_some_and(|r| {
        r.contains("waiting")
            && r.contains(&format!("{needed} data members"))
            && r.contains(&format!("reached {reached}"))
    })
}

/// Watches `waiting` members over [`NO_PROMOTION_WINDOW`]: none answers
/// `/primary` with 200, none says it is primary, none's PostgreSQL leaves
/// recovery, and each keeps saying it waits for the positions of `needed`
/// data members having reached `reached`.
fn nobody_promotes(c: &Cluster, waiting: &[String], needed: usize, reached: usize) {
    for name in waiting {
        let n = node(c, name);
        let deadline = Instant::now() + SLOW;
        loop {
            let d = n.status();
            if let Some(d) = &d {
                assert_ne!(
                    d["role"], "primary",
                    "{name} promoted having reached {reached} data members: {d}"
                );
                if waits_for_positions(&d["reason"], needed, reached) {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{name} does not say it waits for the WAL positions of {needed} data members \
                 within {SLOW:?}; last status: {d:?}\nagent log:\n{}",
                n.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    holds_for(
        NO_PROMOTION_WINDOW,
        &format!("no promotion among {waiting:?}, which reach only {reached} data members"),
        || {
            for name in waiting {
                let n = node(c, name);
                if code(n, "/primary") == 200 {
                    return Err(format!("{name} answers /primary with 200"));
                }
                if let Some(d) = n.status() {
                    if d["role"] == "primary" {
                        return Err(format!("{name} is primary: {d}"));
                    }
                    if !waits_for_positions(&d["reason"], needed, reached) {
                        return Err(format!(
                            "{name} no longer waits for more positions: {}",
                            d["reason"]
                        ));
                    }
                }
                if n.psql("SELECT pg_is_in_recovery()").as_deref() == Ok("f") {
                    return Err(format!("{name}'s PostgreSQL left recovery"));
                }
            }
            Ok(())
        },
    );
}

/// Waits until the writer's table has reached `standby`: asking a member
/// that never had it which ids it lacks fails rather than answers "all".
fn wait_for_writer_table(standby: &Node) {
    wait_for(
        SLOW,
        &format!("the writer's table on {}", standby.name),
        || {
            (standby
                .psql("SELECT to_regclass('writer_ids') IS NOT NULL")
                .ok()?
                == "t")
                .then_some(())
        },
    );
}

/// One round of [`primary_deaths`].
struct Round {
    victim: String,
    promoted: String,
    missing: Vec<i64>,
    acknowledged: usize,
}

/// Three data members in `mode`, the writer running: kills the primary node
/// `rounds` times, each time once the victim of the round before has
/// rejoined and all three stream, and asks every new primary for every id
/// acknowledged so far.
fn primary_deaths(mode: &str, rounds: usize) -> Vec<Round> {
    let began = Instant::now();
    let root = TestDir::new();
    let mut c = cluster(&root, &DATA, &[], mode);
    c.start_all();
    let mut primary = c.wait_streaming(&DATA);
    let standbys = others(&DATA, &[&primary]);
    if mode == "quorum" {
        wait_quorum_doc(
            node(&c, &primary),
            "quorum commit on both standbys",
            Expected {
                k: 1,
                standbys: &standbys,
                missing: &[],
                writes_blocked: false,
            },
        );
        for s in &standbys {
            wait_counted_in_quorum(node(&c, s));
        }
    } else if mode == "on" {
        wait_first_one(&c, &primary, &standbys);
    } else {
        for s in &standbys {
            let s = node(&c, s);
            wait_for(SLOW, &format!("{} to be asynchronous", s.name), || {
                (code(s, "/async") == 200).then_some(())
            });
            assert_eq!(code(s, "/sync"), 503, "{}: /sync in async mode", s.name);
            assert_eq!(code(s, "/quorum"), 503, "{}: /quorum in async mode", s.name);
        }
    }
    assert_eq!(
        code(node(&c, &primary), "/read-only-sync"),
        200,
        "the primary serves /read-only-sync"
    );
    let targets: Vec<WriterTarget> = c.nodes.iter().map(WriterTarget::of).collect();
    let mut acked: Vec<(i64, String, Instant)> = Vec::new();
    let mut done = Vec::new();
    for round in 1..=rounds {
        let victim = primary.clone();
        let writer = Writer::start(targets.clone());
        writer.wait_routed_accept(&victim, Instant::now(), SLOW);
        // On purpose: the kill lands in a stream of commits, not after one.
        std::thread::sleep(Duration::from_secs(1));
        let killed = Instant::now();
        c.node(&victim).kill_node();
        let rest = others(&DATA, &[&victim]);
        let promoted = wait_for(SLOW, &format!("a primary among {rest:?}"), || {
            primary_among(&c, &rest)
        });
        writer.wait_routed_accept(&promoted, killed, SLOW);
        let report = writer.stop();
        eprintln!("[{mode}] round {round}: {}", report.summary());
        assert!(
            report.overlaps().is_empty(),
            "[{mode}] round {round}: two members writable at once: {:?}",
            report.overlaps()
        );
        acked.extend(report.acked.iter().filter(|(id, _, _)| *id > 0).cloned());
        let missing = everything_acknowledged(&acked).missing_on(node(&c, &promoted).pg_port);
        eprintln!(
            "[{mode}] round {round}: killed {victim}, {promoted} promoted after {:.1}s; \
             it lacks {} of the {} ids acknowledged so far: {missing:?}",
            killed.elapsed().as_secs_f64(),
            missing.len(),
            acked.len()
        );
        done.push(Round {
            victim: victim.clone(),
            promoted: promoted.clone(),
            missing,
            acknowledged: acked.len(),
        });
        c.node(&victim).start();
        let now_primary = c.wait_streaming(&DATA);
        assert_eq!(
            now_primary, promoted,
            "[{mode}] round {round}: the rejoining {victim} took over from {promoted}"
        );
        if mode == "on" {
            wait_first_one(&c, &promoted, &others(&DATA, &[&promoted]));
        }
        if mode == "quorum" {
            wait_quorum_doc(
                node(&c, &promoted),
                &format!("round {round}: {victim} back in the quorum"),
                Expected {
                    k: 1,
                    standbys: &others(&DATA, &[&promoted]),
                    missing: &[],
                    writes_blocked: false,
                },
            );
        }
        primary = promoted;
    }
    eprintln!(
        "[{mode}] {rounds} rounds in {:.1}s",
        began.elapsed().as_secs_f64()
    );
    done
}

/// No round's new primary lacked an acknowledged id.
fn assert_nothing_lost(mode: &str, rounds: &[Round]) {
    let lost: Vec<(usize, &str, &[i64])> = rounds
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.missing.is_empty())
        .map(|(i, r)| (i + 1, r.promoted.as_str(), r.missing.as_slice()))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged writes lost with synchronous = {mode:?} (round, new primary, ids): {lost:?}"
    );
}

#[test]
fn given_quorum_commit_when_the_primary_node_dies_five_times_then_every_new_primary_has_every_acknowledged_write(
) {
    if !require_root("quorum: primary deaths") {
        return;
    }
    let rounds = primary_deaths("quorum", 5);
    let victims: BTreeSet<&str> = rounds.iter().map(|r| r.victim.as_str()).collect();
    assert!(
        victims.len() >= 2,
        "the same member was primary every round: {victims:?}"
    );
    for (i, r) in rounds.iter().enumerate() {
        eprintln!(
            "[quorum] round {}: {} killed, {} promoted, {} of {} acknowledged ids lost",
            i + 1,
            r.victim,
            r.promoted,
            r.missing.len(),
            r.acknowledged
        );
    }
    assert_nothing_lost("quorum", &rounds);
}

#[test]
fn given_synchronous_mode_on_when_the_primary_node_dies_then_one_standby_is_synchronous_and_nothing_acknowledged_is_lost(
) {
    if !require_root("synchronous on: primary deaths") {
        return;
    }
    assert_nothing_lost("on", &primary_deaths("on", 2));
}

#[test]
fn given_asynchronous_replication_when_the_primary_node_dies_then_the_loss_is_reported_beside_the_quorum_figure(
) {
    if !require_root("async: primary deaths") {
        return;
    }
    // Not asserted: asynchronous replication may lose the last writes.
    for (i, r) in primary_deaths("off", 3).iter().enumerate() {
        eprintln!(
            "[off] round {}: {} killed, {} promoted, {} of {} acknowledged ids lost (asynchronous replication)",
            i + 1,
            r.victim,
            r.promoted,
            r.missing.len(),
            r.acknowledged
        );
    }
}

/// A commit through psql in the background, which may wait for a standby;
/// killed when dropped.
struct BackgroundCommit {
    child: Child,
}

/// The `application_name` of a [`BackgroundCommit`], to find its backend.
const BACKGROUND_APP: &str = "quorum-test-commit";

impl BackgroundCommit {
    fn start(node: &Node, sql: &str) -> BackgroundCommit {
        let child = Command::new(pg_bin_dir().join("psql"))
            .args([
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .arg("-h")
            .arg(&node.socket_dir)
            .arg("-p")
            .arg(node.pg_port.to_string())
            .arg("-c")
            .arg(sql)
            .env("PGAPPNAME", BACKGROUND_APP)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn psql");
        BackgroundCommit { child }
    }

    /// Its exit status and stderr once it has returned.
    fn finished(&mut self) -> Option<(ExitStatus, String)> {
        let status = self.child.try_wait().expect("psql's status")?;
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        Some((status, err))
    }
}

impl Drop for BackgroundCommit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn given_quorum_commit_when_both_standbys_die_then_commits_wait_visibly_and_go_through_when_one_returns(
) {
    if !require_root("quorum: writes blocked") {
        return;
    }
    let root = TestDir::new();
    let mut c = cluster(&root, &WITH_WITNESSES, &WITNESSES, "quorum");
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    let standbys = others(&DATA, &[&primary]);
    wait_quorum_doc(
        node(&c, &primary),
        "quorum commit on both standbys",
        Expected {
            k: 1,
            standbys: &standbys,
            missing: &[],
            writes_blocked: false,
        },
    );
    node(&c, &primary)
        .psql("CREATE TABLE blocked_commit (id int)")
        .unwrap();
    let writer = Writer::start(c.nodes.iter().map(WriterTarget::of).collect());
    writer.wait_routed_accept(&primary, Instant::now(), SLOW);

    let log_before = node(&c, &primary).log_text().len();
    for s in &standbys {
        c.node(s).kill_node();
    }
    let p = node(&c, &primary);
    let doc = wait_quorum_doc(
        p,
        "writes_blocked with both standbys gone",
        Expected {
            k: 1,
            standbys: &[],
            missing: &standbys,
            writes_blocked: true,
        },
    );
    eprintln!("synchronous with both standbys dead: {doc}");
    let log = p.log_text();
    let since = log.get(log_before..).unwrap_or("");
    assert!(
        since.lines().any(|l| {
            let l = l.to_lowercase();
            standbys.iter().all(|s| l.contains(s.as_str()))
                && (l.contains("block") || l.contains("wait"))
        }),
        "no log line on {primary} names the missing standbys {standbys:?} as blocking commits:\n{since}"
    );

    let mut commit = BackgroundCommit::start(p, "INSERT INTO blocked_commit VALUES (1)");
    wait_for(SLOW, "the commit to wait for a standby (SyncRep)", || {
        let q = format!(
            "SELECT wait_event FROM pg_stat_activity WHERE application_name = '{BACKGROUND_APP}'"
        );
        (p.psql(&q).ok()? == "SyncRep").then_some(())
    });
    holds_for(
        Duration::from_secs(5),
        "the commit waits while no standby is connected",
        || match commit.finished() {
            Some((status, err)) => Err(format!("the commit returned: {status}: {err}")),
            None if code(p, "/primary") != 200 => Err(format!("{primary} stopped being primary")),
            None => Ok(()),
        },
    );

    let back = standbys[0].clone();
    let still_gone = standbys[1].clone();
    let returned = Instant::now();
    c.node(&back).start();
    let (status, err) = wait_for(SLOW, "the waiting commit to return", || commit.finished());
    eprintln!(
        "the waiting commit returned {:.1}s after {back} was started: {status}; stderr: {err:?}",
        returned.elapsed().as_secs_f64()
    );
    assert!(status.success(), "the waiting commit failed: {err}");
    // A waiter released by a cancel or by `synchronous_standby_names`
    // going empty also returns success, with this warning.
    assert!(
        !err.contains("canceling wait for synchronous replication"),
        "the waiting commit was released without a standby: {err}"
    );
    let p = node(&c, &primary);
    wait_quorum_doc(
        p,
        &format!("{back} back in the quorum"),
        Expected {
            k: 1,
            standbys: std::slice::from_ref(&back),
            missing: std::slice::from_ref(&still_gone),
            writes_blocked: false,
        },
    );
    wait_counted_in_quorum(node(&c, &back));
    let resumed = Instant::now();
    writer.wait_routed_accept(&primary, resumed, SLOW);
    let report = writer.stop();
    eprintln!("{}", report.summary());
    assert_eq!(
        report.missing_on(p.pg_port),
        Vec::<i64>::new(),
        "acknowledged ids missing on {primary}, which never stopped"
    );
    // Every commit acknowledged since needed `back`'s flush, and WAL is
    // flushed in order: with the primary dead now, `back` has them all.
    c.node(&primary).kill_node();
    let b = node(&c, &back);
    let deadline = Instant::now() + SLOW;
    let (missing, blocked) = loop {
        let missing = report.try_missing_on(b.pg_port);
        let blocked = b.psql("SELECT count(*) FROM blocked_commit");
        let done = matches!((&missing, &blocked), (Ok(m), Ok(n)) if m.is_empty() && n == "1");
        if done || Instant::now() > deadline {
            break (missing, blocked);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        missing,
        Ok(Vec::new()),
        "acknowledged ids {back} lacks with the primary gone"
    );
    assert_eq!(
        blocked.as_deref(),
        Ok("1"),
        "the commit that waited, on {back}"
    );
}

#[test]
fn given_quorum_commit_when_the_stale_standby_returns_first_then_it_waits_and_the_advanced_one_promotes(
) {
    if !require_root("quorum: wrong-order return") {
        return;
    }
    let root = TestDir::new();
    let mut c = cluster(&root, &WITH_WITNESSES, &WITNESSES, "quorum");
    c.start_all();
    let primary = c.wait_streaming(&DATA);
    let standbys = others(&DATA, &[&primary]);
    // The one first by name would win a tie: it is the one left behind.
    let (stale, advanced) = (standbys[0].clone(), standbys[1].clone());
    wait_quorum_doc(
        node(&c, &primary),
        "quorum commit on both standbys",
        Expected {
            k: 1,
            standbys: &standbys,
            missing: &[],
            writes_blocked: false,
        },
    );
    let writer = Writer::start(c.nodes.iter().map(WriterTarget::of).collect());
    writer.wait_routed_accept(&primary, Instant::now(), SLOW);
    wait_for_writer_table(node(&c, &stale));
    c.node(&stale).kill_node();
    // On purpose: commits go on without the stale standby for a while.
    std::thread::sleep(Duration::from_secs(2));
    writer.wait_routed_accept(&primary, Instant::now(), SLOW);
    wait_quorum_doc(
        node(&c, &primary),
        &format!("{stale} missing, {advanced} carrying the quorum"),
        Expected {
            k: 1,
            standbys: std::slice::from_ref(&advanced),
            missing: std::slice::from_ref(&stale),
            writes_blocked: false,
        },
    );
    writer.wait_routed_accept(&primary, Instant::now(), SLOW);
    c.node(&primary).kill_node();
    c.node(&advanced).kill_node();
    let report = writer.stop();
    eprintln!("{}", report.summary());

    // The stale one comes back first: with the witnesses it could win the
    // lease, but it has compared positions with one data member (itself).
    c.node(&stale).start();
    nobody_promotes(&c, std::slice::from_ref(&stale), 2, 1);
    assert!(
        !report.missing_on(node(&c, &stale).pg_port).is_empty(),
        "{stale} has every acknowledged id: the test did not make it stale"
    );

    c.node(&advanced).start();
    let candidates = vec![stale.clone(), advanced.clone()];
    let promoted = wait_for(SLOW, "a primary once the advanced standby is back", || {
        primary_among(&c, &candidates)
    });
    let missing = report.missing_on(node(&c, &promoted).pg_port);
    assert_eq!(
        missing,
        Vec::<i64>::new(),
        "{promoted} promoted without acknowledged ids"
    );
    assert_eq!(promoted, advanced, "the stale {stale} promoted");
}

#[test]
fn given_five_data_members_in_quorum_mode_then_two_do_not_promote_and_three_do_without_loss() {
    if !require_root("quorum: five members") {
        return;
    }
    // Five agents and PostgreSQL servers take three of the machine's test
    // slots (a cluster never takes more than there are: see `slots`).
    let root = TestDir::new();
    let mut c = cluster(&root, &FIVE, &[], "quorum");
    c.start_all();
    let primary = c.wait_streaming(&FIVE);
    let standbys = others(&FIVE, &[&primary]);
    wait_quorum_doc(
        node(&c, &primary),
        "ANY 2 over the four standbys",
        Expected {
            k: 2,
            standbys: &standbys,
            missing: &[],
            writes_blocked: false,
        },
    );
    // The two first by name would win ties: they are the ones left behind.
    let stale = standbys[..2].to_vec();
    let advanced = standbys[2..].to_vec();
    let writer = Writer::start(c.nodes.iter().map(WriterTarget::of).collect());
    writer.wait_routed_accept(&primary, Instant::now(), SLOW);
    for s in &stale {
        wait_for_writer_table(node(&c, s));
    }
    for s in &stale {
        c.node(s).kill_node();
    }
    // On purpose: commits go on without them, on the other two standbys.
    std::thread::sleep(Duration::from_secs(2));
    wait_quorum_doc(
        node(&c, &primary),
        &format!("{stale:?} missing, {advanced:?} carrying the quorum"),
        Expected {
            k: 2,
            standbys: &advanced,
            missing: &stale,
            writes_blocked: false,
        },
    );
    writer.wait_routed_accept(&primary, Instant::now(), SLOW);
    c.node(&primary).kill_node();
    for s in &advanced {
        c.node(s).kill_node();
    }
    let report = writer.stop();
    eprintln!("{}", report.summary());

    for s in &stale {
        c.node(s).start();
    }
    nobody_promotes(&c, &stale, 3, 2);

    let back = advanced[0].clone();
    c.node(&back).start();
    let candidates: Vec<String> = stale.iter().cloned().chain([back.clone()]).collect();
    let promoted = wait_for(SLOW, "a primary among three data members", || {
        primary_among(&c, &candidates)
    });
    let missing = report.missing_on(node(&c, &promoted).pg_port);
    assert_eq!(
        missing,
        Vec::<i64>::new(),
        "{promoted} promoted without acknowledged ids"
    );
    assert_eq!(promoted, back, "a stale member promoted");
}

/// Waits until `primary`'s `synchronous` says `k` (raised or not) with
/// `standbys` counting and commits flowing.
fn wait_k(primary: &Node, what: &str, k: u64, raised: bool, standbys: &[String]) -> Value {
    let doc = primary.wait_status(SLOW, what, |d| {
        let s = &d["synchronous"];
        d["role"] == "primary"
            && s["k"] == k
            && s["k_raised"] == raised
            && name_set(&s["standbys"]) == set(standbys)
            && s["writes_blocked"] == false
    });
    doc["synchronous"].clone()
}

#[test]
fn given_quorum_commit_when_a_member_is_added_then_the_primary_raises_k_until_every_member_runs_the_new_list(
) {
    if !require_root("quorum: a member added") {
        return;
    }
    // Three data members, quorum commit; a fourth is added by editing every
    // configuration and reloading, the primary first: until the standbys
    // run the new list too, a candidate among them compares with two of
    // the three old members, so a commit acknowledged by the new member
    // alone would be missed. The primary covers both lists: k = 2.
    let root = TestDir::new();
    let four = ["pg1", "pg2", "pg3", "pg4"];
    let mut c = Cluster::new(root.path(), &four, |_| false, TTL, LOOP_WAIT);
    let all: Vec<(String, u16, bool)> = c
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.api_port, false))
        .collect();
    let three: Vec<(String, u16, bool)> = all.iter().filter(|m| m.0 != "pg4").cloned().collect();
    for node in &mut c.nodes {
        node.replication_extra
            .push("synchronous = \"quorum\"".to_string());
        let members = if node.name == "pg4" { &all } else { &three };
        node.write_cluster_config(members);
    }
    for name in DATA {
        c.node(name).start();
    }
    let primary = c.wait_streaming(&DATA);
    let standbys = others(&DATA, &[&primary]);
    wait_k(
        node(&c, &primary),
        "k = 1 over the two standbys",
        1,
        false,
        &standbys,
    );

    c.node(&primary).write_cluster_config(&all);
    c.node(&primary).signal_agent(Signal::SIGHUP);
    let doc = wait_k(
        node(&c, &primary),
        "k raised to 2 while the standbys run the old list",
        2,
        true,
        &standbys,
    );
    assert_eq!(
        name_set(&doc["missing"]),
        set(&["pg4".to_string()]),
        "{doc}"
    );
    node(&c, &primary)
        .psql("CREATE TABLE IF NOT EXISTS membership_change (x int); INSERT INTO membership_change VALUES (1)")
        .unwrap_or_else(|e| panic!("a commit with k = 2 and both old standbys streaming: {e}"));
    assert!(
        node(&c, &primary)
            .log_text()
            .contains("raised because a member runs with another member list"),
        "the primary says why k was raised"
    );

    for s in &standbys {
        c.node(s).write_cluster_config(&all);
        c.node(s).signal_agent(Signal::SIGHUP);
    }
    wait_k(
        node(&c, &primary),
        "k back to 1 once every member runs the new list",
        1,
        false,
        &standbys,
    );
    c.node("pg4").start();
    let now = c.wait_streaming(&four);
    assert_eq!(now, primary, "adding a member moved the primary");
    let all_standbys = others(&four, &[&primary]);
    wait_k(
        node(&c, &primary),
        "the new member counted",
        1,
        false,
        &all_standbys,
    );
}
