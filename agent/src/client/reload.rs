//! `pgwarden reload [NAME]`: the agent re-reads its configuration file,
//! as on SIGHUP, and says what it applied and what waits for a restart.

use serde_json::json;

use super::members;
use super::session::{ActionError, Connect, Io, Session, RELOAD};

/// Reloads `member` (else the agent named by `--config`/`--url`).
pub async fn run(
    connect: &Connect,
    member: Option<&str>,
    io: &mut Io<'_>,
) -> Result<(), ActionError> {
    let session = Session::open(connect, io)?;
    let dest = match member {
        Some(name) => members::dest_named(&session.cluster().await?, &session.here.url, name)?,
        None => session.here.clone(),
    };
    let answer = session.send(&RELOAD, &dest, Some(&json!({}))).await?;
    io.say(answer.message());
    Ok(())
}
