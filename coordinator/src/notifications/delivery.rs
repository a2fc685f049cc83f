//! A delivery: one notification to one channel, in the outbox until it is
//! delivered or given up, with its attempts; and the retry policy deciding
//! when the next attempt runs (exponential backoff, bounded attempts).

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::channel::Event;
use super::payload::Facts;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Not yet sent, or to be tried again at `next_attempt_at`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed; no more are made.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "PENDING",
            DeliveryState::Delivered => "DELIVERED",
            DeliveryState::Failed => "FAILED",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryState> {
        match text {
            "PENDING" => Some(DeliveryState::Pending),
            "DELIVERED" => Some(DeliveryState::Delivered),
            "FAILED" => Some(DeliveryState::Failed),
            _ => None,
        }
    }
}

/// One delivery as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: Uuid,
    pub vault_id: String,
    pub channel: String,
    pub event: Event,
    pub job_id: Option<Uuid>,
    pub facts: Facts,
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt runs (pending deliveries).
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last attempt failed: an HTTP status or a transport error,
    /// never the URL or a secret. Empty when none failed.
    pub last_error: String,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// When attempts are made: the first at once, then after `base`,
/// `2 × base`, `4 × base`, … (each at most `max_delay`), `max_attempts` in
/// all. The defaults (30 s doubling to 10 min, 10 attempts) keep trying
/// for about an hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max_delay: Duration,
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(30),
            max_delay: Duration::from_secs(600),
            max_attempts: 10,
        }
    }
}

impl RetryPolicy {
    /// The wait before the next attempt after `attempts` failed ones, or
    /// `None` when that was the last one allowed.
    pub fn next_delay(&self, attempts: u32) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        let exponent = attempts.saturating_sub(1).min(20);
        Some(
            self.base
                .saturating_mul(1u32 << exponent)
                .min(self.max_delay),
        )
    }

    /// How long a delivery is tried in all, from the first attempt to the last.
    pub fn total_span(&self) -> Duration {
        (1..self.max_attempts)
            .filter_map(|n| self.next_delay(n))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap_and_stop_after_the_last_attempt() {
        let policy = RetryPolicy {
            base: Duration::from_secs(30),
            max_delay: Duration::from_secs(300),
            max_attempts: 6,
        };
        let delays: Vec<Option<u64>> = (1..=6)
            .map(|n| policy.next_delay(n).map(|d| d.as_secs()))
            .collect();
        assert_eq!(
            delays,
            vec![Some(30), Some(60), Some(120), Some(240), Some(300), None]
        );
        assert_eq!(policy.total_span(), Duration::from_secs(750));
    }

    #[test]
    fn the_default_policy_keeps_trying_for_about_an_hour() {
        let span = RetryPolicy::default().total_span();
        assert!(
            span >= Duration::from_secs(45 * 60) && span <= Duration::from_secs(75 * 60),
            "{span:?}"
        );
    }

    #[test]
    fn states_read_back_as_written() {
        for state in [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Failed,
        ] {
            assert_eq!(DeliveryState::parse(state.as_str()), Some(state));
        }
    }
}
