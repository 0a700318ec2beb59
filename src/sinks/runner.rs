//! Moves events from the journal to one sink: read past the offset, deliver,
//! commit. The offset is committed only after the sink says the batch is
//! delivered, so a crash repeats at most one batch, and a sink with
//! recoverable state (files) does not even repeat that.

use std::sync::Arc;

use super::{Sink, SinkError};
use crate::journal::{Journal, JournalError};

/// Batch limits for reading the journal.
#[derive(Debug, Clone)]
pub struct BatchLimits {
    pub max_events: usize,
    pub max_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits { max_events: 5_000, max_bytes: 4 * 1024 * 1024 }
    }
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
}

impl Consumer {
    pub fn new(sink: Box<dyn Sink>) -> Self {
        Consumer { sink, position: 0, recovered: false }
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

    /// Delivers everything in the journal past the offset; returns how many events.
    pub async fn drain(&mut self, journal: &Journal, limits: &BatchLimits) -> Result<u64, DrainError> {
        let result = self.drain_inner(journal, limits).await;
        if result.is_err() {
            // The sink may have written part of a batch: recover from the committed state before the next try.
            self.recovered = false;
        }
        result
    }

    async fn drain_inner(&mut self, journal: &Journal, limits: &BatchLimits) -> Result<u64, DrainError> {
        self.ensure_recovered(journal).await?;
        let mut delivered = 0u64;
        loop {
            if let Some(state) = self.sink.checkpoint().await.map_err(|e| self.sink_err(e))? {
                self.commit(journal, self.position, Some(state)).await?;
            }
            let (after, limits2) = (self.position, limits.clone());
            let batch = journal.call(move |j| j.read_after(after, limits2.max_events, limits2.max_bytes)).await?;
            let Some(last) = batch.last_seq() else { return Ok(delivered) };
            let n = batch.len() as u64;
            let state = self.sink.deliver(Arc::new(batch)).await.map_err(|e| self.sink_err(e))?;
            self.commit(journal, last, state).await?;
            delivered += n;
        }
    }
}
