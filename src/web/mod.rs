//! The HTTP side of the service: health (`/healthz`, `/readyz`), Prometheus
//! metrics (`/metrics`), and behind a login the console (`/events`, `/alerts`, `/searches`,
//! `/reports`, `/status`) and the JSON API (`/api/v1/events`, `/api/v1/alerts`,
//! `/api/v1/searches`, `/api/v1/reports`, described at `/api/v1/openapi.json`; its changes
//! are alert triage, which needs an analyst ([`alerts`]), and saved searches). Binds to 127.0.0.1
//! unless told otherwise; everything but the health probes needs the token, and
//! `/readyz` gives its reasons only with it. Every response body passes through
//! [`crate::secret::redact`] on its way out.

pub mod alerts;
pub mod api;
pub mod auth;
mod console;
mod events_page;
#[cfg(test)]
mod page_tests;
mod posture_page;
mod reports;
mod searches;
mod timeline;

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Form, Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, PreEscaped, html};

use crate::journal::Journal;
use crate::timeutil::now_secs;

/// `[web]` settings, validated.
#[derive(Debug, Clone)]
pub struct WebSettings {
    pub bind: SocketAddr,
    /// Who may log in, each with a token and a role (at least one).
    pub users: Vec<auth::WebUser>,
    /// Host names the console answers to besides IP literals and `localhost`.
    pub allowed_hosts: Vec<String>,
}

/// When the service stops being ready.
#[derive(Debug, Clone)]
pub struct ReadinessSettings {
    /// A tenant whose last successful sync is older than this makes the service not ready.
    pub tenant_stale_after: Duration,
    /// A sink that has been failing for longer than this makes the service not ready.
    pub sink_stuck_after: Duration,
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub journal: Journal,
    pub auth: Arc<auth::Auth>,
    pub tenants: Vec<String>,
    pub sinks: Vec<String>,
    pub readiness: ReadinessSettings,
    /// Country of a source IP, for the country filter and the console.
    pub geo: Arc<dyn crate::query::CountryLookup>,
    /// The rules alerts come from, for their descriptions and Sigma texts.
    pub rules: Arc<alerts::RuleBook>,
    /// Where the installation's signing key is: reports trust its public half, as
    /// `tines-audit report` does (`None`: trust no key).
    pub signing_key: Option<crate::signing::KeyLocation>,
}

/// Every route of the service.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/", get(console::home))
        .route("/events", get(events_page::events))
        .route("/events/{seq}", get(events_page::event))
        .route("/alerts", get(alerts::pages::list))
        .route("/alerts/{id}", get(alerts::pages::detail))
        .route("/alerts/{id}/triage", axum::routing::post(alerts::pages::triage))
        .route("/status", get(console::status))
        .route("/posture", get(posture_page::view))
        .route("/searches", get(searches::view).post(searches::save_posted))
        .route("/searches/{id}/delete", axum::routing::post(searches::delete_posted))
        .route("/reports", get(reports::view))
        .route("/api/v1/events", get(api::events))
        .route("/api/v1/events/facets", get(api::facets))
        .route("/api/v1/events/export", get(api::export))
        .route("/api/v1/events/{seq}", get(api::event))
        .route("/api/v1/histogram", get(api::histogram))
        .route("/api/v1/posture", get(posture_page::api))
        .route("/api/v1/openapi.json", get(api::openapi))
        .route("/api/v1/alerts", get(alerts::api::list))
        .route("/api/v1/alerts/{id}", get(alerts::api::detail).patch(alerts::api::triage))
        .route("/api/v1/alerts/{id}/events", get(alerts::api::events))
        .route("/api/v1/rules/{id}", get(alerts::api::rule))
        .route("/api/v1/searches", get(searches::list).post(searches::create))
        .route("/api/v1/searches/{id}", get(searches::detail).delete(searches::remove))
        .route("/api/v1/reports", get(reports::api))
        .layer(axum::middleware::map_response(redact_response))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// `script-src` and `style-src` hashes of the one script and the two stylesheets the pages
/// carry inline: no other script or style runs, whatever a record manages to put on a page.
static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    use base64::Engine as _;
    use sha2::Digest as _;
    let hash = |css: &str| base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(css.as_bytes()));
    let policy = format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}' 'sha256-{}'; img-src 'self' data:; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        hash(console::JS),
        hash(console::CSS),
        hash(LOGIN_CSS)
    );
    HeaderValue::from_str(&policy).expect("a header value")
});

/// Every request's first stop: refuses a `Host` that is not this service's (DNS
/// rebinding) and credentials from an address with too many failures; logs logins
/// and refused tokens with their source (never the token); and adds the security
/// headers to every answer.
async fn guard(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let is_login = req.method() == Method::POST && req.uri().path() == "/login";
    let has_bearer = req.headers().contains_key(axum::http::header::AUTHORIZATION);
    let source = peer.ip();
    let mut resp = if !state.auth.host_allowed(req.headers()) {
        tracing::warn!(%source, "request refused: its Host header does not name this service (add the name to web.allowed_hosts)");
        (StatusCode::MISDIRECTED_REQUEST, "this service does not answer to that host name (web.allowed_hosts)\n")
            .into_response()
    } else if let Some(wait) = state.auth.throttled(source).filter(|_| is_login || has_bearer) {
        let secs = wait.as_secs().max(1);
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(axum::http::header::RETRY_AFTER, secs.to_string())],
            format!("too many failed logins from this address: try again in {secs}s\n"),
        )
            .into_response()
    } else {
        let resp = next.run(req).await;
        let refused = resp.status() == StatusCode::UNAUTHORIZED;
        // A successful login is logged by the handler, which knows whose it was.
        if (is_login || has_bearer) && refused {
            state.auth.record_failure(source);
            let how = if is_login { "console login failed" } else { "bearer token refused" };
            tracing::warn!(%source, "{how}");
        }
        resp
    };
    let h = resp.headers_mut();
    h.insert("content-security-policy", CSP.clone());
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(axum::http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The last guard of every page and API answer: no registered secret leaves in
/// a body, whatever put it there (an error quoting an API's answer, a record).
async fn redact_response(resp: Response) -> Response {
    // The export streams more than memory should hold, and redacts each row itself.
    if resp.extensions().get::<api::RedactedPerRow>().is_some() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // Bodies are built in memory by the handlers, so reading them whole costs no more.
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let body = match std::str::from_utf8(&bytes).map(crate::secret::redact) {
        Ok(std::borrow::Cow::Owned(text)) => {
            parts.headers.remove(CONTENT_LENGTH);
            axum::body::Body::from(text)
        }
        _ => axum::body::Body::from(bytes),
    };
    Response::from_parts(parts, body)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

pub(super) fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [("www-authenticate", "Bearer")],
        "authentication required: send the console token as a Bearer token, or log in at /login\n",
    )
        .into_response()
}

/// Why the service is not ready, if it is not.
pub fn readiness_problems(state: &AppState) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = state.journal.check_writable() {
        problems.push(format!("journal not writable: {e}"));
    }
    let now = now_secs();
    let grace_over = now - crate::status::started_at() > state.readiness.tenant_stale_after.as_secs() as i64;
    let tenants = crate::status::tenants();
    for t in &state.tenants {
        let st = tenants.get(t);
        let fresh = st
            .and_then(|s| s.last_success)
            .is_some_and(|at| now - at <= state.readiness.tenant_stale_after.as_secs() as i64);
        if !fresh && grace_over {
            let why = match (st.and_then(|s| s.last_error.clone()), st.and_then(|s| s.last_success)) {
                (Some(e), _) => format!("last error: {e}"),
                (None, Some(_)) => "the current sync has not finished".into(),
                (None, None) => "no successful sync yet".into(),
            };
            problems.push(format!(
                "tenant {t} not synced for over {}s: {why}",
                state.readiness.tenant_stale_after.as_secs()
            ));
        }
    }
    let sinks = crate::status::sinks();
    for s in &state.sinks {
        let Some(st) = sinks.get(s) else { continue };
        if st.consecutive_failures == 0 {
            continue;
        }
        let since = st.last_success.unwrap_or_else(crate::status::started_at);
        if now - since > state.readiness.sink_stuck_after.as_secs() as i64 {
            problems.push(format!(
                "sink {s} failing for over {}s: {}",
                state.readiness.sink_stuck_after.as_secs(),
                st.last_error.clone().unwrap_or_default()
            ));
        }
    }
    problems
}

/// `ready` (200) or `not ready` (503) for anyone (load balancers, probes); the
/// reasons, which quote errors, only with the token.
async fn readyz(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let s = state.clone();
    let problems =
        tokio::task::spawn_blocking(move || readiness_problems(&s)).await.unwrap_or_else(|e| vec![e.to_string()]);
    if problems.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else if !state.auth.allows(&headers) {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready:\n- {}\n", problems.join("\n- "))).into_response()
    }
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.auth.allows(&headers) {
        return unauthorized();
    }
    let journal = state.journal.clone();
    match tokio::task::spawn_blocking(move || crate::metrics::render(&journal)).await {
        Ok(Ok(text)) => {
            ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
        }
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("metrics unavailable: {e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("metrics unavailable: {e}\n")).into_response(),
    }
}

const LOGIN_CSS: &str = "body{font:15px system-ui,sans-serif;max-width:24rem;margin:4rem auto;color:#222}input,button{font:inherit;padding:.4rem;width:100%;box-sizing:border-box;margin:.3rem 0}.err{color:#b00}@media (prefers-color-scheme:dark){body{background:#15171a;color:#e4e6ea}}";

/// The login page; `error` says why the last attempt was refused.
fn login_html(error: Option<&str>) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width,initial-scale=1";
                    title { "tines-audit: log in" }
                    // Byte for byte the constant the Content-Security-Policy hashes.
                    style { (PreEscaped(LOGIN_CSS)) }
                }
                body {
                    h1 { "tines-audit" }
                    p { "Enter the console token (the " code { "web.token" } " of the configuration)." }
                    form method="post" action="/login" {
                        input type="password" name="token" autocomplete="current-password" autofocus aria-label="token";
                        button type="submit" { "Log in" }
                    }
                    @if let Some(e) = error { p.err { (e) } }
                }
            }
        }
        .into_string(),
    )
}

async fn login_page() -> Html<String> {
    login_html(None)
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some((id, who)) = state.auth.log_in(form.token.trim()) else {
        return (StatusCode::UNAUTHORIZED, login_html(Some("That token is not right."))).into_response();
    };
    tracing::info!(user = %who.name, source = %peer.ip(), "console login succeeded");
    (StatusCode::SEE_OTHER, [(SET_COOKIE, auth::session_cookie_header(&id)), (LOCATION, "/events".to_string())])
        .into_response()
}

#[derive(serde::Deserialize)]
struct LogoutForm {
    csrf: Option<String>,
}

/// Ends the session and clears its cookie. A cross-site form cannot log a user out:
/// the session's CSRF token must come with it.
async fn logout(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<LogoutForm>) -> Response {
    if !state.auth.may_change(&headers, form.csrf.as_deref()) {
        return (StatusCode::FORBIDDEN, "logout refused: the form's CSRF token is missing or stale; reload the page\n")
            .into_response();
    }
    state.auth.end_session(&headers);
    (StatusCode::SEE_OTHER, [(SET_COOKIE, auth::cleared_cookie_header()), (LOCATION, "/login".to_string())])
        .into_response()
}
