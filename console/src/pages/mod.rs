//! The console's pages and the router that serves them.
//!
//! Every page is a handler that calls the API as the signed-in user
//! ([`crate::guard::SignedIn`]) and renders an askama template (compiled,
//! HTML-escaping every value) from a small view model; every form posts
//! through [`crate::guard::PostForm`] (origin and CSRF checked) and
//! answers with a redirect to the page showing the result (a job, an
//! instance) or an error page. Every response carries a strict
//! Content-Security-Policy: scripts and styles from the console only.
//!
//! # Layout
//! - `layout`: the frame every page shares (navigation, sign-out form);
//!   `lookup`: whole collections read page by page.
//! - `signin`: `GET /`, `POST /signin`, `POST /signout`.
//! - `overview`: vaults, protected instances, failed jobs of the last 24 h;
//!   `vault`: one vault's policies and instances.
//! - `jobs`: the jobs dashboard (filters, paging); `job`: one job, its live
//!   fragment over server-sent events, cancel and retry.
//! - `instance`: a backup instance, its recovery points and actions;
//!   `restore`: restoring a point as a database or as files.
//! - `configure`: server → databases → policy and secret → readiness, and
//!   re-validation.

pub mod configure;
pub mod instance;
pub mod job;
pub mod jobs;
pub mod layout;
pub mod lookup;
pub mod overview;
pub mod restore;
pub mod signin;
pub mod vault;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use crate::api::ApiChannel;
use crate::error::ConsoleError;
use crate::guard::{PostForm, SigninCsrf};
use crate::session::Sessions;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The coordinator's API, used with each user's own token.
    pub api: ApiChannel,
    pub sessions: Arc<Sessions>,
    pub signin: Arc<SigninCsrf>,
    /// Cookies get `Secure` when the console is served over TLS.
    pub secure_cookies: bool,
}

impl AppState {
    pub fn new(api: ApiChannel, sessions: Arc<Sessions>, secure_cookies: bool) -> AppState {
        AppState {
            api,
            sessions,
            signin: Arc::new(SigninCsrf::new()),
            secure_cookies,
        }
    }
}

/// Every route of the console.
pub fn router(state: AppState) -> Router {
    const INSTANCE: &str = "/vaults/:vault/instances/:instance";
    Router::new()
        .route("/", get(signin::form))
        .route("/signin", post(signin::sign_in))
        .route("/signout", post(signin::sign_out))
        .route("/overview", get(overview::page))
        .route("/vaults/:vault", get(vault::page))
        .route("/jobs", get(jobs::page))
        .route("/jobs/:job", get(job::page))
        .route("/jobs/:job/events", get(job::events))
        .route("/jobs/:job/cancel", post(job::cancel))
        .route("/jobs/:job/retry", post(job::retry))
        .route(INSTANCE, get(instance::page))
        .route(&format!("{INSTANCE}/backup"), post(instance::backup_now))
        .route(&format!("{INSTANCE}/stop"), post(instance::stop))
        .route(&format!("{INSTANCE}/resume"), post(instance::resume))
        .route(
            &format!("{INSTANCE}/revalidate"),
            post(configure::revalidate),
        )
        .route(
            &format!("{INSTANCE}/points/:point/restore"),
            get(restore::page),
        )
        .route(
            &format!("{INSTANCE}/points/:point/restore/database"),
            post(restore::as_database),
        )
        .route(
            &format!("{INSTANCE}/points/:point/restore/files"),
            post(restore::as_files),
        )
        .route(
            "/configure",
            get(configure::start).post(configure::configure),
        )
        .route("/configure/databases", get(configure::databases))
        .route("/configure/secret", post(configure::put_secret))
        .route("/assets/:name", get(crate::assets::serve))
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

async fn not_found() -> ConsoleError {
    ConsoleError::NotFound("there is no such page in the console".into())
}

/// Headers every response carries: nothing but the console's own script
/// and styles run, no framing, no sniffing, no referrer to other sites
/// (same-origin keeps the `Origin` of the console's own form posts, which
/// `no-referrer` would turn into `null`), pages not cached.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Renders a page template.
pub fn render(page: &impl Template) -> Result<Response, ConsoleError> {
    page.render()
        .map(|html| Html(html).into_response())
        .map_err(|e| ConsoleError::Internal(format!("cannot render the page: {e}")))
}

/// The form's `workers` field (Backup now, Restore as database): how many
/// workers to fan out across, 0 when left empty (the size threshold
/// decides). The API checks the range.
pub fn fan_out_workers(form: &PostForm) -> Result<u32, ConsoleError> {
    form.number_or_zero(
        "workers",
        "workers must be a number (2-64), or empty to fan out only above the size threshold",
    )
}
