//! Answers from the journal: search (filters, free text, newest first with
//! stable pages), the search indexer that keeps the full-text index, and the
//! compliance reports. Everything here reads through the journal's read-only
//! connections, so a query never holds up collection.

pub mod chart;
pub mod facets;
pub mod filter;
pub mod geo;
pub mod index;
pub mod report;
pub mod search;
pub mod syntax;

#[cfg(test)]
mod tests;

pub use filter::{EventFilter, Excluded, FilterArgs, FilterError, IpNet, TextQuery, UserSpec};
pub use geo::{CountryLookup, EmulatorCountries, NoCountries};
pub use search::{Cursor, EventRow, SearchError, SearchPage, histogram, search};
