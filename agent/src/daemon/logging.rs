//! The agent's log on stderr, as `[log]` asks: text lines for people or
//! JSON lines for a log pipeline, at a level a SIGHUP can change without
//! restarting the agent.
//!
//! One `tracing` subscriber is installed for the process: a reloadable
//! `EnvFilter` (the level) and one fmt layer whose event formatter reads
//! the format from a shared flag at each event. A flag rather than a
//! reloadable boxed layer: the two formats then share one layer, so no
//! span or field data ever has to be carried across a switch.
//!
//! `PGWARDEN_LOG`, set and non-empty when the agent starts, wins over
//! `log.level` for the agent's whole life (a one-off debugging session
//! without editing the file); `log.format` applies either way.
//!
//! In text, the fields a decision line carries for machines (`member`,
//! `term`, `action`, `reason`, see [`STRUCTURED_ONLY`]) are left out: the
//! line's message already says them in words.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::{LogFormat, LogSection};

/// The environment variable whose filter wins over `log.level`.
pub const ENV_FILTER: &str = "PGWARDEN_LOG";

/// Fields that decision lines carry for JSON and that text lines leave
/// out, because the message already says them.
pub const STRUCTURED_ONLY: &[&str] = &["member", "term", "action", "reason"];

/// The keys every JSON line starts with; an event field of the same name
/// is written as `field.<name>` instead.
const JSON_RESERVED: &[&str] = &["timestamp", "level", "target", "message"];

/// The installed subscriber's controls: what a configuration (at start,
/// on SIGHUP) changes.
#[derive(Clone)]
pub struct Logging {
    filter: reload::Handle<EnvFilter, Registry>,
    shared: Arc<Shared>,
    /// `PGWARDEN_LOG`'s value when it was set and valid at start.
    env: Option<String>,
}

/// What the formatter reads at each event.
#[derive(Default)]
struct Shared {
    json: AtomicBool,
    /// This node's name, on every JSON line.
    member: RwLock<String>,
    /// The `log.level` in force (or last asked for, under `PGWARDEN_LOG`).
    level: RwLock<String>,
}

impl Logging {
    /// Installs the process's subscriber on stderr: text, at
    /// `PGWARDEN_LOG`'s filter when set, else `info`, until [`Logging::apply`]
    /// is given the configuration.
    pub fn init() -> Logging {
        let env = std::env::var(ENV_FILTER)
            .ok()
            .filter(|v| !v.trim().is_empty());
        let (filter, env, bad_env) = match env.as_deref().map(parse_filter) {
            Some(Ok(filter)) => (filter, env, None),
            Some(Err(e)) => (EnvFilter::new("info"), None, env.map(|v| (v, e))),
            None => (EnvFilter::new("info"), None, None),
        };
        let shared = Arc::new(Shared::default());
        let (filter, handle) = reload::Layer::new(filter);
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        Registry::default()
            .with(filter)
            .with(fmt_layer(shared.clone(), std::io::stderr, ansi))
            .init();
        if let Some((value, e)) = bad_env {
            tracing::warn!("{ENV_FILTER}={value:?} is not a log filter ({e}); using log.level");
        }
        Logging {
            filter: handle,
            shared,
            env,
        }
    }

    /// Names this node on every JSON line; once, at start: `node.name`
    /// changes only with an agent restart, whatever a reloaded file says.
    pub fn set_member(&self, member: &str) {
        if let Ok(mut m) = self.shared.member.write() {
            *m = member.to_string();
        }
    }

    /// Applies `[log]` (at start and on every reload): the format at once,
    /// the level unless `PGWARDEN_LOG` set it.
    pub fn apply(&self, log: &LogSection) {
        let json = log.format == LogFormat::Json;
        let was_json = self.shared.json.swap(json, Ordering::Relaxed);
        let level_changed = self
            .shared
            .level
            .write()
            .map(|mut l| {
                let changed = *l != log.level;
                *l = log.level.clone();
                changed
            })
            .unwrap_or(false);
        if !level_changed {
            if json != was_json {
                tracing::info!("log: format {}", log.format.as_str());
            }
            return;
        }
        if let Some(env) = &self.env {
            tracing::info!(
                "log: format {}; level from {ENV_FILTER}={env:?}, which wins over log.level = {:?}",
                log.format.as_str(),
                log.level
            );
            return;
        }
        // The configuration validated the level; a filter that still does
        // not parse keeps the running one rather than silencing the agent.
        match parse_filter(&log.level).map(|f| self.filter.reload(f).map_err(|e| e.to_string())) {
            Ok(Ok(())) => {
                tracing::info!("log: format {}, level {:?}", log.format.as_str(), log.level)
            }
            Ok(Err(e)) | Err(e) => tracing::error!(
                "log: keeping the running level, log.level = {:?} cannot be applied: {e}",
                log.level
            ),
        }
    }
}

/// The filter of `directives`. The PostgreSQL driver logs every statement
/// at debug, the replication role's password verifier included: it stays
/// at info unless a directive names it (`tokio_postgres=debug`).
fn parse_filter(directives: &str) -> Result<EnvFilter, String> {
    let filter = EnvFilter::builder()
        .parse(directives)
        .map_err(|e| e.to_string())?;
    let verbose = filter
        .max_level_hint()
        .is_some_and(|max| max > tracing_subscriber::filter::LevelFilter::INFO);
    if !verbose || directives.contains("tokio_postgres") {
        return Ok(filter);
    }
    let quiet = "tokio_postgres=info"
        .parse()
        .map_err(|e: tracing_subscriber::filter::ParseError| e.to_string())?;
    Ok(filter.add_directive(quiet))
}

/// The fmt layer both formats share, writing to `writer`.
fn fmt_layer<S, W>(shared: Arc<Shared>, writer: W, ansi: bool) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .fmt_fields(TextFields)
        .event_format(Lines {
            shared,
            text: format::format().with_target(false),
        })
}

/// The event formatter: text or JSON, as the shared flag says.
struct Lines {
    shared: Arc<Shared>,
    text: format::Format<format::Full, SystemTime>,
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if !self.shared.json.load(Ordering::Relaxed) {
            return self.text.format_event(ctx, writer, event);
        }
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let member = self
            .shared
            .member
            .read()
            .map(|m| m.clone())
            .unwrap_or_default();
        writeln!(writer, "{}", json_line(&timestamp, &member, event))
    }
}

/// One event as a JSON object: `timestamp`, `level`, `target`, `member`,
/// `message`, then the event's fields in the order it gave them.
fn json_line(timestamp: &str, member: &str, event: &Event<'_>) -> String {
    let mut fields = JsonFields::default();
    event.record(&mut fields);
    let meta = event.metadata();
    // Events of the `log` crate (libraries) name their real target in a field.
    let target = fields
        .log_target
        .take()
        .unwrap_or_else(|| meta.target().to_string());
    let message = fields.message.take().unwrap_or_default();
    let mut out = String::from("{");
    let mut put = |key: &str, value: &serde_json::Value| {
        if out.len() > 1 {
            out.push(',');
        }
        let _ = write!(out, "{}:{value}", serde_json::Value::from(key));
    };
    put("timestamp", &timestamp.into());
    put("level", &meta.level().as_str().into());
    put("target", &target.into());
    if !fields.values.iter().any(|(k, _)| k == "member") && !member.is_empty() {
        put("member", &member.into());
    }
    put("message", &message.into());
    for (key, value) in &fields.values {
        put(key, value);
    }
    out.push('}');
    out
}

/// An event's fields as JSON values.
#[derive(Default)]
struct JsonFields {
    message: Option<String>,
    log_target: Option<String>,
    values: Vec<(String, serde_json::Value)>,
}

impl JsonFields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        let name = field.name();
        match name {
            "message" => {
                self.message = Some(match value {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
            }
            "log.target" => self.log_target = value.as_str().map(str::to_string),
            // the `log` crate's file, line and module: noise in a log line
            _ if name.starts_with("log.") => {}
            _ if JSON_RESERVED.contains(&name) => {
                self.values.push((format!("field.{name}"), value))
            }
            _ => self.values.push((name.to_string(), value)),
        }
    }
}

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
}

/// Text fields as `tracing` writes them (`message key=value ...`), without
/// the [`STRUCTURED_ONLY`] ones.
struct TextFields;

impl<'w> FormatFields<'w> for TextFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: Writer<'w>,
        fields: R,
    ) -> fmt::Result {
        let mut visitor = TextVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct TextVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Visit for TextVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if self.result.is_err() || STRUCTURED_ONLY.contains(&name) || name.starts_with("log.") {
            return;
        }
        let space = if self.first { "" } else { " " };
        self.first = false;
        self.result = if name == "message" {
            write!(self.writer, "{space}{value:?}")
        } else {
            write!(self.writer, "{space}{name}={value:?}")
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn at_debug_the_drivers_statements_stay_out_unless_named() {
        let shown = |directives: &str| parse_filter(directives).expect("parses").to_string();
        assert!(
            shown("debug").contains("tokio_postgres=info"),
            "{}",
            shown("debug")
        );
        assert!(shown("trace").contains("tokio_postgres=info"));
        assert!(!shown("info").contains("tokio_postgres"));
        assert!(!shown("warn").contains("tokio_postgres"));
        assert!(shown("info,pgwarden=debug").contains("tokio_postgres=info"));
        let named = shown("debug,tokio_postgres=debug");
        assert!(named.contains("tokio_postgres=debug") && !named.contains("tokio_postgres=info"));
        // What the filter lets through, by target and level.
        let buf = Buffer::default();
        let subscriber = Registry::default().with(
            tracing_subscriber::fmt::layer()
                .with_writer(buf.clone())
                .with_filter(parse_filter("debug").expect("parses")),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "tokio_postgres::query", "executing statement ALTER ROLE");
            tracing::debug!(target: "pgwarden::ha", "a decision in detail");
        });
        let text = String::from_utf8(buf.0.lock().expect("buffer").clone()).expect("utf-8");
        assert!(text.contains("a decision in detail"), "{text}");
        assert!(!text.contains("ALTER ROLE"), "{text}");
    }

    /// A writer into a shared buffer, for one test's subscriber.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    impl Buffer {
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().expect("buffer").clone();
            String::from_utf8(bytes)
                .expect("utf-8")
                .lines()
                .map(str::to_string)
                .collect()
        }
    }

    /// Logs `f`'s events through the agent's layer, in JSON or text.
    fn logged(json: bool, f: impl FnOnce()) -> Vec<String> {
        let shared = Arc::new(Shared::default());
        shared.json.store(json, Ordering::Relaxed);
        *shared.member.write().expect("member") = "pg1".into();
        let buffer = Buffer::default();
        let subscriber = Registry::default()
            .with(EnvFilter::new("info"))
            .with(fmt_layer(shared, buffer.clone(), false));
        tracing::subscriber::with_default(subscriber, f);
        buffer.lines()
    }

    fn decision() {
        tracing::info!(
            member = "pg1",
            term = 8u64,
            action = "promote",
            reason = "lease acquired in term 8, highest LSN 0/5000148",
            "decided: Promote"
        );
    }

    #[test]
    fn given_json_when_a_decision_is_logged_then_the_line_parses_with_every_field() {
        let lines = logged(true, decision);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let v: serde_json::Value = serde_json::from_str(&lines[0]).expect("one JSON object");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "decided: Promote");
        assert_eq!(v["member"], "pg1");
        assert_eq!(v["term"], 8);
        assert_eq!(v["action"], "promote");
        assert_eq!(
            v["reason"],
            "lease acquired in term 8, highest LSN 0/5000148"
        );
        assert_eq!(v["target"], module_path!());
        let ts = v["timestamp"].as_str().expect("a timestamp string");
        assert!(ts.ends_with('Z'), "UTC: {ts}");
        let to_second = format!("{}Z", &ts[..19]);
        crate::rfc3339::parse(&to_second).expect("RFC 3339");
    }

    #[test]
    fn given_json_then_every_line_names_the_member_and_odd_fields_stay_valid_json() {
        let lines = logged(true, || {
            tracing::warn!(level = 3, path = "/a \"b\"\n", ok = true, "plain {}", 1);
            tracing::debug!("filtered out at info");
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let v: serde_json::Value = serde_json::from_str(&lines[0]).expect("one JSON object");
        assert_eq!(v["member"], "pg1");
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["message"], "plain 1");
        assert_eq!(
            v["field.level"], 3,
            "a field named like a key is kept apart"
        );
        assert_eq!(v["path"], "/a \"b\"\n");
        assert_eq!(v["ok"], true);
    }

    #[test]
    fn given_text_then_a_decision_line_says_it_in_words_without_the_json_fields() {
        let lines = logged(false, || {
            decision();
            tracing::info!(slot = "pg2", "kept");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].ends_with(" INFO decided: Promote"), "{}", lines[0]);
        assert!(
            lines[1].ends_with(" INFO kept slot=\"pg2\""),
            "{}",
            lines[1]
        );
        assert!(serde_json::from_str::<serde_json::Value>(&lines[0]).is_err());
    }
}
