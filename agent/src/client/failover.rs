//! `pgwarden failover --candidate NAME [--force]`: promote a named member
//! when there is no healthy primary. While the leader runs as primary a
//! failover would throw its latest writes away for nothing, so it is
//! carried out as a switchover to NAME instead (what Patroni does too).

use serde_json::{json, Value};

use super::members;
use super::session::{ActionError, Connect, Io, Session, FAILOVER, SWITCHOVER};
use super::switchover;

/// What the operator asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failover {
    /// `--candidate`: the member to promote.
    pub candidate: String,
    /// `--force`: promote it even if another member has transactions it lacks.
    pub force: bool,
}

/// The body of `POST /failover`.
pub fn body(candidate: &str, force: bool) -> Value {
    json!({"candidate": candidate, "force": force})
}

/// The question asked on a terminal before a forced failover.
pub fn question(candidate: &str) -> String {
    format!(
        "{candidate} may lack transactions other members have; they would be lost. \
         Promote {candidate}?"
    )
}

/// Carries a failover out (or, while a primary runs, a switchover), and
/// prints the outcome and the cluster.
pub async fn run(
    connect: &Connect,
    request: &Failover,
    io: &mut Io<'_>,
) -> Result<(), ActionError> {
    let session = Session::open(connect, io)?;
    let doc = session.cluster().await?;
    let candidate = members::find(&doc, &request.candidate)?;
    let answer = if let Some(primary) = members::healthy_primary(&doc) {
        if primary.name == candidate.name {
            return Err(ActionError::Refused(format!(
                "{} is the running primary already and holds the leader lease: nothing to fail over",
                primary.name
            )));
        }
        io.say(format!(
            "{} runs as primary and holds the leader lease: carrying the failover out as a \
             switchover to {} (no data is lost)",
            primary.name, candidate.name
        ));
        let dest = members::dest_of(&doc, &session.here.url, primary)?;
        let body = switchover::body(&primary.name, Some(&candidate.name), None);
        session.send(&SWITCHOVER, &dest, Some(&body)).await?
    } else {
        if request.force && !(io.confirm)(&question(&candidate.name)) {
            io.say("aborted");
            return Ok(());
        }
        let dest = members::dest_of(&doc, &session.here.url, candidate)?;
        let body = body(&candidate.name, request.force);
        session.send(&FAILOVER, &dest, Some(&body)).await?
    };
    io.say(answer.message());
    session
        .print_cluster_settled(io, std::time::Duration::from_secs(15))
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_always_says_whether_to_force() {
        assert_eq!(
            body("pg2", false),
            json!({"candidate": "pg2", "force": false})
        );
        assert_eq!(
            body("pg2", true),
            json!({"candidate": "pg2", "force": true})
        );
        assert!(question("pg2").ends_with("Promote pg2?"));
    }
}
