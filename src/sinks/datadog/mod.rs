//! Datadog Logs intake API v2: gzip JSON arrays of at most 1000 logs and
//! 5 MB to `https://http-intake.logs.<site>/api/v2/logs`, split further if
//! the intake still says 413.

mod config;
mod sink;

pub use config::DatadogConfig;
pub use sink::DatadogSink;
