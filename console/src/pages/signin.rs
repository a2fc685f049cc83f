//! Signing in and out. `GET /` shows the form (or goes on to the overview
//! when a session is live); `POST /signin` checks the form came from this
//! console in this browser, checks the token with one cheap API call
//! (`TestPermissions`, which also names the token), and starts a session
//! with a fresh id; `POST /signout` ends it. The token is never echoed:
//! not in the page, not in a message, not in a log.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use pgvault_proto::v1 as pb;
use serde::Deserialize;

use crate::api::Api;
use crate::error::ConsoleError;
use crate::guard::{
    self, CLEAR_SESSION_COOKIE, PostForm, SESSION_COOKIE, SIGNIN_COOKIE, read_cookie,
};
use crate::pages::layout::Nav;
use crate::pages::{AppState, render};
use crate::session::Token;

#[derive(Template)]
#[template(path = "signin.html")]
struct SigninPage {
    nav: Option<Nav>,
    csrf: String,
    notice: String,
    notice_class: &'static str,
}

#[derive(Deserialize)]
pub struct SigninQuery {
    #[serde(default)]
    signin: String,
}

#[derive(Deserialize)]
pub struct SigninForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

/// `GET /`.
pub async fn form(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<SigninQuery>,
) -> Result<Response, ConsoleError> {
    let live = read_cookie(&headers, SESSION_COOKIE).and_then(|id| app.sessions.get(id));
    if live.is_some() {
        return Ok(Redirect::to("/overview").into_response());
    }
    let (notice, class) = match query.signin.as_str() {
        "expired" => ("Your session has ended: sign in again.", "warn"),
        "rejected" => (
            "The API no longer accepts this session's token (revoked?): sign in with a valid one.",
            "bad",
        ),
        "signedout" => ("You have signed out.", "ok"),
        _ => ("", ""),
    };
    form_page(&app, StatusCode::OK, notice, class)
}

/// The sign-in form with a fresh pre-sign-in nonce cookie.
fn form_page(
    app: &AppState,
    status: StatusCode,
    notice: &str,
    notice_class: &'static str,
) -> Result<Response, ConsoleError> {
    let (nonce, csrf) = app.signin.issue();
    let mut response = render(&SigninPage {
        nav: None,
        csrf,
        notice: notice.to_string(),
        notice_class,
    })?;
    *response.status_mut() = status;
    set_cookie(
        &mut response,
        &guard::cookie(SIGNIN_COOKIE, &nonce, app.secure_cookies),
    );
    Ok(response)
}

/// `POST /signin`.
pub async fn sign_in(
    State(app): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Form(form): Form<SigninForm>,
) -> Result<Response, ConsoleError> {
    guard::same_origin(&headers, &uri)?;
    let nonce = read_cookie(&headers, SIGNIN_COOKIE).unwrap_or_default();
    if !app.signin.verify(nonce, &form.csrf) {
        return Err(ConsoleError::Forbidden(
            "the sign-in form was not served to this browser by this console (or the console restarted): \
             reload the sign-in page and try again"
                .into(),
        ));
    }
    let token = match Token::parse(&form.token) {
        Ok(token) => token,
        Err(why) => return form_page(&app, StatusCode::BAD_REQUEST, why, "bad"),
    };
    let probe = pb::TestPermissionsRequest {
        resource: String::new(),
        permissions: vec!["ListVaults".into()],
    };
    let label = match Api::new(&app.api, &token)
        .access()
        .test_permissions(probe)
        .await
    {
        Ok(answer) => answer.into_inner().display_name,
        // Authenticated, but without a global role that may read.
        Err(status) if status.code() == tonic::Code::PermissionDenied => {
            "a token with vault roles only".to_string()
        }
        Err(status) if status.code() == tonic::Code::Unauthenticated => {
            tracing::info!("web console sign-in refused: token not valid");
            return form_page(
                &app,
                StatusCode::UNAUTHORIZED,
                "That API token is not valid: check it was copied whole, and that it was not revoked.",
                "bad",
            );
        }
        Err(status) => return Err(status.into()),
    };
    let session = app.sessions.create(token, label);
    tracing::info!(user = %session.label, "web console sign-in");
    let mut response = Redirect::to("/overview").into_response();
    set_cookie(
        &mut response,
        &guard::cookie(SESSION_COOKIE, &session.id, app.secure_cookies),
    );
    set_cookie(
        &mut response,
        &format!("{SIGNIN_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict"),
    );
    Ok(response)
}

/// `POST /signout`.
pub async fn sign_out(State(app): State<AppState>, form: PostForm) -> Response {
    app.sessions.end(&form.user.session.id);
    tracing::info!(user = %form.user.session.label, "web console sign-out");
    let mut response = Redirect::to("/?signin=signedout").into_response();
    set_cookie(&mut response, CLEAR_SESSION_COOKIE);
    response
}

fn set_cookie(response: &mut Response, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}
