//! Time as the Tines API speaks it: whole seconds since the Unix epoch, written
//! as RFC 3339 `YYYY-MM-DDTHH:MM:SSZ`. Parsing that fixed form is on the hot
//! path of collection (one per record), so it is done by hand; anything else
//! falls back to the `time` crate. Both refuse dates that do not exist
//! (`2026-02-30`) rather than rolling them over.
//!
//! Times and durations a user gives are checked here too: a duration longer
//! than [`MAX_DURATION_SECS`], an age reaching before 1970 and a time in the
//! future are refused, so that no such value can become a stored cursor.

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

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
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
        if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(i64::from(y), mo) || h > 23 || mi > 59 {
            return None;
        }
        // A leap second (`:60`) is valid only at the end of a day; the `time` crate knows the rule.
        if se > 59 {
            return OffsetDateTime::parse(s, &Rfc3339).ok().map(|t| t.unix_timestamp());
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

/// The longest duration accepted anywhere (100 years): longer ones are typing
/// mistakes, and would overflow the arithmetic on unix seconds.
pub const MAX_DURATION_SECS: u64 = 36_500 * 86_400;

/// Why a duration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("{0:?} is not a duration (use 90s, 15m, 12h, 30d or 2w)")]
    Invalid(String),
    #[error("{0:?} is longer than 100 years (36500d): no setting or age needs that much")]
    TooLong(String),
}

/// Parses a duration such as `90s`, `15m`, `12h`, `30d`, `2w` (a bare number is seconds),
/// saying why one is refused.
pub fn try_parse_duration(s: &str) -> Result<Duration, DurationError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let invalid = || DurationError::Invalid(s.to_string());
    let too_long = || DurationError::TooLong(s.to_string());
    if num.is_empty() {
        return Err(invalid());
    }
    // Only digits remain, so a failed parse is an overflow of u64.
    let n: u64 = num.parse().map_err(|_| too_long())?;
    let mult = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1,
        "ms" => {
            let d = Duration::from_millis(n);
            return if d.as_secs() > MAX_DURATION_SECS { Err(too_long()) } else { Ok(d) };
        }
        "m" | "min" | "mins" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 604_800,
        _ => return Err(invalid()),
    };
    match n.checked_mul(mult) {
        Some(secs) if secs <= MAX_DURATION_SECS => Ok(Duration::from_secs(secs)),
        _ => Err(too_long()),
    }
}

/// Parses a duration such as `90s`, `15m`, `12h`, `30d`, `2w` (a bare number is seconds);
/// `None` for anything else, including durations longer than [`MAX_DURATION_SECS`].
pub fn parse_duration(s: &str) -> Option<Duration> {
    try_parse_duration(s).ok()
}

/// How far ahead of this machine's clock a time may be (clocks disagree a little).
pub const FUTURE_MARGIN_SECS: i64 = 60;

/// Why a point in time given by a user was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimeArgError {
    #[error(
        "invalid time {0:?}: give RFC 3339 (2024-01-01T00:00:00Z, with a Z or an offset such as +05:00; the date must exist) or a relative age such as 30d, 12h, 90m"
    )]
    Invalid(String),
    #[error("time {0:?} is in the future (this machine's clock says {1}): give a time in the past")]
    Future(String, String),
    #[error("time {0:?} is before 1970: give a time after 1970-01-01T00:00:00Z (Tines keeps audit logs for two years)")]
    BeforeEpoch(String),
    #[error("{0}")]
    Duration(#[from] DurationError),
}

/// Whether text is meant as an age (`30d`, `12 h`) rather than a date: it has a unit and no date punctuation.
pub fn looks_like_age(t: &str) -> bool {
    t.chars().any(|c| c.is_ascii_alphabetic()) && !t.contains(['-', ':', '+'])
}

/// An age before `now` (`30d`), refused when it reaches before 1970.
pub fn parse_age(s: &str, now: i64) -> Result<Duration, TimeArgError> {
    let d = try_parse_duration(s).map_err(|e| match e {
        DurationError::Invalid(_) => TimeArgError::Invalid(s.to_string()),
        too_long => TimeArgError::Duration(too_long),
    })?;
    // MAX_DURATION_SECS keeps the cast lossless.
    if (d.as_secs() as i64) > now {
        return Err(TimeArgError::BeforeEpoch(s.trim().to_string()));
    }
    Ok(d)
}

/// Parses a point in time given as RFC 3339 or as an age relative to `now` (`30d`),
/// refusing impossible dates, times before 1970 and times in the future of `now`
/// (beyond [`FUTURE_MARGIN_SECS`]).
pub fn parse_time_arg(s: &str, now: i64) -> Result<i64, TimeArgError> {
    let t = s.trim();
    let secs = if t.eq_ignore_ascii_case("now") {
        now
    } else if looks_like_age(t) {
        now - parse_age(t, now)?.as_secs() as i64
    } else {
        parse_rfc3339(t).ok_or_else(|| TimeArgError::Invalid(s.to_string()))?
    };
    check_point(s, secs, now)
}

/// Refuses a point in time before 1970 or in the future of `now`.
pub fn check_point(s: &str, secs: i64, now: i64) -> Result<i64, TimeArgError> {
    if secs < 0 {
        return Err(TimeArgError::BeforeEpoch(s.trim().to_string()));
    }
    if secs > now.saturating_add(FUTURE_MARGIN_SECS) {
        return Err(TimeArgError::Future(s.trim().to_string(), format_rfc3339(now)));
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
        assert!(matches!(parse_time_arg("2099-01-01T00:00:00Z", now), Err(TimeArgError::Future(..))));
        assert!(matches!(parse_time_arg("30x", now), Err(TimeArgError::Invalid(_))));
    }

    #[test]
    fn february_30th_is_refused_instead_of_read_as_march_2nd() {
        assert_eq!(parse_rfc3339("2026-02-30T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2026-02-29T00:00:00Z"), None, "2026 is not a leap year");
        assert_eq!(parse_rfc3339("2026-04-31T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2026-02-30T00:00:00+01:00"), None, "the slow path is strict too");
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(parse_rfc3339("1900-02-29T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2026-01-31T12:30:60Z"), None, "a leap second only ends a day");
        let now = 1_800_000_000;
        assert_eq!(
            parse_time_arg("2026-02-30T00:00:00Z", now),
            Err(TimeArgError::Invalid("2026-02-30T00:00:00Z".into()))
        );
        assert!(parse_time_arg("2026-02-30T00:00:00Z", now).unwrap_err().to_string().contains("the date must exist"));
    }

    #[test]
    fn since_of_ten_quintillion_seconds_is_refused_instead_of_a_cursor_in_year_267666666212() {
        let now = 1_800_000_000;
        let err = parse_time_arg("10000000000000000000s", now).unwrap_err();
        assert!(matches!(err, TimeArgError::Duration(DurationError::TooLong(_))), "{err:?}");
        assert!(err.to_string().contains("longer than 100 years"), "{err}");
        // Past u64 too, and as a bare duration anywhere.
        assert!(parse_time_arg("99999999999999999999999s", now).is_err());
        assert_eq!(
            try_parse_duration("10000000000000000000s"),
            Err(DurationError::TooLong("10000000000000000000s".into()))
        );
        assert_eq!(parse_duration("10000000000000000000s"), None);
        assert_eq!(parse_duration("36501d"), None);
        assert_eq!(parse_duration("36500d"), Some(Duration::from_secs(MAX_DURATION_SECS)));
    }

    #[test]
    fn since_reaching_before_1970_is_refused_instead_of_failing_every_run() {
        let now = 1_800_000_000;
        let err = parse_time_arg("9999999999999d", now).unwrap_err();
        assert!(err.to_string().contains("longer than 100 years"), "{err}");
        let err = parse_time_arg("30000d", now).unwrap_err();
        assert_eq!(err, TimeArgError::BeforeEpoch("30000d".into()));
        assert!(err.to_string().contains("before 1970"), "{err}");
        assert!(matches!(parse_time_arg("1969-12-31T23:59:59Z", now), Err(TimeArgError::BeforeEpoch(_))));
        assert_eq!(parse_age("30000d", now), Err(TimeArgError::BeforeEpoch("30000d".into())));
        assert_eq!(parse_age("30 d", now), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_time_arg("1970-01-01T00:00:00Z", now), Ok(0));
    }

    #[test]
    fn times_in_the_future_of_the_local_clock_are_refused_beyond_the_margin() {
        let now = 1_800_000_000;
        assert_eq!(parse_time_arg(&format_rfc3339(now + FUTURE_MARGIN_SECS), now), Ok(now + FUTURE_MARGIN_SECS));
        let err = parse_time_arg(&format_rfc3339(now + FUTURE_MARGIN_SECS + 1), now).unwrap_err();
        assert!(matches!(err, TimeArgError::Future(..)), "{err:?}");
        assert!(err.to_string().contains(&format_rfc3339(now)), "the message shows the local clock: {err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2w"), Some(Duration::from_secs(1_209_600)));
        assert_eq!(parse_duration("fast"), None);
    }
}
