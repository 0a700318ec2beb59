//! Moves events from the journal to one sink: read past the offset, deliver,
//! commit. The offset is committed only after the sink says the batch is
//! delivered, so a crash repeats at most one batch, and a sink with
//! recoverable state (files) does not even repeat that.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{BatchPolicy, Sink, SinkError};
use crate::journal::{Journal, JournalError};

/// Whether a drain may leave a small backlog waiting for its batch to fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Deliver everything now (one-shot `collect`, shutdown).
    All,
    /// Respect the sink's `linger`: a partial batch waits until its oldest event has waited that long.
    WhenDue,
}

/// Why draining stopped.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("sink {name}: {source}")]
    Sink { name: String, source: SinkError },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// A sink attached to its offset.
pub struct Consumer {
    sink: Box<dyn Sink>,
    position: i64,
    recovered: bool,
    policy: BatchPolicy,
    /// When this consumer first saw the backlog it has not delivered yet.
    pending_since: Option<Instant>,
}

impl Consumer {
    pub fn new(sink: Box<dyn Sink>) -> Self {
        let policy = sink.policy();
        Consumer { sink, position: 0, recovered: false, policy, pending_since: None }
    }

    /// Overrides the sink's batching (tests, benchmarks).
    pub fn with_policy(mut self, policy: BatchPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn policy(&self) -> &BatchPolicy {
        &self.policy
    }

    /// Runs the sink's health check.
    pub async fn health_check(&mut self) -> Result<String, DrainError> {
        self.sink.health_check().await.map_err(|e| self.sink_err(e))
    }

    /// How long until a waiting partial batch is due (`None`: nothing waiting).
    pub fn due_in(&self) -> Option<Duration> {
        self.pending_since.map(|t| self.policy.linger.saturating_sub(t.elapsed()))
    }

    pub fn name(&self) -> &str {
        self.sink.name()
    }

    pub fn position(&self) -> i64 {
        self.position
    }

    fn sink_err(&self, source: SinkError) -> DrainError {
        DrainError::Sink { name: self.sink.name().to_string(), source }
    }

    async fn ensure_recovered(&mut self, journal: &Journal) -> Result<(), DrainError> {
        if self.recovered {
            return Ok(());
        }
        let name = self.sink.name().to_string();
        let off = journal.call(move |j| j.consumer(&name, 0)).await?;
        self.position = off.position;
        self.sink.recover(off.state).await.map_err(|e| self.sink_err(e))?;
        self.recovered = true;
        Ok(())
    }

    async fn commit(&mut self, journal: &Journal, to: i64, state: Option<String>) -> Result<(), DrainError> {
        let (name, from) = (self.sink.name().to_string(), self.position);
        journal.call(move |j| j.commit_offset(&name, from, to, state.as_deref())).await?;
        self.position = to;
        Ok(())
    }

    /// Delivers what is due past the offset; returns how many events.
    pub async fn drain(&mut self, journal: &Journal, flush: Flush) -> Result<u64, DrainError> {
        crate::status::register_sink(self.sink.name());
        let result = self.drain_inner(journal, flush).await;
        let m = crate::metrics::metrics();
        let label = crate::metrics::sink(self.sink.name());
        match &result {
            Ok(n) => {
                m.sink_delivered.get_or_create(&label).inc_by(*n);
                crate::status::sink_ok(self.sink.name());
            }
            Err(e) => {
                // The sink may have written part of a batch: recover from the committed state before the next try.
                self.recovered = false;
                m.sink_failures.get_or_create(&label).inc();
                crate::status::sink_failed(self.sink.name(), &e.to_string());
            }
        }
        result
    }

    async fn drain_inner(&mut self, journal: &Journal, flush: Flush) -> Result<u64, DrainError> {
        self.ensure_recovered(journal).await?;
        let mut delivered = 0u64;
        loop {
            if let Some(state) = self.sink.checkpoint().await.map_err(|e| self.sink_err(e))? {
                self.commit(journal, self.position, Some(state)).await?;
            }
            let (after, max_events, max_bytes) = (self.position, self.policy.max_events, self.policy.max_bytes);
            let batch = journal.call(move |j| j.read_after(after, max_events, max_bytes)).await?;
            let Some(last) = batch.last_seq() else {
                self.pending_since = None;
                if flush == Flush::All
                    && let Some(state) = self.sink.seal().await.map_err(|e| self.sink_err(e))?
                {
                    self.commit(journal, self.position, Some(state)).await?;
                }
                return Ok(delivered);
            };
            let full = batch.len() >= max_events || batch.raw_bytes() >= max_bytes;
            let since = *self.pending_since.get_or_insert_with(Instant::now);
            if flush == Flush::WhenDue && !full && since.elapsed() < self.policy.linger {
                return Ok(delivered);
            }
            let n = batch.len() as u64;
            // Under a lease, nothing leaves for the destination once it may have run out: a
            // destination cannot check fencing tokens the way the journal does.
            if let Some(f) = journal.fence().filter(|_| !journal.lease_valid()) {
                return Err(
                    JournalError::Fenced { job: f.job.clone(), holder: f.holder.clone(), token: f.token }.into()
                );
            }
            if let Some(state) = self.sink.prepare(&batch) {
                self.commit(journal, self.position, Some(state)).await?;
            }
            let state = self.sink.deliver(Arc::new(batch)).await.map_err(|e| self.sink_err(e))?;
            self.commit(journal, last, state).await?;
            self.pending_since = None;
            delivered += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use proptest::prelude::*;

    use super::*;
    use crate::journal::{Record, WindowCommit};
    use crate::sinks::BoxFuture;

    /// `(seq, raw bytes)` of each event of each delivered batch.
    type Delivered = Arc<Mutex<Vec<Vec<(i64, usize)>>>>;

    /// Records every batch it is given; fails the deliveries listed in `fail_on`.
    struct Recorder {
        batches: Delivered,
        fail_on: Vec<usize>,
        calls: usize,
    }

    impl Sink for Recorder {
        fn name(&self) -> &str {
            "recorder"
        }
        fn recover(&mut self, _state: Option<String>) -> BoxFuture<'_, Result<(), SinkError>> {
            Box::pin(async { Ok(()) })
        }
        fn deliver(
            &mut self,
            batch: Arc<crate::journal::EventBatch>,
        ) -> BoxFuture<'_, Result<Option<String>, SinkError>> {
            self.calls += 1;
            let fail = self.fail_on.contains(&self.calls);
            let seen: Vec<(i64, usize)> = batch.iter().map(|e| (e.seq, e.raw.len())).collect();
            let batches = self.batches.clone();
            Box::pin(async move {
                if fail {
                    return Err(SinkError::Transient("down".into()));
                }
                batches.lock().unwrap().push(seen);
                Ok(None)
            })
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        /// Whatever the batch limits, event sizes and failed deliveries: every event is
        /// delivered, in journal order, once a delivery succeeds; no successful batch
        /// breaks the limits (a lone event larger than max_bytes travels alone).
        #[test]
        fn batches_respect_limits_and_deliver_everything_in_order(
            sizes in proptest::collection::vec(10usize..3_000, 1..400),
            max_events in 1usize..100,
            max_bytes in 50usize..20_000,
            fail_on in proptest::collection::vec(1usize..30, 0..5),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let j = Journal::open(dir.path()).unwrap();
                j.start_progress("t", "cursor", 0, None, "").unwrap();
                let raws: Vec<String> = sizes.iter().enumerate().map(|(i, n)| format!("{{\"id\":{i},\"p\":\"{}\"}}", "x".repeat(*n))).collect();
                let recs = raws.iter().enumerate().map(|(i, r)| Record { id: i as i64, created_at: 1, operation_name: "Login", user_id: None, user_email: None, request_ip: None, raw: r });
                j.commit_window(&WindowCommit { tenant: "t", job: "cursor", from: 0, to: 1, fetched: raws.len() as u64 }, recs).unwrap();
                let batches = Arc::new(Mutex::new(Vec::new()));
                let sink = Recorder { batches: batches.clone(), fail_on, calls: 0 };
                let policy = BatchPolicy { max_events, max_bytes, linger: Duration::ZERO };
                let mut c = Consumer::new(Box::new(sink)).with_policy(policy);
                let mut rounds = 0;
                while c.drain(&j, Flush::All).await.is_err() {
                    rounds += 1;
                    prop_assert!(rounds < 50);
                }
                let got = batches.lock().unwrap().clone();
                let seqs: Vec<i64> = got.iter().flatten().map(|(s, _)| *s).collect();
                prop_assert_eq!(seqs, (1..=raws.len() as i64).collect::<Vec<_>>());
                for b in &got {
                    prop_assert!(!b.is_empty() && b.len() <= max_events);
                    let bytes: usize = b.iter().map(|(_, n)| n).sum();
                    // The reader stops once max_bytes is reached: only the last event may cross it.
                    let before_last: usize = b[..b.len() - 1].iter().map(|(_, n)| n).sum();
                    prop_assert!(before_last < max_bytes || b.len() == 1, "{} bytes in {} events", bytes, b.len());
                }
                prop_assert_eq!(j.consumer("recorder", 0).unwrap().position, raws.len() as i64);
                Ok(())
            })?;
        }
    }
}
