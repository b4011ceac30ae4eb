//! `pgwarden pause [--wait]` and `pgwarden resume [--wait]`: stop (or
//! restart) every automatic action in the cluster. Any member takes the
//! request; the flag spreads to the others within a loop or two, which
//! `--wait` watches in `/pgwarden/cluster`.

use tokio::time::{sleep, Instant};

use super::members;
use super::session::{ActionError, Connect, Io, Poll, Session, PAUSE, RESUME};

/// How `--wait` watches: every 500 ms, for up to a minute.
pub const PAUSE_POLL: Poll = Poll {
    every: std::time::Duration::from_millis(500),
    limit: std::time::Duration::from_secs(60),
};

/// "paused" or "resumed".
fn word(paused: bool) -> &'static str {
    if paused {
        "paused"
    } else {
        "resumed"
    }
}

/// Pauses (`paused`) or resumes the cluster; with `wait`, until every
/// member with a status says so.
pub async fn run(
    connect: &Connect,
    paused: bool,
    wait: Option<Poll>,
    io: &mut Io<'_>,
) -> Result<(), ActionError> {
    let session = Session::open(connect, io)?;
    let endpoint = if paused { &PAUSE } else { &RESUME };
    let answer = session.send(endpoint, &session.here, None).await?;
    io.say(answer.message());
    let Some(poll) = wait else {
        return Ok(());
    };
    let deadline = Instant::now() + poll.limit;
    loop {
        let problem = match session.cluster().await {
            Ok(doc) => {
                let (pending, silent) = members::pause_pending(&doc, paused);
                if pending.is_empty() {
                    let mut line = format!("every member reports {}", word(paused));
                    if !silent.is_empty() {
                        line.push_str(&format!(
                            " (no status from {}: not waited for)",
                            silent.join(", ")
                        ));
                    }
                    io.say(line);
                    return Ok(());
                }
                format!("not {} yet: {}", word(paused), pending.join(", "))
            }
            Err(e) => format!("cannot read the cluster: {e}"),
        };
        if Instant::now() >= deadline {
            return Err(ActionError::Failed(format!(
                "after {} s, {problem} (see `pgwarden list`)",
                poll.limit.as_secs()
            )));
        }
        sleep(poll.every).await;
    }
}
