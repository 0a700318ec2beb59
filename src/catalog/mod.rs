//! The catalog of Tines audit-log operation names, from the Tines audit-log
//! reference: name and description, lookup, and "did you mean" suggestions for
//! names that are not in it. The live API may send names newer than this list,
//! so the collector treats `operation_name` as an open set; only user input
//! (filters) is checked against it.
//!
//! The reference writes one entry as a pattern, `SCIM/2.0/User/{operation}`,
//! while events carry the real names (`SCIM/2.0/User/create`, …). The catalog
//! lists the real names; the pattern is still accepted as a filter and stands
//! for all of them ([`resolve`]).
//!
//! Every name, in the catalog or not, also has a [`Classification`]: what it
//! is about and what it did ([`classify`]; the rules are in `catalog/classify.rs`).

mod classify;

/// The lower-case words of an operation name (`CredentialDestruction`: credential, destruction).
pub(crate) use classify::words as name_words;

use std::collections::HashMap;
use std::sync::OnceLock;

pub use classify::{Category, Classification, Verb};

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

/// Name → (operation, classification), for constant-time lookups on the hot path.
fn index() -> &'static HashMap<&'static str, (&'static Operation, Classification)> {
    static INDEX: OnceLock<HashMap<&'static str, (&'static Operation, Classification)>> = OnceLock::new();
    INDEX.get_or_init(|| operations().iter().map(|o| (o.name, (o, classify::by_rules(o.name)))).collect())
}

/// The operation with exactly this name.
pub fn find(name: &str) -> Option<&'static Operation> {
    index().get(name).map(|e| e.0)
}

/// The category and verb of any operation name: precomputed for the catalog's
/// names, derived from the name's words for any other (rules in `catalog/classify.rs`).
pub fn classify(name: &str) -> Classification {
    index().get(name).map_or_else(|| classify::by_rules(name), |e| e.1)
}

/// The catalog entry (if any) and the classification of a name, in one lookup.
pub fn describe(name: &str) -> (Option<&'static Operation>, Classification) {
    match index().get(name) {
        Some(&(op, class)) => (Some(op), class),
        None => (None, classify::by_rules(name)),
    }
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
    suggest_among(name, operations().iter().map(|o| o.name), n)
}

/// The closest of `candidates` to `name`, best first (at most `n`), compared as [`suggest`] does.
pub fn suggest_among<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>, n: usize) -> Vec<&'a str> {
    let wanted = normalise(name);
    if wanted.is_empty() {
        return Vec::new();
    }
    let mut scored: Vec<(f64, &'a str)> = candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&wanted, &normalise(c)), c))
        .filter(|(score, _)| *score >= 0.80)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    // Only names about as close as the best one: a clear winner is suggested alone.
    let best = scored.first().map_or(0.0, |s| s.0);
    scored.into_iter().take_while(|(score, _)| best - score < 0.02).take(n).map(|(_, name)| name).collect()
}

/// Why an operation name given as a filter was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown operation name {name:?}{}", hint(.suggestions))]
pub struct UnknownOperation {
    pub name: String,
    pub suggestions: Vec<String>,
}

fn hint(s: &[String]) -> String {
    match s {
        [] => "; run `tines-audit operations` to list the documented names".to_string(),
        [one] => format!("; did you mean {one}?"),
        many => format!("; did you mean one of {}?", many.join(", ")),
    }
}

/// Names the reference writes as a pattern, with the real names events carry
/// (the SCIM actions the reference's description lists).
const PLACEHOLDERS: &[(&str, &[&str])] = &[(
    "SCIM/2.0/User/{operation}",
    &["SCIM/2.0/User/create", "SCIM/2.0/User/replace", "SCIM/2.0/User/update", "SCIM/2.0/User/destroy"],
)];

/// The real names a documented pattern such as `SCIM/2.0/User/{operation}` stands for.
pub fn placeholder(name: &str) -> Option<&'static [&'static str]> {
    PLACEHOLDERS.iter().find(|(p, _)| *p == name).map(|(_, names)| *names)
}

/// The catalog names a filter's operation name stands for: itself, or every
/// name a documented pattern stands for; refused (with suggestions) otherwise.
pub fn resolve(name: &str) -> Result<Vec<&'static str>, UnknownOperation> {
    if let Some(names) = placeholder(name) {
        return Ok(names.to_vec());
    }
    find(name).map(|o| vec![o.name]).ok_or_else(|| UnknownOperation {
        name: name.to_string(),
        suggestions: suggest(name, 3).into_iter().map(str::to_string).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_holds_every_documented_operation_once() {
        let ops = operations();
        // The reference's 395 entries, with its SCIM pattern as the four names it stands for.
        assert_eq!(ops.len(), 398);
        let mut names: Vec<_> = ops.iter().map(|o| o.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 398, "duplicate names in the catalog");
        assert!(ops.iter().all(|o| !o.description.is_empty()));
        assert_eq!(find("CredentialDestruction").unwrap().description, "A credential was deleted");
        assert!(ops.iter().all(|o| !o.name.contains('{')), "a pattern is in the catalog");
    }

    #[test]
    fn scim_placeholder_expands_into_the_real_scim_event_names() {
        // Refused before, with a suggestion of the pattern, which matched no event.
        assert_eq!(resolve("SCIM/2.0/User/create").unwrap(), vec!["SCIM/2.0/User/create"]);
        for real in placeholder("SCIM/2.0/User/{operation}").unwrap() {
            assert!(find(real).is_some(), "{real}");
        }
        assert_eq!(resolve("SCIM/2.0/User/{operation}").unwrap().len(), 4);
        let hint = suggest("SCIM/2.0/User/created", 3);
        assert!(hint.contains(&"SCIM/2.0/User/create") && hint.iter().all(|h| !h.contains('{')), "{hint:?}");
        assert_eq!(classify("SCIM/2.0/User/create"), Classification { category: Category::User, verb: Verb::Create });
        assert_eq!(classify("SCIM/2.0/User/destroy").verb, Verb::Delete);
        assert_eq!(classify("SCIM/2.0/User/replace").verb, Verb::Update);
    }

    #[test]
    fn suggests_the_real_name_for_dotted_lowercase_names() {
        assert_eq!(suggest("story.created", 1), vec!["StoryCreation"]);
        assert_eq!(suggest("credential_destruction", 1), vec!["CredentialDestruction"]);
        assert_eq!(suggest("login", 1), vec!["Login"]);
        let err = resolve("story.created").unwrap_err();
        assert!(err.to_string().contains("did you mean StoryCreation"), "{err}");
    }

    #[test]
    fn nonsense_gets_no_suggestion_but_a_pointer_to_the_list() {
        let err = resolve("zzzz").unwrap_err();
        assert!(err.suggestions.is_empty());
        assert!(err.to_string().contains("tines-audit operations"));
    }

    /// Names no rule places, on purpose: what they touch is not documented.
    const UNCATEGORISED: &[&str] = &[
        "AnalyticsCapture",
        "UploadImage",
        "ToolLinkCreation",
        "ToolLinkDeletion",
        "ToolLinkGroupCreation",
        "ToolLinkStsCreation",
        "ToolLinkTemplatesCreation",
    ];

    #[test]
    fn every_catalog_name_has_a_category_except_the_allowlist() {
        let mut other: Vec<_> =
            operations().iter().filter(|o| classify(o.name).category == Category::Other).map(|o| o.name).collect();
        other.sort_unstable();
        let mut allowed = UNCATEGORISED.to_vec();
        allowed.sort_unstable();
        assert_eq!(other, allowed);
        for name in UNCATEGORISED {
            assert!(find(name).is_some(), "{name} left the catalog: drop it from the allowlist");
        }
    }

    #[test]
    fn every_category_and_the_common_verbs_are_used_by_the_catalog() {
        let classes: Vec<_> = operations().iter().map(|o| classify(o.name)).collect();
        for cat in Category::ALL {
            let n = classes.iter().filter(|c| c.category == cat).count();
            assert!(n > 0, "no operation is in category {cat}");
        }
        for verb in [Verb::Create, Verb::Update, Verb::Delete, Verb::Move, Verb::Run, Verb::Test, Verb::Login] {
            assert!(classes.iter().any(|c| c.verb == verb), "no operation has verb {verb}");
        }
        assert_eq!(classify("Login"), Classification { category: Category::Authentication, verb: Verb::Login });
        assert_eq!(describe("CredentialDestruction").0.unwrap().description, "A credential was deleted");
        assert_eq!(describe("NotInTheCatalogCreation"), (None, classify("NotInTheCatalogCreation")));
    }
}
