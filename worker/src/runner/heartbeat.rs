//! Keeps a claimed job's lease alive and carries progress to the coordinator.
//!
//! The engine reports progress into [`SharedProgress`]; a background loop
//! sends it with each heartbeat, together with the per-table progress
//! changed since the last acknowledged heartbeat. A heartbeat refused for a stale lease token
//! means another worker owns the job now (fencing): the engine is cancelled
//! and the runner must not complete. A user's cancel request stops it too.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgvault_engine::{Progress, ProgressSink, TableProgress};
use pgvault_proto::v1::{HeartbeatRequest, Progress as WireProgress, TableProgress as WireTable};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::link::{CoordinatorLink, LinkError};
use super::tables::{self, Receipt, TableLog};

/// Latest progress reported by the engine, and its per-table progress.
#[derive(Default)]
pub struct SharedProgress(Mutex<WireProgress>, Mutex<TableLog>);

impl SharedProgress {
    pub fn snapshot(&self) -> WireProgress {
        self.0.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Up to `max` tables the coordinator has not acknowledged yet.
    pub fn pending_tables(&self, max: usize) -> (Vec<WireTable>, Receipt) {
        self.1
            .lock()
            .map(|log| log.pending(max))
            .unwrap_or_default()
    }

    fn pending_count(&self) -> usize {
        self.1.lock().map(|log| log.pending_count()).unwrap_or(0)
    }

    /// The coordinator stored the tables `receipt` lists.
    pub fn acknowledge(&self, receipt: Receipt) {
        if let Ok(mut log) = self.1.lock() {
            log.acknowledge(receipt);
        }
    }
}

impl ProgressSink for SharedProgress {
    fn report_table(&self, table: &TableProgress) {
        if let Ok(mut log) = self.1.lock() {
            log.record(table);
        }
    }

    fn report(&self, progress: &Progress) {
        if let Ok(mut p) = self.0.lock() {
            *p = WireProgress {
                bytes_done: progress.bytes_done,
                rows_done: progress.rows_done,
                chunks_done: progress.chunks_done,
                chunks_total: progress.chunks_total,
                phase: progress.phase.clone(),
            };
        }
    }
}

/// Why the heartbeat loop stopped the engine, if it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interruption {
    None = 0,
    /// The lease was taken over by another worker.
    Fenced = 1,
    /// A user asked to cancel the job.
    CancelRequested = 2,
}

/// A running heartbeat loop.
pub struct Heartbeat {
    handle: JoinHandle<()>,
    stop: CancellationToken,
    interruption: Arc<AtomicU8>,
}

impl Heartbeat {
    pub fn start(
        link: Arc<dyn CoordinatorLink>,
        job_id: String,
        lease_token: String,
        interval: Duration,
        progress: Arc<SharedProgress>,
        engine_cancel: CancellationToken,
    ) -> Heartbeat {
        let stop = CancellationToken::new();
        let interruption = Arc::new(AtomicU8::new(Interruption::None as u8));
        // In the task's span: its warnings belong to the task's log tail.
        // One span for all heartbeats of the attempt, with their counts,
        // not one span each.
        let span = tracing::info_span!(
            "heartbeats",
            sent = 0u64,
            failed = 0u64,
            interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
        );
        let handle = tokio::spawn(
            beat(
                link,
                job_id,
                lease_token,
                interval,
                progress,
                engine_cancel,
                stop.clone(),
                interruption.clone(),
            )
            .instrument(span),
        );
        Heartbeat {
            handle,
            stop,
            interruption,
        }
    }

    /// Stops the loop and says whether it interrupted the engine.
    pub async fn finish(self) -> Interruption {
        self.stop.cancel();
        let _ = self.handle.await;
        match self.interruption.load(Ordering::SeqCst) {
            1 => Interruption::Fenced,
            2 => Interruption::CancelRequested,
            _ => Interruption::None,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn beat(
    link: Arc<dyn CoordinatorLink>,
    job_id: String,
    lease_token: String,
    interval: Duration,
    progress: Arc<SharedProgress>,
    engine_cancel: CancellationToken,
    stop: CancellationToken,
    interruption: Arc<AtomicU8>,
) {
    // Set while more tables wait than one heartbeat carries: the next
    // heartbeat goes at once.
    let mut backlog = false;
    let (mut sent, mut failed) = (0u64, 0u64);
    let span = tracing::Span::current();
    loop {
        if !backlog {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        } else if stop.is_cancelled() {
            return;
        }
        backlog = false;
        let (tables, receipt) = progress.pending_tables(tables::BATCH);
        let request = HeartbeatRequest {
            job_id: job_id.clone(),
            lease_token: lease_token.clone(),
            progress: Some(progress.snapshot()),
            tables,
        };
        let response = link.heartbeat(request).await;
        if response.is_ok() {
            sent += 1;
            span.record("sent", sent);
        } else {
            failed += 1;
            span.record("failed", failed);
        }
        if response.is_ok() {
            progress.acknowledge(receipt);
            backlog = progress.pending_count() > tables::BATCH;
        }
        match response {
            Ok(response) if response.cancel_requested => {
                tracing::info!(job_id = %job_id, "cancel requested; stopping");
                interruption.store(Interruption::CancelRequested as u8, Ordering::SeqCst);
                engine_cancel.cancel();
                return;
            }
            Ok(_) => {}
            Err(error @ (LinkError::Fenced(_) | LinkError::UnknownJob(_))) => {
                tracing::warn!(job_id = %job_id, reason = %error, "lease lost; stopping this attempt");
                interruption.store(Interruption::Fenced as u8, Ordering::SeqCst);
                engine_cancel.cancel();
                return;
            }
            Err(error) => {
                tracing::warn!(job_id = %job_id, error = %error, "heartbeat failed; will retry");
            }
        }
    }
}

/// Sends the tables still pending beyond one batch with extra heartbeats,
/// so the final `CompleteTask`/`FailTask` carries at most one batch. Stops
/// at the first refusal (the final call reports the outcome anyway).
pub async fn flush_tables(
    link: &dyn CoordinatorLink,
    job_id: &str,
    lease_token: &str,
    progress: &SharedProgress,
) {
    while progress.pending_count() > tables::BATCH {
        let (tables, receipt) = progress.pending_tables(tables::BATCH);
        let request = HeartbeatRequest {
            job_id: job_id.to_string(),
            lease_token: lease_token.to_string(),
            progress: Some(progress.snapshot()),
            tables,
        };
        match link.heartbeat(request).await {
            Ok(_) => progress.acknowledge(receipt),
            Err(error) => {
                tracing::warn!(job_id = %job_id, error = %error, "sending the last tables failed");
                return;
            }
        }
    }
}
