//! `--at`: an RFC 3339 time with an offset, checked before anything is
//! asked so that a typo is a usage error naming the flag, not a refusal
//! from the agent after the cluster was read. The grammar is the agent's
//! own ([`crate::rfc3339`]); the value is sent as given.

use super::session::ActionError;

/// `value` when it is an RFC 3339 time with an offset; else a usage error
/// naming `flag`.
pub fn check_at(flag: &str, value: &str) -> Result<String, ActionError> {
    let value = value.trim();
    crate::rfc3339::parse(value).map_err(|e| ActionError::Usage(format!("{flag} {e}")))?;
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_an_offset_pass_as_given() {
        for ok in [
            "2026-12-01T02:00:00+01:00",
            "2026-12-01T01:00:00Z",
            "2026-12-01t01:00:00z",
            "2026-12-01 01:00:00.123456-05:30",
            "2028-02-29T00:00:00Z",
        ] {
            assert_eq!(check_at("--at", ok).unwrap(), ok, "{ok}");
        }
        assert_eq!(
            check_at("--at", " 2026-12-01T01:00:00Z\n").unwrap(),
            "2026-12-01T01:00:00Z"
        );
    }

    #[test]
    fn anything_else_is_a_usage_error_naming_the_flag_and_the_problem() {
        for (bad, why) in [
            ("2026-12-01T02:00:00", "too short"),
            ("2026-12-01T02:00:00+0100", "offset must be Z or ±HH:MM"),
            ("2026-12-01T02:00:00 CET", "offset must be Z or ±HH:MM"),
            ("2027-02-29T00:00:00Z", "no such date"),
            ("2026-13-01T00:00:00Z", "no such date"),
            ("2026-12-01T24:00:00Z", "no such time of day"),
            ("2026-12-01T02:00:00.Z", "'.' without digits"),
            ("2026-12-01T02:00:00+24:00", "no such offset"),
            ("tomorrow at two o'clock", "expected YYYY-MM-DDTHH:MM:SS"),
            ("2026-12-01X02:00:00+01:00", "expected T"),
            ("2026-1a-01T02:00:00+01:00", "not a number"),
        ] {
            let e = check_at("--at", bad).unwrap_err();
            assert_eq!(e.exit_code(), super::super::session::EXIT_USAGE);
            let text = e.to_string();
            assert!(
                text.starts_with("--at ") && text.contains(why) && text.contains(bad),
                "{bad}: {text}"
            );
        }
    }
}
