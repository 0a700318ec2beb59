//! Where an object goes and what it is called:
//! `<prefix>/tenant=<tenant>/dt=YYYY-MM-DD/hour=HH/<first seq>-<last seq>.ndjson.gz`,
//! partitioned by the events' `created_at` (UTC). The name comes from the
//! journal seqs of the events inside, so a retry of the same events names
//! the same object, and an object's name says which events it may hold.

use ::object_store::path::Path;

use crate::timeutil::format_rfc3339;

pub(crate) const SUFFIX: &str = ".ndjson.gz";

/// The partition of an event: its tenant and the hour (since the epoch, UTC) it was created in.
pub(crate) fn hour_of(created_at: i64) -> i64 {
    created_at.div_euclid(3600)
}

/// `<prefix>/tenant=<tenant>/dt=YYYY-MM-DD/hour=HH`; characters a store cannot take in a
/// key (`/`, `#`, `%`...) are percent-encoded in the tenant's part.
pub(crate) fn partition_dir(prefix: &Path, tenant: &str, hour: i64) -> Path {
    let ts = format_rfc3339(hour * 3600);
    let (date, time) = ts.split_once('T').unwrap_or((ts.as_str(), "00"));
    prefix
        .clone()
        .join(format!("tenant={tenant}"))
        .join(format!("dt={date}"))
        .join(format!("hour={}", time.get(..2).unwrap_or("00")))
}

/// `<first:020>-<last:020>.ndjson.gz`: sorts by seq, and names the range it may hold.
pub(crate) fn object_name(first: i64, last: i64) -> String {
    format!("{first:020}-{last:020}{SUFFIX}")
}

/// The seq range of an object name this sink writes; `None` for anything else.
pub(crate) fn parse_name(name: &str) -> Option<(i64, i64)> {
    let (first, last) = name.strip_suffix(SUFFIX)?.split_once('-')?;
    let num = |s: &str| (s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<i64>().ok())?;
    let (first, last) = (num(first)?, num(last)?);
    (first <= last).then_some((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_by_utc_hour_and_names_by_seq_range() {
        let prefix = Path::from("tines/audit");
        // 2024-03-10T23:59:59Z and one second later: two hours, two days.
        let t = 1_710_115_199;
        assert_eq!(
            partition_dir(&prefix, "acme", hour_of(t)).as_ref(),
            "tines/audit/tenant=acme/dt=2024-03-10/hour=23"
        );
        assert_eq!(
            partition_dir(&prefix, "acme", hour_of(t + 1)).as_ref(),
            "tines/audit/tenant=acme/dt=2024-03-11/hour=00"
        );
        assert_eq!(partition_dir(&Path::default(), "a/b", 0).as_ref(), "tenant=a%2Fb/dt=1970-01-01/hour=00");
        let name = object_name(7, 1234);
        assert_eq!(name, "00000000000000000007-00000000000000001234.ndjson.gz");
        assert_eq!(parse_name(&name), Some((7, 1234)));
        for other in ["state.json", "7-1234.ndjson.gz", "00000000000000000009-00000000000000000001.ndjson.gz", ""] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }
}
