//! Shapes of an event for a destination: `raw` (as Tines sent it), `ecs`, `ocsf`.
//! (Interim: only `raw` is implemented here; ECS and OCSF land with the format work.)

use crate::journal::StoredEvent;

/// The shape a sink writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    #[default]
    Raw,
    Ecs,
    Ocsf,
}

/// Why an event could not be shaped.
#[derive(Debug, thiserror::Error)]
#[error("cannot shape event {id}: {reason}")]
pub struct FormatError {
    pub id: i64,
    pub reason: String,
}

/// Encodes events in one shape; built once per sink.
#[derive(Debug, Clone, Default)]
pub struct Encoder {
    shape: Shape,
}

impl Encoder {
    pub fn new(shape: Shape) -> Encoder {
        Encoder { shape }
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Appends one JSON object (no trailing newline) for the event to `out`.
    pub fn encode_into(&self, e: &StoredEvent<'_>, out: &mut Vec<u8>) -> Result<(), FormatError> {
        match self.shape {
            Shape::Raw => {
                out.extend_from_slice(e.raw.as_bytes());
                Ok(())
            }
            other => Err(FormatError { id: e.id, reason: format!("shape {other:?} is not available yet") }),
        }
    }
}
