//! For tests that capture what a scoped subscriber (`set_default`,
//! `with_default`) sees while other tests of the same binary run on other
//! threads without one.
//!
//! tracing-core caches each callsite's interest the first time any thread
//! hits it. While exactly one dispatcher is registered in the process, it
//! asks only the *hitting thread's* default (tokio-rs/tracing#3611): a
//! sibling test without a subscriber that hits a callsite first caches
//! "never", and the capturing test then loses that line or span — a flaky
//! "the log shows nothing" failure. With a second dispatcher alive for the
//! whole process, a first hit asks every live dispatcher instead.

use std::sync::OnceLock;

use tracing::Dispatch;

/// Keeps a second dispatcher registered for the rest of the process, so
/// callsite interest is never decided by a thread without a subscriber.
/// Call it before installing a capturing subscriber.
pub fn keep_interest_shared() {
    static SECOND: OnceLock<Dispatch> = OnceLock::new();
    SECOND.get_or_init(|| Dispatch::new(tracing_subscriber::registry()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_first_hit_by_a_thread_without_a_subscriber_still_reaches_a_capture() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        keep_interest_shared();
        fn emit() {
            tracing::info!("captured line");
        }
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        let capture = Dispatch::new(
            tracing_subscriber::fmt()
                .with_writer(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    std::io::sink()
                })
                .finish(),
        );
        // The sibling: the callsite's first hit, on a thread with no
        // subscriber, while the capture is registered.
        std::thread::spawn(emit).join().unwrap();
        tracing::dispatcher::with_default(&capture, emit);
        assert_eq!(seen.load(Ordering::SeqCst), 1, "the capture lost the line");
    }
}
