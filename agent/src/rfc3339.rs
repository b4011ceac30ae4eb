//! RFC 3339 times, as operators write them for a scheduled switchover or
//! restart (`2026-12-01T02:00:00+01:00`, `...Z`, with or without a
//! fraction of a second), and as the agent writes them back (UTC).
//!
//! A few dozen lines instead of a date-time crate: only this one format
//! is read, and the offset is required (a time without one would mean
//! different instants on the operator's laptop and on the server).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a time was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not an RFC 3339 time with an offset, e.g. 2026-12-01T02:00:00+01:00 or 2026-12-01T01:00:00Z ({why})")]
pub struct TimeError {
    input: String,
    why: &'static str,
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; `t` or a space may
/// separate date and time.
pub fn parse(input: &str) -> Result<SystemTime, TimeError> {
    let fail = |why| TimeError {
        input: input.to_string(),
        why,
    };
    let s = input.trim();
    let b = s.as_bytes();
    if b.len() < 20 || !s.is_ascii() {
        return Err(fail("too short"));
    }
    let num = |from: usize, len: usize| -> Result<i64, TimeError> {
        let part = &s[from..from + len];
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(fail("a field is not a number"));
        }
        part.parse().map_err(|_| fail("a field is not a number"))
    };
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return Err(fail("expected YYYY-MM-DDTHH:MM:SS"));
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return Err(fail("expected T between date and time"));
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(fail("no such date"));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(fail("no such time of day"));
    }
    let mut rest = &s[19..];
    let mut nanos: u64 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(fail("a '.' without digits"));
        }
        for (i, c) in frac[..digits].bytes().enumerate().take(9) {
            nanos += u64::from(c - b'0') * 10u64.pow(8 - i as u32);
        }
        rest = &frac[digits..];
    }
    let offset_s: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let ob = rest.as_bytes();
            if ob.len() != 6 || !matches!(ob[0], b'+' | b'-') || ob[3] != b':' {
                return Err(fail("the offset must be Z or ±HH:MM"));
            }
            let digits = |p: &str| {
                p.bytes()
                    .all(|c| c.is_ascii_digit())
                    .then(|| p.parse::<i64>().ok())
                    .flatten()
                    .ok_or_else(|| fail("the offset must be Z or ±HH:MM"))
            };
            let (h, m) = (digits(&rest[1..3])?, digits(&rest[4..6])?);
            if h > 23 || m > 59 {
                return Err(fail("no such offset"));
            }
            let sign = if ob[0] == b'-' { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_s;
    if secs < 0 {
        return Err(fail("before 1970"));
    }
    Ok(UNIX_EPOCH + Duration::new(secs as u64, nanos as u32))
}

/// `t` in UTC, to the second: `2026-12-01T01:00:00Z`.
pub fn format(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> u64 {
        parse(s)
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn offsets_name_the_same_instant() {
        assert_eq!(secs("1970-01-01T00:00:00Z"), 0);
        assert_eq!(secs("2026-12-01T01:00:00Z"), 1_796_086_800);
        assert_eq!(secs("2026-12-01T02:00:00+01:00"), 1_796_086_800);
        assert_eq!(secs("2026-11-30T20:30:00-04:30"), 1_796_086_800);
        assert_eq!(secs("2026-12-01 01:00:00z"), 1_796_086_800);
        assert_eq!(secs("2024-02-29T00:00:00Z"), 1_709_164_800);
    }

    #[test]
    fn fractions_are_kept() {
        let t = parse("2026-12-01T01:00:00.25Z").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().subsec_millis(), 250);
    }

    #[test]
    fn formatting_round_trips() {
        for s in [
            "2026-12-01T01:00:00Z",
            "2000-02-29T23:59:59Z",
            "1970-01-01T00:00:00Z",
        ] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_input_named() {
        for bad in [
            "",
            "tomorrow",
            "2026-12-01",
            "2026-12-01T01:00:00",
            "2026-12-01T01:00:00+0100",
            "2026-13-01T01:00:00Z",
            "2026-02-30T01:00:00Z",
            "2023-02-29T01:00:00Z",
            "2026-12-01T24:00:00Z",
            "2026-12-01T01:00:00+25:00",
            "2026-12-01T01:00:00.Z",
            "2026-12-01X01:00:00Z",
            "1969-12-31T23:59:59Z",
            "２026-12-01T01:00:00Z",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
