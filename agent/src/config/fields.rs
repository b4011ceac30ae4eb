//! Typed readers for one table of the merged tree: each reads one key,
//! records a problem naming that key when the value has the wrong type or
//! form, and returns `None` so the caller falls back to the default and
//! carries on with the next key.
//!
//! Values set by environment variables arrive as strings whatever the
//! key's type, so the readers parse strings for numbers and booleans only
//! when the environment set the key; in the file, `port = "5432"` is a
//! type error like any other.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use super::report::Report;
use super::units::ByteSize;

/// One table of the tree: a section (`[node]`) or a member entry.
pub(super) struct Table<'a> {
    /// Prefix of this table's keys in messages: `node`, `cluster.members[1]`.
    path: String,
    map: Option<&'a Map<String, Value>>,
}

impl<'a> Table<'a> {
    /// A table at `path`; `None` when the section is absent, which reads as
    /// a table with no keys.
    pub(super) fn new(path: impl Into<String>, map: Option<&'a Map<String, Value>>) -> Self {
        Table {
            path: path.into(),
            map,
        }
    }

    /// The full key of `name` in this table, as messages show it.
    pub(super) fn key(&self, name: &str) -> String {
        format!("{}.{name}", self.path)
    }

    /// The raw value of `name`.
    pub(super) fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.and_then(|m| m.get(name))
    }

    /// Whether `name` is set at all (to anything, valid or not).
    pub(super) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The keys present, in sorted order.
    pub(super) fn keys(&self) -> impl Iterator<Item = &'a String> {
        self.map.into_iter().flat_map(|m| m.keys())
    }

    /// Records a problem for `name` saying what was expected and what was
    /// found, with an example of a correct line.
    pub(super) fn wrong_type(&self, r: &mut Report, name: &str, expected: &str, example: &str) {
        let found = self
            .get(name)
            .map(describe)
            .unwrap_or_else(|| "nothing".into());
        r.error(
            &self.key(name),
            format!("expected {expected}, found {found}; write e.g. {name} = {example}"),
        );
    }

    /// A non-empty string.
    pub(super) fn string(&self, r: &mut Report, name: &str, example: &str) -> Option<String> {
        match self.get(name)? {
            Value::String(s) if s.trim().is_empty() => {
                r.error(
                    &self.key(name),
                    format!("is empty; write e.g. {name} = {example}"),
                );
                None
            }
            Value::String(s) => Some(s.clone()),
            _ => {
                self.wrong_type(r, name, "a string", example);
                None
            }
        }
    }

    /// A filesystem path. Relative paths work but depend on the directory
    /// the agent was started from, which under systemd is `/`: a warning.
    pub(super) fn path(&self, r: &mut Report, name: &str, example: &str) -> Option<PathBuf> {
        let s = self.string(r, name, example)?;
        let path = PathBuf::from(s);
        if path.is_relative() {
            r.warn(
                &self.key(name),
                format!(
                    "{} is a relative path, resolved against the agent's working directory; write an absolute path",
                    path.display()
                ),
            );
        }
        Some(path)
    }

    /// `true` or `false` (from the environment also `on`/`off`, `yes`/`no`, `1`/`0`).
    pub(super) fn bool(&self, r: &mut Report, name: &str) -> Option<bool> {
        let value = self.get(name)?;
        let parsed = match value {
            Value::Bool(b) => Some(*b),
            Value::String(s) if self.set_by_env(r, name) => {
                match s.trim().to_ascii_lowercase().as_str() {
                    "true" | "on" | "yes" | "1" => Some(true),
                    "false" | "off" | "no" | "0" => Some(false),
                    _ => None,
                }
            }
            _ => None,
        };
        if parsed.is_none() {
            self.wrong_type(r, name, "true or false", "true");
        }
        parsed
    }

    /// A TCP port, 1..=65535.
    pub(super) fn port(&self, r: &mut Report, name: &str, example: u16) -> Option<u16> {
        let value = self.get(name)?;
        let number = match value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) if self.set_by_env(r, name) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        match number {
            Some(n) => match u16::try_from(n) {
                Ok(port) if port != 0 => Some(port),
                _ => {
                    r.error(
                        &self.key(name),
                        format!("{n} is not a TCP port; use a number from 1 to 65535, e.g. {name} = {example}"),
                    );
                    None
                }
            },
            None => {
                self.wrong_type(
                    r,
                    name,
                    "a port number from 1 to 65535",
                    &example.to_string(),
                );
                None
            }
        }
    }

    /// A humantime duration string (`"10s"`, `"1500ms"`, `"1m 30s"`).
    pub(super) fn duration(&self, r: &mut Report, name: &str, example: &str) -> Option<Duration> {
        let value = self.get(name)?;
        let Value::String(s) = value else {
            self.wrong_type(r, name, "a duration string", &format!("\"{example}\""));
            return None;
        };
        match humantime::parse_duration(s.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                r.error(
                    &self.key(name),
                    format!(
                        "{s:?} is not a duration ({e}); write a number and a unit, e.g. {name} = \"{example}\" (units: ms, s, m, h)"
                    ),
                );
                None
            }
        }
    }

    /// A size string (`"16MB"`).
    pub(super) fn size(&self, r: &mut Report, name: &str, example: &str) -> Option<ByteSize> {
        let value = self.get(name)?;
        let Value::String(s) = value else {
            self.wrong_type(r, name, "a size string", &format!("\"{example}\""));
            return None;
        };
        match s.parse::<ByteSize>() {
            Ok(size) => Some(size),
            Err(e) => {
                r.error(&self.key(name), e.to_string());
                None
            }
        }
    }

    /// A list of strings.
    pub(super) fn strings(&self, r: &mut Report, name: &str, example: &str) -> Option<Vec<String>> {
        let value = self.get(name)?;
        let Value::Array(items) = value else {
            self.wrong_type(r, name, "a list of strings", &format!("[{example}]"));
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.clone()),
                other => {
                    ok = false;
                    r.error(
                        &format!("{}[{i}]", self.key(name)),
                        format!(
                            "expected a string, found {}; write e.g. {name} = [{example}]",
                            describe(other)
                        ),
                    );
                }
            }
        }
        ok.then_some(out)
    }

    /// A sub-table, such as `postgresql.parameters`.
    pub(super) fn table(
        &self,
        r: &mut Report,
        name: &str,
        example: &str,
    ) -> Option<&'a Map<String, Value>> {
        match self.get(name)? {
            Value::Object(map) => Some(map),
            _ => {
                self.wrong_type(r, name, "a table", example);
                None
            }
        }
    }

    /// Records a problem for every key not in `known`. `hint` turns an
    /// unknown key into a helpful suggestion (a close spelling, the section
    /// it belongs in).
    pub(super) fn unknown_keys(
        &self,
        r: &mut Report,
        where_: &str,
        known: &[&str],
        hint: impl Fn(&str) -> String,
    ) {
        for key in self.keys() {
            if !known.contains(&key.as_str()) {
                r.error(
                    &self.key(key),
                    format!(
                        "unknown key {key:?} in {where_}; {}valid keys: {}",
                        hint(key),
                        known.join(", ")
                    ),
                );
            }
        }
    }

    fn set_by_env(&self, r: &Report, name: &str) -> bool {
        r.env_var(&self.key(name)).is_some()
    }
}

/// A value as a message should show it: `the string "ten"`, `a table`.
pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a table".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read<T>(
        doc: Value,
        env_key: Option<&str>,
        f: impl FnOnce(&Table, &mut Report) -> T,
    ) -> (T, Vec<String>) {
        let mut r = Report::default();
        if let Some(k) = env_key {
            r.note_env_origin(&format!("s.{k}"), "PGWARDEN_S__X");
        }
        let map = doc.as_object().cloned().unwrap_or_default();
        let t = Table::new("s", Some(&map));
        let out = f(&t, &mut r);
        let (problems, _) = r.finish();
        (
            out,
            problems
                .into_iter()
                .map(|p| format!("{}: {}", p.key, p.message))
                .collect(),
        )
    }

    #[test]
    fn ports_outside_the_tcp_range_are_refused_with_the_range() {
        for bad in [json!(0), json!(70000), json!(-1)] {
            let (v, problems) = read(json!({ "port": bad }), None, |t, r| t.port(r, "port", 5432));
            assert_eq!(v, None);
            assert!(problems[0].contains("1 to 65535"), "{problems:?}");
        }
        let (v, problems) = read(json!({ "port": 5433 }), None, |t, r| {
            t.port(r, "port", 5432)
        });
        assert_eq!((v, problems.len()), (Some(5433), 0));
    }

    #[test]
    fn a_port_written_as_a_string_is_accepted_from_the_environment_but_not_from_the_file() {
        let (v, problems) = read(json!({ "port": "5433" }), Some("port"), |t, r| {
            t.port(r, "port", 5432)
        });
        assert_eq!((v, problems.len()), (Some(5433), 0));
        let (v, problems) = read(json!({ "port": "5433" }), None, |t, r| {
            t.port(r, "port", 5432)
        });
        assert_eq!(v, None);
        assert!(
            problems[0].contains("found the string \"5433\""),
            "{problems:?}"
        );
    }

    #[test]
    fn a_bad_duration_names_the_key_and_shows_a_correct_line() {
        let (v, problems) = read(json!({ "ttl": "ten" }), None, |t, r| {
            t.duration(r, "ttl", "10s")
        });
        assert_eq!(v, None);
        assert!(
            problems[0].starts_with("s.ttl: \"ten\" is not a duration"),
            "{problems:?}"
        );
        assert!(problems[0].contains("ttl = \"10s\""), "{problems:?}");
        let (v, _) = read(json!({ "ttl": "1m 30s" }), None, |t, r| {
            t.duration(r, "ttl", "10s")
        });
        assert_eq!(v, Some(Duration::from_secs(90)));
    }

    #[test]
    fn booleans_from_the_environment_accept_the_usual_spellings() {
        for (text, want) in [("true", true), ("OFF", false), ("yes", true), ("0", false)] {
            let (v, problems) = read(json!({ "b": text }), Some("b"), |t, r| t.bool(r, "b"));
            assert_eq!((v, problems.len()), (Some(want), 0), "{text}");
        }
        let (v, problems) = read(json!({ "b": "maybe" }), Some("b"), |t, r| t.bool(r, "b"));
        assert_eq!(v, None);
        assert!(problems[0].contains("PGWARDEN_S__X"), "{problems:?}");
    }

    #[test]
    fn each_bad_item_of_a_list_is_reported_with_its_index() {
        let (v, problems) = read(json!({ "l": ["a", 1, "c", true] }), None, |t, r| {
            t.strings(r, "l", "\"x\"")
        });
        assert_eq!(v, None);
        assert_eq!(problems.len(), 2);
        assert!(
            problems[0].starts_with("s.l[1]:") && problems[1].starts_with("s.l[3]:"),
            "{problems:?}"
        );
    }

    #[test]
    fn empty_strings_are_refused() {
        let (v, problems) = read(json!({ "name": "  " }), None, |t, r| {
            t.string(r, "name", "\"pg1\"")
        });
        assert_eq!(v, None);
        assert!(problems[0].contains("is empty"), "{problems:?}");
    }
}
