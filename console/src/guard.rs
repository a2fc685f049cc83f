//! What every request passes before a page runs: the session cookie
//! ([`SignedIn`]), and for every POST the checks against cross-site
//! requests ([`PostForm`]): `Sec-Fetch-Site` must say same-origin and
//! `Origin` must be this console when the browser sends them (the host the
//! request was sent to: its `Host` header, or over HTTP/2, which has none,
//! the request's `:authority`), and the form
//! must carry the session's own CSRF token (tied to the session, not a
//! double-submitted cookie). The sign-in form, which has no session yet,
//! carries an HMAC of a random pre-sign-in cookie instead ([`SigninCsrf`]).

use axum::async_trait;
use axum::extract::{Form, FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri, header};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::api::Api;
use crate::error::ConsoleError;
use crate::pages::AppState;
use crate::session::{SessionView, random_hex};

/// The cookie holding the session id.
pub const SESSION_COOKIE: &str = "pgv_session";
/// The cookie binding the sign-in form to one browser.
pub const SIGNIN_COOKIE: &str = "pgv_signin";
/// Ends the session cookie in the browser.
pub const CLEAR_SESSION_COOKIE: &str = "pgv_session=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict";

/// `Set-Cookie` value for `name=value`: HttpOnly, SameSite=Strict, the
/// whole console, Secure when served over TLS; a browser-session cookie
/// (the server ends the session itself).
pub fn cookie(name: &str, value: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict{secure}")
}

/// The value of cookie `name` in the request, if sent.
pub fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
}

/// A request from a signed-in browser: its session and the API as its user.
pub struct SignedIn {
    pub session: SessionView,
    pub api: Api,
}

#[async_trait]
impl<S> FromRequestParts<S> for SignedIn
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ConsoleError> {
        let app = AppState::from_ref(state);
        let id = read_cookie(&parts.headers, SESSION_COOKIE).ok_or(ConsoleError::SignInRequired)?;
        let session = app.sessions.get(id).ok_or(ConsoleError::SignInRequired)?;
        let api = Api::new(&app.api, &session.token);
        Ok(SignedIn { session, api })
    }
}

/// Refuses a request another site made the browser send: `Sec-Fetch-Site`
/// other than same-origin, or an `Origin` that is not this console. The
/// console's address is the `Host` header, or where there is none (HTTP/2
/// carries it as `:authority`, which hyper puts in the request URI) the
/// authority of `uri`.
pub fn same_origin(headers: &HeaderMap, uri: &Uri) -> Result<(), ConsoleError> {
    let refuse = |why: &str| {
        ConsoleError::Forbidden(format!(
            "the form was not sent from this console ({why}): open the console's page and submit it there"
        ))
    };
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"same-origin"
    {
        return Err(refuse("Sec-Fetch-Site is not same-origin"));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty())
            .or_else(|| uri.authority().map(|a| a.as_str()))
            .unwrap_or_default();
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if host.is_empty() || authority != Some(host) {
            return Err(refuse("Origin is another site"));
        }
    }
    Ok(())
}

/// The fields of a POSTed form from a signed-in browser, after the origin
/// and CSRF checks. Fields stay as sent (repeated names included, e.g. the
/// databases ticked in the configure flow); handlers read what they need.
pub struct PostForm {
    pub user: SignedIn,
    fields: Vec<(String, String)>,
}

impl PostForm {
    /// The first value of field `name`, trimmed; `""` when absent.
    pub fn get(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim())
            .unwrap_or_default()
    }

    /// The first value of field `name` exactly as sent (a connection
    /// string may hold meaningful spaces); `""` when absent.
    pub fn raw(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .unwrap_or_default()
    }

    /// Field `name` as a whole number, 0 when left empty (the API's
    /// "leave it to pgvault"); anything else is refused with `refusal`.
    /// The API checks the range and says what it takes.
    pub fn number_or_zero(&self, name: &str, refusal: &str) -> Result<u32, ConsoleError> {
        match self.get(name) {
            "" => Ok(0),
            value => value
                .parse()
                .map_err(|_| ConsoleError::Invalid(refusal.to_string())),
        }
    }

    /// Every non-empty value of field `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
            .collect()
    }
}

#[async_trait]
impl<S> FromRequest<S> for PostForm
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ConsoleError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ConsoleError> {
        let (mut parts, body) = request.into_parts();
        let user = SignedIn::from_request_parts(&mut parts, state).await?;
        same_origin(&parts.headers, &parts.uri)?;
        let request = Request::from_parts(parts, body);
        let Form(fields) = Form::<Vec<(String, String)>>::from_request(request, state)
            .await
            .map_err(|e| ConsoleError::Invalid(format!("unreadable form: {e}")))?;
        let form = PostForm { user, fields };
        let sent = form.get("csrf");
        let expected = form.user.session.csrf.as_bytes();
        if sent.is_empty() || !bool::from(sent.as_bytes().ct_eq(expected)) {
            return Err(ConsoleError::Forbidden(
                "the form's CSRF token does not belong to this session (it may be from an older session): reload the page and submit it again".into(),
            ));
        }
        Ok(form)
    }
}

/// CSRF for the sign-in form: a random nonce in a cookie, and in the form
/// its HMAC under a key of this process, so only a form this console
/// served to this browser signs in.
pub struct SigninCsrf {
    key: [u8; 32],
}

impl SigninCsrf {
    pub fn new() -> SigninCsrf {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        SigninCsrf { key }
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key).expect("hmac takes a key of any length")
    }

    /// A fresh nonce (for the cookie) and the form's token for it.
    pub fn issue(&self) -> (String, String) {
        let nonce = random_hex();
        let mut mac = self.mac();
        mac.update(nonce.as_bytes());
        (nonce, hex::encode(mac.finalize().into_bytes()))
    }

    /// Whether `token` is the form token issued with `nonce`.
    pub fn verify(&self, nonce: &str, token: &str) -> bool {
        let Ok(token) = hex::decode(token) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(nonce.as_bytes());
        !nonce.is_empty() && mac.verify_slice(&token).is_ok()
    }
}

impl Default for SigninCsrf {
    fn default() -> Self {
        SigninCsrf::new()
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_over_tls() {
        let plain = cookie(SESSION_COOKIE, "abc", false);
        assert_eq!(plain, "pgv_session=abc; Path=/; HttpOnly; SameSite=Strict");
        assert!(cookie(SESSION_COOKIE, "abc", true).ends_with("; Secure"));
    }

    #[test]
    fn the_named_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; pgv_session=xyz ;b=2"), ("cookie", "c=3")]);
        assert_eq!(read_cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(read_cookie(&h, "c"), Some("3"));
        assert_eq!(read_cookie(&h, "pgv"), None);
    }

    /// An HTTP/1.1 request's target: a path, no authority.
    fn path() -> Uri {
        Uri::from_static("/signin")
    }

    #[test]
    fn cross_site_requests_are_refused() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080")]), &path()).is_ok());
        assert!(
            same_origin(
                &headers(&[
                    ("host", "127.0.0.1:8080"),
                    ("origin", "http://127.0.0.1:8080"),
                    ("sec-fetch-site", "same-origin"),
                ]),
                &path()
            )
            .is_ok()
        );
        for bad in [
            headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]),
            headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "same-site")]),
            headers(&[("host", "127.0.0.1:8080"), ("origin", "http://evil.test")]),
            headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
            headers(&[("origin", "http://127.0.0.1:8080")]),
        ] {
            assert!(
                matches!(same_origin(&bad, &path()), Err(ConsoleError::Forbidden(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn over_http2_the_console_is_the_requests_authority() {
        // HTTP/2 has no Host header: hyper gives the absolute URI instead.
        let uri = Uri::from_static("https://console.test:8443/signin");
        let ours = headers(&[
            ("origin", "https://console.test:8443"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert!(same_origin(&ours, &uri).is_ok());
        for bad in [
            headers(&[("origin", "https://evil.test")]),
            headers(&[("origin", "https://console.test:9443")]),
            headers(&[
                ("origin", "https://console.test:8443"),
                ("sec-fetch-site", "cross-site"),
            ]),
        ] {
            assert!(
                matches!(same_origin(&bad, &uri), Err(ConsoleError::Forbidden(_))),
                "{bad:?}"
            );
        }
        // A Host header, when sent, is the console's address.
        let other_host = headers(&[
            ("host", "elsewhere.test"),
            ("origin", "https://console.test:8443"),
        ]);
        assert!(matches!(
            same_origin(&other_host, &uri),
            Err(ConsoleError::Forbidden(_))
        ));
    }

    #[test]
    fn signin_tokens_verify_only_with_their_nonce_and_key() {
        let csrf = SigninCsrf::new();
        let (nonce, token) = csrf.issue();
        assert!(csrf.verify(&nonce, &token));
        let (other_nonce, _) = csrf.issue();
        assert!(!csrf.verify(&other_nonce, &token));
        assert!(!csrf.verify(&nonce, "00"));
        assert!(!csrf.verify(&nonce, "not hex"));
        assert!(
            !SigninCsrf::new().verify(&nonce, &token),
            "another process's key"
        );
    }
}
