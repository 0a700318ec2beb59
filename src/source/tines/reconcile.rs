//! Reconciliation: catching records that reached the API later than the
//! collector's overlap re-reads.
//!
//! A record can appear in the API long after its `created_at` (how long is not
//! documented). The cursor only re-reads the last `overlap` seconds, so such a
//! record would never be fetched. A reconciliation pass cuts the closed part of
//! a tenant's history into slices, asks the API for each slice's `meta.count`
//! (one `per_page=1` request), compares it with the journal's count (with the
//! tenant's filters), and reads again only the slices where the API knows more,
//! inserting what is missing. Every pass and every find goes into the journal
//! (reports cite them), a metric and a WARN line.
//!
//! A slice `[s, e)` is asked as `after = s-1, before = e`, like the collector's
//! windows, so what the API counts depends on whether its bounds are inclusive,
//! which is undocumented. The journal counts the slice and the second on each
//! side; of the four readings of the bounds, the pass takes the one that
//! agrees with the API on the most slices, and reads again every slice where
//! the API counts more than that reading predicts.

use std::time::Duration;

use super::client::{FetchError, PageQuery, TinesClient};
use super::collector::{CollectError, Filters, Sync, WindowSettings};
use crate::journal::{Journal, JournalError, ReconcileFind, ReconcilePass};
use crate::timeutil::{format_rfc3339, now_secs};

/// When and over what range `run` reconciles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileSettings {
    /// Time between passes; `None` turns periodic passes off.
    pub every: Option<Duration>,
    /// How far back each pass looks.
    pub window: Duration,
    /// Slice length: one count request per slice per pass.
    pub slice: Duration,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        ReconcileSettings {
            every: Some(Duration::from_secs(3600)),
            window: Duration::from_secs(7 * 86_400),
            slice: Duration::from_secs(3600),
        }
    }
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileOutcome {
    pub range_start: i64,
    pub range_end: i64,
    pub slices: u64,
    /// Slices read again because the API counted more than the journal holds.
    pub reread: u64,
    /// Events found missing and inserted.
    pub found: u64,
    pub finds: Vec<ReconcileFind>,
}

/// A reconciliation pass over one tenant.
pub struct Reconcile<'a> {
    pub client: &'a TinesClient,
    pub journal: &'a Journal,
    pub filters: &'a Filters,
    pub windows: &'a WindowSettings,
    pub slice_secs: i64,
}

struct Slice {
    start: i64,
    end: i64,
    api: Option<u64>,
    counts: crate::journal::SliceCounts,
}

/// The four readings of the API's bounds: (`after` inclusive, `before` inclusive).
const READINGS: [(u64, u64); 4] = [(0, 0), (1, 0), (0, 1), (1, 1)];

fn predicted(c: &crate::journal::SliceCounts, (a, b): (u64, u64)) -> u64 {
    c.inside + a * c.second_before + b * c.second_at_end
}

/// The reading of the bounds that agrees with the API's counts on the most slices.
fn likely_reading(slices: &[Slice]) -> (u64, u64) {
    let agree = |r| slices.iter().filter(|s| s.api == Some(predicted(&s.counts, r))).count();
    // The first of equals wins: ties mean no slice tells the readings apart.
    let mut best = READINGS[0];
    for r in READINGS {
        if agree(r) > agree(best) {
            best = r;
        }
    }
    best
}

/// The job name under which a slice is read again (resumed if a pass was interrupted).
fn job_name(start: i64, end: i64) -> String {
    format!("reconcile:{}..{}", format_rfc3339(start), format_rfc3339(end))
}

impl Reconcile<'_> {
    /// Reconciles the tenant's history from `since` up to what the cursor has
    /// closed (its position less the overlap, which the next sync re-reads anyway).
    /// `on_slice(done, total)` reports progress.
    pub async fn run(
        &self,
        since: i64,
        on_slice: &(dyn Fn(u64, u64) + Send + core::marker::Sync),
    ) -> Result<ReconcileOutcome, CollectError> {
        let tenant = self.client.tenant().to_string();
        let started_at = now_secs();
        let cursor = {
            let t = tenant.clone();
            self.journal.call(move |j| j.progress(&t, crate::service::CURSOR_JOB)).await?
        };
        let Some(cursor) = cursor else {
            return Err(JournalError::Task(format!(
                "nothing has been collected for tenant {tenant} yet: run `tines-audit collect` first, then reconcile"
            ))
            .into());
        };
        // History before the cursor's start was never meant to be collected.
        let range_start = since.max(cursor.range_start);
        let range_end = cursor.position - self.windows.overlap_secs;
        let mut out = ReconcileOutcome { range_start, range_end, ..Default::default() };
        if range_end <= range_start {
            return Ok(out);
        }
        let step = self.slice_secs.max(1);
        let mut slices = Vec::new();
        // Slices on multiples of their length, so passes line up and findings read as "the 14:00 hour".
        let mut s = range_start;
        while s < range_end {
            let e = ((s.div_euclid(step) + 1) * step).min(range_end);
            slices.push(Slice { start: s, end: e, api: None, counts: Default::default() });
            s = e;
        }
        let total = slices.len() as u64 * 2;
        for (k, slice) in slices.iter_mut().enumerate() {
            slice.api = self.api_count(slice.start, slice.end).await?;
            let (t, f, a, b) = (tenant.clone(), self.filters.clone(), slice.start, slice.end);
            slice.counts =
                self.journal.call(move |j| j.slice_counts(&t, a, b, &f.user_ids, &f.operation_names)).await?;
            on_slice(k as u64 + 1, total);
        }
        let reading = likely_reading(&slices);
        out.slices = slices.len() as u64;
        for (k, slice) in slices.iter().enumerate() {
            on_slice(slices.len() as u64 + k as u64 + 1, total);
            let expected = predicted(&slice.counts, reading);
            let differs = match slice.api {
                // Without a count the slice can only be checked by reading it.
                None => true,
                Some(n) => n > expected,
            };
            if !differs {
                continue;
            }
            out.reread += 1;
            if let Some(find) = self.reread(slice).await? {
                out.found += find.found;
                out.finds.push(find);
            }
        }
        let pass = ReconcilePass {
            tenant: tenant.clone(),
            range_start,
            range_end,
            slices: out.slices,
            reread: out.reread,
            found: out.found,
            started_at,
            finished_at: now_secs(),
        };
        self.journal.call(move |j| j.record_reconcile_pass(&pass)).await?;
        let m = crate::metrics::metrics();
        m.reconcile_passes.get_or_create(&crate::metrics::tenant(&tenant)).inc();
        crate::status::reconciled(&tenant, out.found);
        Ok(out)
    }

    async fn api_count(&self, start: i64, end: i64) -> Result<Option<u64>, FetchError> {
        let q = PageQuery {
            after: start - 1,
            before: end,
            page: 1,
            per_page: 1,
            user_ids: &self.filters.user_ids,
            operation_names: &self.filters.operation_names,
        };
        Ok(self.client.fetch_page(&q).await?.meta.count)
    }

    /// Reads a slice again through the collector (verified windows, quarantine,
    /// one transaction per window) as a job of its own, and says what was new.
    async fn reread(&self, slice: &Slice) -> Result<Option<ReconcileFind>, CollectError> {
        let tenant = self.client.tenant().to_string();
        let job = job_name(slice.start, slice.end);
        let (t, j, a, b, f) = (tenant.clone(), job.clone(), slice.start, slice.end, self.filters.fingerprint());
        let before_seq = self
            .journal
            .call(move |jr| {
                jr.start_progress(&t, &j, a, Some(b), &f)?;
                jr.max_seq()
            })
            .await?;
        let sync = Sync {
            client: self.client,
            journal: self.journal,
            job: &job,
            filters: self.filters,
            settings: self.windows,
        };
        sync.run(Some(slice.end), &|_| {}).await?;
        let (t, j, a, b) = (tenant.clone(), job.clone(), slice.start, slice.end);
        let (found, oldest, newest) = self
            .journal
            .call(move |jr| {
                let found = jr.stored_since(&t, a, b, before_seq)?;
                jr.reset_progress(&t, &j)?;
                Ok(found)
            })
            .await?;
        let (Some(oldest), Some(newest)) = (oldest, newest) else {
            tracing::debug!(tenant = %tenant, slice = %job, api = ?slice.api, "reconciliation read the slice again and found nothing missing");
            return Ok(None);
        };
        // Lateness by the API's clock, which dated the records.
        let found_at = self.client.clock.now();
        let find = ReconcileFind {
            tenant: tenant.clone(),
            slice_start: slice.start,
            slice_end: slice.end,
            api_count: slice.api,
            journal_count: slice.counts.inside,
            found,
            oldest,
            newest,
            max_late_secs: found_at - oldest,
            found_at,
        };
        tracing::warn!(
            tenant = %tenant,
            found,
            slice = %format!("{}..{}", format_rfc3339(slice.start), format_rfc3339(slice.end)),
            dated = %format!("{}..{}", format_rfc3339(oldest), format_rfc3339(newest)),
            late_up_to_secs = find.max_late_secs,
            "reconciliation found events the API published after the collector's overlap had passed them; they are in the journal now (a longer collect.overlap would catch such late events sooner)"
        );
        crate::metrics::metrics().reconcile_found_events.get_or_create(&crate::metrics::tenant(&tenant)).inc_by(found);
        let stored = find.clone();
        self.journal.call(move |jr| jr.record_reconcile_find(&stored)).await?;
        Ok(Some(find))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::SliceCounts;

    fn slice(api: u64, inside: u64, before: u64, at_end: u64) -> Slice {
        Slice {
            start: 0,
            end: 1,
            api: Some(api),
            counts: SliceCounts { inside, second_before: before, second_at_end: at_end },
        }
    }

    #[test]
    fn the_reading_of_the_bounds_is_the_one_most_slices_agree_with() {
        // An API with inclusive `after` and exclusive `before`: counts include the second before.
        let slices = vec![slice(12, 10, 2, 5), slice(7, 4, 3, 1), slice(9, 9, 0, 0), slice(6, 5, 0, 4)];
        assert_eq!(likely_reading(&slices), (1, 0));
        // Exclusive both ways.
        let slices = vec![slice(10, 10, 2, 5), slice(4, 4, 3, 1), slice(5, 5, 0, 4)];
        assert_eq!(likely_reading(&slices), (0, 0));
        // One slice missing two events does not outvote the rest.
        let slices = vec![slice(12, 10, 1, 0), slice(10, 9, 1, 3), slice(8, 7, 1, 2)];
        assert_eq!(likely_reading(&slices), (1, 0));
    }
}
