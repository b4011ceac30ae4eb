//! `pgwarden restart [NAME] [--all] [--pending] [--role primary|replica]
//! [--at RFC3339]` and `pgwarden restart --cancel [NAME]`: restart
//! PostgreSQL through its agent, which keeps the member's role (a
//! primary keeps the leader lease while it restarts).
//!
//! `--pending` and `--role` are conditions the agent checks: a member
//! that does not meet them answers 412, and that is "skipped", not a
//! failure, so that `pgwarden restart --all --pending` is a safe thing
//! for a playbook to run after every configuration change.

use serde_json::{json, Map, Value};

use super::members::{self, RestartStep};
use super::session::{ActionError, Connect, Dest, Io, Session, CANCEL_RESTART, RESTART};
use super::time::check_at;
use crate::status_doc::{Role, StatusDoc};

/// What the operator asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restart {
    /// `NAME`: the member (else the agent named by `--config`/`--url`).
    pub member: Option<String>,
    /// `--all`: every member, the primary last.
    pub all: bool,
    /// `--pending`: only where a changed setting waits for a restart.
    pub pending: bool,
    /// `--role`: only members with this role.
    pub role: Option<Role>,
    /// `--at`: schedule it (RFC 3339 with an offset).
    pub at: Option<String>,
}

impl Restart {
    /// The caller made the restart conditional.
    fn conditional(&self) -> bool {
        self.pending || self.role.is_some()
    }
}

/// The body of `POST /restart`: only what was asked.
pub fn body(request: &Restart) -> Result<Value, ActionError> {
    let mut b = Map::new();
    if let Some(at) = &request.at {
        b.insert("schedule".into(), json!(check_at("--at", at)?));
    }
    if request.pending {
        b.insert("restart_pending".into(), json!(true));
    }
    match request.role {
        None => {}
        Some(Role::Primary) => {
            b.insert("role".into(), json!("primary"));
        }
        Some(Role::Replica) => {
            b.insert("role".into(), json!("replica"));
        }
        Some(other) => {
            return Err(ActionError::Usage(format!(
                "--role {other:?}: only primary or replica members run PostgreSQL to restart"
            )))
        }
    }
    Ok(Value::Object(b))
}

/// Whether `status` shows that the caller's own condition is not met: its
/// PostgreSQL answers, and it has the other role or nothing pending. A
/// 412 from such a member is a skip; any other 412 is a real refusal.
pub fn condition_unmet(status: &StatusDoc, request: &Restart) -> bool {
    let Some(pg) = status.postgres.as_ref().filter(|p| p.version_num.is_some()) else {
        return false;
    };
    (request.pending && !pg.pending_restart) || request.role.is_some_and(|r| r != status.role)
}

/// What became of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Restarted, or scheduled: the agent's message.
    Accepted(String),
    /// Not restarted because the caller's condition is not met: the agent's reason.
    Skipped(String),
}

/// Restarts, or cancels a restart, as asked; prints one line per member.
pub async fn run(
    connect: &Connect,
    request: &Restart,
    cancel: bool,
    io: &mut Io<'_>,
) -> Result<(), ActionError> {
    if request.all && request.at.is_some() {
        return Err(ActionError::Usage(
            "--all with --at would restart every member, the primary too, at the same moment; \
             schedule members one at a time (pgwarden restart NAME --at T), or leave --at out"
                .into(),
        ));
    }
    let body = body(request)?;
    let session = Session::open(connect, io)?;
    if request.all {
        return all(&session, request, &body, io).await;
    }
    let dest = match &request.member {
        Some(name) => members::dest_named(&session.cluster().await?, &session.here.url, name)?,
        None => session.here.clone(),
    };
    if cancel {
        let answer = session.send(&CANCEL_RESTART, &dest, None).await?;
        io.say(answer.message());
        return Ok(());
    }
    match one(&session, &dest, request, &body).await? {
        Outcome::Accepted(message) => io.say(message),
        Outcome::Skipped(reason) => io.say(format!("skipped: {reason}")),
    }
    Ok(())
}

/// `--all`: one member at a time in [`members::restart_order`]; stops at
/// the first failure, naming the members left as they were.
async fn all(
    session: &Session,
    request: &Restart,
    body: &Value,
    io: &mut Io<'_>,
) -> Result<(), ActionError> {
    let doc = session.cluster().await?;
    let steps = members::restart_order(&doc, &session.here.url)?;
    for (i, step) in steps.iter().enumerate() {
        let dest = match step {
            RestartStep::Skip { name, why } => {
                io.say(format!("{name}: skipped: {why}"));
                continue;
            }
            RestartStep::Restart(dest) => dest,
        };
        match one(session, dest, request, body).await {
            Ok(Outcome::Accepted(message)) => io.say(format!("{}: {message}", dest.label())),
            Ok(Outcome::Skipped(reason)) => io.say(format!("{}: skipped: {reason}", dest.label())),
            Err(e) => {
                io.say(format!("{}: failed", dest.label()));
                for rest in &steps[i + 1..] {
                    if let RestartStep::Restart(d) = rest {
                        io.say(format!(
                            "{}: not restarted (stopped at {})",
                            d.label(),
                            dest.label()
                        ));
                    }
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Restarts one member; a 412 when the caller's condition is not met
/// there (checked on its fresh status) is a skip.
async fn one(
    session: &Session,
    dest: &Dest,
    request: &Restart,
    body: &Value,
) -> Result<Outcome, ActionError> {
    match session.send(&RESTART, dest, Some(body)).await {
        Ok(answer) => Ok(Outcome::Accepted(answer.message().to_string())),
        Err(ActionError::Rejected {
            status: 412,
            reason,
            text,
        }) if request.conditional() => match session.status(dest).await {
            Ok(status) if condition_unmet(&status, request) => Ok(Outcome::Skipped(reason)),
            _ => Err(ActionError::Rejected {
                status: 412,
                reason,
                text,
            }),
        },
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::members::tests::status;

    #[test]
    fn the_body_carries_only_the_conditions_asked_for() {
        assert_eq!(body(&Restart::default()).unwrap(), json!({}));
        let r = Restart {
            pending: true,
            role: Some(Role::Replica),
            at: Some("2026-12-01T02:00:00+01:00".into()),
            ..Restart::default()
        };
        assert_eq!(
            body(&r).unwrap(),
            json!({"schedule": "2026-12-01T02:00:00+01:00", "restart_pending": true, "role": "replica"})
        );
        let bad = Restart {
            at: Some("02:00".into()),
            ..Restart::default()
        };
        assert!(body(&bad).unwrap_err().to_string().starts_with("--at"));
    }

    #[test]
    fn a_refusal_is_a_skip_only_when_the_members_status_shows_the_callers_condition_unmet() {
        let doc = |v| serde_json::from_value::<StatusDoc>(v).unwrap();
        let primary = doc(status("pg1", "primary", "running"));
        let mut pending = status("pg2", "replica", "running");
        pending["postgres"]["pending_restart"] = json!(true);
        let pending = doc(pending);
        let mut down = status("pg3", "replica", "stopped");
        down["postgres"]["version_num"] = json!(null);
        let down = doc(down);

        let replicas = Restart {
            role: Some(Role::Replica),
            ..Restart::default()
        };
        let if_pending = Restart {
            pending: true,
            ..Restart::default()
        };
        assert!(condition_unmet(&primary, &replicas));
        assert!(!condition_unmet(&pending, &replicas));
        assert!(condition_unmet(&primary, &if_pending));
        assert!(!condition_unmet(&pending, &if_pending));
        // a stopped PostgreSQL is a real reason to refuse, whatever was asked
        assert!(!condition_unmet(&down, &if_pending));
        assert!(!condition_unmet(&primary, &Restart::default()));
    }
}
