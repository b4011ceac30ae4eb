//! `--at`: an RFC 3339 time with an offset, checked before anything is
//! asked so that a typo is a usage error naming the flag, not a refusal
//! from the agent after the cluster was read.
//!
//! Only the form is checked (the agent reads the instant): the grammar
//! the agent accepts, `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, with
//! `T`, `t` or a space between date and time. The offset is required: a
//! time without one means different instants on the operator's laptop
//! and on the server.

use super::session::ActionError;

/// `value` when it is an RFC 3339 time with an offset; else a usage error
/// naming `flag`.
pub fn check_at(flag: &str, value: &str) -> Result<String, ActionError> {
    let value = value.trim();
    shape(value).map_err(|why| {
        ActionError::Usage(format!(
            "{flag} {value:?} is not an RFC 3339 time with an offset ({why}); \
             e.g. 2026-12-01T02:00:00+01:00 or 2026-12-01T01:00:00Z"
        ))
    })?;
    Ok(value.to_string())
}

/// Why `s` is not `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
fn shape(s: &str) -> Result<(), &'static str> {
    let b = s.as_bytes();
    if !s.is_ascii() || b.len() < 20 {
        return Err("too short");
    }
    let num = |from: usize, len: usize| -> Result<u32, &'static str> {
        let part = &s[from..from + len];
        match part.bytes().all(|c| c.is_ascii_digit()) {
            true => part.parse().map_err(|_| "a field is not a number"),
            false => Err("a field is not a number"),
        }
    };
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return Err("expected YYYY-MM-DDTHH:MM:SS");
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return Err("expected T between date and time");
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("no such date");
    }
    if num(11, 2)? > 23 || num(14, 2)? > 59 || num(17, 2)? > 60 {
        return Err("no such time of day");
    }
    let mut rest = &s[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err("a '.' without digits");
        }
        rest = &fraction[digits..];
    }
    if matches!(rest, "Z" | "z") {
        return Ok(());
    }
    let o = rest.as_bytes();
    if o.len() != 6 || !matches!(o[0], b'+' | b'-') || o[3] != b':' {
        return Err("the offset must be Z or ±HH:MM");
    }
    let offset = |from: usize| {
        let part = &rest[from..from + 2];
        match part.bytes().all(|c| c.is_ascii_digit()) {
            true => part
                .parse::<u32>()
                .map_err(|_| "the offset must be Z or ±HH:MM"),
            false => Err("the offset must be Z or ±HH:MM"),
        }
    };
    if offset(1)? > 23 || offset(4)? > 59 {
        return Err("no such offset");
    }
    Ok(())
}

fn days_in_month(year: u32, month: u32) -> u32 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
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
                text.starts_with("--at ") && text.contains(why),
                "{bad}: {text}"
            );
        }
    }
}
