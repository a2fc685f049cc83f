//! Sessions: what a signed-in browser is, kept in this process's memory.
//!
//! A session is a random 256-bit id (the only thing the cookie holds), the
//! user's API token, a CSRF token of its own, and two clocks: it ends
//! after `idle` without a request and `absolute` after sign-in. Sessions
//! live in one process, so several coordinators behind one address need
//! sticky sessions (the README says so). Times are tokio's, so tests move
//! them with `tokio::time::advance`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use rand::RngCore;
use rand::rngs::OsRng;
use tokio::time::Instant;
use tonic::metadata::{Ascii, MetadataValue};

/// The most sessions kept; signing in past it first ends the oldest.
const MAX_SESSIONS: usize = 10_000;

/// An API token as the user typed it. Its `Debug` prints nothing of it.
#[derive(Clone)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token from the sign-in form: printable ASCII without spaces, as
    /// `pgvault token create` prints them. The message never quotes it.
    pub fn parse(input: &str) -> Result<Token, &'static str> {
        let value = input.trim();
        if value.is_empty() {
            return Err("enter an API token (pgvault token create prints one)");
        }
        if value.len() > 512 || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "an API token is printable ASCII without spaces: paste the value pgvault token create printed",
            );
        }
        Ok(Token(value.to_string()))
    }

    /// `Bearer <token>`, marked sensitive.
    pub fn metadata(&self) -> MetadataValue<Ascii> {
        let mut value: MetadataValue<Ascii> = format!("Bearer {}", self.0)
            .parse()
            .unwrap_or_else(|_| MetadataValue::from_static("Bearer -"));
        value.set_sensitive(true);
        value
    }
}

/// 32 random bytes, hex.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What a request learns about its session.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub id: String,
    pub token: Token,
    pub csrf: String,
    /// Who signed in, as the API named the token (never its value).
    pub label: String,
}

struct Session {
    token: Token,
    csrf: String,
    label: String,
    created: Instant,
    last_seen: Instant,
}

/// Every live session of this console.
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
    idle: Duration,
    absolute: Duration,
}

impl Sessions {
    pub fn new(idle: Duration, absolute: Duration) -> Sessions {
        Sessions {
            by_id: Mutex::new(HashMap::new()),
            idle,
            absolute,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session for `token`, with a fresh id and CSRF token.
    pub fn create(&self, token: Token, label: String) -> SessionView {
        let now = Instant::now();
        let id = random_hex();
        let csrf = random_hex();
        let mut sessions = self.lock();
        sessions.retain(|_, s| !self.expired(s, now));
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            id.clone(),
            Session {
                token: token.clone(),
                csrf: csrf.clone(),
                label: label.clone(),
                created: now,
                last_seen: now,
            },
        );
        SessionView {
            id,
            token,
            csrf,
            label,
        }
    }

    /// The live session `id`, marked as used now; an expired one is ended.
    pub fn get(&self, id: &str) -> Option<SessionView> {
        self.with_live(id, |session, now| {
            session.last_seen = now;
            SessionView {
                id: id.to_string(),
                token: session.token.clone(),
                csrf: session.csrf.clone(),
                label: session.label.clone(),
            }
        })
    }

    /// Whether session `id` is still live, without counting as a use: a
    /// live job stream asks this, not the user, so an open job page does
    /// not keep an idle session alive. An expired session is ended.
    pub fn is_live(&self, id: &str) -> bool {
        self.with_live(id, |_, _| ()).is_some()
    }

    /// Runs `f` on session `id` if it is live; an expired session is ended
    /// and `f` not run.
    fn with_live<R>(&self, id: &str, f: impl FnOnce(&mut Session, Instant) -> R) -> Option<R> {
        let now = Instant::now();
        let mut sessions = self.lock();
        let session = sessions.get_mut(id)?;
        if self.expired(session, now) {
            sessions.remove(id);
            return None;
        }
        Some(f(session, now))
    }

    /// Ends session `id` (sign-out, or a token the API no longer accepts).
    pub fn end(&self, id: &str) {
        self.lock().remove(id);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expired(&self, session: &Session, now: Instant) -> bool {
        now.duration_since(session.last_seen) >= self.idle
            || now.duration_since(session.created) >= self.absolute
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Token {
        Token::parse("pgv_abc").expect("token")
    }

    #[test]
    fn tokens_never_show_in_debug_and_must_be_printable() {
        let t = Token::parse("  pgv_secret-value ").expect("trimmed");
        assert!(!format!("{t:?}").contains("secret"));
        assert!(Token::parse("").is_err());
        assert!(Token::parse("has space").is_err());
        assert!(Token::parse("tab\there").is_err());
        let error = Token::parse("bad value\u{7f}").unwrap_err();
        assert!(!error.contains("bad value"), "{error}");
    }

    #[test]
    fn ids_and_csrf_tokens_are_256_random_bits() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(600));
        let a = sessions.create(token(), "a".into());
        let b = sessions.create(token(), "b".into());
        assert_eq!(a.id.len(), 64);
        assert_eq!(a.csrf.len(), 64);
        assert_ne!(a.id, b.id);
        assert_ne!(a.csrf, b.csrf);
        assert_ne!(a.id, a.csrf);
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_ends_after_idle_time_without_requests() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(600));
        let s = sessions.create(token(), "ops".into());
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(sessions.get(&s.id).is_some(), "used within the idle time");
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(sessions.get(&s.id).is_some(), "the last use restarted it");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(sessions.get(&s.id).is_none(), "idle for 60 s");
        assert!(sessions.is_empty(), "an expired session is forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_session_still_ends_at_its_absolute_limit() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(150));
        let s = sessions.create(token(), "ops".into());
        for _ in 0..2 {
            tokio::time::advance(Duration::from_secs(50)).await;
            assert!(sessions.get(&s.id).is_some());
        }
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(sessions.get(&s.id).is_none(), "150 s after sign-in");
    }

    #[tokio::test(start_paused = true)]
    async fn asking_whether_a_session_is_live_does_not_keep_it_alive() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(600));
        let s = sessions.create(token(), "ops".into());
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(sessions.is_live(&s.id));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!sessions.is_live(&s.id), "idle for 60 s, asked or not");
        assert!(sessions.is_empty(), "an expired session is forgotten");
        let t = sessions.create(token(), "ops".into());
        sessions.end(&t.id);
        assert!(!sessions.is_live(&t.id), "signed out");
    }

    #[test]
    fn signing_out_ends_only_that_session() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(600));
        let a = sessions.create(token(), "a".into());
        let b = sessions.create(token(), "b".into());
        sessions.end(&a.id);
        assert!(sessions.get(&a.id).is_none());
        assert_eq!(sessions.get(&b.id).map(|s| s.label), Some("b".to_string()));
    }
}
