//! When a re-queued attempt may run: exponential backoff from the
//! configured base (`base`, `2 × base`, `4 × base`, …), capped, so a job
//! failing on a sick server or datastore does not spin through its attempts.

use std::time::Duration;

/// The longest wait between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(10 * 60);

/// Delay before attempt `attempts_used + 1`, after `attempts_used` failed.
pub fn retry_delay(base: Duration, attempts_used: u32) -> Duration {
    let exponent = attempts_used.saturating_sub(1).min(20);
    base.saturating_mul(1u32 << exponent).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_per_failed_attempt_and_stop_at_the_cap() {
        let base = Duration::from_secs(5);
        let delays: Vec<u64> = (1..=5).map(|n| retry_delay(base, n).as_secs()).collect();
        assert_eq!(delays, vec![5, 10, 20, 40, 80]);
        assert_eq!(retry_delay(base, 40), MAX_DELAY);
        assert_eq!(retry_delay(Duration::ZERO, 3), Duration::ZERO);
    }
}
