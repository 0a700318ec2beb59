//! Compliance reports from the console: `GET /reports` (a form, and the download) and its
//! API twin `GET /api/v1/reports`, for some tenants (every tenant when none is given) over
//! a period, written by the same code as `tines-audit report` (without `--live`), with the
//! installation's signing key trusted for the integrity section. One report is written
//! at a time, off the async threads: it verifies the whole journal's chain.

use axum::extract::{RawQuery, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::json;

use super::AppState;
use super::console::{login_redirect, page};
use crate::query::report::{self, Framework};
use crate::query::{FilterArgs, SearchError};
use crate::timeutil::{format_rfc3339, now_secs};

/// A report is written at a time: each verifies the whole journal, which a second one
/// would only slow down.
static WRITING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// The formats `tines-audit report` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Html,
    Md,
    Csv,
}

impl Format {
    fn parse(s: &str) -> Result<Format, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "html" => Ok(Format::Html),
            "md" | "markdown" => Ok(Format::Md),
            "csv" => Ok(Format::Csv),
            other => Err(format!(
                "format: {:?} is not html, md or csv (the formats of tines-audit report)",
                other.chars().take(40).collect::<String>()
            )),
        }
    }

    fn render(self, r: &report::Report) -> String {
        match self {
            Format::Html => report::html(r),
            Format::Md => report::markdown(r),
            Format::Csv => report::csv(r),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Html => "text/html; charset=utf-8",
            Format::Md => "text/markdown; charset=utf-8",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Md => "md",
            Format::Csv => "csv",
        }
    }
}

/// What a report request says, as given (the console's form shows it again).
#[derive(Debug, Default)]
struct Given {
    args: FilterArgs,
    framework: Option<String>,
    format: Option<String>,
}

/// A checked report request.
#[derive(Debug)]
struct Wanted {
    framework: Framework,
    format: Format,
    from: i64,
    to: i64,
    /// Empty: every tenant of the journal.
    tenants: Vec<String>,
}

/// Reads `tenant`, `from`, `to`, `framework` and `format` (the filter parameters' own names
/// and syntax); anything else is refused by name.
fn read(raw: Option<&str>) -> Result<Given, String> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let (mut framework, mut format) = (None, None);
    let args = FilterArgs::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), |k, v| match k {
        "framework" => {
            framework = Some(v.trim().to_string());
            true
        }
        "format" => {
            format = Some(v.trim().to_string());
            true
        }
        _ => false,
    });
    Ok(Given { args: args.map_err(|e| e.0)?, framework, format })
}

impl Given {
    /// Checks the request against `now`; each refusal names its parameter.
    fn check(&self, now: i64) -> Result<Wanted, String> {
        let a = &self.args;
        for (name, set) in [
            ("user", !a.user.is_empty()),
            ("operation", !a.operation.is_empty()),
            ("category", !a.category.is_empty()),
            ("ip", !a.ip.is_empty()),
            ("country", !a.country.is_empty()),
            ("q", a.text.is_some()),
        ] {
            if set {
                return Err(format!(
                    "{name}: a report covers whole tenants over a period; it takes tenant, from, to, framework and format"
                ));
            }
        }
        let framework = match self.framework.as_deref() {
            None | Some("") => {
                return Err("framework: missing; give soc2, iso27001 or gdpr".into());
            }
            Some(f) => <Framework as clap::ValueEnum>::from_str(f, true).map_err(|_| {
                format!("framework: {:?} is not soc2, iso27001 or gdpr", f.chars().take(40).collect::<String>())
            })?,
        };
        let format = Format::parse(self.format.as_deref().unwrap_or(""))?;
        if a.from.is_none() {
            return Err("from: missing; give the start of the period (RFC 3339, a date such as 2024-01-01, or an age such as 90d)".into());
        }
        let filter = a.build(now).map_err(|e| e.0)?;
        let (Some(from), to) = (filter.from, filter.to.unwrap_or(now)) else { unreachable!("from was given") };
        if from >= to {
            return Err(format!(
                "from: the period is empty: {} is not before {}",
                format_rfc3339(from),
                format_rfc3339(to)
            ));
        }
        Ok(Wanted { framework, format, from, to, tenants: unique(filter.tenants) })
    }
}

/// Each name once, in the order first given.
fn unique(names: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    names.into_iter().filter(|n| seen.insert(n.clone())).collect()
}

/// Why no report was written.
enum Refused {
    /// The request is wrong (400), in words that name the parameter.
    Bad(String),
    /// Another report is being written.
    Busy,
    Failed(String),
}

/// Writes the report (off the async threads): its text, and its file name.
async fn write(state: &AppState, w: Wanted) -> Result<(String, String), Refused> {
    let Ok(_permit) = WRITING.try_acquire() else { return Err(Refused::Busy) };
    let key = state.signing_key.clone();
    let geo = state.geo.clone();
    let answer = state
        .journal
        .call(move |j| {
            let known = j.tenants()?;
            if let Some(t) = w.tenants.iter().find(|t| !known.contains(t)) {
                let held = if known.is_empty() { "none yet".to_string() } else { known.join(", ") };
                return Ok(Err(Refused::Bad(format!(
                    "tenant: the journal holds no tenant named {:?} (it holds: {})",
                    t.chars().take(80).collect::<String>(),
                    held.chars().take(400).collect::<String>()
                ))));
            }
            // What `tines-audit report` trusts by default: the local signing key's public half.
            let keys = match key.as_ref().map(|k| k.load()).transpose() {
                Ok(local) => {
                    crate::signing::Keyring::new(local.flatten().iter().map(|k| *k.public()).collect::<Vec<_>>())
                }
                Err(e) => return Ok(Err(Refused::Failed(format!("cannot read the signing key: {e}")))),
            };
            let built = report::build(j, w.framework, w.from, w.to, &w.tenants, geo.as_ref(), &keys);
            Ok(match built {
                Ok(r) => {
                    let stamp = |t: i64| format_rfc3339(t).replace([':', '-'], "");
                    let name = format!(
                        "tines-audit-report-{}-{}-{}.{}",
                        w.framework.as_str(),
                        stamp(w.from),
                        stamp(w.to),
                        w.format.extension()
                    );
                    Ok((w.format.render(&r), name))
                }
                Err(SearchError::Journal(e)) => Err(Refused::Failed(format!("the journal could not answer: {e}"))),
                Err(other) => Err(Refused::Bad(other.to_string())),
            })
        })
        .await;
    match answer {
        Ok(done) => done,
        Err(e) => Err(Refused::Failed(format!("the journal could not answer: {e}"))),
    }
}

fn download(format: Format, text: String, name: &str) -> Response {
    (
        [
            (CONTENT_TYPE, format.content_type().to_string()),
            (CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        text,
    )
        .into_response()
}

const BUSY: &str = "another report is being written (each verifies the whole journal); try again when it is done";

/// `GET /api/v1/reports?tenant=…&from=…&to=…&framework=…&format=html|md|csv`: the report
/// as an attachment; a bad parameter or an unknown tenant is a 400 that names it.
pub(super) async fn api(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if !state.auth.allows(&headers) {
        return super::api::unauthorized_json();
    }
    let error = |code: StatusCode, message: String| (code, axum::Json(json!({"error": message}))).into_response();
    let wanted = match read(raw.as_deref()).and_then(|g| g.check(now_secs())) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let format = wanted.format;
    match write(&state, wanted).await {
        Ok((text, name)) => download(format, text, &name),
        Err(Refused::Bad(e)) => error(StatusCode::BAD_REQUEST, e),
        Err(Refused::Busy) => {
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, BUSY.into());
            r.headers_mut().insert(RETRY_AFTER, axum::http::HeaderValue::from_static("5"));
            r
        }
        Err(Refused::Failed(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// The report form for `tenants` and a period, as given (`from`, `to` as written).
fn form(tenants: &[String], from: &str, to: &str, framework: &str, format: &str) -> Markup {
    let frameworks = [("soc2", "SOC 2"), ("iso27001", "ISO 27001"), ("gdpr", "GDPR")];
    let formats = [("html", "HTML"), ("md", "Markdown"), ("csv", "CSV")];
    html! {
        form #report-link .filters method="get" action="/reports" {
            @for t in tenants {
                input type="hidden" name="tenant" value=(t);
            }
            span .meta #report-tenants {
                "Compliance report for "
                @if tenants.is_empty() { "every tenant" } @else { "tenant " (tenants.join(", ")) }
            }
            label { "From" input #report-from name="from" value=(from) required placeholder="90d or 2024-01-01"; }
            label { "To" input #report-to name="to" value=(to) placeholder="now"; }
            label {
                "Framework"
                select #report-framework name="framework" {
                    @for (value, label) in frameworks {
                        option value=(value) selected[framework.eq_ignore_ascii_case(value)] { (label) }
                    }
                }
            }
            label {
                "Format"
                select #report-format name="format" {
                    @for (value, label) in formats {
                        option value=(value) selected[format.eq_ignore_ascii_case(value)] { (label) }
                    }
                }
            }
            button #report-download type="submit" { "Download report" }
        }
    }
}

/// The events page's report form: a compliance report for the tenants and the period of
/// the filters in `args` (every tenant when they name none; the other filters do not
/// apply to a report). Nothing when the filters are not valid (the page says why).
pub(super) fn report_link(args: &FilterArgs) -> String {
    let Ok(filter) = args.build(now_secs()) else { return String::new() };
    let tenants = unique(filter.tenants);
    // A time from the search box (`from:30d`) has no parameter of its own: its instant.
    let point = |given: &Option<String>, built: Option<i64>| given.clone().or(built.map(format_rfc3339));
    let from = point(&args.from, filter.from).unwrap_or_default();
    let to = point(&args.to, filter.to).unwrap_or_default();
    form(&tenants, &from, &to, "soc2", "html").into_string()
}

/// `GET /reports`: with no parameters, the form; with them, the report as a download, or
/// the form again with what was wrong.
pub(super) async fn view(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if !state.auth.allows(&headers) {
        return login_redirect();
    }
    let csrf = state.auth.csrf_token(&headers).unwrap_or_default();
    let show = |status: StatusCode, given: &Given, error: Option<&str>| {
        let tenants: Vec<String> =
            given.args.tenant.iter().flat_map(|t| t.split(',')).map(|t| t.trim().to_string()).collect();
        let body = html! {
            h1 { "Compliance report" }
            p .meta {
                "The evidence report of " code { "tines-audit report" } " for some tenants over a period: each section's events with the controls they evidence, the collection's continuity, the alerts, posture changes, self-tests and the journal's verification."
            }
            @if let Some(e) = error { p .error #error { (e) } }
            (form(
                &tenants.into_iter().filter(|t| !t.is_empty()).collect::<Vec<_>>(),
                given.args.from.as_deref().unwrap_or(""),
                given.args.to.as_deref().unwrap_or(""),
                given.framework.as_deref().unwrap_or("soc2"),
                given.format.as_deref().unwrap_or("html"),
            ))
        };
        (status, page("Compliance report", "Events", &body.into_string(), &csrf)).into_response()
    };
    if raw.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return show(StatusCode::OK, &Given::default(), None);
    }
    let given = match read(raw.as_deref()) {
        Ok(g) => g,
        Err(e) => return show(StatusCode::BAD_REQUEST, &Given::default(), Some(&e)),
    };
    let wanted = match given.check(now_secs()) {
        Ok(w) => w,
        Err(e) => return show(StatusCode::BAD_REQUEST, &given, Some(&e)),
    };
    let format = wanted.format;
    match write(&state, wanted).await {
        Ok((text, name)) => download(format, text, &name),
        Err(Refused::Bad(e)) => show(StatusCode::BAD_REQUEST, &given, Some(&e)),
        Err(Refused::Busy) => show(StatusCode::SERVICE_UNAVAILABLE, &given, Some(BUSY)),
        Err(Refused::Failed(e)) => show(StatusCode::INTERNAL_SERVER_ERROR, &given, Some(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(q: &str) -> Result<Wanted, String> {
        read(Some(q))?.check(1_717_200_000)
    }

    #[test]
    fn a_report_request_is_checked_and_each_refusal_names_its_parameter() {
        let w =
            check("tenant=acme,globex&tenant=acme&from=2024-05-01&to=2024-06-01&framework=ISO27001&format=md").unwrap();
        assert_eq!((w.framework, w.format), (Framework::Iso27001, Format::Md));
        assert_eq!((w.from, w.to), (1_714_521_600, 1_717_200_000));
        assert_eq!(w.tenants, vec!["acme", "globex"], "each once");
        let w = check("from=30d&framework=soc2").unwrap();
        assert_eq!((w.from, w.to, w.format), (1_717_200_000 - 30 * 86_400, 1_717_200_000, Format::Html));
        assert!(w.tenants.is_empty(), "every tenant");
        for (q, says) in [
            ("framework=soc2", "from: missing"),
            ("from=30d", "framework: missing"),
            ("from=30d&framework=pci", "framework: \"pci\""),
            ("from=30d&framework=soc2&format=pdf", "format: \"pdf\""),
            ("from=yesterday&framework=soc2", "from: "),
            ("from=2024-06-01&to=2024-05-01&framework=soc2", "from: "),
            ("from=30d&to=2099-13-01&framework=soc2", "to: "),
            ("from=30d&framework=soc2&user=ann", "user: "),
            ("from=30d&framework=soc2&q=x", "q: "),
            ("from=30d&framework=soc2&bogus=1", "unknown parameter \"bogus\""),
            ("from=30d&framework=soc2&tenant=a%00", "tenant: "),
        ] {
            let e = check(q).err().unwrap_or_else(|| panic!("{q} was accepted"));
            assert!(e.contains(says), "{q}: {e}");
        }
    }

    #[test]
    fn the_report_link_carries_the_filters_tenants_and_period_escaped() {
        let args = FilterArgs {
            tenant: vec!["acme,\"><script>x</script>".into()],
            from: Some("7d".into()),
            user: vec!["ann@x.io".into()],
            ..Default::default()
        };
        let link = report_link(&args);
        assert!(link.contains("id=\"report-link\"") && link.contains("action=\"/reports\""), "{link}");
        assert!(link.contains("name=\"tenant\" value=\"acme\""), "{link}");
        assert!(link.contains("value=\"&quot;&gt;&lt;script&gt;x&lt;/script&gt;\""), "{link}");
        assert!(!link.contains("<script"), "{link}");
        assert!(link.contains("name=\"from\" value=\"7d\""), "{link}");
        assert!(!link.contains("ann@x.io"), "a report takes no user filter: {link}");
        // A period from the search box is its instant.
        let boxed = report_link(&FilterArgs { text: Some("from:2024-05-01".into()), ..Default::default() });
        assert!(boxed.contains("value=\"2024-05-01T00:00:00Z\""), "{boxed}");
        assert!(boxed.contains("every tenant"), "{boxed}");
        assert_eq!(report_link(&FilterArgs { ip: vec!["nope".into()], ..Default::default() }), "");
    }
}
