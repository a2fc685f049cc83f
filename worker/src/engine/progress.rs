//! Shared progress counters of one job: engine tasks add to them and the
//! [`ProgressSink`] hears about every chunk, phase change and, inside long
//! chunks, every few megabytes.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::types::{Progress, ProgressSink};

/// Raw bytes between two reports inside one chunk.
const REPORT_EVERY_BYTES: u64 = 16 * 1024 * 1024;

pub(crate) struct Tracker {
    sink: Arc<dyn ProgressSink>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    progress: Progress,
    unreported_bytes: u64,
    /// When the current phase began, for the per-phase timing log.
    phase_started: Option<Instant>,
}

impl Tracker {
    pub(crate) fn new(sink: Arc<dyn ProgressSink>) -> Arc<Tracker> {
        Arc::new(Tracker {
            sink,
            state: Mutex::new(State::default()),
        })
    }

    fn update(&self, change: impl FnOnce(&mut State) -> bool) {
        let snapshot = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if !change(&mut state) {
                return;
            }
            state.unreported_bytes = 0;
            state.progress.clone()
        };
        self.sink.report(&snapshot);
    }

    pub(crate) fn phase(&self, phase: &str) {
        self.update(|s| {
            if let Some(started) = s.phase_started {
                tracing::debug!(
                    phase = %s.progress.phase,
                    seconds = started.elapsed().as_secs_f64(),
                    "phase finished"
                );
            }
            s.phase_started = Some(Instant::now());
            s.progress.phase = phase.to_string();
            true
        });
    }

    pub(crate) fn set_total(&self, chunks_total: u32) {
        self.update(|s| {
            s.progress.chunks_total = chunks_total;
            true
        });
    }

    /// Bytes streamed inside a chunk; reported every few megabytes.
    pub(crate) fn add_bytes(&self, bytes: u64) {
        self.update(|s| {
            s.progress.bytes_done += bytes;
            s.unreported_bytes += bytes;
            s.unreported_bytes >= REPORT_EVERY_BYTES
        });
    }

    pub(crate) fn chunk_done(&self, rows: u64) {
        self.update(|s| {
            s.progress.rows_done += rows;
            s.progress.chunks_done += 1;
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Recorder(Mutex<Vec<Progress>>);
    impl ProgressSink for Recorder {
        fn report(&self, progress: &Progress) {
            self.0.lock().unwrap().push(progress.clone());
        }
    }

    #[test]
    fn reports_phases_chunks_and_large_byte_steps_only() {
        let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
        let tracker = Tracker::new(recorder.clone());
        tracker.phase("data");
        tracker.set_total(2);
        tracker.add_bytes(10);
        tracker.add_bytes(REPORT_EVERY_BYTES);
        tracker.chunk_done(5);
        let reports = recorder.0.lock().unwrap();
        assert_eq!(reports.len(), 4);
        let last = reports.last().unwrap();
        assert_eq!(
            (
                last.bytes_done,
                last.rows_done,
                last.chunks_done,
                last.chunks_total
            ),
            (REPORT_EVERY_BYTES + 10, 5, 1, 2)
        );
        assert_eq!(last.phase, "data");
    }
}
