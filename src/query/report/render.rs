//! A report as a self-contained HTML page (inline CSS and SVG; prints
//! cleanly to PDF), as Markdown, or as CSV (one row per evidence item).

use std::fmt::Write;

use super::{Control, Report, Section};
use crate::query::chart::bar_chart;
use crate::timeutil::format_rfc3339;

/// Events listed per section in HTML and Markdown (the CSV has them all).
const LISTED: usize = 200;

fn controls_text(c: &[Control]) -> String {
    c.iter().map(|(id, name)| format!("{id} {name}")).collect::<Vec<_>>().join("; ")
}

fn day(t: i64) -> String {
    format_rfc3339(t)[..10].to_string()
}

fn who(e: &crate::query::EventRow) -> String {
    e.user_email
        .clone()
        .or_else(|| e.user_name.clone())
        .or_else(|| e.user_id.map(|i| format!("user {i}")))
        .unwrap_or_default()
}

fn section_daily(s: &Section) -> Vec<(i64, i64)> {
    let mut m = std::collections::BTreeMap::new();
    for e in &s.events {
        *m.entry(e.created_at_secs - e.created_at_secs.rem_euclid(86_400)).or_insert(0i64) += 1;
    }
    m.into_iter().collect()
}

const CSS: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d1d1f;max-width:60rem;margin:2rem auto;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:2px solid #3b6ea8;padding-bottom:.2rem}
.meta{color:#555}.controls{background:#eef3f9;border-left:4px solid #3b6ea8;padding:.4rem .7rem;margin:.5rem 0}
table{border-collapse:collapse;width:100%;margin:.5rem 0;font-size:12.5px}th,td{border:1px solid #ddd;padding:.25rem .4rem;text-align:left;vertical-align:top}
th{background:#f4f4f6}td.num{text-align:right}.ok{color:#176b2c;font-weight:600}.bad{color:#b00020;font-weight:600}
.hl{background:#fff5d6;padding:.3rem .6rem;border-left:4px solid #d4a000}.chart{max-width:100%;height:auto}
code{font-size:12px}
@media print{body{max-width:none;margin:0;font-size:11px}h2{break-after:avoid}table,svg,.controls{break-inside:avoid}tr{break-inside:avoid}a{color:inherit;text-decoration:none}@page{margin:1.5cm}}
"#;

/// The report as one HTML page with nothing to fetch.
pub fn html(r: &Report) -> String {
    let mut o = String::with_capacity(64 * 1024);
    let title = format!("{} evidence report, {} to {}", r.framework.title(), day(r.from), day(r.to - 1));
    let _ = write!(
        o,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head><body>",
        esc(&title)
    );
    let _ = write!(
        o,
        "<h1>{}</h1><p class=\"meta\">Period {} to {} (UTC, end exclusive) · tenants: {} · generated {} by tines-audit from its journal of Tines audit logs.</p>",
        esc(r.framework.title()),
        format_rfc3339(r.from),
        format_rfc3339(r.to),
        esc(&r.tenants.join(", ")),
        format_rfc3339(r.generated_at)
    );
    let _ = write!(o, "<h2>Summary</h2><p>{} audit events in the period.</p>", r.total_events);
    o.push_str(&bar_chart(&r.daily, r.from, r.to, 86_400, 720, 110));
    o.push_str("<table><tr><th>Section</th><th>Controls</th><th>Events</th></tr>");
    for s in &r.sections {
        let _ = write!(
            o,
            "<tr><td><a href=\"#{}\">{}</a></td><td>{}</td><td class=\"num\">{}</td></tr>",
            s.def.id,
            esc(s.def.title),
            esc(&s.controls.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")),
            s.count
        );
    }
    let gap_count: usize = r.continuity.iter().map(|c| c.gaps.iter().filter(|g| !g.pending).count()).sum();
    let _ = write!(
        o,
        "<tr><td><a href=\"#continuity\">{}</a></td><td>{}</td><td>{}</td></tr>",
        super::controls::CONTINUITY_TITLE,
        esc(&super::controls::continuity_controls(r.framework).iter().map(|c| c.0).collect::<Vec<_>>().join(", ")),
        if gap_count == 0 {
            "<span class=\"ok\">no gaps</span>".to_string()
        } else {
            format!("<span class=\"bad\">{gap_count} gap(s)</span>")
        }
    );
    let _ = write!(
        o,
        "<tr><td><a href=\"#integrity\">{}</a></td><td>{}</td><td>{}</td></tr>",
        super::controls::INTEGRITY_TITLE,
        esc(&super::controls::integrity_controls(r.framework).iter().map(|c| c.0).collect::<Vec<_>>().join(", ")),
        if r.integrity.result.problems.is_empty() {
            "<span class=\"ok\">verified</span>".to_string()
        } else {
            format!("<span class=\"bad\">{} problem(s)</span>", r.integrity.result.problems.len())
        }
    );
    let failed_tests = r.selftests.iter().filter(|t| !t.passed).count();
    let _ = write!(
        o,
        "<tr><td><a href=\"#selftest\">{}</a></td><td>{}</td><td>{}</td></tr>",
        super::controls::SELFTEST_TITLE,
        esc(&super::controls::selftest_controls(r.framework).iter().map(|c| c.0).collect::<Vec<_>>().join(", ")),
        match (r.selftests.len(), failed_tests) {
            (0, _) => "<span class=\"bad\">none ran</span>".to_string(),
            (n, 0) => format!("<span class=\"ok\">{n} passed</span>"),
            (n, f) => format!("<span class=\"bad\">{f} of {n} failed</span>"),
        }
    );
    let _ = write!(
        o,
        "<tr><td><a href=\"#posture\">{}</a></td><td>{}</td><td>{}</td></tr>",
        super::controls::POSTURE_TITLE,
        esc(&super::controls::posture_controls(r.framework).iter().map(|c| c.0).collect::<Vec<_>>().join(", ")),
        esc(&posture_summary(r))
    );
    let _ = write!(
        o,
        "<tr><td><a href=\"#alerts\">{}</a></td><td>{}</td><td class=\"num\">{}</td></tr></table>",
        super::controls::ALERTS_TITLE,
        esc(&super::controls::alerts_controls(r.framework).iter().map(|c| c.0).collect::<Vec<_>>().join(", ")),
        r.alerts.as_ref().map_or("detection not enabled".to_string(), |a| a.len().to_string())
    );
    for s in &r.sections {
        let _ = write!(
            o,
            "<section id=\"{}\"><h2>{}</h2><p>{}</p><div class=\"controls\"><b>Evidences:</b> {}</div><p><b>{}</b> events. Operations: <code>{}</code></p>",
            s.def.id,
            esc(s.def.title),
            esc(s.def.purpose),
            esc(&controls_text(s.controls)),
            s.count,
            esc(&s.def.operations.join(", "))
        );
        if s.count > 0 {
            o.push_str(&bar_chart(&section_daily(s), r.from, r.to, 86_400, 720, 80));
            o.push_str("<table><tr><th>Operation</th><th>Events</th></tr>");
            for (op, n) in &s.by_operation {
                let _ = write!(o, "<tr><td>{}</td><td class=\"num\">{n}</td></tr>", esc(op));
            }
            o.push_str("</table><table><tr><th>Actor</th><th>Events</th></tr>");
            for (u, n) in s.by_user.iter().take(20) {
                let _ = write!(o, "<tr><td>{}</td><td class=\"num\">{n}</td></tr>", esc(u));
            }
            o.push_str("</table>");
            for h in &s.highlights {
                let _ = write!(o, "<p class=\"hl\">{}</p>", esc(h));
            }
            o.push_str("<table><tr><th>Time (UTC)</th><th>Tenant</th><th>Operation</th><th>Actor</th><th>IP</th><th>Event id</th></tr>");
            for e in s.events.iter().take(LISTED) {
                let _ = write!(
                    o,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    e.created_at,
                    esc(&e.tenant),
                    esc(&e.operation_name),
                    esc(&who(e)),
                    esc(e.request_ip.as_deref().unwrap_or("")),
                    e.id
                );
            }
            o.push_str("</table>");
            if s.events.len() > LISTED {
                let _ = write!(o, "<p class=\"meta\">{} more in the CSV export.</p>", s.count - LISTED);
            }
        }
        o.push_str("</section>");
    }
    let _ = write!(
        o,
        "<section id=\"continuity\"><h2>{}</h2><p>Every collection window the collector committed is recorded with the range of time it covers; together they show whether any stretch of the period was never collected.</p><div class=\"controls\"><b>Evidences:</b> {}</div>",
        super::controls::CONTINUITY_TITLE,
        esc(&controls_text(super::controls::continuity_controls(r.framework)))
    );
    for c in &r.continuity {
        let holes: Vec<_> = c.gaps.iter().filter(|g| !g.pending).collect();
        let _ = write!(
            o,
            "<h3>{}</h3><p>{} · {} windows committed, {} events added · cursor at {}.</p>",
            esc(&c.tenant),
            if holes.is_empty() {
                "<span class=\"ok\">No gaps: the whole period was collected.</span>".to_string()
            } else {
                format!("<span class=\"bad\">{} gap(s) in the journal.</span>", holes.len())
            },
            c.windows,
            c.inserted,
            c.cursor.map_or("(none)".to_string(), format_rfc3339)
        );
        let _ = write!(o, "<p>{}</p>", esc(&c.reconciliation_summary()));
        if !c.reconcile_finds.is_empty() {
            o.push_str("<ul>");
            for f in &c.reconcile_finds {
                let _ = write!(o, "<li>{}</li>", esc(&super::describe_find(f)));
            }
            o.push_str("</ul>");
        }
        if !c.gaps.is_empty() {
            o.push_str("<table><tr><th>From</th><th>To</th><th>Length</th><th>What</th></tr>");
            for g in &c.gaps {
                let _ = write!(
                    o,
                    "<tr><td>{}</td><td>{}</td><td class=\"num\">{} s</td><td>{}</td></tr>",
                    format_rfc3339(g.from),
                    format_rfc3339(g.to),
                    g.to - g.from,
                    if g.pending {
                        "not collected yet (after the cursor)"
                    } else {
                        "<span class=\"bad\">gap: never collected</span>"
                    }
                );
            }
            o.push_str("</table>");
        }
        if !c.cursor_history.is_empty() {
            o.push_str("<table><tr><th>Day</th><th>Cursor windows committed</th><th>Events added</th></tr>");
            for (d, w, n) in &c.cursor_history {
                let _ = write!(o, "<tr><td>{}</td><td class=\"num\">{w}</td><td class=\"num\">{n}</td></tr>", day(*d));
            }
            o.push_str("</table>");
        }
    }
    o.push_str("</section>");
    let i = &r.integrity;
    let _ = write!(
        o,
        "<section id=\"integrity\"><h2>{}</h2><p>Each tenant's events are linked in a hash chain as they are collected, and the chain's head is signed with the installation's Ed25519 key at every collect, at least hourly and before retention prunes. This is the result of <code>tines-audit verify</code> run as the report was generated.</p><div class=\"controls\"><b>Evidences:</b> {}</div><p class=\"{}\">{}</p>",
        super::controls::INTEGRITY_TITLE,
        esc(&controls_text(super::controls::integrity_controls(r.framework))),
        if i.result.problems.is_empty() { "ok" } else { "bad" },
        esc(&i.summary())
    );
    if !i.result.problems.is_empty() {
        o.push_str("<ul>");
        for p in i.result.problems.iter().take(LISTED) {
            let _ = write!(o, "<li>{}</li>", esc(&p.to_string()));
        }
        o.push_str("</ul>");
    }
    if !i.result.newest_checkpoints.is_empty() {
        o.push_str("<table><tr><th>Tenant</th><th>Newest checkpoint</th><th>Signed</th><th>Chain position</th><th>Key</th></tr>");
        for c in &i.result.newest_checkpoints {
            let _ = write!(
                o,
                "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td><code>{}</code></td></tr>",
                esc(&c.tenant),
                c.number,
                esc(&c.time),
                c.chain_n,
                esc(&c.key)
            );
        }
        o.push_str("</table>");
    }
    o.push_str("</section>");
    posture_html(&mut o, r);
    let _ = write!(
        o,
        "<section id=\"alerts\"><h2>{}</h2><div class=\"controls\"><b>Evidences:</b> {}</div>",
        super::controls::ALERTS_TITLE,
        esc(&controls_text(super::controls::alerts_controls(r.framework)))
    );
    match &r.alerts {
        None => o.push_str("<p>Detection is not enabled on this journal: no alerts table.</p>"),
        Some(a) if a.is_empty() => o.push_str("<p>No alert was raised in the period.</p>"),
        Some(a) => {
            o.push_str("<table><tr><th>Event time</th><th>Level</th><th>Rule</th><th>Summary</th><th>Events</th></tr>");
            for al in a {
                let _ = write!(
                    o,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                    format_rfc3339(al.event_time),
                    esc(&al.level),
                    esc(&al.title),
                    esc(&al.summary),
                    al.events
                );
            }
            o.push_str("</table>");
        }
    }
    o.push_str("</section>");
    let _ = write!(
        o,
        "<section id=\"selftest\"><h2>{}</h2><p>The self-test runs every enabled detection rule on synthetic events built from the rule's own examples (marked as synthetic, never written to the journal or the event sinks) and sends the test alerts it raises to every alert output, recording per rule whether it fired and per output what the receiver answered.</p><div class=\"controls\"><b>Evidences:</b> {}</div><p class=\"{}\">{}</p>",
        super::controls::SELFTEST_TITLE,
        esc(&controls_text(super::controls::selftest_controls(r.framework))),
        if !r.selftests.is_empty() && failed_tests == 0 { "ok" } else { "bad" },
        esc(&r.selftest_summary())
    );
    if !r.selftests.is_empty() {
        o.push_str("<table><tr><th>Started (UTC)</th><th>Result</th><th>Rules fired</th><th>Outputs accepted</th><th>Summary</th><th>Run</th></tr>");
        for t in r.selftests.iter().take(LISTED) {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}/{}</td><td class=\"num\">{}/{}</td><td>{}</td><td><code>{}</code></td></tr>",
                format_rfc3339(t.started_at),
                if t.passed { "<span class=\"ok\">passed</span>" } else { "<span class=\"bad\">FAILED</span>" },
                t.rules_fired,
                t.rules_total,
                t.outputs_ok,
                t.outputs_total,
                esc(&t.summary),
                esc(&t.run_id)
            );
        }
        o.push_str("</table>");
        if r.selftests.len() > LISTED {
            let _ = write!(o, "<p class=\"meta\">{} more in the CSV export.</p>", r.selftests.len() - LISTED);
        }
    }
    o.push_str("</section></body></html>\n");
    o
}

/// A value from the journal as Markdown text that renders as the text itself: HTML
/// (`<script>`) as entities; `|` (which would end a table cell), `\\` and the characters
/// that start emphasis, code, links or headings backslash-escaped; line breaks as spaces
/// and other control characters as visible escapes.
pub(crate) fn md_cell(s: &str) -> String {
    let s = crate::query::search::printable(&s.replace(['\r', '\n'], " ")).into_owned();
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '|' | '`' | '*' | '_' | '[' | ']' | '#' | '~' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// The report as Markdown (tables, no charts).
pub fn markdown(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# {} evidence report\n", r.framework.title());
    let _ = writeln!(
        o,
        "Period {} to {} (UTC, end exclusive). Tenants: {}. Generated {} by tines-audit.\n\n{} audit events in the period.\n",
        format_rfc3339(r.from),
        format_rfc3339(r.to),
        md_cell(&r.tenants.join(", ")),
        format_rfc3339(r.generated_at),
        r.total_events
    );
    for s in &r.sections {
        let _ = writeln!(
            o,
            "## {}\n\n{}\n\n**Evidences:** {}\n\n**{}** events.\n",
            s.def.title,
            s.def.purpose,
            controls_text(s.controls),
            s.count
        );
        for h in &s.highlights {
            let _ = writeln!(o, "> {}\n", md_cell(h));
        }
        if s.count > 0 {
            o.push_str("| Time (UTC) | Tenant | Operation | Actor | IP | Event id |\n|---|---|---|---|---|---|\n");
            for e in s.events.iter().take(LISTED) {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} | {} |",
                    e.created_at,
                    md_cell(&e.tenant),
                    md_cell(&e.operation_name),
                    md_cell(&who(e)),
                    md_cell(e.request_ip.as_deref().unwrap_or("")),
                    e.id
                );
            }
            if s.events.len() > LISTED {
                let _ = writeln!(o, "\n{} more in the CSV export.", s.count - LISTED);
            }
            o.push('\n');
        }
    }
    let _ = writeln!(
        o,
        "## {}\n\n**Evidences:** {}\n",
        super::controls::CONTINUITY_TITLE,
        controls_text(super::controls::continuity_controls(r.framework))
    );
    for c in &r.continuity {
        let holes = c.gaps.iter().filter(|g| !g.pending).count();
        let _ = writeln!(
            o,
            "### {}\n\n{} {} windows committed, {} events added; cursor at {}.\n",
            md_cell(&c.tenant),
            if holes == 0 {
                "No gaps: the whole period was collected.".to_string()
            } else {
                format!("**{holes} gap(s) in the journal.**")
            },
            c.windows,
            c.inserted,
            c.cursor.map_or("(none)".to_string(), format_rfc3339)
        );
        let _ = writeln!(o, "{}\n", c.reconciliation_summary());
        for f in &c.reconcile_finds {
            let _ = writeln!(o, "- late events found: {}", super::describe_find(f));
        }
        for g in &c.gaps {
            let _ = writeln!(
                o,
                "- {} from {} to {} ({} s)",
                if g.pending { "not collected yet (after the cursor)" } else { "GAP" },
                format_rfc3339(g.from),
                format_rfc3339(g.to),
                g.to - g.from
            );
        }
        o.push('\n');
    }
    let _ = writeln!(
        o,
        "## {}\n\n**Evidences:** {}\n\n{}\n",
        super::controls::INTEGRITY_TITLE,
        controls_text(super::controls::integrity_controls(r.framework)),
        md_cell(&r.integrity.summary())
    );
    for p in r.integrity.result.problems.iter().take(LISTED) {
        let _ = writeln!(o, "- {}", md_cell(&p.to_string()));
    }
    for c in &r.integrity.result.newest_checkpoints {
        let _ = writeln!(
            o,
            "- tenant {}: newest checkpoint {} signed {} at chain position {} by {}",
            md_cell(&c.tenant),
            c.number,
            md_cell(&c.time),
            c.chain_n,
            md_cell(&c.key)
        );
    }
    o.push('\n');
    posture_markdown(&mut o, r);
    let _ = writeln!(
        o,
        "## {}\n\n**Evidences:** {}\n",
        super::controls::ALERTS_TITLE,
        controls_text(super::controls::alerts_controls(r.framework))
    );
    match &r.alerts {
        None => o.push_str("Detection is not enabled on this journal.\n"),
        Some(a) if a.is_empty() => o.push_str("No alert was raised in the period.\n"),
        Some(a) => {
            o.push_str("| Event time | Level | Rule | Summary |\n|---|---|---|---|\n");
            for al in a {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} |",
                    format_rfc3339(al.event_time),
                    md_cell(&al.level),
                    md_cell(&al.title),
                    md_cell(&al.summary)
                );
            }
        }
    }
    let _ = writeln!(
        o,
        "\n## {}\n\n**Evidences:** {}\n\n{}\n",
        super::controls::SELFTEST_TITLE,
        controls_text(super::controls::selftest_controls(r.framework)),
        md_cell(&r.selftest_summary())
    );
    if !r.selftests.is_empty() {
        o.push_str(
            "| Started (UTC) | Result | Rules fired | Outputs accepted | Summary | Run |\n|---|---|---|---|---|---|\n",
        );
        for t in r.selftests.iter().take(LISTED) {
            let _ = writeln!(
                o,
                "| {} | {} | {}/{} | {}/{} | {} | {} |",
                format_rfc3339(t.started_at),
                if t.passed { "passed" } else { "**FAILED**" },
                t.rules_fired,
                t.rules_total,
                t.outputs_ok,
                t.outputs_total,
                md_cell(&t.summary),
                md_cell(&t.run_id)
            );
        }
        if r.selftests.len() > LISTED {
            let _ = writeln!(o, "\n{} more in the CSV export.", r.selftests.len() - LISTED);
        }
    }
    o
}

/// The report as CSV: one row per event of each section, per gap, and per alert.
pub fn csv(r: &Report) -> String {
    use crate::query::search::csv_field as f;
    let mut o =
        String::from("section,controls,time,tenant,operation_name,user_id,user_email,request_ip,event_id,detail\n");
    for s in &r.sections {
        let controls = s.controls.iter().map(|c| c.0).collect::<Vec<_>>().join(" ");
        for e in &s.events {
            let _ = writeln!(
                o,
                "{},{},{},{},{},{},{},{},{},",
                s.def.id,
                f(&controls),
                e.created_at,
                f(&e.tenant),
                f(&e.operation_name),
                e.user_id.map(|i| i.to_string()).unwrap_or_default(),
                f(e.user_email.as_deref().unwrap_or("")),
                f(e.request_ip.as_deref().unwrap_or("")),
                e.id
            );
        }
    }
    let cont = super::controls::continuity_controls(r.framework).iter().map(|c| c.0).collect::<Vec<_>>().join(" ");
    for c in &r.continuity {
        let _ = writeln!(o, "continuity,{},,{},,,,,,{}", f(&cont), f(&c.tenant), f(&c.reconciliation_summary()));
        for find in &c.reconcile_finds {
            let _ = writeln!(
                o,
                "continuity,{},{},{},,,,,,{}",
                f(&cont),
                format_rfc3339(find.slice_start),
                f(&c.tenant),
                f(&format!("late events found: {}", super::describe_find(find)))
            );
        }
        for g in &c.gaps {
            let what = if g.pending { "not collected yet" } else { "gap" };
            let _ = writeln!(
                o,
                "continuity,{},{},{},,,,,,{}",
                f(&cont),
                format_rfc3339(g.from),
                f(&c.tenant),
                f(&format!("{what} until {}", format_rfc3339(g.to)))
            );
        }
    }
    let ic = super::controls::integrity_controls(r.framework).iter().map(|c| c.0).collect::<Vec<_>>().join(" ");
    let _ = writeln!(o, "integrity,{},,,,,,,,{}", f(&ic), f(&r.integrity.summary()));
    for p in &r.integrity.result.problems {
        let _ = writeln!(o, "integrity,{},,,,,,,,{}", f(&ic), f(&p.to_string()));
    }
    posture_csv(&mut o, r);
    let al = super::controls::alerts_controls(r.framework).iter().map(|c| c.0).collect::<Vec<_>>().join(" ");
    for a in r.alerts.iter().flatten() {
        let _ = writeln!(
            o,
            "alerts,{},{},{},{},,,,,{}",
            f(&al),
            format_rfc3339(a.event_time),
            f(&a.tenant),
            f(&a.rule_id),
            f(&a.summary)
        );
    }
    let st = super::controls::selftest_controls(r.framework).iter().map(|c| c.0).collect::<Vec<_>>().join(" ");
    let _ = writeln!(o, "selftest,{},,,,,,,,{}", f(&st), f(&r.selftest_summary()));
    for t in &r.selftests {
        let _ = writeln!(
            o,
            "selftest,{},{},,,,,,{},{}",
            f(&st),
            format_rfc3339(t.started_at),
            f(&t.run_id),
            f(&format!("{}: {}", if t.passed { "passed" } else { "FAILED" }, t.summary))
        );
    }
    o
}

// --- the posture section ----------------------------------------------------------------------

fn posture_summary(r: &Report) -> String {
    let entries: usize = r.posture.iter().map(|p| p.end.entries.len()).sum();
    let changes: usize = r.posture.iter().map(|p| p.end.changes_total).sum();
    let no_note: usize = r.posture.iter().map(super::PostureSection::without_note).sum();
    let drift = if r.posture.iter().all(|p| p.drift.is_none()) {
        "not checked against the tenant".to_string()
    } else {
        let u: usize = r.posture.iter().filter_map(|p| p.drift.as_ref()).map(|d| d.undocumented().count()).sum();
        let m: usize = r.posture.iter().filter_map(|p| p.drift.as_ref()).map(|d| d.missing().count()).sum();
        format!("{u} undocumented, {m} missing from the tenant")
    };
    format!("{entries} entries in force, {changes} changes, {no_note} without a note; {drift}")
}

fn change_text(c: &crate::posture::Change) -> String {
    format!(
        "{} {} by {}{} (event {})",
        c.time,
        c.operation,
        c.actor(),
        c.request_ip.as_deref().map_or(String::new(), |ip| format!(" from {ip}")),
        c.event_id
    )
}

fn note_text(n: &crate::journal::PostureNote) -> String {
    format!("{} (requested by {}; noted {} by {})", n.why, n.requested_by, format_rfc3339(n.noted_at), n.noted_by)
}

const POSTURE_PURPOSE: &str = "What the audit history says is in force at the end of the period (tenant owners and admins, users with tenant permissions, IP access control rules, the action egress allowlist, API keys, SSO and session settings), each with the change that put it there and why it exists; every change within the period; and, when the tenant was read, what it holds that no record created.";

fn posture_html(o: &mut String, r: &Report) {
    let _ = write!(
        o,
        "<section id=\"posture\"><h2>{}</h2><p>{}</p><div class=\"controls\"><b>Evidences:</b> {}</div>",
        super::controls::POSTURE_TITLE,
        esc(POSTURE_PURPOSE),
        esc(&controls_text(super::controls::posture_controls(r.framework)))
    );
    for p in &r.posture {
        let end = &p.end;
        let _ = write!(
            o,
            "<h3>{}</h3><p>State at {} (the end of the period), from a history starting {}.</p>",
            esc(&p.tenant),
            esc(&end.at_time),
            end.history_from.map_or("nowhere".into(), format_rfc3339)
        );
        o.push_str("<table><tr><th>Kind</th><th>Entry</th><th>In force since</th><th>Why</th></tr>");
        for e in end.entries.iter().take(LISTED) {
            let why = match (&e.note, e.needs_note) {
                (Some(n), _) => esc(&note_text(n)),
                (None, true) => "<span class=\"bad\">no note</span>".into(),
                (None, false) => String::new(),
            };
            let mut entry = esc(&e.title);
            for d in e.doubts.iter().chain(&e.unknown) {
                let _ = write!(entry, "<br><small>{}</small>", esc(d));
            }
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{entry}</td><td>{}</td><td>{why}</td></tr>",
                esc(e.kind.title()),
                esc(&e.since.as_ref().map_or("not in the history".into(), change_text)),
            );
        }
        o.push_str("</table>");
        let _ = write!(o, "<p><b>{}</b> change(s) within the period.</p>", end.changes_total);
        if !end.changes.is_empty() {
            o.push_str("<table><tr><th>Time (UTC)</th><th>Kind</th><th>Entry</th><th>Change</th><th>Actor</th><th>IP</th><th>Event id</th></tr>");
            for c in end.changes.iter().take(LISTED) {
                let _ = write!(
                    o,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&c.change.time),
                    c.kind,
                    esc(&c.entry),
                    esc(&c.change.what),
                    esc(&c.change.actor()),
                    esc(c.change.request_ip.as_deref().unwrap_or("")),
                    c.change.event_id
                );
            }
            o.push_str("</table>");
        }
        let _ = write!(
            o,
            "<p class=\"{}\">{}</p>",
            if p.drift.as_ref().is_some_and(|d| d.any()) { "bad" } else { "" },
            esc(&p.drift_summary())
        );
        if let Some(d) = &p.drift {
            o.push_str("<ul>");
            for i in d.undocumented().chain(d.missing()) {
                let _ = write!(o, "<li>{} {}: {}</li>", i.kind, esc(&i.id), esc(&i.detail));
            }
            o.push_str("</ul>");
        }
        let notes: Vec<&crate::journal::PostureNote> =
            end.entries.iter().flat_map(|e| e.notes.iter()).chain(end.other_notes.iter()).collect();
        let _ = write!(o, "<p>Annotations: {} ({} entries in force have none).</p>", notes.len(), p.without_note());
        if !notes.is_empty() {
            o.push_str("<ul>");
            for n in notes {
                let _ = write!(o, "<li>{} {}: {}</li>", esc(&n.kind), esc(&n.entry_id), esc(&note_text(n)));
            }
            o.push_str("</ul>");
        }
        for c in &end.caveats {
            let _ = write!(o, "<p class=\"meta\">{}</p>", esc(c));
        }
    }
    o.push_str("</section>");
}

fn posture_markdown(o: &mut String, r: &Report) {
    let _ = writeln!(
        o,
        "## {}\n\n{}\n\n**Evidences:** {}\n",
        super::controls::POSTURE_TITLE,
        POSTURE_PURPOSE,
        controls_text(super::controls::posture_controls(r.framework))
    );
    for p in &r.posture {
        let end = &p.end;
        let _ = writeln!(o, "### {}\n\nState at {} (the end of the period).\n", md_cell(&p.tenant), end.at_time);
        o.push_str("| Kind | Entry | In force since | Why |\n|---|---|---|---|\n");
        for e in end.entries.iter().take(LISTED) {
            let why = match (&e.note, e.needs_note) {
                (Some(n), _) => md_cell(&note_text(n)),
                (None, true) => "**no note**".into(),
                (None, false) => String::new(),
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {why} |",
                e.kind.title(),
                md_cell(&e.title),
                md_cell(&e.since.as_ref().map_or("not in the history".into(), change_text))
            );
        }
        let _ = writeln!(o, "\n{} change(s) within the period.\n", end.changes_total);
        for c in end.changes.iter().take(LISTED) {
            let _ = writeln!(
                o,
                "- {} {}: {} ({})",
                c.kind,
                md_cell(&c.entry),
                md_cell(&c.change.what),
                md_cell(&change_text(&c.change))
            );
        }
        let _ = writeln!(o, "\n{}\n", md_cell(&p.drift_summary()));
        if let Some(d) = &p.drift {
            for i in d.undocumented().chain(d.missing()) {
                let _ = writeln!(o, "- {} {}: {}", i.kind, md_cell(&i.id), md_cell(&i.detail));
            }
        }
        let _ = writeln!(o, "\nAnnotations ({} entries in force have none):\n", p.without_note());
        for n in end.entries.iter().flat_map(|e| e.notes.iter()).chain(end.other_notes.iter()) {
            let _ = writeln!(o, "- {} {}: {}", md_cell(&n.kind), md_cell(&n.entry_id), md_cell(&note_text(n)));
        }
        o.push('\n');
    }
}

fn posture_csv(o: &mut String, r: &Report) {
    use crate::query::search::csv_field as f;
    let pc = super::controls::posture_controls(r.framework).iter().map(|c| c.0).collect::<Vec<_>>().join(" ");
    for p in &r.posture {
        for e in &p.end.entries {
            let why =
                e.note.as_ref().map_or(if e.needs_note { "no note".to_string() } else { String::new() }, note_text);
            let _ = writeln!(
                o,
                "posture,{},{},{},,,,,,{}",
                f(&pc),
                f(&p.end.at_time),
                f(&p.tenant),
                f(&format!("in force: {} {}; why: {why}", e.kind, e.title))
            );
        }
        for c in &p.end.changes {
            let x = &c.change;
            let _ = writeln!(
                o,
                "posture,{},{},{},{},{},{},{},{},{}",
                f(&pc),
                x.time,
                f(&p.tenant),
                f(&x.operation),
                x.user_id.map(|i| i.to_string()).unwrap_or_default(),
                f(x.user_email.as_deref().unwrap_or("")),
                f(x.request_ip.as_deref().unwrap_or("")),
                x.event_id,
                f(&format!("change: {} {}: {}", c.kind, c.entry, x.what))
            );
        }
        let _ = writeln!(o, "posture,{},,{},,,,,,{}", f(&pc), f(&p.tenant), f(&p.drift_summary()));
        if let Some(d) = &p.drift {
            for i in d.undocumented().chain(d.missing()) {
                let _ = writeln!(
                    o,
                    "posture,{},,{},,,,,,{}",
                    f(&pc),
                    f(&p.tenant),
                    f(&format!("{} {}: {}", i.kind, i.id, i.detail))
                );
            }
        }
    }
}

/// Escapes text for HTML element content and attribute values (the report is written with
/// `write!`; the console's pages go through `maud`, which escapes by itself).
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
