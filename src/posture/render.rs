//! A posture as text: a table for terminals, Markdown for documents, JSON for scripts.
//! Every value that comes from a record or a note is escaped (control characters as
//! visible escapes; Markdown punctuation backslashed), as search results are.

use std::fmt::Write;

use super::{Change, Drift, Entry, Kind, Posture};
use crate::journal::PostureNote;
use crate::query::report::md_cell;
use crate::query::search::printable;
use crate::timeutil::format_rfc3339;

fn p(s: &str) -> String {
    printable(s).into_owned()
}

fn change_line(c: &Change) -> String {
    format!(
        "{} {} by {}{} (event {})",
        c.time,
        c.operation,
        c.actor(),
        c.request_ip.as_deref().map_or(String::new(), |ip| format!(" from {ip}")),
        c.event_id
    )
}

fn note_line(n: &PostureNote) -> String {
    format!("{:?}, requested by {}; noted {} by {}", n.why, n.requested_by, format_rfc3339(n.noted_at), n.noted_by)
}

/// The command that would add the missing note, for the reader to copy.
fn annotate_hint(tenant: &str, e: &Entry) -> String {
    let quote = |s: &str| {
        if s.chars().all(|c| c.is_ascii_alphanumeric() || "@._-:/#".contains(c)) {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
    };
    format!(
        "tines-audit posture annotate --tenant {} --kind {} --id {} --why '...' --requested-by '...'",
        quote(tenant),
        e.kind,
        quote(&e.id)
    )
}

fn heading(p: &Posture) -> String {
    format!(
        "Posture of {} at {} (history from {}; {} posture event(s) read)",
        p.tenant,
        p.at_time,
        p.history_from.map_or("nowhere: no event yet".into(), format_rfc3339),
        p.events
    )
}

/// For a terminal.
pub fn table(posture: &Posture, drift: Option<&Drift>, history: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", p(&heading(posture)));
    for kind in Kind::ALL {
        let entries: Vec<&Entry> = posture.entries_of(kind).collect();
        let _ = writeln!(o, "\n{} ({})", kind.title(), entries.len());
        if entries.is_empty() {
            let _ = writeln!(o, "  none in the history");
        }
        for e in entries {
            let _ = writeln!(o, "  {}{}", p(&e.title), if e.needs_note { "  [no note: why?]" } else { "" });
            for (k, v) in &e.fields {
                if k != "role" && k != "value" {
                    let _ = writeln!(o, "      {k:<8} {}", p(v));
                }
            }
            match &e.since {
                Some(c) if e.last.as_ref() != Some(c) => {
                    let _ = writeln!(o, "      since    {}", p(&change_line(c)));
                }
                Some(_) => {}
                None => {
                    let _ = writeln!(o, "      since    (not in the history)");
                }
            }
            if let Some(c) = &e.last {
                let _ = writeln!(o, "      last     {}: {}", p(&change_line(c)), p(&c.what));
            }
            if let Some(n) = &e.note {
                let _ = writeln!(o, "      why      {}", p(&note_line(n)));
            } else if e.needs_note {
                let _ = writeln!(o, "      why      (no note) {}", p(&annotate_hint(&posture.tenant, e)));
            }
            for d in &e.doubts {
                let _ = writeln!(o, "      doubt    {}", p(d));
            }
            if e.doubts_total > e.doubts.len() {
                let _ = writeln!(o, "      doubt    ... {} more", e.doubts_total - e.doubts.len());
            }
            for u in &e.unknown {
                let _ = writeln!(o, "      unknown  {}", p(u));
            }
            if history {
                for c in &e.history {
                    let _ = writeln!(o, "      history  {}: {}", p(&change_line(c)), p(&c.what));
                }
                for n in e.notes.iter().rev().skip(1).rev() {
                    let _ = writeln!(o, "      earlier  {}", p(&note_line(n)));
                }
            }
        }
    }
    if posture.unresolved_total > 0 {
        let _ = writeln!(o, "\nRecords that did not say what they changed ({})", posture.unresolved_total);
        for u in &posture.unresolved {
            let _ = writeln!(o, "  {}: {}", p(&change_line(&u.change)), p(&u.why));
        }
    }
    if !posture.other_notes.is_empty() {
        let _ = writeln!(o, "\nNotes on entries not in force ({})", posture.other_notes.len());
        for n in &posture.other_notes {
            let _ = writeln!(o, "  {} {}: {}", n.kind, p(&n.entry_id), p(&note_line(n)));
        }
    }
    if let Some(d) = drift {
        o.push_str(&drift_table(d));
    }
    let _ = writeln!(o);
    for c in &posture.caveats {
        let _ = writeln!(o, "note: {}", p(c));
    }
    o
}

fn drift_table(d: &Drift) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "\nCompared with the tenant at {}", format_rfc3339(d.checked_at));
    for a in &d.areas {
        if !a.checked {
            let _ = writeln!(o, "  {}: {}", a.kind.title(), p(a.note.as_deref().unwrap_or("not checked")));
            continue;
        }
        let _ = writeln!(o, "  {}: {}", a.kind.title(), a.counts());
        for (label, items) in a.labelled() {
            for i in items {
                let live = i.live_id.as_deref().map_or(String::new(), |l| format!(" (tenant id {l})"));
                let _ = writeln!(o, "    {label:<12} {}{}: {}", p(&i.id), p(&live), p(&i.detail));
            }
        }
        if let Some(n) = &a.note {
            let _ = writeln!(o, "    note: {}", p(n));
        }
    }
    o
}

/// For scripts: the posture, and the drift and live state when read.
pub fn json(posture: &Posture, drift: Option<&Drift>, live: Option<&super::Live>) -> String {
    let v = serde_json::json!({ "posture": posture, "drift": drift, "live": live });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// For documents.
pub fn markdown(posture: &Posture, drift: Option<&Drift>, history: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# {}\n", md_cell(&heading(posture)));
    for kind in Kind::ALL {
        let entries: Vec<&Entry> = posture.entries_of(kind).collect();
        let _ = writeln!(o, "## {} ({})\n", kind.title(), entries.len());
        if entries.is_empty() {
            o.push_str("None in the history.\n\n");
            continue;
        }
        o.push_str("| Entry | In force since | Last change | Why |\n|---|---|---|---|\n");
        for e in &entries {
            let mut entry = md_cell(&e.title);
            for d in &e.doubts {
                entry.push_str(&format!("<br>doubt: {}", md_cell(d)));
            }
            for u in &e.unknown {
                entry.push_str(&format!("<br>unknown: {}", md_cell(u)));
            }
            let since = e.since.as_ref().map_or("not in the history".to_string(), |c| md_cell(&change_line(c)));
            let last = e.last.as_ref().map_or(String::new(), |c| md_cell(&format!("{}: {}", change_line(c), c.what)));
            let why = match (&e.note, e.needs_note) {
                (Some(n), _) => md_cell(&note_line(n)),
                (None, true) => "**no note**".into(),
                (None, false) => String::new(),
            };
            let _ = writeln!(o, "| {entry} | {since} | {last} | {why} |");
        }
        o.push('\n');
        if history {
            for e in entries.iter().filter(|e| !e.history.is_empty()) {
                let _ = writeln!(o, "History of {}:\n", md_cell(&e.id));
                for c in &e.history {
                    let _ = writeln!(o, "- {}: {}", md_cell(&change_line(c)), md_cell(&c.what));
                }
                for n in &e.notes {
                    let _ = writeln!(o, "- note: {}", md_cell(&note_line(n)));
                }
                o.push('\n');
            }
        }
    }
    if posture.unresolved_total > 0 {
        let _ = writeln!(o, "## Records that did not say what they changed ({})\n", posture.unresolved_total);
        for u in &posture.unresolved {
            let _ = writeln!(o, "- {}: {}", md_cell(&change_line(&u.change)), md_cell(&u.why));
        }
        o.push('\n');
    }
    if !posture.other_notes.is_empty() {
        o.push_str("## Notes on entries not in force\n\n");
        for n in &posture.other_notes {
            let _ = writeln!(o, "- {} {}: {}", n.kind, md_cell(&n.entry_id), md_cell(&note_line(n)));
        }
        o.push('\n');
    }
    if let Some(d) = drift {
        o.push_str(&drift_markdown(d));
    }
    for c in &posture.caveats {
        let _ = writeln!(o, "> {}\n", md_cell(c));
    }
    o
}

/// The drift as Markdown (also the report's posture section uses it).
pub fn drift_markdown(d: &Drift) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "## Compared with the tenant at {}\n", format_rfc3339(d.checked_at));
    for a in &d.areas {
        if !a.checked {
            let _ = writeln!(o, "- {}: {}", a.kind.title(), md_cell(a.note.as_deref().unwrap_or("not checked")));
            continue;
        }
        let _ = writeln!(o, "- {}: {}", a.kind.title(), a.counts());
        for (label, items) in a.labelled() {
            for i in items {
                let _ = writeln!(o, "  - {label}: {}: {}", md_cell(&i.id), md_cell(&i.detail));
            }
        }
    }
    o.push('\n');
    o
}
