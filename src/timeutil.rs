//! Time as the Tines API speaks it: whole seconds since the Unix epoch, written
//! as RFC 3339 `YYYY-MM-DDTHH:MM:SSZ`. Parsing that fixed form is on the hot
//! path of collection (one per record), so it is done by hand; anything else
//! falls back to the `time` crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// Parses an RFC 3339 timestamp to whole seconds (fractions are truncated).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    // Fast path: exactly `YYYY-MM-DDTHH:MM:SSZ`, the form Tines sends.
    if b.len() == 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':' && b[19] == b'Z'
    {
        let (y, mo, d) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
        let (h, mi, se) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
            return None;
        }
        return Some(days_from_civil(i64::from(y), mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + se));
    }
    OffsetDateTime::parse(s, &Rfc3339).ok().map(|t| t.unix_timestamp())
}

/// Formats whole seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(secs: i64) -> String {
    let mut out = String::with_capacity(20);
    write_rfc3339(&mut out, secs);
    out
}

/// Appends `YYYY-MM-DDTHH:MM:SSZ` to `out` without allocating.
pub fn write_rfc3339(out: &mut String, secs: i64) {
    use std::fmt::Write;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let _ = write!(out, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60);
}

/// Parses a duration such as `90s`, `15m`, `12h`, `30d`, `2w` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1,
        "ms" => return Some(Duration::from_millis(n)),
        "m" | "min" | "mins" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 604_800,
        _ => return None,
    };
    n.checked_mul(mult).map(Duration::from_secs)
}

/// Why a point in time given by a user was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimeArgError {
    #[error(
        "invalid time {0:?}: give RFC 3339 (2024-01-01T00:00:00Z, with a Z or an offset such as +05:00) or a relative age such as 30d, 12h, 90m"
    )]
    Invalid(String),
    #[error("time {0:?} is in the future: a backfill can only start in the past")]
    Future(String),
}

/// Parses a point in time given as RFC 3339 or as an age relative to `now` (`30d`).
pub fn parse_time_arg(s: &str, now: i64) -> Result<i64, TimeArgError> {
    let t = s.trim();
    let secs = if let Some(d) = parse_duration(t).filter(|_| t.chars().any(|c| c.is_ascii_alphabetic())) {
        now - d.as_secs() as i64
    } else if t.eq_ignore_ascii_case("now") {
        now
    } else {
        parse_rfc3339(t).ok_or_else(|| TimeArgError::Invalid(s.to_string()))?
    };
    if secs > now + 60 {
        return Err(TimeArgError::Future(s.to_string()));
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_known_instants() {
        for (s, v) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2022-10-04T19:03:18Z", 1_664_910_198),
            ("2000-02-29T23:59:59Z", 951_868_799),
            ("2024-12-31T00:00:00Z", 1_735_603_200),
        ] {
            assert_eq!(parse_rfc3339(s), Some(v), "{s}");
            assert_eq!(format_rfc3339(v), s);
        }
    }

    #[test]
    fn slow_path_accepts_offsets_and_fractions() {
        assert_eq!(parse_rfc3339("2022-10-04T21:03:18+02:00"), Some(1_664_910_198));
        assert_eq!(parse_rfc3339("2022-10-04T19:03:18.750Z"), Some(1_664_910_198));
        assert_eq!(parse_rfc3339("2022-13-04T19:03:18Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn time_args_relative_absolute_and_errors() {
        let now = 1_700_000_000;
        assert_eq!(parse_time_arg("30d", now), Ok(now - 30 * 86_400));
        assert_eq!(parse_time_arg("90m", now), Ok(now - 5400));
        assert_eq!(parse_time_arg("2022-10-04T19:03:18Z", now), Ok(1_664_910_198));
        assert!(matches!(parse_time_arg("2024-01-01", now), Err(TimeArgError::Invalid(_))));
        assert!(matches!(parse_time_arg("2099-01-01T00:00:00Z", now), Err(TimeArgError::Future(_))));
        assert!(matches!(parse_time_arg("30x", now), Err(TimeArgError::Invalid(_))));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2w"), Some(Duration::from_secs(1_209_600)));
        assert_eq!(parse_duration("fast"), None);
    }
}
