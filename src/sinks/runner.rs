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
                return Ok(delivered);
            };
            let full = batch.len() >= max_events || batch.raw_bytes() >= max_bytes;
            let since = *self.pending_since.get_or_insert_with(Instant::now);
            if flush == Flush::WhenDue && !full && since.elapsed() < self.policy.linger {
                return Ok(delivered);
            }
            let n = batch.len() as u64;
            let state = self.sink.deliver(Arc::new(batch)).await.map_err(|e| self.sink_err(e))?;
            self.commit(journal, last, state).await?;
            self.pending_since = None;
            delivered += n;
        }
    }
}
