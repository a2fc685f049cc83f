//! How long the agent waits before dialling the coordinator again: 1 s
//! after a drop, doubling to 30 s while attempts keep failing, each wait
//! shortened by up to a quarter at random so a fleet of agents does not
//! reconnect in step after a coordinator restart. A refusal (wrong token,
//! unsupported protocol) waits [`REFUSED_RETRY`]: retrying cannot help
//! until someone acts, so the agent must not spin.

use std::time::Duration;

use rand::Rng;

/// First wait after a failure.
pub const INITIAL: Duration = Duration::from_secs(1);
/// Longest wait between attempts that failed for a passing reason.
pub const MAX: Duration = Duration::from_secs(30);
/// Wait after the coordinator refused the agent.
pub const REFUSED_RETRY: Duration = Duration::from_secs(60);

/// Waits between reconnection attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The next wait before jitter.
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: INITIAL }
    }
}

impl Backoff {
    /// The next wait after a passing failure; the one after doubles.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(MAX);
        jittered(base)
    }

    /// The wait after a refusal. The next passing failure starts over.
    pub fn refused_delay(&mut self) -> Duration {
        self.reset();
        jittered(REFUSED_RETRY)
    }

    /// A session got through: the next failure waits [`INITIAL`] again.
    pub fn reset(&mut self) {
        self.next = INITIAL;
    }
}

/// `base` less up to a quarter of it.
fn jittered(base: Duration) -> Duration {
    let quarter = base / 4;
    base - quarter.mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(delay: Duration, base: u64) -> bool {
        let base = Duration::from_secs(base);
        delay <= base && delay >= base * 3 / 4
    }

    #[test]
    fn waits_double_from_one_second_to_thirty_with_jitter() {
        let mut backoff = Backoff::default();
        for base in [1, 2, 4, 8, 16, 30, 30, 30] {
            let delay = backoff.next_delay();
            assert!(within(delay, base), "{delay:?} for {base}s");
        }
    }

    #[test]
    fn a_session_that_got_through_starts_the_waits_over() {
        let mut backoff = Backoff::default();
        for _ in 0..6 {
            backoff.next_delay();
        }
        backoff.reset();
        assert!(within(backoff.next_delay(), 1));
    }

    #[test]
    fn a_refusal_waits_a_minute_and_then_passing_failures_start_over() {
        let mut backoff = Backoff::default();
        for _ in 0..3 {
            backoff.next_delay();
        }
        assert!(within(backoff.refused_delay(), 60));
        assert!(within(backoff.refused_delay(), 60));
        assert!(within(backoff.next_delay(), 1));
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let delays: std::collections::BTreeSet<Duration> =
            (0..20).map(|_| jittered(Duration::from_secs(8))).collect();
        assert!(delays.len() > 1, "{delays:?}");
    }
}
