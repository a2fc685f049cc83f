//! What tests need to capture log lines: [`Captured`], a writer that
//! keeps what is written, with [`Captured::json_layer`] and [`logged_json`]
//! for pgvault's JSON lines; and [`keep_interest_shared`], without which a
//! scoped subscriber (`set_default`, `with_default`) can miss lines while
//! other tests of the same binary run on other threads without one.
//!
//! tracing-core caches each callsite's interest the first time any thread
//! hits it. While exactly one dispatcher is registered in the process, it
//! asks only the *hitting thread's* default (tokio-rs/tracing#3611): a
//! sibling test without a subscriber that hits a callsite first caches
//! "never", and the capturing test then loses that line or span — a flaky
//! "the log shows nothing" failure. With a second dispatcher alive for the
//! whole process, a first hit asks every live dispatcher instead.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use tracing::{Dispatch, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

use crate::JsonLines;

/// Keeps a second dispatcher registered for the rest of the process, so
/// callsite interest is never decided by a thread without a subscriber.
/// Call it before installing a capturing subscriber.
pub fn keep_interest_shared() {
    static SECOND: OnceLock<Dispatch> = OnceLock::new();
    SECOND.get_or_init(|| Dispatch::new(tracing_subscriber::registry()));
}

/// Everything written to it (and to its clones), kept in memory.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// What was written, as text.
    pub fn text(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// What was written, one JSON object per line (panics on another line:
    /// for tests).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
            })
            .collect()
    }

    /// A layer writing pgvault's JSON lines ([`JsonLines`]) here.
    pub fn json_layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let writer = self.clone();
        tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .with_writer(move || writer.clone())
    }
}

/// The JSON lines logged while `f` runs on this thread.
pub fn logged_json(f: impl FnOnce()) -> Vec<serde_json::Value> {
    let captured = Captured::default();
    keep_interest_shared();
    let subscriber = tracing_subscriber::registry().with(captured.json_layer());
    tracing::subscriber::with_default(subscriber, f);
    captured.json_lines()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_first_hit_by_a_thread_without_a_subscriber_still_reaches_a_capture() {
        keep_interest_shared();
        fn emit() {
            tracing::info!("captured line");
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let capture = Dispatch::new(
            tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .finish(),
        );
        // The sibling: the callsite's first hit, on a thread with no
        // subscriber, while the capture is registered.
        std::thread::spawn(emit).join().unwrap();
        tracing::dispatcher::with_default(&capture, emit);
        assert!(
            captured.text().contains("captured line"),
            "the capture lost the line"
        );
    }

    #[test]
    fn json_lines_are_captured_as_objects_with_their_span_fields() {
        let lines = logged_json(|| {
            let _task = tracing::error_span!("task", job_id = "j1").entered();
            tracing::info!("inside");
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["message"], "inside");
        assert_eq!(lines[0]["job_id"], "j1");
    }
}
