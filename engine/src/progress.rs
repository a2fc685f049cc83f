//! Shared progress counters of one job: engine tasks add to them and the
//! [`ProgressSink`] hears about every chunk, phase change and, inside long
//! chunks, every few megabytes. Per-table sub-tasks are kept here too (one
//! entry per table, never per row or chunk) and each change of one table is
//! reported on its own. The job's [`StageClock`] lives here too, so every
//! phase change is timed where it is reported.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::Utc;

use super::stages::{StageClock, StageTimes};
use super::types::{Progress, ProgressSink, TableProgress, TableState};

/// Raw bytes between two reports inside one chunk.
const REPORT_EVERY_BYTES: u64 = 16 * 1024 * 1024;

pub(crate) struct Tracker {
    sink: Arc<dyn ProgressSink>,
    state: Mutex<State>,
    /// Where the job's time goes (phases, lanes, CPU).
    clock: Arc<StageClock>,
}

#[derive(Default)]
struct State {
    progress: Progress,
    unreported_bytes: u64,
    /// When the current phase began, for the per-phase timing log.
    phase_started: Option<Instant>,
    /// Sub-tasks by the engine's key of the table (its quoted name).
    tables: HashMap<String, TableProgress>,
    /// A table is done with its last chunk (else [`Tracker::table_finished`]
    /// says when, e.g. after a restore's indexes).
    done_with_last_chunk: bool,
}

impl Tracker {
    pub(crate) fn new(sink: Arc<dyn ProgressSink>) -> Arc<Tracker> {
        Arc::new(Tracker {
            sink,
            state: Mutex::new(State::default()),
            clock: Arc::new(StageClock::default()),
        })
    }

    pub(crate) fn clock(&self) -> &Arc<StageClock> {
        &self.clock
    }

    /// The job's stage split so far.
    pub(crate) fn stage_times(&self) -> StageTimes {
        self.clock.times(super::cpu::pool_threads())
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
        self.clock.phase(phase);
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

    /// Registers the job's tables as queued: (key the engine uses for it,
    /// name people read, chunks). With `done_with_last_chunk` a table is
    /// done once all its chunks are; otherwise when
    /// [`Tracker::table_finished`] says so.
    pub(crate) fn plan_tables(
        &self,
        tables: impl IntoIterator<Item = (String, String, u32)>,
        done_with_last_chunk: bool,
    ) {
        let planned: Vec<TableProgress> = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.done_with_last_chunk = done_with_last_chunk;
            tables
                .into_iter()
                .map(|(key, name, chunks_total)| {
                    let table = TableProgress {
                        name,
                        state: TableState::Queued,
                        chunks_done: 0,
                        chunks_total,
                        rows: 0,
                        raw_bytes: 0,
                        stored_bytes: 0,
                        start_time: None,
                        end_time: None,
                    };
                    state.tables.insert(key, table.clone());
                    table
                })
                .collect()
        };
        for table in &planned {
            self.sink.report_table(table);
        }
    }

    /// Changes one registered table and reports it; unknown names are ignored.
    fn update_table(&self, name: &str, change: impl FnOnce(&mut TableProgress, bool)) {
        let snapshot = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let done_with_last_chunk = state.done_with_last_chunk;
            let Some(table) = state.tables.get_mut(name) else {
                return;
            };
            change(table, done_with_last_chunk);
            table.clone()
        };
        self.sink.report_table(&snapshot);
    }

    /// Work on the table began (its first chunk, or a later one).
    pub(crate) fn table_started(&self, name: &str) {
        self.update_table(name, |t, _| {
            if t.state == TableState::Queued {
                t.state = TableState::Running;
                t.start_time = Some(Utc::now());
            }
        });
    }

    /// One chunk of the table is done: its rows, raw and stored bytes.
    pub(crate) fn table_chunk_done(&self, name: &str, rows: u64, raw_bytes: u64, stored: u64) {
        self.update_table(name, |t, done_with_last_chunk| {
            t.chunks_done += 1;
            t.rows += rows;
            t.raw_bytes += raw_bytes;
            t.stored_bytes += stored;
            if done_with_last_chunk && t.chunks_done >= t.chunks_total {
                t.state = TableState::Done;
                t.end_time = Some(Utc::now());
            }
        });
    }

    /// Everything of the table is done (data, and for restores its indexes).
    pub(crate) fn table_finished(&self, name: &str) {
        self.update_table(name, |t, _| {
            let now = Utc::now();
            t.start_time.get_or_insert(now);
            t.state = TableState::Done;
            t.end_time = Some(now);
        });
    }

    pub(crate) fn table_failed(&self, name: &str) {
        self.update_table(name, |t, _| {
            t.state = TableState::Failed;
            t.end_time = Some(Utc::now());
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

    struct TableRecorder(Mutex<Vec<TableProgress>>);
    impl ProgressSink for TableRecorder {
        fn report(&self, _progress: &Progress) {}
        fn report_table(&self, table: &TableProgress) {
            self.0.lock().unwrap().push(table.clone());
        }
    }

    #[test]
    fn a_table_is_done_with_its_last_chunk_and_every_change_is_reported() {
        let recorder = Arc::new(TableRecorder(Mutex::new(Vec::new())));
        let tracker = Tracker::new(recorder.clone());
        tracker.plan_tables(
            [
                ("p.a".to_string(), "public.a".to_string(), 2),
                ("p.b".to_string(), "public.b".to_string(), 1),
            ],
            true,
        );
        tracker.table_started("p.a");
        tracker.table_chunk_done("p.a", 10, 100, 40);
        tracker.table_chunk_done("p.a", 5, 50, 20);
        tracker.table_started("public.unknown");
        let reports = recorder.0.lock().unwrap();
        assert_eq!(reports.len(), 5);
        let running = &reports[3];
        assert_eq!(running.state, TableState::Running);
        let last = reports.last().unwrap();
        assert_eq!(
            (
                last.name.as_str(),
                last.state,
                last.chunks_done,
                last.rows,
                last.raw_bytes,
                last.stored_bytes
            ),
            ("public.a", TableState::Done, 2, 15, 150, 60)
        );
        assert!(last.start_time.is_some() && last.end_time.is_some());
    }

    #[test]
    fn a_restored_table_waits_for_table_finished_and_failures_are_kept() {
        let recorder = Arc::new(TableRecorder(Mutex::new(Vec::new())));
        let tracker = Tracker::new(recorder.clone());
        tracker.plan_tables(
            [
                ("k.t".to_string(), "s.t".to_string(), 1),
                ("k.u".to_string(), "s.u".to_string(), 1),
            ],
            false,
        );
        tracker.table_started("k.t");
        tracker.table_chunk_done("k.t", 1, 1, 1);
        assert_eq!(
            recorder.0.lock().unwrap().last().unwrap().state,
            TableState::Running
        );
        tracker.table_finished("k.t");
        tracker.table_failed("k.u");
        let reports = recorder.0.lock().unwrap();
        let states: Vec<(&str, TableState)> = reports[reports.len() - 2..]
            .iter()
            .map(|t| (t.name.as_str(), t.state))
            .collect();
        assert_eq!(
            states,
            vec![("s.t", TableState::Done), ("s.u", TableState::Failed)]
        );
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
