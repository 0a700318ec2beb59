//! Incremental collection of one tenant into the journal.
//!
//! A job (the tenant's cursor, or a backfill) has a position: every record
//! created before it is in the journal. A sync reads the range from a little
//! before the position (the overlap, for late arrivals) to a little before
//! now (the settle delay, so pages cannot shift while being read) as fixed
//! windows `after=start-1s&before=end`, which covers `[start, end)` whether
//! the API's bounds are inclusive or exclusive; `(tenant, id)` uniqueness in
//! the journal absorbs the extra records either reading brings.
//!
//! `meta.count` of a window's first page sizes it: a large window is split
//! in equal time slices, and a window is complete only when the ids read
//! across its pages number exactly what every page said `count` was (else it
//! is read again). Several windows are read at once, but they are committed
//! strictly in time order, each with the job's new position in the same
//! transaction, so the position only ever moves over a complete, contiguous
//! prefix of time and a crash at any moment resumes without loss or doubles.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::client::{FetchError, PageQuery, TinesClient};
use super::wire::Page;
use crate::journal::{Journal, JournalError, WindowCommit};

/// How windows are cut and read.
#[derive(Debug, Clone)]
pub struct WindowSettings {
    pub settle_secs: i64,
    pub overlap_secs: i64,
    pub per_page: u32,
    /// Windows holding more records than this are split.
    pub window_events: u64,
    /// Page requests in flight at once for one tenant.
    pub concurrency: usize,
    /// Records held in memory awaiting commit (bounds memory, whatever the history).
    pub buffered_events: u64,
    /// Times a window that changed while being read is read again before giving up.
    pub max_rereads: u32,
}

impl Default for WindowSettings {
    fn default() -> Self {
        WindowSettings {
            settle_secs: 10,
            overlap_secs: 60,
            per_page: 500,
            window_events: 25_000,
            concurrency: 4,
            buffered_events: 50_000,
            max_rereads: 3,
        }
    }
}

/// Filters passed through to the API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub user_ids: Vec<u64>,
    pub operation_names: Vec<String>,
}

impl Filters {
    /// A stable description stored with a job, to notice filter changes.
    pub fn fingerprint(&self) -> String {
        let mut ids = self.user_ids.clone();
        ids.sort_unstable();
        let mut ops = self.operation_names.clone();
        ops.sort();
        if ids.is_empty() && ops.is_empty() {
            return String::new();
        }
        format!(
            "user_id={};operation_name={}",
            ids.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
            ops.join(",")
        )
    }
}

/// Why a sync stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(
        "tenant {tenant}: the window {start}..{end} changed every time it was read ({attempts} reads); will try again next sync"
    )]
    Unstable { tenant: String, start: String, end: String, attempts: u32 },
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    pub from: i64,
    pub to: i64,
    pub fetched: u64,
    pub inserted: u64,
    pub windows: u64,
    pub pages: u64,
}

/// Live numbers for a progress display.
#[derive(Debug, Clone, Default)]
pub struct SyncProgress {
    /// Records in the whole range, once the first probe has told.
    pub total: Option<u64>,
    pub fetched: u64,
    pub inserted: u64,
    pub pages: u64,
    pub position: i64,
}

enum State {
    Unprobed,
    Probing,
    /// `wanted` pages are to be read (all of them when `count` is known;
    /// one more at a time, following `next_page_number`, when it is not).
    Paging {
        count: Option<u64>,
        wanted: u64,
        next: u64,
        pages: Vec<Option<Page>>,
        received: u64,
        chained: bool,
    },
    Complete(Vec<Page>),
}

struct Window {
    id: u64,
    generation: u32,
    start: i64,
    end: i64,
    reads: u32,
    state: State,
}

impl Window {
    fn buffered(&self, per_page: u32) -> u64 {
        match &self.state {
            State::Unprobed => 0,
            State::Probing => u64::from(per_page),
            State::Paging { count, .. } => count.unwrap_or(u64::from(per_page)),
            State::Complete(pages) => pages.iter().map(|p| p.len() as u64).sum(),
        }
    }
}

struct Response {
    window: u64,
    generation: u32,
    page: u64,
    result: Result<Page, FetchError>,
}

/// Reads one job of a tenant from its stored position up to `end` (exclusive).
pub struct Sync<'a> {
    pub client: &'a TinesClient,
    pub journal: &'a Journal,
    pub job: &'a str,
    pub filters: &'a Filters,
    pub settings: &'a WindowSettings,
}

impl Sync<'_> {
    pub async fn run(
        &self,
        end: i64,
        on_progress: &(dyn Fn(&SyncProgress) + Send + core::marker::Sync),
    ) -> Result<SyncOutcome, CollectError> {
        let tenant = self.client.tenant().to_string();
        let job = self.job.to_string();
        let stored = {
            let (t, j) = (tenant.clone(), job.clone());
            self.journal.call(move |jr| jr.progress(&t, &j)).await?
        };
        let stored = stored.ok_or_else(|| {
            JournalError::Task(format!("no progress for {tenant}/{job}: start the job before syncing it"))
        })?;
        let mut position = stored.position;
        let mut outcome = SyncOutcome { from: position, to: position, ..Default::default() };
        let mut progress = SyncProgress { position, ..Default::default() };
        let start = (position - self.settings.overlap_secs).max(stored.range_start);
        // Even when the position cannot move (a sync right after the last one,
        // or a new cursor starting now), the overlap is re-read: that catches
        // late arrivals, and proves the key still works.
        if end <= start {
            // Nothing to read yet (a cursor that starts now): one small request
            // still proves the tenant, the key and its permission.
            let q =
                PageQuery { after: end - 1, before: end, page: 1, per_page: 1, user_ids: &[], operation_names: &[] };
            self.client.fetch_page(&q).await?;
            outcome.pages = 1;
            return Ok(outcome);
        }
        let filters = Arc::new(self.filters.clone());
        let mut next_id = 1u64;
        let mut windows: VecDeque<Window> =
            VecDeque::from([Window { id: 0, generation: 0, start, end, reads: 0, state: State::Unprobed }]);
        let mut first_probe = true;
        let mut inflight: JoinSet<Response> = JoinSet::new();

        loop {
            // Commit every complete window at the front, oldest first.
            while matches!(windows.front().map(|w| &w.state), Some(State::Complete(_))) {
                let w = windows.pop_front().expect("front exists");
                let State::Complete(pages) = w.state else { unreachable!("checked above") };
                let to = w.end.max(position);
                let fetched: u64 = pages.iter().map(|p| p.len() as u64).sum();
                let (t, j, from) = (tenant.clone(), job.clone(), position);
                let inserted = self
                    .journal
                    .call(move |jr| {
                        let commit = WindowCommit { tenant: &t, job: &j, from, to, fetched };
                        jr.commit_window(&commit, ordered_records(&pages))
                    })
                    .await?;
                position = to;
                outcome.windows += 1;
                outcome.inserted += inserted;
                outcome.to = position;
                progress.inserted += inserted;
                progress.position = position;
                on_progress(&progress);
            }
            if windows.is_empty() {
                break;
            }
            // Keep the pipe full, within the memory budget.
            while inflight.len() < self.settings.concurrency.max(1) {
                let Some((wid, generation, page, after, before)) = self.next_request(&mut windows) else { break };
                let client = self.client.clone();
                let filters = filters.clone();
                let per_page = self.settings.per_page;
                inflight.spawn(async move {
                    let q = PageQuery {
                        after: after - 1,
                        before,
                        page,
                        per_page,
                        user_ids: &filters.user_ids,
                        operation_names: &filters.operation_names,
                    };
                    let result = client.fetch_page(&q).await;
                    Response { window: wid, generation, page, result }
                });
            }
            let Some(joined) = inflight.join_next().await else {
                return Err(JournalError::Task(
                    "collector stalled: no request in flight for an incomplete window".into(),
                )
                .into());
            };
            let resp = joined.map_err(|e| JournalError::Task(format!("page request task failed: {e}")))?;
            let page = match resp.result {
                Ok(p) => p,
                Err(e) => {
                    inflight.abort_all();
                    return Err(e.into());
                }
            };
            outcome.pages += 1;
            outcome.fetched += page.len() as u64;
            progress.pages += 1;
            progress.fetched += page.len() as u64;
            if first_probe {
                first_probe = false;
                progress.total = page.meta.count;
            }
            on_progress(&progress);
            let Some(idx) = windows.iter().position(|w| w.id == resp.window && w.generation == resp.generation) else {
                continue; // a response for a window since split or re-read
            };
            self.accept(&mut windows, idx, resp.page, page, &mut next_id, &tenant)?;
        }
        Ok(outcome)
    }

    /// The next page worth requesting, oldest window first.
    fn next_request(&self, windows: &mut VecDeque<Window>) -> Option<(u64, u32, u64, i64, i64)> {
        let mut buffered = 0u64;
        for (i, w) in windows.iter_mut().enumerate() {
            if i > 0 && buffered >= self.settings.buffered_events {
                return None;
            }
            buffered += w.buffered(self.settings.per_page);
            match &mut w.state {
                State::Unprobed => {
                    w.state = State::Probing;
                    return Some((w.id, w.generation, 1, w.start, w.end));
                }
                State::Paging { wanted, next, .. } if *next <= *wanted => {
                    *next += 1;
                    return Some((w.id, w.generation, *next - 1, w.start, w.end));
                }
                _ => {}
            }
        }
        None
    }

    fn accept(
        &self,
        windows: &mut VecDeque<Window>,
        idx: usize,
        page_no: u64,
        page: Page,
        next_id: &mut u64,
        tenant: &str,
    ) -> Result<(), CollectError> {
        let per_page = u64::from(self.settings.per_page);
        let w = &mut windows[idx];
        if matches!(w.state, State::Probing) {
            let count = page.meta.count;
            let span = w.end - w.start;
            if let Some(c) = count
                && c > self.settings.window_events
                && span > 1
            {
                let slices = split_window(w.start, w.end, c, self.settings.window_events);
                windows.remove(idx);
                for (k, (start, end)) in slices.into_iter().enumerate() {
                    let id = *next_id;
                    *next_id += 1;
                    windows.insert(idx + k, Window { id, generation: 0, start, end, reads: 0, state: State::Unprobed });
                }
                return Ok(());
            }
            let (wanted, chained) = match count {
                Some(c) => (c.div_ceil(per_page).max(1), false),
                None => (1, true),
            };
            w.state = State::Paging { count, wanted, next: 2, pages: Vec::new(), received: 0, chained };
        }
        let State::Paging { count, wanted, pages, received, chained, .. } = &mut w.state else {
            return Ok(());
        };
        let slot = (page_no - 1) as usize;
        if pages.len() <= slot {
            pages.resize_with(slot + 1, || None);
        }
        let consistent = page.meta.count == *count;
        let more = page.meta.next_page_number.is_some_and(|n| n > page_no) && page.len() as u64 >= per_page;
        pages[slot] = Some(page);
        *received += 1;
        if *chained {
            // No `meta.count`: follow the pages one by one while the API says there are more.
            if more {
                *wanted = page_no + 1;
                return Ok(());
            }
            let all: Vec<Page> = std::mem::take(pages).into_iter().flatten().collect();
            w.state = State::Complete(all);
            return Ok(());
        }
        if !consistent {
            return self.reread(w, tenant);
        }
        if *received < *wanted {
            return Ok(());
        }
        let all: Vec<Page> = std::mem::take(pages).into_iter().flatten().collect();
        let mut ids: Vec<i64> = all.iter().flat_map(|p| p.keys().map(|(_, id)| id)).collect();
        ids.sort_unstable();
        ids.dedup();
        if Some(ids.len() as u64) != *count {
            tracing::debug!(tenant, expected = ?count, got = ids.len(), "window read incompletely; reading it again");
            return self.reread(w, tenant);
        }
        w.state = State::Complete(all);
        Ok(())
    }

    fn reread(&self, w: &mut Window, tenant: &str) -> Result<(), CollectError> {
        w.reads += 1;
        if w.reads > self.settings.max_rereads {
            return Err(CollectError::Unstable {
                tenant: tenant.to_string(),
                start: crate::timeutil::format_rfc3339(w.start),
                end: crate::timeutil::format_rfc3339(w.end),
                attempts: w.reads,
            });
        }
        w.generation += 1;
        w.state = State::Unprobed;
        Ok(())
    }
}

/// Cuts `[start, end)` holding `count` records into equal time slices that
/// should each hold about three quarters of `window_events` (so that a slice
/// a little denser than average is not split again), never below one second.
/// The slices cover the range exactly: contiguous, in order, without overlap.
pub fn split_window(start: i64, end: i64, count: u64, window_events: u64) -> Vec<(i64, i64)> {
    let span = end - start;
    if span <= 1 {
        return vec![(start, end)];
    }
    let target = (window_events * 3 / 4).max(1);
    let parts = count.div_ceil(target).clamp(1, span as u64) as i64;
    (0..parts).map(|k| (start + span * k / parts, start + span * (k + 1) / parts)).collect()
}

/// A window's records in time order (then id), each id once.
fn ordered_records(pages: &[Page]) -> impl Iterator<Item = crate::journal::Record<'_>> {
    let mut order: Vec<(i64, i64, u32, u32)> = pages
        .iter()
        .enumerate()
        .flat_map(|(pi, p)| p.keys().enumerate().map(move |(ri, (t, id))| (t, id, pi as u32, ri as u32)))
        .collect();
    order.sort_unstable();
    order.dedup_by_key(|k| k.1);
    order.into_iter().map(move |(_, _, pi, ri)| pages[pi as usize].record(ri as usize))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn split_slices_cover_the_window_exactly(
            start in -1_000_000_000i64..2_000_000_000,
            span in 2i64..100_000_000,
            count in 0u64..10_000_000,
            window_events in 1u64..100_000,
        ) {
            let end = start + span;
            let slices = split_window(start, end, count, window_events);
            prop_assert!(!slices.is_empty());
            prop_assert_eq!(slices[0].0, start);
            prop_assert_eq!(slices[slices.len() - 1].1, end);
            for w in slices.windows(2) {
                prop_assert_eq!(w[0].1, w[1].0, "contiguous, no gap and no overlap");
            }
            for (s, e) in &slices {
                prop_assert!(e > s, "every slice is at least one second");
            }
            // Enough slices that an even spread would fit the target, unless seconds run out.
            let target = (window_events * 3 / 4).max(1);
            prop_assert!(slices.len() as u64 >= count.div_ceil(target).min(span as u64));
        }
    }

    #[test]
    fn one_second_windows_are_never_split() {
        assert_eq!(split_window(10, 11, 1_000_000, 100), vec![(10, 11)]);
    }
}
