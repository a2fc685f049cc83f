//! The console's one error type, and the one place it becomes a response:
//! a page saying what went wrong with the right status, or the way back to
//! sign-in. gRPC statuses from the API map here ([`From<tonic::Status>`]),
//! so a call the access gate refused is a 403 page whatever the page was.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::pages::layout::Nav;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No session, or it expired: back to the sign-in form.
    #[error("sign in to continue")]
    SignInRequired,
    /// The API no longer accepts the session's token (revoked).
    #[error("the API token of this session is no longer valid: sign in again")]
    TokenRejected,
    /// The token may not do this, or the form was not the console's own.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The request or its input cannot be used as it is.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<tonic::Status> for ConsoleError {
    fn from(status: tonic::Status) -> Self {
        use tonic::Code;
        let message = status.message().to_string();
        match status.code() {
            Code::Unauthenticated => ConsoleError::TokenRejected,
            Code::PermissionDenied => ConsoleError::Forbidden(message),
            Code::NotFound => ConsoleError::NotFound(message),
            Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::AlreadyExists
            | Code::OutOfRange => ConsoleError::Invalid(message),
            Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => {
                ConsoleError::Unavailable(message)
            }
            _ => ConsoleError::Internal(message),
        }
    }
}

impl ConsoleError {
    pub fn status(&self) -> StatusCode {
        match self {
            ConsoleError::SignInRequired | ConsoleError::TokenRejected => StatusCode::SEE_OTHER,
            ConsoleError::Forbidden(_) => StatusCode::FORBIDDEN,
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::Invalid(_) => StatusCode::BAD_REQUEST,
            ConsoleError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ConsoleError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ConsoleError::SignInRequired | ConsoleError::TokenRejected => "Sign in",
            ConsoleError::Forbidden(_) => "Not allowed",
            ConsoleError::NotFound(_) => "Not found",
            ConsoleError::Invalid(_) => "Cannot do that",
            ConsoleError::Unavailable(_) => "Unavailable",
            ConsoleError::Internal(_) => "Something went wrong",
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    nav: Option<Nav>,
    title: &'a str,
    status: u16,
    message: String,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        match self {
            ConsoleError::SignInRequired => Redirect::to("/?signin=expired").into_response(),
            ConsoleError::TokenRejected => {
                let mut response = Redirect::to("/?signin=rejected").into_response();
                response.headers_mut().insert(
                    header::SET_COOKIE,
                    HeaderValue::from_static(crate::guard::CLEAR_SESSION_COOKIE),
                );
                response
            }
            other => {
                if matches!(other, ConsoleError::Internal(_)) {
                    tracing::warn!(error = %other, "web console request failed");
                }
                let status = other.status();
                let page = ErrorPage {
                    nav: None,
                    title: other.title(),
                    status: status.as_u16(),
                    message: other.to_string(),
                };
                match page.render() {
                    Ok(html) => (status, Html(html)).into_response(),
                    Err(_) => (status, other.to_string()).into_response(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_refusals_become_the_matching_pages() {
        let denied: ConsoleError = tonic::Status::permission_denied("no").into();
        assert_eq!(denied.status(), StatusCode::FORBIDDEN);
        let gone: ConsoleError = tonic::Status::not_found("job").into();
        assert_eq!(gone.status(), StatusCode::NOT_FOUND);
        let bad: ConsoleError = tonic::Status::invalid_argument("name").into();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        let revoked: ConsoleError = tonic::Status::unauthenticated("token").into();
        assert!(matches!(revoked, ConsoleError::TokenRejected));
    }

    #[test]
    fn a_revoked_token_clears_the_cookie_and_goes_to_sign_in() {
        let response = ConsoleError::TokenRejected.into_response();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[header::LOCATION], "/?signin=rejected");
        let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(cookie.contains("Max-Age=0"), "{cookie}");
    }
}
