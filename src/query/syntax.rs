//! The search box's language, the one `q` (API, console) and `--text`/`-q` (the `search`
//! command) take: free-text words, `"quoted phrases"`, `prefix*`, `field:value` for every
//! list filter (and `from:`/`to:`), `OR` between alternatives, and `NOT term` or `-term`
//! to exclude. Parsing here is pure: values are checked where the same parameters are
//! ([`super::filter`]), so a value is refused the same way whether it came as
//! `user=x` or as `q=user:x`.
//!
//! What it means, in one place (docs/search-and-reports.md says the same for people):
//! - words and phrases side by side must all occur; `a OR b` needs either;
//! - values of one field are alternatives, as repeated parameters are: `user:ann user:bob`
//!   is `user:ann OR user:bob` (a field has one value per event, so "both" could never
//!   match); different fields must all hold;
//! - `-x` or `NOT x` excludes events matching `x`, whatever else matches;
//! - `OR` joins words and phrases, or values of one field; `user:a OR ip:b` is refused
//!   rather than guessed at, and so is a negated term inside an `OR`.

use super::filter::FilterError;
use crate::journal::TextTerm;

/// Most free-text terms one search may hold: each is a lookup (and on PostgreSQL a
/// planner estimate), and no analyst types more.
pub const MAX_TEXT_TERMS: usize = 64;

/// A field a `field:value` term names: the list filters, and the two ends of the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Tenant,
    User,
    Operation,
    Category,
    Ip,
    Country,
    From,
    To,
}

impl Field {
    /// The list filters, which can also be excluded and counted (facets).
    pub const LISTS: [Field; 6] =
        [Field::User, Field::Operation, Field::Ip, Field::Country, Field::Tenant, Field::Category];

    /// The parameter (and `q` field) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Tenant => "tenant",
            Field::User => "user",
            Field::Operation => "operation",
            Field::Category => "category",
            Field::Ip => "ip",
            Field::Country => "country",
            Field::From => "from",
            Field::To => "to",
        }
    }

    /// A field by its name or alias (`since`/`until`, as the parameters take), any case.
    pub fn parse(name: &str) -> Option<Field> {
        Some(match name.to_ascii_lowercase().as_str() {
            "tenant" => Field::Tenant,
            "user" => Field::User,
            "operation" => Field::Operation,
            "category" => Field::Category,
            "ip" => Field::Ip,
            "country" => Field::Country,
            "from" | "since" => Field::From,
            "to" | "until" => Field::To,
            _ => return None,
        })
    }

    fn names() -> String {
        [Field::LISTS.as_slice(), &[Field::From, Field::To]]
            .concat()
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A search box's text, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// `field:value` terms, in order (values of one field are alternatives).
    pub fields: Vec<(Field, String)>,
    /// `-field:value` and `NOT field:value`.
    pub excluded: Vec<(Field, String)>,
    /// Free text: every group must match; within a group (`a OR b`), any term.
    pub text: Vec<Vec<TextTerm>>,
    /// Free text no matching event may hold.
    pub not_text: Vec<TextTerm>,
}

/// One term as written, before grouping.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Text(TextTerm),
    Field(Field, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Or,
    Not,
    /// A term, `-` before it when it is excluded.
    Term {
        negated: bool,
        term: Term,
        shown: String,
    },
}

fn bad(why: impl std::fmt::Display) -> FilterError {
    FilterError(format!("q: {why}"))
}

/// Reads a `"…"` starting at `s[0]`; `\"` and `\\` stand for `"` and `\`. Returns the text
/// and what follows the closing quote.
fn quoted(s: &str) -> Result<(String, &str), FilterError> {
    let mut out = String::new();
    let mut chars = s[1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[1 + i + 1..])),
            '\\' => match chars.next() {
                Some((_, n @ ('"' | '\\'))) => out.push(n),
                Some((_, n)) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    Err(bad("unclosed quote: close the \"phrase\" (write \\\" for a quote inside it)"))
}

/// The end of an unquoted token: the next whitespace.
fn bare(s: &str) -> (&str, &str) {
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    (&s[..end], &s[end..])
}

/// `name:` at the start of `s`, when `name` is letters and underscores (so `12:30` and
/// `::1` stay text).
fn field_prefix(s: &str) -> Option<(&str, &str)> {
    let (name, rest) = s.split_once(':')?;
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphabetic() || c == '_')).then_some((name, rest))
}

fn tokens(q: &str) -> Result<Vec<Token>, FilterError> {
    Ok(spanned_tokens(q)?.into_iter().map(|(t, _)| t).collect())
}

/// The tokens of `q`, each with the byte range of `q` it was read from.
fn spanned_tokens(q: &str) -> Result<Vec<(Token, std::ops::Range<usize>)>, FilterError> {
    let mut out = Vec::new();
    let mut rest = q.trim_start();
    let at = |s: &str| q.len() - s.len();
    while !rest.is_empty() {
        let (word, after) = bare(rest);
        if word == "OR" || word == "NOT" || word == "AND" {
            match word {
                "OR" => out.push((Token::Or, at(rest)..at(after))),
                "NOT" => out.push((Token::Not, at(rest)..at(after))),
                _ => {} // the default between terms, accepted for those who write it
            }
            rest = after.trim_start();
            continue;
        }
        // `-x` excludes; a lone `-` (or `--`) is punctuation, as it always was.
        let (negated, body) = match rest.strip_prefix('-') {
            Some(b) if b.starts_with(|c: char| !c.is_whitespace() && c != '-') => (true, b),
            _ => (false, rest),
        };
        let (term, shown, after) = if body.starts_with('"') {
            let (phrase, after) = quoted(body)?;
            let (prefix, after) = match after.strip_prefix('*') {
                Some(a) => (true, a),
                None => (false, after),
            };
            let shown = format!("\"{phrase}\"{}", if prefix { "*" } else { "" });
            (Term::Text(TextTerm { words: phrase, prefix }), shown, after)
        } else if let Some((name, value)) = field_prefix(body) {
            let field = Field::parse(name).ok_or_else(|| {
                bad(format!(
                    "unknown field {name:?} in {:?}: fields are {}; to look for the text, quote it: \"{}\"",
                    bare(body).0,
                    Field::names(),
                    bare(body).0
                ))
            })?;
            let was_quoted = value.starts_with('"');
            let (value, after) = if was_quoted {
                quoted(value)?
            } else {
                let (v, a) = bare(value);
                (v.to_string(), a)
            };
            let shown = format!("{}:{value}", field.as_str());
            if value.trim().is_empty() {
                return Err(bad(format!("{}: has no value; write {}:VALUE", field.as_str(), field.as_str())));
            }
            if !was_quoted && value.starts_with('(') {
                return Err(bad(format!(
                    "{shown}: parentheses do not group; values of one field are alternatives already ({f}:a {f}:b, or {f}:a OR {f}:b)",
                    f = field.as_str()
                )));
            }
            (Term::Field(field, value), shown, after)
        } else {
            let (w, after) = bare(body);
            let (w, prefix) = match w.strip_suffix('*') {
                Some(t) => (t, true),
                None => (w, false),
            };
            // Punctuation alone (`(`, `&`, `*`) is no term: the tokenizer would find no word in it.
            if !w.chars().any(char::is_alphanumeric) {
                rest = after.trim_start();
                continue;
            }
            (Term::Text(TextTerm { words: w.to_string(), prefix }), bare(body).0.to_string(), after)
        };
        out.push((Token::Term { negated, term, shown }, at(rest)..at(after)));
        rest = after.trim_start();
    }
    Ok(out)
}

/// Parses a search box's text. An empty text is an empty search.
pub fn parse(q: &str) -> Result<Parsed, FilterError> {
    let mut parsed = Parsed::default();
    // Terms in groups joined by OR, each with whether it is excluded and how it was written.
    let mut groups: Vec<Vec<(bool, Term, String)>> = Vec::new();
    let mut pending_not = false;
    let mut pending_or = false;
    for t in tokens(q)? {
        match t {
            Token::Or => {
                if pending_or || groups.is_empty() || pending_not {
                    return Err(bad("OR needs a term on each side (a OR b)"));
                }
                pending_or = true;
            }
            Token::Not => {
                if pending_not {
                    return Err(bad("NOT NOT: write the term without either"));
                }
                pending_not = true;
            }
            Token::Term { negated, term, shown } => {
                if negated && pending_not {
                    return Err(bad(format!("NOT -{shown}: exclude once, with NOT or with -")));
                }
                let negated = negated || std::mem::take(&mut pending_not);
                if std::mem::take(&mut pending_or) {
                    groups.last_mut().expect("OR follows a term").push((negated, term, shown));
                } else {
                    groups.push(vec![(negated, term, shown)]);
                }
            }
        }
    }
    if pending_or {
        return Err(bad("OR needs a term on each side (a OR b)"));
    }
    if pending_not {
        return Err(bad("NOT needs a term after it (NOT word, NOT field:value)"));
    }
    for group in groups {
        if group.len() > 1 {
            if let Some((_, _, shown)) = group.iter().find(|(negated, _, _)| *negated) {
                return Err(bad(format!(
                    "-{shown} is inside an OR: an exclusion applies on its own; move it out of the OR"
                )));
            }
            let kinds: Vec<Option<Field>> = group
                .iter()
                .map(|(_, t, _)| match t {
                    Term::Field(f, _) => Some(*f),
                    Term::Text(_) => None,
                })
                .collect();
            if kinds.windows(2).any(|w| w[0] != w[1]) {
                let shown: Vec<&str> = group.iter().map(|(_, _, s)| s.as_str()).collect();
                return Err(bad(format!(
                    "{}: OR joins words and phrases, or values of one field (user:a OR user:b); search for each side apart",
                    shown.join(" OR ")
                )));
            }
            if let Some(f @ (Field::From | Field::To)) = kinds[0] {
                return Err(bad(format!("{}: a period has one start and one end; OR cannot join them", f.as_str())));
            }
        }
        let mut texts = Vec::new();
        for (negated, term, _) in group {
            match (term, negated) {
                (Term::Field(f @ (Field::From | Field::To), _), true) => {
                    return Err(bad(format!(
                        "-{}: a time cannot be excluded; use {} instead",
                        f.as_str(),
                        if f == Field::From { "to:" } else { "from:" }
                    )));
                }
                (Term::Field(f, v), false) => parsed.fields.push((f, v)),
                (Term::Field(f, v), true) => parsed.excluded.push((f, v)),
                (Term::Text(t), false) => texts.push(t),
                (Term::Text(t), true) => parsed.not_text.push(t),
            }
        }
        if !texts.is_empty() {
            parsed.text.push(texts);
        }
    }
    let terms = parsed.text.iter().map(Vec::len).sum::<usize>() + parsed.not_text.len();
    if terms > MAX_TEXT_TERMS {
        return Err(bad(format!("{terms} free-text terms; a search takes at most {MAX_TEXT_TERMS}")));
    }
    Ok(parsed)
}

/// `field:value` (or `-field:value`) as [`parse`] reads it back, quoted when the value needs
/// it: what a console link appends to `q` to narrow to, or exclude, one value.
pub fn clause(field: Field, value: &str, exclude: bool) -> String {
    let plain = !value.is_empty()
        && !value.starts_with(['"', '(', '-'])
        && !value.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\');
    let v = if plain { value.to_string() } else { format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"")) };
    format!("{}{}:{v}", if exclude { "-" } else { "" }, field.as_str())
}

/// `q` without the terms that narrow to values of `field` (`field:a`, `field:a OR field:b`),
/// the rest as written: what a console link keeps when it narrows `field` to one value
/// of its own. Exclusions (`-field:a`) stay. `None` when `q` does not parse.
pub fn without_field(q: &str, field: Field) -> Option<String> {
    let tokens = spanned_tokens(q).ok()?;
    let mut kept: Vec<&str> = Vec::new();
    // Whether the last term seen was dropped: an OR after it joins it to more of the same
    // field (OR joins values of one field only), and goes with it.
    let mut dropped_last = false;
    for (token, span) in &tokens {
        match token {
            Token::Term { negated: false, term: Term::Field(f, _), .. } if *f == field => dropped_last = true,
            Token::Or if dropped_last => {}
            Token::Term { .. } => {
                dropped_last = false;
                kept.push(&q[span.clone()]);
            }
            Token::Or | Token::Not => kept.push(&q[span.clone()]),
        }
    }
    Some(kept.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_field_drops_only_that_fields_inclusions() {
        let q = r#"user:a OR user:"b c" phishing -user:d operation:X NOT "x y" user:e"#;
        let rest = without_field(q, Field::User).unwrap();
        assert_eq!(rest, r#"phishing -user:d operation:X NOT "x y""#);
        let p = parse(&rest).unwrap();
        assert!(p.fields.iter().all(|(f, _)| *f != Field::User));
        assert_eq!(p.excluded, vec![(Field::User, "d".to_string())]);
        assert_eq!(without_field("a OR b", Field::User).unwrap(), "a OR b");
        assert_eq!(without_field("", Field::Ip).unwrap(), "");
        assert_eq!(without_field("\"open", Field::Ip), None);
    }

    fn t(w: &str, prefix: bool) -> TextTerm {
        TextTerm { words: w.into(), prefix }
    }

    #[test]
    fn words_phrases_and_prefixes_must_all_occur() {
        let p = parse("phishing \"Daily IOC\" swe*").unwrap();
        assert_eq!(p.text, vec![vec![t("phishing", false)], vec![t("Daily IOC", false)], vec![t("swe", true)]]);
        assert!(p.fields.is_empty() && p.excluded.is_empty() && p.not_text.is_empty());
        // Lower-case or/not/and are words; punctuation alone is nothing.
        let p = parse("a or b - ( && *").unwrap();
        assert_eq!(p.text, vec![vec![t("a", false)], vec![t("or", false)], vec![t("b", false)]]);
        assert_eq!(parse("x AND y").unwrap().text.len(), 2);
        assert_eq!(parse("  ").unwrap(), Parsed::default());
    }

    #[test]
    fn or_joins_alternatives_and_not_or_minus_excludes() {
        let p = parse("credential OR secret -okta NOT \"Daily IOC\" \"in put\"*").unwrap();
        assert_eq!(p.text, vec![vec![t("credential", false), t("secret", false)], vec![t("in put", true)]]);
        assert_eq!(p.not_text, vec![t("okta", false), t("Daily IOC", false)]);
        let p = parse("user:ann@x.io OR user:\"Ann Lee\" -operation:Login NOT ip:10.0.0.0/8 country:IE").unwrap();
        assert_eq!(
            p.fields,
            vec![(Field::User, "ann@x.io".into()), (Field::User, "Ann Lee".into()), (Field::Country, "IE".into())]
        );
        assert_eq!(p.excluded, vec![(Field::Operation, "Login".into()), (Field::Ip, "10.0.0.0/8".into())]);
        let p = parse("since:30d Until:2024-06-01T00:00:00Z").unwrap();
        assert_eq!(p.fields, vec![(Field::From, "30d".into()), (Field::To, "2024-06-01T00:00:00Z".into())]);
    }

    #[test]
    fn text_that_merely_has_a_colon_stays_text() {
        let p = parse("12:30 ::1 \"credentialId:3001\"").unwrap();
        assert_eq!(p.text, vec![vec![t("12:30", false)], vec![t("::1", false)], vec![t("credentialId:3001", false)]]);
        assert!(p.fields.is_empty());
    }

    #[test]
    fn malformed_searches_are_refused_saying_what_to_write() {
        let err = |q: &str| parse(q).unwrap_err().0;
        assert!(err("\"open").contains("unclosed quote"), "{}", err("\"open"));
        assert!(err("usr:ann").contains("unknown field \"usr\""), "{}", err("usr:ann"));
        assert!(err("usr:ann").contains("\"usr:ann\""));
        assert!(err("user:").contains("no value"));
        assert!(err("user:\"\"").contains("no value"));
        assert!(err("OR a").contains("OR needs"));
        assert!(err("a OR").contains("OR needs"));
        assert!(err("a OR OR b").contains("OR needs"));
        assert!(err("a NOT").contains("NOT needs"));
        assert!(err("NOT -a").contains("exclude once"));
        assert!(err("a OR -b").contains("inside an OR"));
        assert!(err("user:a OR ip:1.2.3.4").contains("values of one field"));
        assert!(err("word OR user:a").contains("values of one field"));
        assert!(err("-from:1d").contains("cannot be excluded"));
        assert!(err("from:1d OR from:2d").contains("one start"));
        assert!(err("user:(a OR b)").contains("parentheses"));
        let many = (0..=MAX_TEXT_TERMS).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        assert!(err(&many).contains("at most"));
        assert!(parse(&many[..many.rfind(' ').unwrap()]).is_ok());
    }

    #[test]
    fn quotes_take_escapes_and_clauses_read_back_as_written() {
        let p = parse(r#"user:"Ann \"The Boss\" Lee" "back\\slash""#).unwrap();
        assert_eq!(p.fields, vec![(Field::User, "Ann \"The Boss\" Lee".into())]);
        assert_eq!(p.text, vec![vec![t("back\\slash", false)]]);
        for (field, value) in [
            (Field::User, "ann@x.io"),
            (Field::User, "Seán \"O\" Brien"),
            (Field::Operation, "CredentialDestruction"),
            (Field::Tenant, "a\\b"),
            (Field::User, "-1"),
            (Field::User, "(x)"),
        ] {
            for exclude in [false, true] {
                let c = clause(field, value, exclude);
                let p = parse(&c).unwrap();
                let got = if exclude { &p.excluded } else { &p.fields };
                assert_eq!(got, &vec![(field, value.to_string())], "{c}");
            }
        }
        assert_eq!(clause(Field::Ip, "10.0.0.1", true), "-ip:10.0.0.1");
    }

    proptest::proptest! {
        /// Whatever is typed, the parser answers (never panics), and every value it reads
        /// back is written by `clause` so that it reads the same again.
        #[test]
        fn any_text_parses_or_is_refused_and_values_round_trip(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::string::string_regex("[a-zA-Z0-9@.:/*()\\\\\"' é-]{0,12}").unwrap(),
                    proptest::sample::select(vec![
                        "OR".to_string(), "NOT".to_string(), "AND".to_string(), "user:".to_string(),
                        "-ip:".to_string(), "\"".to_string(), "\\\"".to_string(), "-".to_string(),
                    ]),
                ],
                0..8,
            )
        ) {
            if let Ok(p) = parse(&parts.join(" ")) {
                for (list, exclude) in [(&p.fields, false), (&p.excluded, true)] {
                    for (f, v) in list {
                        let again = parse(&clause(*f, v, exclude)).unwrap();
                        let got = if exclude { again.excluded } else { again.fields };
                        proptest::prop_assert_eq!(got, vec![(*f, v.clone())]);
                    }
                }
            }
        }
    }
}
