//! The collector every check writes to, so that loading reports every
//! problem at once instead of stopping at the first.

use std::collections::BTreeMap;

use super::load::Problem;

/// Problems and warnings found so far, and which keys the environment set.
#[derive(Debug, Default)]
pub(super) struct Report {
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
    /// Dotted key → the environment variable that set it.
    env: BTreeMap<String, String>,
}

impl Report {
    /// Records that `var` set `key`, so messages about `key` can say so.
    pub(super) fn note_env_origin(&mut self, key: &str, var: &str) {
        self.env.insert(key.to_string(), var.to_string());
    }

    /// The environment variable that set `key`, if one did.
    pub(super) fn env_var(&self, key: &str) -> Option<&str> {
        self.env.get(key).map(String::as_str)
    }

    /// ` (set by environment variable X)` when the environment set `key`:
    /// an operator staring at a correct file needs to be told where the bad
    /// value really came from.
    pub(super) fn origin_note(&self, key: &str) -> String {
        match self.env_var(key) {
            Some(var) => format!(" (set by environment variable {var})"),
            None => String::new(),
        }
    }

    /// Records a problem that makes the configuration unusable.
    pub(super) fn error(&mut self, key: &str, message: impl Into<String>) {
        let message = message.into() + &self.origin_note(key);
        self.problems.push(Problem {
            key: key.to_string(),
            message,
        });
    }

    /// Records something that works but is probably not what was meant.
    pub(super) fn warn(&mut self, key: &str, message: impl Into<String>) {
        let message = message.into() + &self.origin_note(key);
        self.warnings.push(Problem {
            key: key.to_string(),
            message,
        });
    }

    /// True when a problem was recorded for `key` or anything inside it, so
    /// that rules combining keys stay quiet about values already reported.
    pub(super) fn failed(&self, key: &str) -> bool {
        self.problems.iter().any(|p| {
            p.key == key
                || p.key
                    .strip_prefix(key)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        })
    }

    /// True when a problem was recorded for exactly `key`.
    pub(super) fn has(&self, key: &str) -> bool {
        self.problems.iter().any(|p| p.key == key)
    }

    /// The problems and the warnings, in the order they were found.
    pub(super) fn finish(self) -> (Vec<Problem>, Vec<Problem>) {
        (self.problems, self.warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_key_set_by_the_environment_then_its_problems_name_the_variable() {
        let mut r = Report::default();
        r.note_env_origin("postgresql.port", "PGWARDEN_POSTGRESQL__PORT");
        r.error("postgresql.port", "70000 is not a port");
        r.error("postgresql.socket_dir", "too long");
        let (problems, _) = r.finish();
        assert_eq!(
            problems[0].message,
            "70000 is not a port (set by environment variable PGWARDEN_POSTGRESQL__PORT)"
        );
        assert_eq!(problems[1].message, "too long");
    }

    #[test]
    fn a_failed_member_field_counts_as_a_failure_of_the_members_list_but_not_of_its_neighbours() {
        let mut r = Report::default();
        r.error("cluster.members[1].name", "bad");
        assert!(r.failed("cluster.members"));
        assert!(r.failed("cluster.members[1]"));
        assert!(!r.failed("cluster.name"));
        assert!(!r.failed("cluster.members[10]"));
    }
}
