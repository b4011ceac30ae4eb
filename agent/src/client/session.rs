//! What every operator action shares: the agent to ask and the token to
//! show it, the endpoints and how long each may take, and what an answer's
//! status code means for the command's exit code (SPEC "Binary and CLI").
//!
//! The actions' requests go out only through [`Session`], whose HTTP
//! client comes from [`super::target`]: the TLS files of `--config` and of
//! the flags apply to every member asked, not only to the first.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use serde_json::Value;

use super::{error_chain, get_json, hint_for, ClientError};
use crate::config::ClientTlsFiles;
use crate::status_doc::{ClusterDoc, StatusDoc};

/// Exit code: done.
pub const EXIT_OK: i32 = 0;
/// Exit code: a runtime failure (unreachable, timed out, an answer not understood).
pub const EXIT_RUNTIME: i32 = 1;
/// Exit code: bad usage or configuration (a flag, the token, a member name).
pub const EXIT_USAGE: i32 = 2;
/// Exit code: the cluster refused (412, 409, 503, nothing to cancel).
pub const EXIT_REFUSED: i32 = 3;

/// How long a document may take (`GET /pgwarden/cluster`, `/status`).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an action may take: the agent answers when it is over, and a
/// switchover waits for the candidate to catch up and take over (up to
/// about 2 minutes on the agent's side).
pub const ACTION_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a restart or a reinitialize may take: the agent waits up to
/// 330 s for one (a shutdown checkpoint of a busy server is slow), and its
/// own "no outcome yet" answer says more than a client's timeout.
pub const SLOW_ACTION_TIMEOUT: Duration = Duration::from_secs(360);

/// An operator action failed; [`ActionError::exit_code`] says how.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// Finding or reaching the agent failed (its configuration, TLS, the network).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A flag, the token file or a member name is wrong.
    #[error("{0}")]
    Usage(String),
    /// The agent did not take the token (401), or takes none (403).
    #[error("{0}")]
    Token(String),
    /// The cluster refused before anything was asked of it (no leader,
    /// the candidate leads already).
    #[error("{0}")]
    Refused(String),
    /// The agent refused: not possible now (412), busy (409), not the
    /// member to ask or failed (503), nothing to cancel (404 to a DELETE).
    #[error("{text}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The agent's `error`.
        reason: String,
        /// The whole message: who refused what, and why.
        text: String,
    },
    /// Anything else: a timeout, a 5xx, an answer not understood.
    #[error("{0}")]
    Failed(String),
}

impl ActionError {
    /// The process's exit code for this error (SPEC "Binary and CLI").
    pub fn exit_code(&self) -> i32 {
        match self {
            ActionError::Client(ClientError::Config(_))
            | ActionError::Client(ClientError::NoTarget)
            | ActionError::Client(ClientError::Tls(_))
            | ActionError::Usage(_)
            | ActionError::Token(_) => EXIT_USAGE,
            ActionError::Refused(_) | ActionError::Rejected { .. } => EXIT_REFUSED,
            ActionError::Client(ClientError::Unreachable { .. })
            | ActionError::Client(ClientError::BadAnswer { .. })
            | ActionError::Failed(_) => EXIT_RUNTIME,
        }
    }
}

/// How a client command reaches an agent: `--config` or `--url`, the token
/// file and the TLS flags.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    /// `--config`: the node's configuration (API address, `api.token_file`, TLS files).
    pub config: Option<PathBuf>,
    /// `--url`: an agent's URL.
    pub url: Option<String>,
    /// `--token-file`: wins over the configuration's `api.token_file`.
    pub token_file: Option<PathBuf>,
    /// `--ca-file`, `--cert-file`, `--key-file`.
    pub tls: ClientTlsFiles,
}

/// Where a command writes, and how it asks before acting.
pub struct Io<'a> {
    /// What the command did, for the operator (and scripts).
    pub out: &'a mut dyn Write,
    /// Notes and progress that are not the result.
    pub err: &'a mut dyn Write,
    /// Asks a yes/no question; `true` goes ahead.
    pub confirm: &'a mut dyn FnMut(&str) -> bool,
}

impl Io<'_> {
    /// Writes a line of the result; a closed stdout must not fail an
    /// action that was carried out.
    pub fn say(&mut self, line: impl fmt::Display) {
        let _ = writeln!(self.out, "{line}");
    }

    /// Writes a note to stderr.
    pub fn note(&mut self, line: impl fmt::Display) {
        let _ = writeln!(self.err, "pgwarden: {line}");
    }
}

/// Asks `question` on the terminal and reads the answer from stdin; when
/// stdin is not a terminal (a script, Ansible) there is no one to ask and
/// the answer is yes.
pub fn confirm_on_terminal(question: &str) -> bool {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return true;
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(_) => is_yes(&line),
        Err(_) => false,
    }
}

/// `y` or `yes`, in any case; anything else (an empty line too) is no.
pub fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// The API token, and where it came from (for messages; never the token).
#[derive(Clone)]
pub struct Token {
    header: HeaderValue,
    /// Which file, named as the operator gave it: `--token-file /x` or
    /// `api.token_file /x (of /etc/pgwarden/pgwarden.toml)`.
    pub source: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(from {})", self.source)
    }
}

impl Token {
    /// Reads the token: `--token-file` when given, else the configuration's
    /// `api.token_file`. No file at all, an unreadable or an empty one is a
    /// usage error that says which flag or key to fix.
    pub fn find(
        flag: Option<&Path>,
        configured: Option<&Path>,
        config: Option<&Path>,
    ) -> Result<Token, ActionError> {
        match (flag, configured, config) {
            (Some(file), _, _) => Token::read(file, format!("--token-file {}", file.display())),
            (None, Some(file), Some(config)) => Token::read(
                file,
                format!(
                    "api.token_file {} (of {})",
                    file.display(),
                    config.display()
                ),
            ),
            (None, Some(file), None) => {
                Token::read(file, format!("api.token_file {}", file.display()))
            }
            (None, None, Some(config)) => Err(ActionError::Usage(format!(
                "{} sets no api.token_file, and operator actions need the agents' API token: \
                 give --token-file FILE, or set api.token_file in the configuration",
                config.display()
            ))),
            (None, None, None) => Err(ActionError::Usage(
                "operator actions need the agents' API token: give --token-file FILE \
                 (or --config FILE whose api.token_file names it)"
                    .into(),
            )),
        }
    }

    /// The token in `file`, trimmed of surrounding whitespace (a trailing
    /// newline is how editors and `echo` leave it).
    fn read(file: &Path, source: String) -> Result<Token, ActionError> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            ActionError::Usage(format!(
                "cannot read the API token from {source}: {e}; give a readable --token-file FILE \
                 (or fix api.token_file in the configuration)"
            ))
        })?;
        let secret = text.trim();
        if secret.is_empty() {
            return Err(ActionError::Usage(format!(
                "the API token file {source} is empty; put the agents' token in it \
                 (the contents of their api.token_file)"
            )));
        }
        let mut header = HeaderValue::from_str(&format!("Bearer {secret}")).map_err(|_| {
            ActionError::Usage(format!(
                "the API token in {source} holds characters an HTTP header cannot carry \
                 (a control character or a line break inside it?)"
            ))
        })?;
        header.set_sensitive(true);
        Ok(Token { header, source })
    }
}

/// The member a request goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dest {
    /// Its member name, when known.
    pub name: Option<String>,
    /// Its API's base URL, without a trailing `/`.
    pub url: String,
}

impl Dest {
    /// A member, by name.
    pub fn member(name: &str, url: &str) -> Dest {
        Dest {
            name: Some(name.to_string()),
            url: url.trim_end_matches('/').to_string(),
        }
    }

    /// What to call it in a line of output: its name, else its URL.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.url)
    }
}

impl fmt::Display for Dest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{name} ({})", self.url),
            None => write!(f, "the agent at {}", self.url),
        }
    }
}

/// HTTP method of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Start something.
    Post,
    /// Cancel something scheduled.
    Delete,
}

/// An action endpoint and how long its answer may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The method.
    pub verb: Verb,
    /// The path.
    pub path: &'static str,
    /// The request's timeout.
    pub timeout: Duration,
}

impl Endpoint {
    const fn post(path: &'static str, timeout: Duration) -> Endpoint {
        Endpoint {
            verb: Verb::Post,
            path,
            timeout,
        }
    }

    const fn delete(path: &'static str) -> Endpoint {
        Endpoint {
            verb: Verb::Delete,
            path,
            timeout: READ_TIMEOUT,
        }
    }

    /// A cancellation, whose 404 means "nothing was scheduled".
    fn cancels(&self) -> bool {
        self.verb == Verb::Delete
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.verb {
            Verb::Post => "POST",
            Verb::Delete => "DELETE",
        };
        write!(f, "{verb} {}", self.path)
    }
}

/// `POST /switchover`, sent to the leader.
pub const SWITCHOVER: Endpoint = Endpoint::post("/switchover", ACTION_TIMEOUT);
/// `DELETE /switchover`: cancels a scheduled one.
pub const CANCEL_SWITCHOVER: Endpoint = Endpoint::delete("/switchover");
/// `POST /failover`, sent to the candidate.
pub const FAILOVER: Endpoint = Endpoint::post("/failover", ACTION_TIMEOUT);
/// `POST /restart`, sent to the member to restart.
pub const RESTART: Endpoint = Endpoint::post("/restart", SLOW_ACTION_TIMEOUT);
/// `DELETE /restart`: cancels a scheduled one.
pub const CANCEL_RESTART: Endpoint = Endpoint::delete("/restart");
/// `POST /reload`.
pub const RELOAD: Endpoint = Endpoint::post("/reload", ACTION_TIMEOUT);
/// `POST /reinitialize`, sent to the member to clone again.
pub const REINITIALIZE: Endpoint = Endpoint::post("/reinitialize", SLOW_ACTION_TIMEOUT);
/// `POST /pause`.
pub const PAUSE: Endpoint = Endpoint::post("/pause", ACTION_TIMEOUT);
/// `POST /resume`.
pub const RESUME: Endpoint = Endpoint::post("/resume", ACTION_TIMEOUT);

/// How often and how long a command waits for the cluster to show an
/// action's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Poll {
    /// Between two looks.
    pub every: Duration,
    /// Give up after.
    pub limit: Duration,
}

/// An action the agent carried out (200) or scheduled (202), with its answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Accepted {
    /// Done.
    Done(Value),
    /// Scheduled (`scheduled_at` says when).
    Scheduled(Value),
}

impl Accepted {
    /// The answer's body.
    pub fn body(&self) -> &Value {
        match self {
            Accepted::Done(v) | Accepted::Scheduled(v) => v,
        }
    }

    /// The agent's `message`.
    pub fn message(&self) -> &str {
        self.body()
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or(match self {
                Accepted::Done(_) => "done",
                Accepted::Scheduled(_) => "scheduled",
            })
    }
}

/// What an answer to an action means: the agent's status code and body,
/// turned into the outcome and, for a refusal, an error whose exit code
/// follows SPEC. `token_source` names the token file for 401/403.
pub fn judge(
    endpoint: &Endpoint,
    dest: &Dest,
    token_source: &str,
    status: u16,
    body: &str,
) -> Result<Accepted, ActionError> {
    let json = serde_json::from_str::<Value>(body).ok();
    if (200..300).contains(&status) {
        let Some(json) = json.filter(Value::is_object) else {
            return Err(ActionError::Failed(format!(
                "{dest} answered {endpoint} with {} and a body that is not a JSON object: {:?} \
                 (is it a pgwarden agent of this version?)",
                status_text(status),
                excerpt(body)
            )));
        };
        return Ok(if status == 202 {
            Accepted::Scheduled(json)
        } else {
            Accepted::Done(json)
        });
    }
    let error = json
        .as_ref()
        .and_then(|j| j.get("error"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| excerpt(body));
    let code = status_text(status);
    let rejected = |text: String| ActionError::Rejected {
        status,
        reason: error.clone(),
        text,
    };
    Err(match status {
        401 => ActionError::Token(format!(
            "{dest} did not take the token from {token_source} ({code}): {error}; \
             check that {token_source} holds the same token as that member's api.token_file"
        )),
        403 => ActionError::Token(format!(
            "{dest} takes no operator actions ({code}): {error}; set api.token_file in that \
             member's configuration (the token in {token_source}) and reload it"
        )),
        404 if endpoint.cancels() => {
            rejected(format!("{dest}: nothing to cancel ({code}): {error}"))
        }
        409 | 412 | 503 => rejected(format!("{dest} refused {endpoint} ({code}): {error}")),
        400..=499 => ActionError::Usage(format!(
            "{dest} rejected {endpoint} as malformed ({code}): {error}"
        )),
        _ => ActionError::Failed(format!("{dest} failed {endpoint} ({code}): {error}")),
    })
}

/// `412 Precondition Failed`.
fn status_text(status: u16) -> String {
    reqwest::StatusCode::from_u16(status)
        .map(|s| s.to_string())
        .unwrap_or_else(|_| status.to_string())
}

/// The start of a body that is not the JSON expected (an HTML error page
/// of a proxy, say), short enough for one line.
fn excerpt(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(200) {
        Some((at, _)) => format!("{}...", &body[..at]),
        None if body.is_empty() => "(empty body)".into(),
        None => body.to_string(),
    }
}

/// A connection to the agent a command was pointed at, with the token
/// and the HTTP client every member is asked with.
#[derive(Debug)]
pub struct Session {
    /// The agent named by `--config` or `--url`.
    pub here: Dest,
    http: reqwest::Client,
    token: Token,
}

impl Session {
    /// Finds the agent and reads the token; the client's notes (a
    /// certificate it cannot present) go to `io`'s stderr.
    pub fn open(connect: &Connect, io: &mut Io<'_>) -> Result<Session, ActionError> {
        let target = super::target(
            connect.config.as_deref(),
            connect.url.as_deref(),
            &connect.tls,
        )?;
        for note in &target.notes {
            io.note(note);
        }
        let token = Token::find(
            connect.token_file.as_deref(),
            target.token_file.as_deref(),
            connect.config.as_deref(),
        )?;
        Ok(Session {
            here: Dest {
                name: None,
                url: target.base_url,
            },
            http: target.http,
            token,
        })
    }

    /// `GET /pgwarden/cluster` of the agent asked.
    pub async fn cluster(&self) -> Result<ClusterDoc, ActionError> {
        self.document(
            &self.here,
            crate::api::CLUSTER_DOC_PATH,
            "a cluster document",
        )
        .await
    }

    /// `GET /status` of `dest`.
    pub async fn status(&self, dest: &Dest) -> Result<StatusDoc, ActionError> {
        self.document(dest, "/status", "a status document").await
    }

    async fn document<T: serde::de::DeserializeOwned>(
        &self,
        dest: &Dest,
        path: &str,
        what: &str,
    ) -> Result<T, ActionError> {
        let url = format!("{}{path}", dest.url);
        let (status, doc) = get_json(&self.http, &url).await?;
        if status != 200 {
            return Err(ActionError::Failed(format!(
                "{dest} answered GET {path} with {}: {doc}",
                status_text(status)
            )));
        }
        serde_json::from_value(doc).map_err(|e| {
            ActionError::Failed(format!(
                "{dest} answered GET {path} with something that is not {what}: {e} \
                 (is it a pgwarden agent of this version?)"
            ))
        })
    }

    /// [`Session::print_cluster`] once the cluster has settled after a
    /// change of primary (one running primary, every other member a
    /// streaming replica), or after `limit` anyway: the members' reports
    /// trail a change by a loop or so, and a table of stale reports right
    /// after a switchover would show no primary.
    pub async fn print_cluster_settled(&self, io: &mut Io<'_>, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.cluster().await.is_ok_and(|doc| settled(&doc)) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        self.print_cluster(io).await;
    }

    /// Prints the cluster table from a fresh `GET /pgwarden/cluster`: how an action
    /// left the cluster. A failure to read it is a note, not a failure of
    /// the action, which is done by then.
    pub async fn print_cluster(&self, io: &mut Io<'_>) {
        let table = match self.cluster().await {
            Ok(doc) => serde_json::to_value(&doc)
                .map_err(|e| e.to_string())
                .and_then(|v| super::render_cluster(&v)),
            Err(e) => Err(e.to_string()),
        };
        match table {
            Ok(table) => {
                let _ = write!(io.out, "{table}");
            }
            Err(e) => io.note(format!("cannot show the cluster now: {e}")),
        }
    }

    /// Sends an action to `dest` with the token and judges the answer.
    pub async fn send(
        &self,
        endpoint: &Endpoint,
        dest: &Dest,
        body: Option<&Value>,
    ) -> Result<Accepted, ActionError> {
        let url = format!("{}{}", dest.url, endpoint.path);
        let request = match endpoint.verb {
            Verb::Post => self.http.post(&url),
            Verb::Delete => self.http.delete(&url),
        };
        let mut request = request
            .header(AUTHORIZATION, self.token.header.clone())
            .timeout(endpoint.timeout);
        if let Some(body) = body {
            request = request.json(body);
        }
        let unreachable = |e: reqwest::Error| {
            if e.is_timeout() {
                return ActionError::Failed(format!(
                    "{dest} gave no answer to {endpoint} within {} s; it may still be going on: \
                     see `pgwarden list` and that member's log",
                    endpoint.timeout.as_secs()
                ));
            }
            let detail = error_chain(&e);
            ActionError::Client(ClientError::Unreachable {
                url: url.clone(),
                hint: hint_for(&url, &detail),
                detail,
            })
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(unreachable)?;
        judge(endpoint, dest, &self.token.source, status, &text)
    }
}

/// One running primary, every other member with PostgreSQL a streaming
/// replica (witnesses and members that do not answer aside).
fn settled(doc: &crate::status_doc::ClusterDoc) -> bool {
    use crate::status_doc::{Role, State};
    let statuses: Vec<&crate::status_doc::StatusDoc> = doc
        .members
        .iter()
        .filter_map(|m| m.status.as_ref())
        .collect();
    let primaries = statuses
        .iter()
        .filter(|s| s.role == Role::Primary && s.state == State::Running)
        .count();
    let replicas_ok = statuses
        .iter()
        .filter(|s| s.role == Role::Replica)
        .all(|s| {
            s.state == State::Running
                && s.wal_receiver
                    .as_ref()
                    .is_some_and(|r| r.status == "streaming")
        });
    primaries == 1 && replicas_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg1() -> Dest {
        Dest::member("pg1", "http://10.0.0.1:8008/")
    }

    fn judged(endpoint: &Endpoint, status: u16, body: &str) -> Result<Accepted, ActionError> {
        judge(endpoint, &pg1(), "--token-file /t", status, body)
    }

    #[test]
    fn every_answer_maps_to_the_exit_code_spec_gives_it() {
        let error = r#"{"error": "the reason"}"#;
        let cases: [(&Endpoint, u16, &str, i32); 12] = [
            (&SWITCHOVER, 200, r#"{"message": "ok"}"#, EXIT_OK),
            (&SWITCHOVER, 202, r#"{"message": "later"}"#, EXIT_OK),
            (&SWITCHOVER, 412, error, EXIT_REFUSED),
            (&SWITCHOVER, 409, error, EXIT_REFUSED),
            (&SWITCHOVER, 503, error, EXIT_REFUSED),
            (&CANCEL_SWITCHOVER, 404, error, EXIT_REFUSED),
            (&SWITCHOVER, 401, error, EXIT_USAGE),
            (&SWITCHOVER, 403, error, EXIT_USAGE),
            (&SWITCHOVER, 400, error, EXIT_USAGE),
            (&SWITCHOVER, 500, error, EXIT_RUNTIME),
            (&SWITCHOVER, 502, "<html>bad gateway</html>", EXIT_RUNTIME),
            (&SWITCHOVER, 200, "not json", EXIT_RUNTIME),
        ];
        for (endpoint, status, body, code) in cases {
            let got = judged(endpoint, status, body).map_or_else(|e| e.exit_code(), |_| EXIT_OK);
            assert_eq!(got, code, "{endpoint} {status} {body}");
        }
    }

    #[test]
    fn a_refusal_carries_the_agents_reason_the_member_and_the_endpoint() {
        let e = judged(&SWITCHOVER, 412, r#"{"error": "pg3 lags 20 MB"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pg1 (http://10.0.0.1:8008) refused POST /switchover (412 Precondition Failed): pg3 lags 20 MB"
        );
        let e = judged(&SWITCHOVER, 502, "<html>bad gateway</html>").unwrap_err();
        assert!(e.to_string().ends_with(": <html>bad gateway</html>"), "{e}");
    }

    #[test]
    fn a_refused_token_names_the_file_to_check() {
        let e = judged(&RELOAD, 401, r#"{"error": "wrong token"}"#).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("wrong token") && text.contains("check that --token-file /t holds"),
            "{text}"
        );
        let e = judged(&RELOAD, 403, r#"{"error": "no token configured"}"#).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("no token configured") && text.contains("set api.token_file"),
            "{text}"
        );
    }

    #[test]
    fn an_answer_without_a_message_still_says_what_happened() {
        assert_eq!(judged(&PAUSE, 200, "{}").unwrap().message(), "done");
        let a = judged(&RESTART, 202, r#"{"message": "restart scheduled at T"}"#).unwrap();
        assert!(matches!(a, Accepted::Scheduled(_)));
        assert_eq!(a.message(), "restart scheduled at T");
    }

    #[test]
    fn only_y_or_yes_goes_ahead() {
        for yes in ["y", "Y\n", " yes ", "YES"] {
            assert!(is_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yep", "sure"] {
            assert!(!is_yes(no), "{no:?}");
        }
    }

    #[test]
    fn the_token_flag_wins_and_every_missing_token_says_what_to_give() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("flag.token");
        let configured = dir.path().join("api.token");
        std::fs::write(&flag, "  from-flag\n").unwrap();
        std::fs::write(&configured, "from-config").unwrap();
        let config = Path::new("/etc/pgwarden/pgwarden.toml");

        let t = Token::find(Some(&flag), Some(&configured), Some(config)).unwrap();
        assert_eq!(t.header, "Bearer from-flag");
        assert!(t.source.starts_with("--token-file"), "{}", t.source);
        let t = Token::find(None, Some(&configured), Some(config)).unwrap();
        assert_eq!(t.header, "Bearer from-config");
        assert!(t.source.contains("(of /etc/pgwarden/pgwarden.toml)"));
        assert!(!format!("{t:?}").contains("from-config"), "Debug hides it");

        let usage = |r: Result<Token, ActionError>| {
            let e = r.unwrap_err();
            assert_eq!(e.exit_code(), EXIT_USAGE, "{e}");
            e.to_string()
        };
        let e = usage(Token::find(None, None, Some(config)));
        assert!(e.contains("sets no api.token_file") && e.contains("--token-file"));
        let e = usage(Token::find(None, None, None));
        assert!(e.contains("--token-file FILE"), "{e}");
        let e = usage(Token::find(Some(&dir.path().join("missing")), None, None));
        assert!(
            e.contains("cannot read the API token from --token-file"),
            "{e}"
        );
        std::fs::write(&flag, " \n").unwrap();
        let e = usage(Token::find(Some(&flag), None, None));
        assert!(e.contains("is empty"), "{e}");
        std::fs::write(&flag, "a\nb").unwrap();
        let e = usage(Token::find(Some(&flag), None, None));
        assert!(e.contains("cannot carry"), "{e}");
    }
}
