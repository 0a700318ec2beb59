//! Entry points for fuzzing the parsers that read untrusted input: API
//! responses and configuration files. Shared by the `cargo fuzz` targets in
//! `fuzz/` and by the property-based smoke run in the test suite, so the same
//! checks run in both. Each returns normally for any input; a panic is a bug.

use crate::source::tines::wire::Page;

/// An API response body, as bytes off the network.
pub fn wire_page(data: &[u8]) {
    let body = String::from_utf8_lossy(data).into_owned();
    if let Ok(page) = Page::parse(body) {
        let keys: Vec<(i64, i64)> = page.keys().collect();
        assert_eq!(keys.len(), page.len());
        for (i, key) in keys.iter().enumerate() {
            let r = page.record(i);
            assert_eq!((r.created_at, r.id), *key);
            // The kept record must itself be JSON: it is what sinks deliver.
            assert!(serde_json::from_str::<&serde_json::value::RawValue>(r.raw).is_ok(), "raw record is not JSON");
        }
        // Every record sent is either an event or quarantined, kept as sent.
        assert_eq!(page.sent(), page.len() + page.rejected().count());
        for q in page.rejected() {
            assert!(
                serde_json::from_str::<&serde_json::value::RawValue>(q.raw).is_ok(),
                "quarantined record is not JSON"
            );
        }
    }
}

/// A configuration file's text. Variables resolve to a fixed value; files are not read.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(raw) = crate::config::RawConfig::parse(text, "fuzz", &|_| Some("fuzz-value-0123456789".into())) {
        let _ = raw.build();
    }
}

/// A Sigma rule file's text: loading reports problems, never panics.
pub fn rules(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let pack = crate::detect::rules::RulePack::from_sources([("fuzz.yml", text)]);
    for p in &pack.problems {
        assert!(!p.to_string().is_empty());
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const PAGE: &str = r#"{"audit_logs":[{"created_at":"2024-11-25T10:35:55Z","id":41274135,"inputs":{"fieldId":1,"inputs":{"options":["a"]}},"operation_name":"FormFieldUpdate","request_ip":"92.19.2.1","user_email":"j\u00f6@x.io","user_id":"5"}],"meta":{"count":1,"next_page_number":null}}"#;
    const CONFIG: &str = "[collect]\ninterval = \"5s\"\n[[tenants]]\ndomain = \"a.tines.com\"\napi_key = \"${K}\"\n[[sinks]]\ntype = \"syslog\"\naddress = \"h:514\"\n";

    const RULE: &str = include_str!("../rules/jobs_deleted.yml");

    /// Mutations of a valid input: truncations, byte flips and splices.
    fn mutated(seed: &'static str) -> impl Strategy<Value = Vec<u8>> {
        let len = seed.len();
        (0..len, 0..len, any::<u8>(), proptest::collection::vec(any::<u8>(), 0..16)).prop_map(
            move |(cut, at, b, ins)| {
                let mut v = seed.as_bytes().to_vec();
                v[at] = b;
                v.splice(at..at, ins);
                v.truncate(cut.max(1) + 16);
                v
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]
        #[test]
        fn wire_page_never_panics_on_mutated_pages(data in mutated(PAGE)) {
            wire_page(&data);
        }

        #[test]
        fn wire_page_never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            wire_page(&data);
        }

        #[test]
        fn config_never_panics_on_mutated_files(data in mutated(CONFIG)) {
            config(&data);
        }

        #[test]
        fn rules_never_panic_on_mutated_rules(data in mutated(RULE)) {
            rules(&data);
        }
    }

    #[test]
    fn seeds_are_accepted() {
        wire_page(PAGE.as_bytes());
        assert!(crate::source::tines::wire::Page::parse(PAGE.into()).is_ok());
        assert!(crate::config::RawConfig::parse(CONFIG, "t", &|_| Some("k".into())).is_ok());
    }
}
