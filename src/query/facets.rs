//! Top values: the events matching a filter counted per user, operation, address,
//! country, tenant or category, the same filter the events page reads, so each value's
//! count is what searching for that value too would total.
//!
//! The backend counts per stored column (tenant, e-mail, operation name, address);
//! countries and categories are derived here from the addresses and operation names,
//! the way their filters resolve them, which keeps the two in step.

use std::collections::HashMap;

use serde::Serialize;

use super::filter::{EventFilter, FilterError};
use super::geo::CountryLookup;
use super::search::{SearchError, plan};
use super::syntax::Field;
use crate::catalog;
use crate::journal::{FacetColumn, Journal};

/// Most values one facet returns.
pub const MAX_FACET_VALUES: usize = 1000;

/// One value and how many matching events have it.
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
    /// Every matching event.
    pub total: i64,
    /// Matching events with a value not in `values`.
    pub other: i64,
    /// Matching events without a value (no user, no address, an address in no known country).
    pub missing: i64,
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
    let column = match field {
        Field::Tenant => FacetColumn::Tenant,
        Field::User => FacetColumn::UserEmail,
        Field::Operation | Field::Category => FacetColumn::Operation,
        Field::Ip | Field::Country => FacetColumn::Ip,
        Field::From | Field::To => return Err(parse_field(field.as_str()).unwrap_err().into()),
    };
    if field == Field::Country && !geo.available() {
        return Err(FilterError(
            "field: counting by country needs a GeoIP database, and none is configured; count by ip instead".into(),
        )
        .into());
    }
    let rows = match plan(journal, f, geo)? {
        Some(q) => journal.facet(&q, column)?,
        None => Vec::new(),
    };
    let derive = |v: String| -> Option<String> {
        match field {
            Field::Category => Some(catalog::classify(&v).category.as_str().to_string()),
            Field::Country => geo.country(&v),
            _ => Some(v),
        }
    };
    let mut counts: HashMap<String, i64> = HashMap::new();
    let (mut total, mut missing) = (0, 0);
    for (value, n) in rows {
        total += n;
        match value.and_then(derive) {
            Some(v) => *counts.entry(v).or_default() += n,
            None => missing += n,
        }
    }
    let mut values: Vec<FacetValue> = counts.into_iter().map(|(value, count)| FacetValue { value, count }).collect();
    values.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    values.truncate(limit.clamp(1, MAX_FACET_VALUES));
    let shown: i64 = values.iter().map(|v| v.count).sum();
    Ok(Facet { field: field.as_str(), values, total, other: total - shown - missing, missing })
}
