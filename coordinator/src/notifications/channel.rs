//! A vault's notification channel as the coordinator knows it: a webhook
//! URL, the body format, the events it is subscribed to and the stored
//! secret that signs its bodies. Validated once, where a channel is added.
//! A webhook URL may carry a token in its path or query (Slack's do), so
//! only [`redact_url`] (scheme and host) is ever shown or logged.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::error::{CoordinatorError, Result};
use crate::names;
use crate::secrets::Redacted;

/// What a channel is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// A job ended FAILED.
    Failed,
    /// A scheduled slot was recorded SKIPPED: no backup ran for it.
    Missed,
    /// A job ended COMPLETED or COMPLETED_WITH_WARNINGS.
    Succeeded,
    /// `pgvault notification test`: sent on request, never subscribed to.
    Test,
}

impl Event {
    /// The events a channel may subscribe to.
    pub const SUBSCRIBABLE: [Event; 3] = [Event::Failed, Event::Missed, Event::Succeeded];

    /// As stored, in bodies and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Failed => "failed",
            Event::Missed => "missed",
            Event::Succeeded => "succeeded",
            Event::Test => "test",
        }
    }

    pub fn parse(text: &str) -> Option<Event> {
        [Event::Failed, Event::Missed, Event::Succeeded, Event::Test]
            .into_iter()
            .find(|e| e.as_str() == text)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The shape of the body a channel receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The full JSON event (see `payload`).
    Generic,
    /// `{"text": "…"}`: what Slack-compatible incoming webhooks read.
    Slack,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Generic => "GENERIC",
            Format::Slack => "SLACK",
        }
    }

    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "GENERIC" => Some(Format::Generic),
            "SLACK" => Some(Format::Slack),
            _ => None,
        }
    }
}

/// A channel of a vault.
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    pub vault_id: String,
    /// Short id, unique in the vault.
    pub name: String,
    /// The webhook URL: may hold a token, so kept out of `Debug`.
    pub url: Redacted<String>,
    pub format: Format,
    /// Subscribed events, in [`Event::SUBSCRIBABLE`] order, without repeats.
    pub events: Vec<Event>,
    /// A stored secret the vault is granted; `None`: bodies are unsigned.
    pub signing_secret: Option<String>,
    pub create_time: DateTime<Utc>,
}

impl Channel {
    /// Checks a channel to add; the secret's existence and grant are
    /// checked against the store by the caller.
    pub fn validate(&self) -> Result<()> {
        names::validate_short_id("name", &self.name)?;
        check_url(self.url.expose())?;
        if self.events.is_empty() {
            return Err(CoordinatorError::invalid(
                "events",
                "name at least one of failed, missed, succeeded",
            ));
        }
        if self.events.contains(&Event::Test) {
            return Err(CoordinatorError::invalid(
                "events",
                "\"test\" is sent with pgvault notification test, not subscribed to",
            ));
        }
        if let Some(secret) = &self.signing_secret {
            names::validate_short_id("signing_secret", secret)?;
        }
        Ok(())
    }

    /// Scheme and host of the URL, for listings and logs.
    pub fn display_url(&self) -> String {
        redact_url(self.url.expose())
    }
}

/// Subscribed events in a fixed order without repeats.
pub fn normalise_events(events: impl IntoIterator<Item = Event>) -> Vec<Event> {
    let given: Vec<Event> = events.into_iter().collect();
    Event::SUBSCRIBABLE
        .into_iter()
        .chain([Event::Test])
        .filter(|e| given.contains(e))
        .collect()
}

/// An absolute `http://` or `https://` URL with a host and no user info.
fn check_url(url: &str) -> Result<()> {
    let invalid = |why: &str| CoordinatorError::invalid("url", why.to_string());
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| invalid("must start with https:// (or http:// on a trusted network)"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(invalid("has no host"));
    }
    if authority.contains('@') {
        return Err(invalid(
            "must not carry credentials before the host; sign bodies with --signing-secret instead",
        ));
    }
    if url.chars().any(char::is_whitespace) {
        return Err(invalid("must not contain spaces"));
    }
    Ok(())
}

/// `scheme://host[:port]` of a URL, without path, query, fragment or user
/// info (a webhook's token often sits in its path); `<invalid url>` when it
/// is none of http or https.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<invalid url>".into();
    };
    if scheme != "http" && scheme != "https" {
        return "<invalid url>".into();
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(url: &str, events: Vec<Event>) -> Channel {
        Channel {
            vault_id: "prod".into(),
            name: "ops".into(),
            url: Redacted(url.into()),
            format: Format::Slack,
            events,
            signing_secret: Some("hook-key".into()),
            create_time: Utc::now(),
        }
    }

    #[test]
    fn urls_are_shown_as_scheme_and_host_only() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T000/B000/XXXXSECRET"),
            "https://hooks.slack.com"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:8088/hook?token=abc#x"),
            "http://127.0.0.1:8088"
        );
        assert_eq!(
            redact_url("https://user:pw@example.com/x"),
            "https://example.com"
        );
        assert_eq!(redact_url("ftp://example.com/token"), "<invalid url>");
        assert_eq!(redact_url("no scheme at all"), "<invalid url>");
        let debug = format!("{:?}", channel("https://h.example/secret-path", vec![]));
        assert!(!debug.contains("secret-path"), "{debug}");
    }

    #[test]
    fn a_channel_needs_an_http_url_and_a_subscribable_event() {
        assert!(
            channel("https://h.example/x", vec![Event::Failed])
                .validate()
                .is_ok()
        );
        assert!(
            channel("http://127.0.0.1:1/x", vec![Event::Missed])
                .validate()
                .is_ok()
        );
        for bad in ["ftp://h/x", "https://", "https://u:p@h/x", "https://h/a b"] {
            let err = channel(bad, vec![Event::Failed]).validate().unwrap_err();
            assert!(err.to_string().contains("url"), "{bad}: {err}");
            assert!(
                !err.to_string().contains(bad),
                "the url is not echoed: {err}"
            );
        }
        assert!(channel("https://h/x", vec![]).validate().is_err());
        assert!(
            channel("https://h/x", vec![Event::Test])
                .validate()
                .is_err()
        );
    }

    #[test]
    fn events_are_kept_in_one_order_without_repeats() {
        let events = normalise_events([Event::Succeeded, Event::Failed, Event::Succeeded]);
        assert_eq!(events, vec![Event::Failed, Event::Succeeded]);
        for event in Event::SUBSCRIBABLE {
            assert_eq!(Event::parse(event.as_str()), Some(event));
        }
        assert_eq!(Event::parse("exploded"), None);
    }
}
