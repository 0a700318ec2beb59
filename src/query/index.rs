//! The search indexer: follows the journal like a sink, with its own position,
//! and adds what the collector does not write: each record's words to the
//! full-text index, and the distinct users, addresses and operation names
//! seen (for name, network, country and category filters).
//!
//! It runs apart from collection so that a backfill is not slowed by text
//! indexing (measured in BENCHMARKS.md), and catches up in batches of a few
//! thousand events, each one transaction with its new position: a crash
//! leaves the index either with a batch and its position or with neither.
//! How each database keeps the index is the journal backend's business.

pub use crate::journal::IndexState;
use crate::journal::{Journal, JournalError};

/// Events indexed per transaction: small enough that collection never waits long for the write lock.
pub const BATCH: usize = 2_000;

/// The index's position and the journal's end (blocking, read-only).
pub fn state(journal: &Journal) -> Result<IndexState, JournalError> {
    journal.index_state()
}

/// Indexes up to `max` events past the position in one transaction; returns how many (blocking).
pub fn index_batch(journal: &Journal, max: usize) -> Result<usize, JournalError> {
    journal.index_batch(max)
}

/// Indexes everything collected so far (blocking); returns how many events it indexed.
pub fn catch_up(journal: &Journal) -> Result<u64, JournalError> {
    let mut total = 0u64;
    loop {
        let n = journal.index_batch(BATCH)?;
        total += n as u64;
        if n < BATCH {
            if total >= 10_000 {
                journal.optimize()?;
            }
            return Ok(total);
        }
    }
}
