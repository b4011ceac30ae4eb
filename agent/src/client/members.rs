//! Finding members in a `/pgwarden/cluster` document: who leads, where a named
//! member's API is, the order `restart --all` goes in, who does not
//! report a pause yet. Pure: the document in, names and URLs out.

use super::session::{ActionError, Dest};
use crate::status_doc::{ClusterDoc, ClusterMember, Role, State};

/// The named member, or a usage error listing the members there are.
pub fn find<'a>(doc: &'a ClusterDoc, name: &str) -> Result<&'a ClusterMember, ActionError> {
    doc.members.iter().find(|m| m.name == name).ok_or_else(|| {
        let mut names: Vec<&str> = doc.members.iter().map(|m| m.name.as_str()).collect();
        names.sort_unstable();
        ActionError::Usage(format!(
            "no member {name} in cluster {} (members: {})",
            doc.cluster,
            names.join(", ")
        ))
    })
}

/// Where to reach `member`: its `api_url`, or `here_url` for the first
/// member, which is the agent that wrote the document (its own `api_url`
/// is null: the caller knows better how it reached it).
pub fn dest_of(
    doc: &ClusterDoc,
    here_url: &str,
    member: &ClusterMember,
) -> Result<Dest, ActionError> {
    let is_here = doc.members.first().is_some_and(|m| m.name == member.name);
    match (&member.api_url, is_here) {
        (_, true) => Ok(Dest::member(&member.name, here_url)),
        (Some(url), false) if !url.is_empty() => Ok(Dest::member(&member.name, url)),
        _ => Err(ActionError::Failed(format!(
            "the cluster document of {here_url} gives no api_url for {}: \
             is it a pgwarden agent of this version?",
            member.name
        ))),
    }
}

/// Where to reach the member called `name`.
pub fn dest_named(doc: &ClusterDoc, here_url: &str, name: &str) -> Result<Dest, ActionError> {
    dest_of(doc, here_url, find(doc, name)?)
}

/// The lease holder, or a refusal when the cluster has none.
pub fn leader(doc: &ClusterDoc) -> Result<&ClusterMember, ActionError> {
    let Some(name) = doc.leader.as_deref() else {
        return Err(ActionError::Refused(format!(
            "cluster {} has no leader now (no member holds the leader lease): \
             see `pgwarden list`; to promote a member when there is no healthy primary, \
             use `pgwarden failover --candidate NAME`",
            doc.cluster
        )));
    };
    doc.members.iter().find(|m| m.name == name).ok_or_else(|| {
        ActionError::Refused(format!(
            "the leader of cluster {}, {name}, is not among the members its agents know: \
             see `pgwarden list`",
            doc.cluster
        ))
    })
}

/// The leader when it reports itself a running primary: then a failover
/// is not needed and a switchover does the job without losing data. A
/// paused agent reports its state as `paused` whatever PostgreSQL does, so
/// a paused primary counts too (the agent refuses if it cannot hand over).
pub fn healthy_primary(doc: &ClusterDoc) -> Option<&ClusterMember> {
    let leader = leader(doc).ok()?;
    leader
        .status
        .as_ref()
        .is_some_and(|s| {
            s.role == Role::Primary && matches!(s.state, State::Running | State::Paused)
        })
        .then_some(leader)
}

/// One member in `restart --all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartStep {
    /// Restart it.
    Restart(Dest),
    /// Leave it, and why.
    Skip {
        /// Its name.
        name: String,
        /// Why it is left.
        why: String,
    },
}

/// Every member in the order `restart --all` takes them: one at a time,
/// the primary last, so that the cluster keeps a primary while the
/// replicas restart and has restarted replicas to fall back on while the
/// primary does. Members without PostgreSQL (witnesses, members with no
/// data yet) or without a status are skipped, each with its reason.
pub fn restart_order(doc: &ClusterDoc, here_url: &str) -> Result<Vec<RestartStep>, ActionError> {
    let mut members: Vec<&ClusterMember> = doc.members.iter().collect();
    let last = |m: &ClusterMember| {
        let primary = m.status.as_ref().is_some_and(|s| s.role == Role::Primary);
        (primary, doc.leader.as_deref() == Some(m.name.as_str()))
    };
    members.sort_by(|a, b| last(a).cmp(&last(b)).then_with(|| a.name.cmp(&b.name)));
    members
        .into_iter()
        .map(|m| {
            let skip = |why: String| {
                Ok(RestartStep::Skip {
                    name: m.name.clone(),
                    why,
                })
            };
            match m.status.as_ref().map(|s| s.role) {
                None => skip(match &m.error {
                    Some(e) => format!("no status from its agent ({e})"),
                    None => "no status from its agent".into(),
                }),
                Some(Role::Witness) => skip("a witness runs no PostgreSQL".into()),
                Some(Role::Uninitialized) => skip("it has no data directory yet".into()),
                Some(Role::Primary | Role::Replica) => {
                    Ok(RestartStep::Restart(dest_of(doc, here_url, m)?))
                }
            }
        })
        .collect()
}

/// The members whose status does not say `agent.paused` = `paused` yet,
/// and those without a status (not waited for).
pub fn pause_pending(doc: &ClusterDoc, paused: bool) -> (Vec<String>, Vec<String>) {
    let mut pending = Vec::new();
    let mut silent = Vec::new();
    for m in &doc.members {
        match &m.status {
            Some(s) if s.agent.paused == paused => {}
            Some(_) => pending.push(m.name.clone()),
            None => silent.push(m.name.clone()),
        }
    }
    pending.sort();
    silent.sort();
    (pending, silent)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::client::session::EXIT_USAGE;
    use serde_json::{json, Value};

    /// A member's status document: `pgN` at 10.0.0.N, role and state as given.
    pub(crate) fn status(name: &str, role: &str, state: &str) -> Value {
        json!({
            "name": name, "cluster": "main", "role": role, "state": state,
            "agent": {"version": "0.1.0", "uptime_s": 5, "loop_last_ms_ago": 20, "paused": false},
            "postgres": {"version_num": 150018, "host": format!("10.0.0.{}", &name[2..]), "port": 5432,
                         "pid": 42, "timeline": 1, "system_identifier": "7311",
                         "start_time": "2026-11-26T12:00:00Z", "pending_restart": false},
            "wal": {"lsn": "0/3000000", "received_lsn": null, "replayed_lsn": "0/3000000", "lag_bytes": 0},
            "wal_receiver": if role == "replica" { json!({"status": "streaming"}) } else { Value::Null },
            "timeline": 1
        })
    }

    /// A cluster document as `here` (the first member) writes it; each
    /// member is `(name, Some(status) | None)`, reachable at `http://pgN:8008`.
    pub(crate) fn cluster(leader: Option<&str>, members: &[(&str, Option<Value>)]) -> ClusterDoc {
        let members: Vec<Value> = members
            .iter()
            .enumerate()
            .map(|(i, (name, status))| {
                json!({
                    "name": name,
                    "api_url": if i == 0 { Value::Null } else { json!(format!("http://{name}:8008")) },
                    "error": if status.is_none() { json!("connection refused") } else { Value::Null },
                    "status": status,
                })
            })
            .collect();
        serde_json::from_value(json!({
            "cluster": "main", "leader": leader, "term": 4, "members": members
        }))
        .expect("a cluster document")
    }

    fn three() -> ClusterDoc {
        cluster(
            Some("pg1"),
            &[
                ("pg2", Some(status("pg2", "replica", "running"))),
                ("pg1", Some(status("pg1", "primary", "running"))),
                ("pg3", Some(status("pg3", "replica", "running"))),
            ],
        )
    }

    #[test]
    fn a_member_is_reached_at_its_api_url_and_the_agent_asked_at_the_url_it_was_asked_at() {
        let doc = three();
        let here = "https://pg2.example:8008";
        assert_eq!(
            dest_named(&doc, here, "pg2").unwrap(),
            Dest::member("pg2", here)
        );
        assert_eq!(
            dest_named(&doc, here, "pg3").unwrap(),
            Dest::member("pg3", "http://pg3:8008")
        );
    }

    #[test]
    fn an_unknown_member_is_a_usage_error_listing_the_members() {
        let e = dest_named(&three(), "http://x", "pg9").unwrap_err();
        assert_eq!(e.exit_code(), EXIT_USAGE);
        assert_eq!(
            e.to_string(),
            "no member pg9 in cluster main (members: pg1, pg2, pg3)"
        );
    }

    #[test]
    fn the_leader_is_the_lease_holder_and_none_is_a_refusal() {
        assert_eq!(leader(&three()).unwrap().name, "pg1");
        let e = leader(&cluster(None, &[("pg1", None)])).unwrap_err();
        assert_eq!(e.exit_code(), crate::client::session::EXIT_REFUSED);
        assert!(e.to_string().contains("has no leader now"), "{e}");
    }

    #[test]
    fn only_a_leader_reporting_a_running_primary_makes_a_failover_a_switchover() {
        assert_eq!(healthy_primary(&three()).unwrap().name, "pg1");
        let crashed = cluster(
            Some("pg1"),
            &[
                ("pg2", Some(status("pg2", "replica", "running"))),
                ("pg1", Some(status("pg1", "primary", "crashed"))),
            ],
        );
        assert!(healthy_primary(&crashed).is_none());
        let paused = cluster(
            Some("pg1"),
            &[
                ("pg2", Some(status("pg2", "replica", "paused"))),
                ("pg1", Some(status("pg1", "primary", "paused"))),
            ],
        );
        assert_eq!(healthy_primary(&paused).unwrap().name, "pg1");
        let unreachable = cluster(
            Some("pg1"),
            &[
                ("pg2", Some(status("pg2", "replica", "running"))),
                ("pg1", None),
            ],
        );
        assert!(healthy_primary(&unreachable).is_none());
        assert!(healthy_primary(&cluster(None, &[("pg2", None)])).is_none());
    }

    #[test]
    fn restart_all_takes_replicas_by_name_then_the_primary_and_skips_what_has_no_postgres() {
        let doc = cluster(
            Some("pg1"),
            &[
                ("pg3", Some(status("pg3", "replica", "running"))),
                ("pg1", Some(status("pg1", "primary", "running"))),
                ("pg5", Some(status("pg5", "witness", "running"))),
                ("pg2", Some(status("pg2", "replica", "stopped"))),
                ("pg4", None),
            ],
        );
        let steps = restart_order(&doc, "http://here:8008").unwrap();
        let line = |s: &RestartStep| match s {
            RestartStep::Restart(d) => format!("restart {}", d),
            RestartStep::Skip { name, why } => format!("skip {name}: {why}"),
        };
        let lines: Vec<String> = steps.iter().map(line).collect();
        assert_eq!(
            lines,
            [
                "restart pg2 (http://pg2:8008)",
                "restart pg3 (http://here:8008)",
                "skip pg4: no status from its agent (connection refused)",
                "skip pg5: a witness runs no PostgreSQL",
                "restart pg1 (http://pg1:8008)",
            ]
        );
    }

    #[test]
    fn pause_waits_for_members_with_a_status_and_names_the_others() {
        let mut paused = status("pg1", "primary", "paused");
        paused["agent"]["paused"] = json!(true);
        let doc = cluster(
            Some("pg1"),
            &[
                ("pg1", Some(paused)),
                ("pg2", Some(status("pg2", "replica", "running"))),
                ("pg3", None),
            ],
        );
        assert_eq!(
            pause_pending(&doc, true),
            (vec!["pg2".to_string()], vec!["pg3".to_string()])
        );
        assert_eq!(
            pause_pending(&doc, false),
            (vec!["pg1".to_string()], vec!["pg3".to_string()])
        );
    }
}
