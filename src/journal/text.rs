//! The text of a record that free-text search looks in, the same for every backend.

use serde_json::Value;

/// Top-level fields left out of the text: timestamps and the tenant id match nearly every record.
const SKIPPED: &[&str] = &["created_at", "updated_at", "tenant_id"];

fn push_words(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push(' ');
        }
        Value::Number(n) => {
            out.push_str(&n.to_string());
            out.push(' ');
        }
        Value::Array(items) => items.iter().for_each(|i| push_words(i, out)),
        Value::Object(map) => {
            for (k, v) in map {
                // Keys inside `inputs` say what changed (credentialId, readAccess), so they are searchable too.
                out.push_str(k);
                out.push(' ');
                push_words(v, out);
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// The text indexed for a record: every value (and every key below the top level), and
/// the words of the operation name, so `credential` finds `CredentialDestruction`.
pub fn record_text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(map)) => {
            for (k, v) in &map {
                if !SKIPPED.contains(&k.as_str()) {
                    push_words(v, &mut out);
                }
                if let ("operation_name", Value::String(op)) = (k.as_str(), v) {
                    let split = crate::catalog::name_words(op);
                    // A one-word name is already a word of the text.
                    if split.len() > 1 {
                        out.push_str(&split.join(" "));
                        out.push(' ');
                    }
                }
            }
        }
        // Not an object: index the text as it is rather than lose it.
        _ => out.push_str(raw),
    }
    out
}

/// The `user_name` of a record, if it has one.
pub fn user_name_of(raw: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Who {
        user_name: Option<String>,
    }
    serde_json::from_str::<Who>(raw).ok().and_then(|w| w.user_name)
}

/// The words of a text as SQLite's FTS5 `unicode61 remove_diacritics 2` tokenizer makes
/// them: runs of letters and digits, lower case, without diacritics ("Seán" is "sean").
/// Backends without that tokenizer index and query these words, so every backend finds
/// the same events for the same free text.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    use unicode_normalization::UnicodeNormalization;
    use unicode_normalization::char::is_combining_mark;
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.nfd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_letters_and_digits_lower_case_without_diacritics() {
        let w: Vec<String> = words("Seán's ZOË x@y.com 3001-b Ünïcödé 東京").collect();
        assert_eq!(w, ["sean", "s", "zoe", "x", "y", "com", "3001", "b", "unicode", "東京"]);
    }

    #[test]
    fn record_text_keeps_values_and_nested_keys_but_not_timestamps() {
        let t = record_text(
            r#"{"created_at":"2024-01-01T00:00:00Z","id":7,"inputs":{"credentialId":3001,"name":"Okta \"prod\""},"operation_name":"CredentialDestruction","tenant_id":4242,"user_name":"Seán"}"#,
        );
        assert!(t.contains("credentialId 3001"), "{t}");
        assert!(t.contains("Okta \"prod\"") && t.contains("CredentialDestruction") && t.contains("Seán"));
        assert!(t.contains("CredentialDestruction credential destruction "), "{t}");
        assert!(record_text(r#"{"operation_name":"Login"}"#) == "Login ");
        assert!(
            record_text(r#"{"operation_name":"IPAccessControlRuleCreation"}"#)
                .ends_with(" ip access control rule creation ")
        );
        assert!(!t.contains("2024") && !t.contains("4242") && !t.contains("operation_name"), "{t}");
        assert_eq!(record_text("not json"), "not json");
    }
}
