//! Notifications: per vault, webhook channels told when a job fails, when a
//! scheduled slot is missed and (when subscribed) when a job succeeds.
//!
//! How a notification travels:
//! 1. **Recorded with the event.** Triggers of migration 0018 write one
//!    delivery per subscribed channel into the `notification_deliveries`
//!    outbox, in the transaction that ends the job (FAILED, COMPLETED,
//!    COMPLETED_WITH_WARNINGS) or records a slot SKIPPED — whichever code
//!    path does it — with the facts the body is rendered from. Nothing is
//!    lost when a coordinator dies before sending, and nothing in the job
//!    code paths has to remember to notify.
//! 2. **Sent by one coordinator.** The [`sender`] runs on the coordinator
//!    holding its advisory lock: it POSTs each due delivery, signed
//!    ([`signature`]), and retries failures with exponential backoff
//!    ([`delivery::RetryPolicy`]) until delivered or out of attempts.
//!    Delivery is at least once: a receiver may deduplicate on
//!    `X-Pgvault-Delivery`.
//!
//! **Missed** means: the scheduler found a slot more than
//! `coordinator.schedule_max_lateness_minutes` after its time with no job
//! for it (no coordinator ran the scheduler then) and recorded it SKIPPED
//! instead of running it (`crate::scheduler`).
//!
//! Secrets: a channel's signing key is a stored secret the vault is
//! granted, read at sending, never logged, listed or recorded. A webhook
//! URL may carry a token, so listings, logs and recorded errors show its
//! scheme and host only ([`channel::redact_url`]).
//!
//! # Layout
//! - [`channel`]: channels, events, formats, URL checks and redaction.
//! - [`payload`]: the facts of an event and the bodies rendered from them.
//! - [`signature`]: the HMAC-SHA256 signature and its headers.
//! - [`delivery`]: deliveries and the retry policy.
//! - [`sender`]: the leader's loop that sends them.

pub mod channel;
pub mod delivery;
pub mod payload;
pub mod sender;
pub mod signature;

use std::time::Duration;

pub use self::delivery::RetryPolicy;

/// How notifications are sent (`coordinator.notification_*` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotificationOptions {
    /// How often the sender looks for due deliveries.
    pub poll_interval: Duration,
    /// When failed deliveries are tried again, and how often.
    pub retry: RetryPolicy,
    /// How long one POST may take, connecting included.
    pub timeout: Duration,
}

impl Default for NotificationOptions {
    fn default() -> Self {
        NotificationOptions {
            poll_interval: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(10),
        }
    }
}
