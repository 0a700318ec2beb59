//! The quick look: between settled syncs, one request for the newest page of a tenant,
//! so that new events reach the journal, and from it the sinks and detection, seconds
//! after the API shows them instead of after the settle delay and the interval.
//!
//! It never moves the cursor. The settled, windowed read stays the only authority for
//! it: it reads every window again in full and proves it complete, catching whatever a
//! quick look missed (more new events than one page holds, a late arrival older than
//! the look-back). What a quick look stored is found held then, since the journal keeps
//! each `(tenant, id)` once, so nothing is stored twice and nothing is lost.
//!
//! Its cost is fixed: one request per look, through the same per-key pacer as every
//! other request, whatever the tenant's volume (a look that finds more than a page
//! leaves the rest to the settled read).

use super::client::{PageQuery, TinesClient};
use super::collector::{CollectError, Filters, ordered_records};
use crate::journal::Journal;

/// One tenant's quick looks: where the last one reached.
#[derive(Debug, Default)]
pub struct QuickLook {
    /// The newest `created_at` any look has seen.
    newest: Option<i64>,
}

/// What one look did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookOutcome {
    pub fetched: u64,
    pub inserted: u64,
}

impl QuickLook {
    /// Reads the newest page of the time from `cursor` (the settled read's position)
    /// or, once a look has seen records, from `lookback` seconds before the newest
    /// of them (records are dated when made, and some become visible a little later),
    /// to the API's now, and appends what the journal lacks.
    pub async fn look(
        &mut self,
        client: &TinesClient,
        journal: &Journal,
        filters: &Filters,
        cursor: i64,
        lookback: i64,
        per_page: u32,
    ) -> Result<LookOutcome, CollectError> {
        let api_now = client.api_now().await?;
        let from = self.newest.map_or(cursor, |n| (n - lookback).max(cursor));
        // `after = from - 1` and `before` two seconds past the API's now (which our estimate
        // may trail by a second) cover `[from, now]` however the API reads its bounds.
        let q = PageQuery {
            after: from - 1,
            before: api_now + 2,
            page: 1,
            per_page,
            user_ids: &filters.user_ids,
            operation_names: &filters.operation_names,
        };
        let page = client.fetch_page(&q).await?;
        let fetched = page.len() as u64;
        if let Some(newest) = page.keys().map(|(t, _)| t).max() {
            self.newest = Some(self.newest.map_or(newest, |n| n.max(newest)));
        }
        if page.is_empty() {
            return Ok(LookOutcome { fetched, inserted: 0 });
        }
        let tenant = client.tenant().to_string();
        // Records that cannot be events are left to the settled read, which quarantines them.
        let inserted =
            journal.call(move |j| j.append_events(&tenant, ordered_records(std::slice::from_ref(&page)))).await?;
        Ok(LookOutcome { fetched, inserted })
    }
}
