//! `pgwarden reinit NAME [--no-wait]`: the member's data directory is
//! renamed aside and cloned afresh from the primary; then, unless told
//! not to wait, the member's `/status` is followed until it streams again.

use serde_json::json;
use tokio::time::{sleep, Instant};

use super::members;
use super::session::{ActionError, Connect, Io, Poll, Session, REINITIALIZE};
use crate::status_doc::{Role, State, StatusDoc};

/// How `reinit` follows the clone: every second, for up to 30 minutes
/// (a clone of a large database takes long; Ctrl-C stops only the wait).
pub const REINIT_POLL: Poll = Poll {
    every: std::time::Duration::from_secs(1),
    limit: std::time::Duration::from_secs(30 * 60),
};

/// One line about where the member is: role, state, clone progress, and
/// its wal receiver or why there is none.
pub fn progress_line(status: &StatusDoc) -> String {
    let mut line = format!(
        "{}: {} {}",
        status.name,
        json_name(&status.role),
        json_name(&status.state)
    );
    if let Some(pct) = status.progress_pct {
        line.push_str(&format!(" {pct}%"));
    }
    match (&status.wal_receiver, &status.wal_receiver_problem) {
        (Some(r), _) => line.push_str(&format!(", wal receiver {}", r.status)),
        (None, Some(problem)) => line.push_str(&format!(", not streaming: {problem}")),
        (None, None) => {}
    }
    if let Some(reason) = &status.reason {
        line.push_str(&format!(" ({reason})"));
    }
    line
}

/// The member is a running replica that streams.
pub fn streams(status: &StatusDoc) -> bool {
    status.role == Role::Replica
        && status.state == State::Running
        && status
            .wal_receiver
            .as_ref()
            .is_some_and(|r| r.status == "streaming")
}

/// The reinitialized member streams again. A document from before the
/// clone may still show the old server streaming for a loop, so it counts
/// only once the member was seen doing something else, or runs a
/// postmaster started since (`start_before`: its start time before).
pub fn finished(status: &StatusDoc, seen_busy: bool, start_before: Option<&str>) -> bool {
    let restarted = status
        .postgres
        .as_ref()
        .and_then(|p| p.start_time.as_deref())
        != start_before;
    streams(status) && (seen_busy || restarted)
}

/// The last line: where it streams from.
fn final_line(status: &StatusDoc) -> String {
    let from = status
        .wal_receiver
        .as_ref()
        .and_then(|r| Some(format!("{}:{}", r.sender_host.as_deref()?, r.sender_port?)));
    format!(
        "{} is a streaming replica again (timeline {}{})",
        status.name,
        status
            .timeline
            .map(|t| t.to_string())
            .unwrap_or_else(|| "?".into()),
        from.map(|f| format!(", from {f}")).unwrap_or_default()
    )
}

fn json_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".into(),
    }
}

/// Reinitializes `name`; with `wait`, follows it with `poll` until it streams.
pub async fn run(
    connect: &Connect,
    name: &str,
    wait: Option<Poll>,
    io: &mut Io<'_>,
) -> Result<(), ActionError> {
    let session = Session::open(connect, io)?;
    let doc = session.cluster().await?;
    let member = members::find(&doc, name)?;
    let dest = members::dest_of(&doc, &session.here.url, member)?;
    let start_before = member
        .status
        .as_ref()
        .and_then(|s| s.postgres.as_ref()?.start_time.clone());
    let answer = session.send(&REINITIALIZE, &dest, Some(&json!({}))).await?;
    io.say(answer.message());
    let Some(poll) = wait else {
        return Ok(());
    };
    let deadline = Instant::now() + poll.limit;
    let mut last = String::new();
    let mut seen_busy = false;
    loop {
        let line = match session.status(&dest).await {
            Ok(status) if finished(&status, seen_busy, start_before.as_deref()) => {
                io.say(final_line(&status));
                return Ok(());
            }
            Ok(status) => {
                seen_busy |= !streams(&status);
                progress_line(&status)
            }
            Err(e) => format!("{name}: cannot read its status: {e}"),
        };
        if line != last {
            io.say(&line);
            last = line;
        }
        if Instant::now() >= deadline {
            return Err(ActionError::Failed(format!(
                "{name} does not stream after {} s (last: {last}); the clone may still be going on: \
                 see `pgwarden list` and {name}'s log",
                poll.limit.as_secs()
            )));
        }
        sleep(poll.every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::members::tests::status;

    fn doc(v: serde_json::Value) -> StatusDoc {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn progress_shows_the_state_the_clone_and_why_it_does_not_stream() {
        let mut cloning = status("pg3", "uninitialized", "cloning");
        cloning["progress_pct"] = json!(42);
        cloning["wal_receiver"] = json!(null);
        assert_eq!(
            progress_line(&doc(cloning)),
            "pg3: uninitialized cloning 42%"
        );
        let mut waiting = status("pg3", "replica", "running");
        waiting["wal_receiver"] = json!(null);
        waiting["wal_receiver_problem"] = json!("primary unreachable");
        assert_eq!(
            progress_line(&doc(waiting)),
            "pg3: replica running, not streaming: primary unreachable"
        );
    }

    #[test]
    fn a_streaming_document_from_before_the_clone_does_not_end_the_wait() {
        let before = doc(status("pg3", "replica", "running"));
        let start = Some("2026-11-26T12:00:00Z");
        assert!(streams(&before));
        assert!(!finished(&before, false, start));
        assert!(finished(&before, true, start));
        let mut after = status("pg3", "replica", "running");
        after["postgres"]["start_time"] = json!("2026-11-26T13:00:00Z");
        assert!(finished(&doc(after), false, start));
        let mut catching_up = status("pg3", "replica", "running");
        catching_up["wal_receiver"] = json!({"status": "catchup"});
        assert!(!finished(&doc(catching_up), true, start));
    }

    #[test]
    fn the_last_line_says_where_it_streams_from() {
        let mut v = status("pg3", "replica", "running");
        v["wal_receiver"] =
            json!({"status": "streaming", "sender_host": "10.0.0.1", "sender_port": 5432});
        assert_eq!(
            final_line(&doc(v)),
            "pg3 is a streaming replica again (timeline 1, from 10.0.0.1:5432)"
        );
    }
}
