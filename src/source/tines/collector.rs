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
    /// Records fetched ahead while a window commits (bounds memory, whatever the
    /// history): with the window being committed, at most about twice `window_events`
    /// are held. One window ahead keeps the commit busy; more only costs memory.
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
            concurrency: 16,
            buffered_events: 25_000,
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
        "tenant {tenant}: the API does not page through {start}..{end}: {detail}; nothing after {start} is collected until it does (the cursor stays where it is)"
    )]
    Unpageable { tenant: String, start: String, end: String, detail: String },
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    pub from: i64,
    pub to: i64,
    pub fetched: u64,
    pub inserted: u64,
    /// Records the API sent that cannot be events, newly quarantined.
    pub quarantined: u64,
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

/// One read of a window: pages requested in parallel as `meta.count` plans,
/// or one at a time, each next page asked for only after the last arrived.
struct Paging {
    /// `meta.count` of page 1: a plan, never the proof of completeness.
    count: Option<u64>,
    /// Pages `1..=planned` are to be requested; `next` is the next to request.
    planned: u64,
    next: u64,
    pages: Vec<Option<Page>>,
    /// Every page so far reported the same `count` as page 1.
    consistent: bool,
}

enum State {
    Unprobed,
    Probing,
    Paging(Paging),
    Complete(Vec<Page>),
}

/// A window commit running on the blocking pool.
struct Committing {
    handle: tokio::task::JoinHandle<Result<(u64, u64), JournalError>>,
    start: i64,
    end: i64,
    to: i64,
    /// Records it holds in memory until it is done.
    events: u64,
}

/// What the collector's loop woke up for.
enum Step {
    Committed(Result<Result<(u64, u64), JournalError>, tokio::task::JoinError>),
    Fetched(Option<Result<Response, tokio::task::JoinError>>),
    Stalled,
}

struct Window {
    id: u64,
    generation: u32,
    start: i64,
    end: i64,
    reads: u32,
    /// Read one page at a time: the count is missing or proved wrong, and only
    /// a sequential read never loses a record to pages shifting under it.
    sequential: bool,
    /// Page size for this window: one less than configured after a one-second
    /// window came out exactly full with its next page served again, so that
    /// its last page is short and the end unmistakable.
    per_page: u32,
    state: State,
}

impl Window {
    fn new(id: u64, start: i64, end: i64, per_page: u32) -> Self {
        Window { id, generation: 0, start, end, reads: 0, sequential: false, per_page, state: State::Unprobed }
    }

    fn buffered(&self) -> u64 {
        let per_page = u64::from(self.per_page);
        match &self.state {
            State::Unprobed => 0,
            State::Probing => per_page,
            State::Paging(p) => p.count.unwrap_or(0).max(p.pages.len() as u64 * per_page),
            State::Complete(pages) => pages.iter().map(|p| p.len() as u64).sum(),
        }
    }
}

/// What the pages of a read so far say.
enum Walk {
    /// Pages `1..=n` hold the window.
    Complete(usize),
    /// Page `n` (1-based) is needed next.
    Need(u64),
    /// Page `page` starts with the record that starts page `earlier`, after a full page: the
    /// API answered a page it could not serve with another one, and this window cannot be
    /// told apart from one that is exactly full.
    Repeated { page: u64, earlier: u64 },
}

/// Follows the pages received so far, in order, to the end of the window.
/// The end is where the API says it is by the pages themselves: an empty
/// page, a short page that names no next page, or a short page followed by a
/// page served again (the API answers page 1 to a page past the end or one it
/// cannot parse). `meta.count` is not trusted here: it can be missing or wrong.
fn walk(pages: &[Option<Page>], per_page: usize) -> Walk {
    let mut firsts: Vec<&str> = Vec::new();
    for (j, slot) in pages.iter().enumerate() {
        let number = j as u64 + 1;
        let Some(p) = slot else { return Walk::Need(number) };
        let Some(first) = p.first_record() else { return Walk::Complete(j) };
        if let Some(i) = firsts.iter().position(|f| *f == first) {
            let previous_short = pages[j - 1].as_ref().is_some_and(|prev| prev.sent() < per_page);
            if previous_short {
                return Walk::Complete(j);
            }
            return Walk::Repeated { page: number, earlier: i as u64 + 1 };
        }
        firsts.push(first);
        let names_next = p.meta.next_page_number.is_some_and(|n| n > number);
        if p.sent() < per_page && !names_next {
            return Walk::Complete(j + 1);
        }
    }
    Walk::Need(pages.len() as u64 + 1)
}

struct Response {
    window: u64,
    generation: u32,
    page: u64,
    result: Result<Page, FetchError>,
}

/// Reads one job of a tenant from its stored position up to the API's now
/// minus the settle delay (or an earlier end).
pub struct Sync<'a> {
    pub client: &'a TinesClient,
    pub journal: &'a Journal,
    pub job: &'a str,
    pub filters: &'a Filters,
    pub settings: &'a WindowSettings,
}

/// Pages one window may take before it is split in time (a window holding
/// more than twice what it should, because `count` under-reported or was missing).
fn split_after_pages(s: &WindowSettings) -> u64 {
    (s.window_events.div_ceil(u64::from(s.per_page.max(1))) * 2).max(4)
}

/// Pages a one-second window (which cannot be split) may take before the
/// window is failed loudly: a million records in one second is no real tenant.
const MAX_PAGES_ONE_SECOND: u64 = 2_000;

impl Sync<'_> {
    /// Collects from the job's position up to `until` (exclusive), or up to
    /// the API's now minus the settle delay when that is earlier or `until`
    /// is `None`. The position never passes the API's now.
    pub async fn run(
        &self,
        until: Option<i64>,
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
        let mut outcome = SyncOutcome { from: stored.position, to: stored.position, ..Default::default() };
        // Windows are cut by the API's clock, which dates the records, not by ours.
        let api_now = self.client.api_now().await?;
        let api_end = api_now - self.settings.settle_secs;
        let end = until.map_or(api_end, |u| u.min(api_end));
        let mut position = stored.position;
        if position > api_end && stored.finished_at.is_none() {
            // A position past the API's now (set by a clock ahead of the API's) would skip every
            // record the API dates before it: bring it back to what the API can have finished.
            tracing::warn!(
                tenant = %tenant,
                job = %job,
                position = %crate::timeutil::format_rfc3339(position),
                api_now = %crate::timeutil::format_rfc3339(api_now),
                "the stored position is in the future of the API's clock; moving it back so nothing the API dates before it is skipped"
            );
            let (t, j, from) = (tenant.clone(), job.clone(), position);
            self.journal.call(move |jr| jr.rewind_progress(&t, &j, from, api_end)).await?;
            position = api_end;
            outcome.from = position;
            outcome.to = position;
        }
        let mut progress = SyncProgress { position, ..Default::default() };
        let start = (position - self.settings.overlap_secs).max(stored.range_start.min(position));
        if end <= start {
            return Ok(outcome);
        }
        let filters = Arc::new(self.filters.clone());
        let mut next_id = 1u64;
        let mut windows: VecDeque<Window> = VecDeque::from([Window::new(0, start, end, self.settings.per_page)]);
        let mut first_probe = true;
        let mut inflight: JoinSet<Response> = JoinSet::new();
        // The window being committed: one at a time, oldest first, while the next windows'
        // pages are fetched (a commit of thousands of events takes about as long as their
        // fetch, so doing them in turn left each side idle half the time).
        let mut committing: Option<Committing> = None;

        loop {
            if committing.is_none() && matches!(windows.front().map(|w| &w.state), Some(State::Complete(_))) {
                let w = windows.pop_front().expect("front exists");
                let State::Complete(pages) = w.state else { unreachable!("checked above") };
                let to = w.end.max(position);
                let fetched: u64 = pages.iter().map(|p| p.len() as u64).sum();
                let (t, j, from, jr) = (tenant.clone(), job.clone(), position, self.journal.clone());
                let handle = tokio::task::spawn_blocking(move || {
                    let commit = WindowCommit { tenant: &t, job: &j, from, to, fetched };
                    jr.commit_window_quarantining(
                        &commit,
                        ordered_records(&pages),
                        pages.iter().flat_map(|p| p.rejected()),
                    )
                });
                committing = Some(Committing { handle, start: w.start, end: w.end, to, events: fetched });
            }
            if windows.is_empty() && committing.is_none() {
                break;
            }
            // Keep the pipe full, within the memory budget.
            while inflight.len() < self.settings.concurrency.max(1) {
                let held = committing.as_ref().map_or(0, |c| c.events);
                let Some((wid, generation, page, after, before, per_page)) = self.next_request(&mut windows, held)
                else {
                    break;
                };
                let client = self.client.clone();
                let filters = filters.clone();
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
            let event = tokio::select! {
                done = async { (&mut committing.as_mut().expect("guarded").handle).await }, if committing.is_some() => {
                    Step::Committed(done)
                }
                joined = inflight.join_next(), if !inflight.is_empty() => Step::Fetched(joined),
                else => Step::Stalled,
            };
            let joined = match event {
                Step::Committed(done) => {
                    let c = committing.take().expect("a commit was running");
                    let (inserted, quarantined) =
                        match done.map_err(|e| JournalError::Task(format!("window commit task failed: {e}"))) {
                            Ok(Ok(n)) => n,
                            Ok(Err(e)) | Err(e) => {
                                inflight.abort_all();
                                return Err(e.into());
                            }
                        };
                    if quarantined > 0 {
                        tracing::warn!(
                            tenant = %tenant,
                            quarantined,
                            window = %format!("{}..{}", crate::timeutil::format_rfc3339(c.start), crate::timeutil::format_rfc3339(c.end)),
                            "records the API sent cannot be stored as events (no id or no usable time); kept in the quarantine (`tines-audit state show`), collection goes on"
                        );
                        crate::metrics::metrics()
                            .events_quarantined
                            .get_or_create(&crate::metrics::tenant(&tenant))
                            .inc_by(quarantined);
                    }
                    position = c.to;
                    outcome.windows += 1;
                    outcome.inserted += inserted;
                    outcome.quarantined += quarantined;
                    outcome.to = position;
                    progress.inserted += inserted;
                    progress.position = position;
                    on_progress(&progress);
                    continue;
                }
                Step::Fetched(joined) => joined,
                Step::Stalled => {
                    return Err(JournalError::Task(
                        "collector stalled: no request in flight for an incomplete window".into(),
                    )
                    .into());
                }
            };
            let Some(joined) = joined else { continue };
            let failed = |e: CollectError, committing: Option<Committing>, inflight: &mut JoinSet<Response>| {
                inflight.abort_all();
                async move {
                    // A commit already under way finishes (it is one transaction either way);
                    // waiting for it keeps a retry from racing it for the position.
                    if let Some(c) = committing {
                        let _ = c.handle.await;
                    }
                    Err(e)
                }
            };
            let resp = match joined {
                Ok(r) => r,
                Err(e) => {
                    let e = JournalError::Task(format!("page request task failed: {e}")).into();
                    return failed(e, committing, &mut inflight).await;
                }
            };
            let page = match resp.result {
                Ok(p) => p,
                Err(e) => return failed(e.into(), committing, &mut inflight).await,
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
            if let Err(e) = self.accept(&mut windows, idx, resp.page, page, &mut next_id, &tenant) {
                return failed(e, committing, &mut inflight).await;
            }
        }
        Ok(outcome)
    }

    /// The next page worth requesting, oldest window first.
    /// `held` events are in memory already (a window being committed): they count
    /// against the budget, but the oldest window is always read.
    fn next_request(&self, windows: &mut VecDeque<Window>, held: u64) -> Option<(u64, u32, u64, i64, i64, u32)> {
        let mut buffered = held;
        for (i, w) in windows.iter_mut().enumerate() {
            if i > 0 && buffered >= self.settings.buffered_events {
                return None;
            }
            buffered += w.buffered();
            match &mut w.state {
                State::Unprobed => {
                    w.state = State::Probing;
                    return Some((w.id, w.generation, 1, w.start, w.end, w.per_page));
                }
                State::Paging(p) if p.next <= p.planned => {
                    p.next += 1;
                    return Some((w.id, w.generation, p.next - 1, w.start, w.end, w.per_page));
                }
                _ => {}
            }
        }
        None
    }

    /// Replaces window `idx` by `parts` equal time slices, to be read afresh.
    fn split(&self, windows: &mut VecDeque<Window>, idx: usize, slices: Vec<(i64, i64)>, next_id: &mut u64) {
        let sequential = windows[idx].sequential;
        windows.remove(idx);
        for (k, (start, end)) in slices.into_iter().enumerate() {
            let mut w = Window::new(*next_id, start, end, self.settings.per_page);
            w.sequential = sequential;
            *next_id += 1;
            windows.insert(idx + k, w);
        }
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
        let w = &mut windows[idx];
        let per_page = u64::from(w.per_page);
        let (start, end) = (w.start, w.end);
        let span = end - start;
        let halves = || vec![(start, start + span / 2), (start + span / 2, end)];
        if matches!(w.state, State::Probing) {
            let count = page.meta.count;
            if let Some(c) = count
                && c > self.settings.window_events
                && span > 1
            {
                let slices = split_window(w.start, w.end, c, self.settings.window_events);
                self.split(windows, idx, slices, next_id);
                return Ok(());
            }
            // Without a count there is nothing to plan by: the read follows the pages one by one.
            w.sequential |= count.is_none();
            let planned = match count {
                Some(c) if !w.sequential => c.div_ceil(per_page).max(1),
                _ => 1,
            };
            w.state = State::Paging(Paging { count, planned, next: 2, pages: Vec::new(), consistent: true });
        }
        let State::Paging(p) = &mut w.state else {
            return Ok(());
        };
        let slot = (page_no - 1) as usize;
        if p.pages.len() <= slot {
            p.pages.resize_with(slot + 1, || None);
        }
        p.consistent &= page.meta.count == p.count;
        p.pages[slot] = Some(page);
        match walk(&p.pages, per_page as usize) {
            Walk::Need(n) => {
                let cap = if span > 1 { split_after_pages(self.settings) } else { MAX_PAGES_ONE_SECOND };
                if n > cap {
                    if span > 1 {
                        // More records than the count promised: read it as smaller windows
                        // instead of holding an unbounded number of pages.
                        tracing::debug!(tenant, pages = n - 1, "window holds more than its count said; splitting it");
                        self.split(windows, idx, halves(), next_id);
                        return Ok(());
                    }
                    return Err(self.unpageable(w, tenant, format!("more than {cap} pages in one second")));
                }
                if n > p.planned {
                    p.planned = n;
                }
                Ok(())
            }
            Walk::Repeated { page, earlier } => {
                if span > 1 {
                    // Smaller windows fit on fewer pages, down to one that fits on a short one.
                    self.split(windows, idx, halves(), next_id);
                    return Ok(());
                }
                if w.per_page == self.settings.per_page && w.per_page > 1 {
                    // A second holding exactly whole pages, past whose end the API serves a
                    // page again: one record less per page makes its last page short.
                    w.per_page -= 1;
                    w.generation += 1;
                    w.state = State::Unprobed;
                    return Ok(());
                }
                Err(self.unpageable(
                    w,
                    tenant,
                    format!(
                        "page {page} came back starting with the first record of page {earlier} after a full page {} (per_page {per_page}); the API is ignoring the page number",
                        page - 1
                    ),
                ))
            }
            Walk::Complete(n) => {
                let mut pages = std::mem::take(&mut p.pages);
                pages.truncate(n);
                let pages: Vec<Page> = pages.into_iter().flatten().collect();
                let (count, consistent) = (p.count, p.consistent);
                self.verify(w, pages, count, consistent, tenant);
                Ok(())
            }
        }
    }

    /// Accepts a read that went to its last page, or reads the window again.
    /// A parallel read is proven by `count` (every page agreeing, and the ids
    /// read numbering exactly that); when the count is missing or wrong the
    /// window is read again one page at a time, which sees every record that
    /// existed when it started, however the pages shift.
    fn verify(&self, w: &mut Window, pages: Vec<Page>, count: Option<u64>, consistent: bool, tenant: &str) {
        if w.sequential {
            w.state = State::Complete(pages);
            return;
        }
        let mut ids: Vec<i64> = pages.iter().flat_map(|p| p.keys().map(|(_, id)| id)).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut odd: Vec<&str> = pages.iter().flat_map(|p| p.rejected().map(|r| r.raw)).collect();
        odd.sort_unstable();
        odd.dedup();
        let distinct = (ids.len() + odd.len()) as u64;
        let Some(count) = count else {
            w.state = State::Complete(pages);
            return;
        };
        if consistent && count == distinct {
            w.state = State::Complete(pages);
            return;
        }
        if consistent && distinct > count {
            tracing::debug!(
                tenant,
                count,
                read = distinct,
                "meta.count under-reports; reading the window page by page"
            );
            w.sequential = true;
        } else {
            tracing::debug!(
                tenant,
                expected = count,
                got = distinct,
                consistent,
                "window changed while read; reading it again"
            );
            w.reads += 1;
            if w.reads > self.settings.max_rereads {
                w.sequential = true;
            }
        }
        w.generation += 1;
        w.state = State::Unprobed;
    }

    fn unpageable(&self, w: &Window, tenant: &str, detail: String) -> CollectError {
        CollectError::Unpageable {
            tenant: tenant.to_string(),
            start: crate::timeutil::format_rfc3339(w.start),
            end: crate::timeutil::format_rfc3339(w.end),
            detail,
        }
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
pub(crate) fn ordered_records(pages: &[Page]) -> impl Iterator<Item = crate::journal::Record<'_>> {
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
