//! Standard output: one raw record a line. At-least-once: a crash between
//! writing and committing repeats the batch.

use std::io::Write;
use std::sync::Arc;

use super::{BoxFuture, Sink, SinkError};
use crate::journal::EventBatch;

pub struct StdoutSink {
    name: String,
}

impl StdoutSink {
    pub fn new(name: String) -> Self {
        StdoutSink { name }
    }
}

impl Sink for StdoutSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(&mut self, batch: Arc<EventBatch>) -> BoxFuture<'_, Result<Option<String>, SinkError>> {
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut out = std::io::stdout().lock();
                for e in batch.iter() {
                    out.write_all(e.raw.as_bytes())?;
                    out.write_all(b"\n")?;
                }
                out.flush()
            })
            .await
            .map_err(|e| SinkError::Transient(format!("stdout task failed: {e}")))?
            .map_err(|e| SinkError::Permanent(format!("cannot write to standard output: {e}")))?;
            Ok(None)
        })
    }
}
