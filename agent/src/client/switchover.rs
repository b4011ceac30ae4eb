//! `pgwarden switchover [--candidate NAME] [--at RFC3339] [--force]` and
//! `pgwarden switchover --cancel`: a planned change of primary, asked of
//! the leader (the only member that can hand its role over), which
//! answers when it is over or scheduled.

use serde_json::{json, Map, Value};

use super::members;
use super::session::{ActionError, Connect, Io, Session, CANCEL_SWITCHOVER, SWITCHOVER};
use super::time::check_at;

/// What the operator asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Switchover {
    /// `--candidate`: the member to hand over to (else the agent picks the best standby).
    pub candidate: Option<String>,
    /// `--at`: when (RFC 3339 with an offset); now when absent.
    pub at: Option<String>,
    /// `--force`: do not ask.
    pub force: bool,
}

/// The body of `POST /switchover`: `leader` names the member the
/// operator believes leads, so that a leader that changed meanwhile
/// refuses (503) instead of handing over something else.
pub fn body(leader: &str, candidate: Option<&str>, at: Option<&str>) -> Value {
    let mut b = Map::new();
    b.insert("leader".into(), json!(leader));
    if let Some(c) = candidate {
        b.insert("candidate".into(), json!(c));
    }
    if let Some(t) = at {
        b.insert("scheduled_at".into(), json!(t));
    }
    Value::Object(b)
}

/// The question asked on a terminal before a switchover.
pub fn question(leader: &str, candidate: Option<&str>, at: Option<&str>) -> String {
    format!(
        "switch over from {leader} to {}{}?",
        candidate.unwrap_or("the best standby"),
        at.map(|t| format!(" at {t}")).unwrap_or_default()
    )
}

/// Carries a switchover out: finds the leader in `/pgwarden/cluster`, asks (on a
/// terminal, without `--force`), sends it, prints the agent's message and
/// the cluster.
pub async fn run(
    connect: &Connect,
    request: &Switchover,
    io: &mut Io<'_>,
) -> Result<(), ActionError> {
    let at = request
        .at
        .as_deref()
        .map(|t| check_at("--at", t))
        .transpose()?;
    let session = Session::open(connect, io)?;
    let doc = session.cluster().await?;
    let leader = members::leader(&doc)?;
    let candidate = request.candidate.as_deref();
    if let Some(c) = candidate {
        members::find(&doc, c)?;
        if c == leader.name {
            return Err(ActionError::Refused(format!(
                "{c} is the leader already: name another member with --candidate, \
                 or leave it out for the best standby"
            )));
        }
    }
    let dest = members::dest_of(&doc, &session.here.url, leader)?;
    if !request.force && !(io.confirm)(&question(&leader.name, candidate, at.as_deref())) {
        io.say("aborted");
        return Ok(());
    }
    let answer = session
        .send(
            &SWITCHOVER,
            &dest,
            Some(&body(&leader.name, candidate, at.as_deref())),
        )
        .await?;
    io.say(answer.message());
    session
        .print_cluster_settled(io, std::time::Duration::from_secs(15))
        .await;
    Ok(())
}

/// Cancels a scheduled switchover on the leader.
pub async fn cancel(connect: &Connect, io: &mut Io<'_>) -> Result<(), ActionError> {
    let session = Session::open(connect, io)?;
    let doc = session.cluster().await?;
    let dest = members::dest_of(&doc, &session.here.url, members::leader(&doc)?)?;
    let answer = session.send(&CANCEL_SWITCHOVER, &dest, None).await?;
    io.say(answer.message());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_names_the_leader_and_only_what_was_asked() {
        assert_eq!(body("pg1", None, None), json!({"leader": "pg1"}));
        assert_eq!(
            body("pg1", Some("pg3"), Some("2026-12-01T02:00:00+01:00")),
            json!({"leader": "pg1", "candidate": "pg3", "scheduled_at": "2026-12-01T02:00:00+01:00"})
        );
    }

    #[test]
    fn the_question_says_from_whom_to_whom_and_when() {
        assert_eq!(
            question("pg1", None, None),
            "switch over from pg1 to the best standby?"
        );
        assert_eq!(
            question("pg1", Some("pg2"), Some("2026-12-01T01:00:00Z")),
            "switch over from pg1 to pg2 at 2026-12-01T01:00:00Z?"
        );
    }
}
