//! The operator actions against fake agents: small HTTP servers on
//! loopback that answer the documented codes and record what they were
//! asked, so that each command is checked end to end (which member gets
//! which request, with which token and body; what is printed; which exit
//! code follows) without a cluster.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::members::tests::status;
use super::session::{ActionError, Connect, Io, Poll, EXIT_REFUSED, EXIT_RUNTIME, EXIT_USAGE};
use super::{failover, pause, reinit, reload, restart, switchover};
use crate::status_doc::Role;

/// A request a fake agent received.
#[derive(Debug, Clone)]
struct Seen {
    /// Order among every request of the test (all fakes share the counter).
    seq: usize,
    method: String,
    path: String,
    auth: Option<String>,
    body: String,
}

#[derive(Default)]
struct Inner {
    /// Answers by `METHOD /path`: each request takes the front one; the
    /// last one stays and answers every later request.
    answers: Mutex<HashMap<String, VecDeque<(u16, Value)>>>,
    seen: Mutex<Vec<Seen>>,
    clock: Arc<AtomicUsize>,
}

/// One fake agent.
struct Fake {
    url: String,
    inner: Arc<Inner>,
}

impl Fake {
    async fn start(clock: &Arc<AtomicUsize>) -> Fake {
        let inner = Arc::new(Inner {
            clock: clock.clone(),
            ..Inner::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(answer).with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Fake { url, inner }
    }

    /// Answers `what` ("POST /switchover") with these, in turn.
    fn answer(&self, what: &str, answers: Vec<(u16, Value)>) {
        self.inner
            .answers
            .lock()
            .unwrap()
            .insert(what.to_string(), answers.into());
    }

    fn seen(&self) -> Vec<Seen> {
        self.inner.seen.lock().unwrap().clone()
    }

    /// The requests other than reads.
    fn actions(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method != "GET")
            .collect()
    }
}

async fn answer(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let what = format!("{method} {}", uri.path());
    inner.seen.lock().unwrap().push(Seen {
        seq: inner.clock.fetch_add(1, Ordering::SeqCst),
        method: method.to_string(),
        path: uri.path().to_string(),
        auth: headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string()),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let mut answers = inner.answers.lock().unwrap();
    let (code, body) = match answers.get_mut(&what) {
        Some(queue) if queue.len() > 1 => queue.pop_front().unwrap(),
        Some(queue) if !queue.is_empty() => queue[0].clone(),
        _ => (404, json!({"error": format!("no {what} here")})),
    };
    (StatusCode::from_u16(code).unwrap(), Json(body)).into_response()
}

/// A cluster of fake agents, `pg1`..`pgN`; `pg2` is the one the command
/// is pointed at (the first member of its `/pgwarden/cluster`).
struct Cluster {
    fakes: HashMap<String, Fake>,
    _dir: tempfile::TempDir,
    token_file: PathBuf,
}

impl Cluster {
    async fn start(names: &[&str]) -> Cluster {
        let clock = Arc::new(AtomicUsize::new(0));
        let mut fakes = HashMap::new();
        for name in names {
            fakes.insert(name.to_string(), Fake::start(&clock).await);
        }
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("api.token");
        std::fs::write(&token_file, "s3cret\n").unwrap();
        Cluster {
            fakes,
            _dir: dir,
            token_file,
        }
    }

    fn fake(&self, name: &str) -> &Fake {
        &self.fakes[name]
    }

    /// pg2's `/pgwarden/cluster` shows `leader` and these members (`None`: no status).
    fn cluster_doc(&self, leader: Option<&str>, members: &[(&str, Option<Value>)]) -> Value {
        let members: Vec<Value> = members
            .iter()
            .map(|(name, st)| {
                json!({
                    "name": name,
                    "api_url": if *name == "pg2" { Value::Null } else { json!(self.fake(name).url) },
                    "age_ms": 300,
                    "error": if st.is_none() { json!("connection refused") } else { Value::Null },
                    "status": st,
                })
            })
            .collect();
        json!({"cluster": "main", "leader": leader, "term": 4, "members": members})
    }

    /// pg2 (asked) a replica, pg1 the primary and leader, pg3 a replica.
    fn healthy(&self) -> Value {
        self.cluster_doc(
            Some("pg1"),
            &[
                ("pg2", Some(status("pg2", "replica", "running"))),
                ("pg1", Some(primary("pg1"))),
                ("pg3", Some(status("pg3", "replica", "running"))),
            ],
        )
    }

    fn show(&self, doc: Value) {
        self.fake("pg2")
            .answer("GET /pgwarden/cluster", vec![(200, doc)]);
    }

    fn connect(&self) -> Connect {
        Connect {
            url: Some(self.fake("pg2").url.clone()),
            token_file: Some(self.token_file.clone()),
            ..Connect::default()
        }
    }
}

fn primary(name: &str) -> Value {
    let mut v = status(name, "primary", "running");
    v["leader"] = json!({"name": name, "term": 4, "lease_remaining_ms": 9000});
    v
}

/// What a command printed and asked, and how it ended.
struct Run {
    out: String,
    err: String,
    questions: Vec<String>,
    result: Result<(), ActionError>,
}

impl Run {
    fn code(&self) -> i32 {
        self.result.as_ref().map_or_else(|e| e.exit_code(), |_| 0)
    }

    fn error(&self) -> String {
        match &self.result {
            Ok(()) => panic!("succeeded; printed {}", self.out),
            Err(e) => e.to_string(),
        }
    }
}

/// Runs a command with captured output; `yes` answers every question.
async fn run<F>(yes: bool, command: F) -> Run
where
    F: AsyncFnOnce(&mut Io<'_>) -> Result<(), ActionError>,
{
    let (mut out, mut err, mut questions) = (Vec::new(), Vec::new(), Vec::new());
    let mut confirm = |q: &str| {
        questions.push(q.to_string());
        yes
    };
    let mut io = Io {
        out: &mut out,
        err: &mut err,
        confirm: &mut confirm,
    };
    let result = command(&mut io).await;
    Run {
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
        questions,
        result,
    }
}

fn body(seen: &Seen) -> Value {
    serde_json::from_str(&seen.body).unwrap_or(Value::Null)
}

#[tokio::test]
async fn given_a_healthy_cluster_when_switching_over_then_the_leader_is_asked_with_the_token_and_the_outcome_printed(
) {
    let c = Cluster::start(&["pg1", "pg2", "pg3"]).await;
    c.show(c.healthy());
    c.fake("pg1").answer(
        "POST /switchover",
        vec![(200, json!({"message": "switched over: pg3 is the primary", "leader": "pg3", "candidate": "pg3"}))],
    );
    let request = switchover::Switchover {
        candidate: Some("pg3".into()),
        ..Default::default()
    };
    let r = run(true, async |io| {
        switchover::run(&c.connect(), &request, io).await
    })
    .await;
    assert_eq!(r.code(), 0, "{:?} {}", r.result, r.err);
    assert_eq!(r.questions, ["switch over from pg1 to pg3?"]);
    let sent = c.fake("pg1").actions();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, "/switchover");
    assert_eq!(sent[0].auth.as_deref(), Some("Bearer s3cret"));
    assert_eq!(body(&sent[0]), json!({"leader": "pg1", "candidate": "pg3"}));
    assert!(c.fake("pg2").actions().is_empty() && c.fake("pg3").actions().is_empty());
    assert!(
        r.out
            .starts_with("switched over: pg3 is the primary\n+ Cluster: main (leader: pg1"),
        "{}",
        r.out
    );
}

#[tokio::test]
async fn given_an_operator_who_says_no_then_nothing_is_sent_and_the_command_ends_well() {
    let c = Cluster::start(&["pg1", "pg2", "pg3"]).await;
    c.show(c.healthy());
    let request = switchover::Switchover {
        at: Some("2026-12-01T02:00:00+01:00".into()),
        ..Default::default()
    };
    let r = run(false, async |io| {
        switchover::run(&c.connect(), &request, io).await
    })
    .await;
    assert_eq!(r.code(), 0);
    assert_eq!(
        r.questions,
        ["switch over from pg1 to the best standby at 2026-12-01T02:00:00+01:00?"]
    );
    assert_eq!(r.out, "aborted\n");
    assert!(c.fake("pg1").actions().is_empty());
}

#[tokio::test]
async fn given_force_then_no_question_and_a_scheduled_switchover_is_reported() {
    let c = Cluster::start(&["pg1", "pg2"]).await;
    c.show(c.cluster_doc(
        Some("pg1"),
        &[
            ("pg2", Some(status("pg2", "replica", "running"))),
            ("pg1", Some(primary("pg1"))),
        ],
    ));
    c.fake("pg1").answer(
        "POST /switchover",
        vec![(202, json!({"message": "switchover scheduled at 2026-12-01T01:00:00Z", "scheduled_at": "2026-12-01T01:00:00Z"}))],
    );
    let request = switchover::Switchover {
        at: Some("2026-12-01T02:00:00+01:00".into()),
        force: true,
        ..Default::default()
    };
    let r = run(false, async |io| {
        switchover::run(&c.connect(), &request, io).await
    })
    .await;
    assert_eq!(r.code(), 0, "{:?}", r.result);
    assert!(r.questions.is_empty());
    assert!(r
        .out
        .starts_with("switchover scheduled at 2026-12-01T01:00:00Z\n"));
    assert_eq!(
        body(&c.fake("pg1").actions()[0]),
        json!({"leader": "pg1", "scheduled_at": "2026-12-01T02:00:00+01:00"})
    );
}

#[tokio::test]
async fn every_refusal_of_a_switchover_ends_with_the_code_spec_gives_it_and_the_agents_words() {
    let c = Cluster::start(&["pg1", "pg2"]).await;
    let doc = c.cluster_doc(
        Some("pg1"),
        &[
            ("pg2", Some(status("pg2", "replica", "running"))),
            ("pg1", Some(primary("pg1"))),
        ],
    );
    c.show(doc);
    let force = switchover::Switchover {
        force: true,
        ..Default::default()
    };
    for (code, error, exit, needle) in [
        (
            412,
            "pg2 lags 20 MB behind pg1",
            EXIT_REFUSED,
            "pg2 lags 20 MB behind pg1",
        ),
        (
            409,
            "a restart is in progress",
            EXIT_REFUSED,
            "(409 Conflict): a restart is in progress",
        ),
        (
            503,
            "pg1 is not the leader",
            EXIT_REFUSED,
            "pg1 is not the leader",
        ),
        (401, "wrong token", EXIT_USAGE, "check that --token-file"),
        (403, "no token configured", EXIT_USAGE, "set api.token_file"),
        (
            500,
            "boom",
            EXIT_RUNTIME,
            "failed POST /switchover (500 Internal Server Error): boom",
        ),
    ] {
        c.fake("pg1")
            .answer("POST /switchover", vec![(code, json!({"error": error}))]);
        let r = run(true, async |io| {
            switchover::run(&c.connect(), &force, io).await
        })
        .await;
        assert_eq!(r.code(), exit, "{code}: {:?}", r.result);
        let e = r.error();
        assert!(e.contains(needle) && e.contains("pg1 ("), "{code}: {e}");
    }
}

#[tokio::test]
async fn given_no_leader_or_an_unknown_candidate_then_nothing_is_sent() {
    let c = Cluster::start(&["pg1", "pg2"]).await;
    c.show(c.cluster_doc(
        None,
        &[
            ("pg2", Some(status("pg2", "replica", "running"))),
            ("pg1", None),
        ],
    ));
    let r = run(true, async |io| {
        switchover::run(&c.connect(), &Default::default(), io).await
    })
    .await;
    assert_eq!(r.code(), EXIT_REFUSED);
    assert!(r.error().contains("has no leader now"), "{}", r.error());

    c.show(c.healthy_two());
    let request = switchover::Switchover {
        candidate: Some("pg7".into()),
        ..Default::default()
    };
    let r = run(true, async |io| {
        switchover::run(&c.connect(), &request, io).await
    })
    .await;
    assert_eq!(r.code(), EXIT_USAGE);
    assert_eq!(
        r.error(),
        "no member pg7 in cluster main (members: pg1, pg2)"
    );
    assert!(c.fake("pg1").actions().is_empty() && c.fake("pg2").actions().is_empty());
}

impl Cluster {
    fn healthy_two(&self) -> Value {
        self.cluster_doc(
            Some("pg1"),
            &[
                ("pg2", Some(status("pg2", "replica", "running"))),
                ("pg1", Some(primary("pg1"))),
            ],
        )
    }
}

#[tokio::test]
async fn cancelling_a_switchover_asks_the_leader_and_nothing_scheduled_is_a_refusal() {
    let c = Cluster::start(&["pg1", "pg2"]).await;
    c.show(c.healthy_two());
    c.fake("pg1").answer(
        "DELETE /switchover",
        vec![
            (
                200,
                json!({"message": "the switchover scheduled at 2026-12-01T01:00:00Z is cancelled"}),
            ),
            (404, json!({"error": "no switchover is scheduled here"})),
        ],
    );
    let r = run(true, async |io| switchover::cancel(&c.connect(), io).await).await;
    assert_eq!(r.code(), 0);
    assert_eq!(
        r.out,
        "the switchover scheduled at 2026-12-01T01:00:00Z is cancelled\n"
    );
    let r = run(true, async |io| switchover::cancel(&c.connect(), io).await).await;
    assert_eq!(r.code(), EXIT_REFUSED);
    assert!(
        r.error().contains("nothing to cancel")
            && r.error().contains("no switchover is scheduled here")
    );
}

#[tokio::test]
async fn given_a_running_primary_a_failover_is_a_switchover_to_the_candidate() {
    let c = Cluster::start(&["pg1", "pg2", "pg3"]).await;
    c.show(c.healthy());
    c.fake("pg1").answer(
        "POST /switchover",
        vec![(200, json!({"message": "switched over: pg3 is the primary"}))],
    );
    let request = failover::Failover {
        candidate: "pg3".into(),
        force: false,
    };
    let r = run(true, async |io| {
        failover::run(&c.connect(), &request, io).await
    })
    .await;
    assert_eq!(r.code(), 0, "{:?}", r.result);
    assert!(
        r.out.starts_with("pg1 runs as primary and holds the leader lease: carrying the failover out as a switchover to pg3"),
        "{}",
        r.out
    );
    assert_eq!(
        body(&c.fake("pg1").actions()[0]),
        json!({"leader": "pg1", "candidate": "pg3"})
    );
    assert!(c.fake("pg3").actions().is_empty());
}

#[tokio::test]
async fn given_no_healthy_primary_a_forced_failover_asks_and_goes_to_the_candidate() {
    let c = Cluster::start(&["pg1", "pg2", "pg3"]).await;
    c.show(c.cluster_doc(
        None,
        &[
            ("pg2", Some(status("pg2", "replica", "running"))),
            ("pg1", None),
            ("pg3", Some(status("pg3", "replica", "running"))),
        ],
    ));
    c.fake("pg3").answer(
        "POST /failover",
        vec![(200, json!({"message": "failed over: pg3 is the primary"}))],
    );
    let request = failover::Failover {
        candidate: "pg3".into(),
        force: true,
    };
    let r = run(false, async |io| {
        failover::run(&c.connect(), &request, io).await
    })
    .await;
    assert_eq!((r.code(), r.out.as_str()), (0, "aborted\n"));
    assert!(c.fake("pg3").actions().is_empty());

    let r = run(true, async |io| {
        failover::run(&c.connect(), &request, io).await
    })
    .await;
    assert_eq!(r.code(), 0, "{:?}", r.result);
    assert_eq!(
        r.questions,
        ["pg3 may lack transactions other members have; they would be lost. Promote pg3?"]
    );
    let sent = c.fake("pg3").actions();
    assert_eq!(body(&sent[0]), json!({"candidate": "pg3", "force": true}));
    assert!(r
        .out
        .starts_with("failed over: pg3 is the primary\n+ Cluster:"));

    // without --force nothing is asked, and the agent's refusal is the answer
    c.fake("pg3").answer(
        "POST /failover",
        vec![(412, json!({"error": "pg3 lacks data that pg1 has (pg3 is at 0/3000000); force it to lose that data"}))],
    );
    let unforced = failover::Failover {
        candidate: "pg3".into(),
        force: false,
    };
    let r = run(false, async |io| {
        failover::run(&c.connect(), &unforced, io).await
    })
    .await;
    assert_eq!(r.code(), EXIT_REFUSED);
    assert!(r.questions.is_empty());
    assert!(r.error().contains("force it to lose that data"));
}

#[tokio::test]
async fn restart_all_goes_one_member_at_a_time_primary_last_and_a_condition_not_met_is_a_skip() {
    let c = Cluster::start(&["pg1", "pg2", "pg3", "pg4"]).await;
    c.show(c.cluster_doc(
        Some("pg1"),
        &[
            ("pg2", Some(status("pg2", "replica", "running"))),
            ("pg1", Some(primary("pg1"))),
            ("pg3", Some(status("pg3", "replica", "running"))),
            ("pg4", Some(status("pg4", "witness", "running"))),
        ],
    ));
    let mut pending = status("pg2", "replica", "running");
    pending["postgres"]["pending_restart"] = json!(true);
    c.fake("pg2").answer("GET /status", vec![(200, pending)]);
    c.fake("pg2").answer(
        "POST /restart",
        vec![(200, json!({"message": "restarted"}))],
    );
    c.fake("pg3").answer(
        "POST /restart",
        vec![(
            412,
            json!({"error": "no setting waits for a restart (restart_pending)"}),
        )],
    );
    c.fake("pg3").answer(
        "GET /status",
        vec![(200, status("pg3", "replica", "running"))],
    );
    let mut primary_pending = primary("pg1");
    primary_pending["postgres"]["pending_restart"] = json!(true);
    c.fake("pg1")
        .answer("GET /status", vec![(200, primary_pending)]);
    c.fake("pg1").answer(
        "POST /restart",
        vec![(200, json!({"message": "restarted"}))],
    );
    let request = restart::Restart {
        all: true,
        pending: true,
        ..Default::default()
    };
    let r = run(true, async |io| {
        restart::run(&c.connect(), &request, false, io).await
    })
    .await;
    assert_eq!(r.code(), 0, "{:?}", r.result);
    assert_eq!(
        r.out,
        "pg2: restarted\n\
         pg3: skipped: no setting waits for a restart (restart_pending)\n\
         pg4: skipped: a witness runs no PostgreSQL\n\
         pg1: restarted\n"
    );
    let mut order: Vec<(usize, &str)> = ["pg1", "pg2", "pg3"]
        .iter()
        .flat_map(|n| c.fake(n).actions().into_iter().map(move |s| (s.seq, *n)))
        .collect();
    order.sort();
    let names: Vec<&str> = order.iter().map(|(_, n)| *n).collect();
    assert_eq!(names, ["pg2", "pg3", "pg1"]);
    assert_eq!(
        body(&c.fake("pg1").actions()[0]),
        json!({"restart_pending": true})
    );
}

#[tokio::test]
async fn restart_all_stops_at_the_first_real_failure_and_says_who_was_left() {
    let c = Cluster::start(&["pg1", "pg2", "pg3"]).await;
    c.show(c.healthy());
    c.fake("pg2").answer(
        "POST /restart",
        vec![(409, json!({"error": "a switchover is in progress"}))],
    );
    let request = restart::Restart {
        all: true,
        ..Default::default()
    };
    let r = run(true, async |io| {
        restart::run(&c.connect(), &request, false, io).await
    })
    .await;
    assert_eq!(r.code(), EXIT_REFUSED);
    assert_eq!(
        r.out,
        "pg2: failed\npg3: not restarted (stopped at pg2)\npg1: not restarted (stopped at pg2)\n"
    );
    assert!(r.error().contains("a switchover is in progress"));
    assert!(c.fake("pg1").actions().is_empty() && c.fake("pg3").actions().is_empty());

    // a 412 with no condition of the caller's is a failure too
    c.fake("pg2").answer(
        "POST /restart",
        vec![(412, json!({"error": "pg2's PostgreSQL is not running"}))],
    );
    let r = run(true, async |io| {
        restart::run(&c.connect(), &request, false, io).await
    })
    .await;
    assert_eq!(r.code(), EXIT_REFUSED);
}

#[tokio::test]
async fn restart_of_a_named_member_or_of_the_agent_asked_and_its_cancel() {
    let c = Cluster::start(&["pg1", "pg2"]).await;
    c.show(c.healthy_two());
    c.fake("pg1").answer(
        "POST /restart",
        vec![(
            202,
            json!({"message": "restart scheduled at 2026-12-01T01:00:00Z"}),
        )],
    );
    c.fake("pg1").answer(
        "DELETE /restart",
        vec![(
            200,
            json!({"message": "the restart scheduled at 2026-12-01T01:00:00Z is cancelled"}),
        )],
    );
    let request = restart::Restart {
        member: Some("pg1".into()),
        role: Some(Role::Primary),
        at: Some("2026-12-01T02:00:00+01:00".into()),
        ..Default::default()
    };
    let r = run(true, async |io| {
        restart::run(&c.connect(), &request, false, io).await
    })
    .await;
    assert_eq!(
        (r.code(), r.out.as_str()),
        (0, "restart scheduled at 2026-12-01T01:00:00Z\n")
    );
    assert_eq!(
        body(&c.fake("pg1").actions()[0]),
        json!({"schedule": "2026-12-01T02:00:00+01:00", "role": "primary"})
    );
    let cancel = restart::Restart {
        member: Some("pg1".into()),
        ..Default::default()
    };
    let r = run(true, async |io| {
        restart::run(&c.connect(), &cancel, true, io).await
    })
    .await;
    assert_eq!(r.code(), 0);
    assert_eq!(c.fake("pg1").actions()[1].method, "DELETE");

    // no NAME: the agent asked, without reading /pgwarden/cluster
    c.fake("pg2").answer(
        "POST /restart",
        vec![(412, json!({"error": "pg2 is a replica, not a primary"}))],
    );
    c.fake("pg2").answer(
        "GET /status",
        vec![(200, status("pg2", "replica", "running"))],
    );
    let here = restart::Restart {
        role: Some(Role::Primary),
        ..Default::default()
    };
    let r = run(true, async |io| {
        restart::run(&c.connect(), &here, false, io).await
    })
    .await;
    assert_eq!(
        (r.code(), r.out.as_str()),
        (0, "skipped: pg2 is a replica, not a primary\n")
    );
}

#[tokio::test]
async fn reload_goes_to_the_named_member_with_an_empty_object() {
    let c = Cluster::start(&["pg1", "pg2"]).await;
    c.show(c.healthy_two());
    c.fake("pg1").answer(
        "POST /reload",
        vec![
            (200, json!({"message": "reloaded: work_mem 4MB -> 8MB applied"})),
            (412, json!({"error": "the configuration file is invalid; the running configuration stays: cluster.ttl: not a duration"})),
        ],
    );
    let r = run(true, async |io| {
        reload::run(&c.connect(), Some("pg1"), io).await
    })
    .await;
    assert_eq!(
        (r.code(), r.out.as_str()),
        (0, "reloaded: work_mem 4MB -> 8MB applied\n")
    );
    assert_eq!(body(&c.fake("pg1").actions()[0]), json!({}));
    let r = run(true, async |io| {
        reload::run(&c.connect(), Some("pg1"), io).await
    })
    .await;
    assert_eq!(r.code(), EXIT_REFUSED);
    assert!(r.error().contains("cluster.ttl: not a duration"));
}

#[tokio::test]
async fn reinit_follows_the_clone_until_the_member_streams_again() {
    let c = Cluster::start(&["pg1", "pg2", "pg3"]).await;
    c.show(c.healthy());
    c.fake("pg3").answer(
        "POST /reinitialize",
        vec![(
            200,
            json!({"message": "pg3's data directory is renamed aside; cloning from pg1"}),
        )],
    );
    let stale = status("pg3", "replica", "running");
    let mut cloning = status("pg3", "uninitialized", "cloning");
    cloning["wal_receiver"] = Value::Null;
    cloning["progress_pct"] = json!(10);
    let mut further = cloning.clone();
    further["progress_pct"] = json!(60);
    let mut starting = status("pg3", "replica", "starting");
    starting["wal_receiver"] = Value::Null;
    let mut streaming = status("pg3", "replica", "running");
    streaming["wal_receiver"] =
        json!({"status": "streaming", "sender_host": "10.0.0.1", "sender_port": 5432});
    c.fake("pg3").answer(
        "GET /status",
        vec![
            (200, stale),
            (200, cloning.clone()),
            (200, cloning),
            (200, further),
            (200, starting),
            (200, streaming),
        ],
    );
    let poll = Poll {
        every: Duration::from_millis(5),
        limit: Duration::from_secs(10),
    };
    let r = run(true, async |io| {
        reinit::run(&c.connect(), "pg3", Some(poll), io).await
    })
    .await;
    assert_eq!(r.code(), 0, "{:?}", r.result);
    assert_eq!(
        r.out,
        "pg3's data directory is renamed aside; cloning from pg1\n\
         pg3: replica running, wal receiver streaming\n\
         pg3: uninitialized cloning 10%\n\
         pg3: uninitialized cloning 60%\n\
         pg3: replica starting\n\
         pg3 is a streaming replica again (timeline 1, from 10.0.0.1:5432)\n"
    );
}

#[tokio::test]
async fn reinit_of_a_primary_is_refused_and_a_clone_that_never_streams_times_out() {
    let c = Cluster::start(&["pg1", "pg2", "pg3"]).await;
    c.show(c.healthy());
    c.fake("pg1").answer(
        "POST /reinitialize",
        vec![(412, json!({"error": "pg1 is (or may be) the primary: reinitialize a standby, or switch over first"}))],
    );
    let r = run(true, async |io| {
        reinit::run(&c.connect(), "pg1", None, io).await
    })
    .await;
    assert_eq!(r.code(), EXIT_REFUSED);

    c.fake("pg3").answer(
        "POST /reinitialize",
        vec![(200, json!({"message": "cloning"}))],
    );
    let mut cloning = status("pg3", "uninitialized", "cloning");
    cloning["progress_pct"] = json!(5);
    c.fake("pg3").answer("GET /status", vec![(200, cloning)]);
    let poll = Poll {
        every: Duration::from_millis(5),
        limit: Duration::from_millis(50),
    };
    let r = run(true, async |io| {
        reinit::run(&c.connect(), "pg3", Some(poll), io).await
    })
    .await;
    assert_eq!(r.code(), EXIT_RUNTIME);
    assert!(
        r.error()
            .contains("pg3 does not stream after 0 s (last: pg3: uninitialized cloning 5%"),
        "{}",
        r.error()
    );
}

#[tokio::test]
async fn pause_wait_watches_every_member_with_a_status_and_names_those_that_lag() {
    let c = Cluster::start(&["pg1", "pg2", "pg3"]).await;
    let paused = |v: Value| {
        let mut v = v;
        v["agent"]["paused"] = json!(true);
        v
    };
    let half = c.cluster_doc(
        Some("pg1"),
        &[
            ("pg2", Some(paused(status("pg2", "replica", "paused")))),
            ("pg1", Some(primary("pg1"))),
            ("pg3", None),
        ],
    );
    let all = c.cluster_doc(
        Some("pg1"),
        &[
            ("pg2", Some(paused(status("pg2", "replica", "paused")))),
            ("pg1", Some(paused(primary("pg1")))),
            ("pg3", None),
        ],
    );
    c.fake("pg2").answer(
        "GET /pgwarden/cluster",
        vec![(200, half.clone()), (200, all)],
    );
    c.fake("pg2").answer(
        "POST /pause",
        vec![(
            200,
            json!({"message": "paused: no automatic action until resumed", "paused": true}),
        )],
    );
    let poll = Poll {
        every: Duration::from_millis(5),
        limit: Duration::from_secs(10),
    };
    let r = run(true, async |io| {
        pause::run(&c.connect(), true, Some(poll), io).await
    })
    .await;
    assert_eq!(r.code(), 0, "{:?}", r.result);
    assert_eq!(
        r.out,
        "paused: no automatic action until resumed\n\
         every member reports paused (no status from pg3: not waited for)\n"
    );
    let sent = c.fake("pg2").actions();
    assert_eq!(
        (sent[0].path.as_str(), sent[0].body.as_str()),
        ("/pause", "")
    );

    c.show(half);
    c.fake("pg2").answer(
        "POST /resume",
        vec![(200, json!({"message": "resumed", "paused": false}))],
    );
    let poll = Poll {
        every: Duration::from_millis(5),
        limit: Duration::from_millis(30),
    };
    let r = run(true, async |io| {
        pause::run(&c.connect(), false, Some(poll), io).await
    })
    .await;
    assert_eq!(r.code(), EXIT_RUNTIME);
    assert_eq!(
        r.error(),
        "after 0 s, not resumed yet: pg2 (see `pgwarden list`)"
    );
}

#[tokio::test]
async fn the_token_of_the_configuration_is_used_and_the_flag_wins() {
    let c = Cluster::start(&["pg1", "pg2"]).await;
    c.show(c.healthy_two());
    c.fake("pg2").answer(
        "POST /pause",
        vec![(200, json!({"message": "paused", "paused": true}))],
    );
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("configured.token");
    std::fs::write(&token, "from-config").unwrap();
    let config = dir.path().join("pgwarden.toml");
    let port = c.fake("pg2").url.rsplit(':').next().unwrap().to_string();
    std::fs::write(
        &config,
        format!(
            "[node]\nname = \"pg2\"\n[api]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"\n",
            token.display()
        ),
    )
    .unwrap();
    let mut connect = Connect {
        config: Some(config),
        ..Connect::default()
    };
    let r = run(true, async |io| pause::run(&connect, true, None, io).await).await;
    assert_eq!(r.code(), 0, "{:?}", r.result);
    connect.token_file = Some(c.token_file.clone());
    let r = run(true, async |io| pause::run(&connect, true, None, io).await).await;
    assert_eq!(r.code(), 0, "{:?}", r.result);
    let auth: Vec<Option<String>> = c
        .fake("pg2")
        .actions()
        .into_iter()
        .map(|s| s.auth)
        .collect();
    assert_eq!(
        auth,
        [
            Some("Bearer from-config".to_string()),
            Some("Bearer s3cret".to_string())
        ]
    );
}
