//! Property test: whatever the history's shape and the collector's window,
//! page and concurrency settings, and whichever way the API's bounds behave,
//! one sync after the history has settled leaves every id in the journal once.

mod common;

use std::time::Duration;

use proptest::prelude::*;
use tines_audit::config::{RawConfig, Since, TenantConfig};
use tines_audit::journal::Journal;
use tines_audit::mock::{Burst, DEMO_KEY, MockConfig};
use tines_audit::secret::Secret;
use tines_audit::service;
use tines_audit::source::tines::collector::Filters;
use tines_audit::source::tines::endpoint::Endpoint;

#[derive(Debug, Clone)]
struct Case {
    history: usize,
    span_secs: u64,
    burst: Option<(usize, u64)>,
    per_page: u32,
    window_events: u64,
    concurrency: usize,
    after_inclusive: bool,
    before_inclusive: bool,
    seed: u64,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        0usize..4_000,
        60u64..(40 * 86_400),
        proptest::option::of((1usize..1_500, 0u64..50)),
        20u32..=500,
        1u64..8,
        1usize..6,
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(history, span_secs, burst, per_page, mult, concurrency, ai, bi, seed)| Case {
            history,
            span_secs,
            burst,
            per_page,
            window_events: u64::from(per_page) * mult,
            concurrency,
            after_inclusive: ai,
            before_inclusive: bi,
            seed,
        })
}

fn run_case(c: &Case) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        // A history that ended two seconds ago, so one sync with a 1 s settle delay sees all of it.
        let anchor = Some(tines_audit::timeutil::now_secs() - 2);
        let mock = common::start_mock(MockConfig {
            history: c.history,
            history_span: Duration::from_secs(c.span_secs),
            anchor,
            burst: c.burst.map(|(count, secs_ago)| Burst { count, secs_ago: secs_ago.min(c.span_secs - 1) }),
            after_inclusive: c.after_inclusive,
            before_inclusive: c.before_inclusive,
            seed: c.seed,
            rate_limit_per_minute: 0,
            ..Default::default()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let mut settings = RawConfig::default().build().unwrap();
        settings.client.requests_per_minute = 0;
        settings.windows.settle_secs = 1;
        settings.windows.per_page = c.per_page;
        settings.windows.window_events = c.window_events;
        settings.windows.buffered_events = c.window_events * 2;
        settings.windows.concurrency = c.concurrency;
        settings.tenants.push(TenantConfig {
            name: common::TENANT.into(),
            endpoint: Endpoint::parse(&mock.base_url()).unwrap(),
            api_key: Secret::new(DEMO_KEY),
            since: Since::Ago(Duration::from_secs(c.span_secs + 86_400)),
            filters: Filters::default(),
        });
        let journal = Journal::open(dir.path()).unwrap();
        let tenant = service::Tenant::new(settings.tenants[0].clone(), &settings).unwrap();
        service::sync_tenant(&journal, &tenant, &settings, None).await.unwrap();
        let got = journal.ids(common::TENANT).unwrap();
        let want = common::mock_ids(&mock);
        mock.shutdown().await;
        prop_assert_eq!(got.len(), want.len(), "{:?}", c);
        prop_assert_eq!(got, want);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn any_history_any_windows_every_id_exactly_once(c in cases()) {
        run_case(&c)?;
    }
}
