//! The catalog of Tines audit-log operation names, from the Tines audit-log
//! reference: name and description, lookup, and "did you mean" suggestions for
//! names that are not in it. The live API may send names newer than this list,
//! so the collector treats `operation_name` as an open set; only user input
//! (filters) is checked against it.

mod classify;

use std::sync::OnceLock;

pub use classify::{Category, Classification, Verb, classify};

/// One operation Tines writes audit logs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    pub name: &'static str,
    pub description: &'static str,
}

static TSV: &str = include_str!("operations.tsv");

/// Every documented operation, in the reference's order.
pub fn operations() -> &'static [Operation] {
    static OPS: OnceLock<Vec<Operation>> = OnceLock::new();
    OPS.get_or_init(|| {
        TSV.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let (name, description) = l.split_once('\t').unwrap_or((l, ""));
                Operation { name, description }
            })
            .collect()
    })
}

/// The operation with exactly this name.
pub fn find(name: &str) -> Option<&'static Operation> {
    operations().iter().find(|o| o.name == name)
}

fn normalise(s: &str) -> String {
    s.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

/// The closest documented names to `name`, best first (at most `n`).
///
/// Names are compared case- and punctuation-insensitively, so `story.created`
/// is close to `StoryCreation` and `credential_destruction` is the same as
/// `CredentialDestruction`.
pub fn suggest(name: &str, n: usize) -> Vec<&'static str> {
    let wanted = normalise(name);
    if wanted.is_empty() {
        return Vec::new();
    }
    let mut scored: Vec<(f64, &'static str)> = operations()
        .iter()
        .map(|o| (strsim::jaro_winkler(&wanted, &normalise(o.name)), o.name))
        .filter(|(score, _)| *score >= 0.80)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    // Only names about as close as the best one: a clear winner is suggested alone.
    let best = scored.first().map_or(0.0, |s| s.0);
    scored.into_iter().take_while(|(score, _)| best - score < 0.02).take(n).map(|(_, name)| name).collect()
}

/// Why an operation name given as a filter was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown operation name {name:?}{}", hint(.suggestions))]
pub struct UnknownOperation {
    pub name: String,
    pub suggestions: Vec<&'static str>,
}

fn hint(s: &[&str]) -> String {
    match s {
        [] => "; run `tines-audit operations` to list the documented names".to_string(),
        [one] => format!("; did you mean {one}?"),
        many => format!("; did you mean one of {}?", many.join(", ")),
    }
}

/// Checks a filter's operation name against the catalog.
pub fn validate(name: &str) -> Result<&'static Operation, UnknownOperation> {
    find(name).ok_or_else(|| UnknownOperation { name: name.to_string(), suggestions: suggest(name, 3) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_holds_every_documented_operation_once() {
        let ops = operations();
        assert_eq!(ops.len(), 395);
        let mut names: Vec<_> = ops.iter().map(|o| o.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 395, "duplicate names in the catalog");
        assert!(ops.iter().all(|o| !o.description.is_empty()));
        assert_eq!(find("CredentialDestruction").unwrap().description, "A credential was deleted");
        assert!(find("SCIM/2.0/User/{operation}").is_some());
    }

    #[test]
    fn suggests_the_real_name_for_dotted_lowercase_names() {
        assert_eq!(suggest("story.created", 1), vec!["StoryCreation"]);
        assert_eq!(suggest("credential_destruction", 1), vec!["CredentialDestruction"]);
        assert_eq!(suggest("login", 1), vec!["Login"]);
        let err = validate("story.created").unwrap_err();
        assert!(err.to_string().contains("did you mean StoryCreation"), "{err}");
    }

    #[test]
    fn nonsense_gets_no_suggestion_but_a_pointer_to_the_list() {
        let err = validate("zzzz").unwrap_err();
        assert!(err.suggestions.is_empty());
        assert!(err.to_string().contains("tines-audit operations"));
    }
}
