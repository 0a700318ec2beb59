//! Top values: the events matching a filter counted per user, operation, address,
//! country, tenant or category, the same filter the events page reads, so each value's
//! count is what searching for that value too would total.
//!
//! Counting is bounded: the newest [`SAMPLE`] matching events are counted, and a facet
//! says whether that was every match (`exact`). Counting every match costs a read of
//! each one (about 3 µs an event on SQLite, so seconds for the million events one busy
//! user or operation has in a 5M-event journal, BENCHMARKS.md); the newest ten thousand
//! cost tens of milliseconds whatever the filter, and the top values of a busy filter
//! barely move with more. Analysts' consoles do the same (Kibana counts a sample of the
//! newest documents and says so).
//!
//! The backend reads each sampled event's stored columns (tenant, e-mail, operation
//! name, address); countries and categories are derived here from the addresses and
//! operation names, the way their filters resolve them, which keeps the two in step.
//! One read serves several fields ([`facets`]), so a page showing six facets pays once.

use std::collections::HashMap;

use serde::Serialize;

use super::filter::{EventFilter, FilterError};
use super::geo::CountryLookup;
use super::search::{SearchError, plan};
use super::syntax::Field;
use crate::catalog;
use crate::journal::{FacetKeys, Journal};

/// Most values one facet returns.
pub const MAX_FACET_VALUES: usize = 1000;

/// Matching events counted, newest first: every match when there are no more.
pub const SAMPLE: usize = 10_000;

/// One value and how many counted events have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FacetValue {
    pub value: String,
    pub count: i64,
}

/// The top values of one field among the events matching a filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Facet {
    pub field: &'static str,
    /// Most events first (ties by value), at most the limit asked for.
    pub values: Vec<FacetValue>,
    /// The events counted: every matching event when `exact`, else the newest [`SAMPLE`].
    pub total: i64,
    /// Counted events with a value not in `values`.
    pub other: i64,
    /// Counted events without a value (no user, no address, an address in no known country).
    pub missing: i64,
    /// Whether every matching event was counted (then `total` is the events page's total).
    pub exact: bool,
}

/// The field a facet may count by (the list filters), or why not.
pub fn parse_field(s: &str) -> Result<Field, FilterError> {
    Field::parse(s).filter(|f| Field::LISTS.contains(f)).ok_or_else(|| {
        let names: Vec<&str> = Field::LISTS.iter().map(|f| f.as_str()).collect();
        FilterError(format!("field: {s:?} cannot be counted; use one of {}", names.join(", ")))
    })
}

/// The `limit` most frequent values of `field` among the events matching `f` (blocking).
pub fn facet(
    journal: &Journal,
    f: &EventFilter,
    field: Field,
    limit: usize,
    geo: &dyn CountryLookup,
) -> Result<Facet, SearchError> {
    let mut all = facets_of(journal, f, &[field], limit, SAMPLE, geo)?;
    Ok(all.remove(0))
}

/// The `limit` most frequent values of each of `fields` among the events matching `f`,
/// from one read of the newest [`SAMPLE`] matches (blocking): what a page showing
/// several facets beside the events calls once.
pub fn facets(
    journal: &Journal,
    f: &EventFilter,
    fields: &[Field],
    limit: usize,
    geo: &dyn CountryLookup,
) -> Result<Vec<Facet>, SearchError> {
    facets_of(journal, f, fields, limit, SAMPLE, geo)
}

/// [`facets`] counting at most the newest `sample` matches.
pub(crate) fn facets_of(
    journal: &Journal,
    f: &EventFilter,
    fields: &[Field],
    limit: usize,
    sample: usize,
    geo: &dyn CountryLookup,
) -> Result<Vec<Facet>, SearchError> {
    for &field in fields {
        if !Field::LISTS.contains(&field) {
            return Err(parse_field(field.as_str()).unwrap_err().into());
        }
        if field == Field::Country && !geo.available() {
            return Err(FilterError(
                "field: counting by country needs a GeoIP database, and none is configured; count by ip instead".into(),
            )
            .into());
        }
    }
    let sample = sample.max(1);
    // One more than the sample: whether it is there says whether the sample is every match.
    let mut rows = match plan(journal, f, geo)? {
        Some(q) => journal.facet_keys(&q, sample + 1)?,
        None => Vec::new(),
    };
    let exact = rows.len() <= sample;
    rows.truncate(sample);
    Ok(fields.iter().map(|&field| count(&rows, field, limit, exact, geo)).collect())
}

/// One field's counts over the sampled events.
fn count(rows: &[FacetKeys], field: Field, limit: usize, exact: bool, geo: &dyn CountryLookup) -> Facet {
    let mut counts: HashMap<&str, i64> = HashMap::new();
    let mut missing = 0;
    for r in rows {
        // Addresses map to countries and operations to categories once per distinct value.
        let value: Option<&str> = match field {
            Field::Tenant => Some(&r.tenant),
            Field::User => r.email.as_deref(),
            Field::Operation | Field::Category => Some(&r.operation),
            Field::Ip | Field::Country => r.ip.as_deref(),
            Field::From | Field::To => unreachable!("checked by facets_of"),
        };
        match value {
            Some(v) => *counts.entry(v).or_default() += 1,
            None => missing += 1,
        }
    }
    let mut derived: HashMap<String, i64> = HashMap::new();
    for (v, n) in counts {
        let key = match field {
            Field::Category => Some(catalog::classify(v).category.as_str().to_string()),
            Field::Country => geo.country(v),
            // The e-mail compared as the user filter compares it (ASCII case folded).
            Field::User => Some(v.to_ascii_lowercase()),
            _ => Some(v.to_string()),
        };
        match key {
            Some(k) => *derived.entry(k).or_default() += n,
            None => missing += n,
        }
    }
    let total = rows.len() as i64;
    let mut values: Vec<FacetValue> = derived.into_iter().map(|(value, count)| FacetValue { value, count }).collect();
    values.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    values.truncate(limit.clamp(1, MAX_FACET_VALUES));
    let shown: i64 = values.iter().map(|v| v.count).sum();
    Facet { field: field.as_str(), values, total, other: total - shown - missing, missing, exact }
}
