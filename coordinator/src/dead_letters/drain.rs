//! The dead-letter drain: takes each message from the dead-letter queue,
//! records it in the state database (once, however often it is redelivered),
//! fails the job it names when that job would otherwise wait forever, and
//! only then acks it (at-least-once). Every coordinator runs one; they share
//! the queue like workers share the task queue. Database errors put the
//! message back and back off; the source reconnects to the broker itself.

use std::time::Duration;

use pgvault_errors::ErrorCode;
use pgvault_queue::{DeadLetterSource, QueueError};
use tokio_util::sync::CancellationToken;

use crate::dead_letters::{PayloadSummary, TaskRef, dedupe_key};
use crate::error::Result;
use crate::model::JobError;
use crate::names;
use crate::store::dead_letters::{self, NewDeadLetter};
use crate::store::{Store, jobs};

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What recording one dead letter did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded for the first time.
    New { job_failed: bool },
    /// Recorded before (a redelivery): nothing changed.
    Duplicate,
}

/// Runs until `cancel` fires or the source closes for good.
pub async fn run(store: Store, mut source: Box<dyn DeadLetterSource>, cancel: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let letter = tokio::select! {
            _ = cancel.cancelled() => return,
            letter = source.next() => letter,
        };
        let letter = match letter {
            Ok(letter) => letter,
            Err(QueueError::Closed) => {
                tracing::info!("dead-letter queue closed; drain stops");
                return;
            }
            Err(error) => {
                tracing::error!(error = %error, "dead-letter queue failed; drain stops");
                return;
            }
        };
        match record(&store, &letter).await {
            Ok(outcome) => {
                backoff = Duration::from_millis(200);
                if let Err(error) = letter.ack().await {
                    // Redelivered later and then recognised as a duplicate.
                    tracing::warn!(error = %error, "cannot ack a recorded dead letter");
                }
                tracing::debug!(outcome = ?outcome, "dead letter drained");
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot record a dead letter; will retry");
                if let Err(error) = letter.requeue().await {
                    tracing::warn!(error = %error, "cannot return a dead letter to its queue");
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Records one dead letter in one transaction: the row, and the job failed
/// when it was still queued for this attempt with nothing to publish it again.
pub async fn record(store: &Store, letter: &pgvault_queue::DeadLetter) -> Result<Recorded> {
    let payload = PayloadSummary::of(letter.payload());
    let key = dedupe_key(letter.message_id.as_deref(), &payload.sha256);
    // Message ids come from whoever published: keep them short.
    let message_id: Option<String> = letter
        .message_id
        .as_deref()
        .map(|id| id.chars().take(128).collect());
    let reason = letter.reason.as_str();
    let mut tx = store.begin().await?;
    let job = match payload.task {
        Some(task) => jobs::find(&mut *tx, task.job_id).await?,
        None => None,
    };
    let new = NewDeadLetter {
        dedupe_key: &key,
        queue: &letter.queue,
        reason,
        delivery_count: letter.delivery_count,
        message_id: message_id.as_deref(),
        payload: &payload,
        job_state: job.as_ref().map(|j| j.state),
    };
    let Some(id) = dead_letters::insert(&mut *tx, &new).await? else {
        tx.rollback().await?;
        return Ok(Recorded::Duplicate);
    };
    let mut job_failed = false;
    if let (Some(task), Some(_)) = (payload.task, &job) {
        let error = stranded_job_error(task, reason, letter.delivery_count);
        job_failed = dead_letters::fail_stranded_job(&mut tx, task, &error).await?;
        if job_failed {
            dead_letters::mark_job_failed(&mut *tx, id).await?;
        }
    }
    tx.commit().await?;
    match payload.task {
        Some(task) => tracing::warn!(
            queue = %letter.queue, reason, job_id = %task.job_id, attempt = task.attempt,
            job_exists = job.is_some(), job_failed, "task dead-lettered"
        ),
        None => tracing::warn!(
            queue = %letter.queue, reason, bytes = payload.size,
            "message that is no task dead-lettered"
        ),
    }
    Ok(Recorded::New { job_failed })
}

/// The error a job gets when its only task message was dead-lettered.
fn stranded_job_error(task: TaskRef, reason: &str, deliveries: Option<u32>) -> JobError {
    let after = deliveries
        .map(|n| format!(" after {n} deliveries"))
        .unwrap_or_default();
    JobError::new(
        ErrorCode::TaskDeadLettered,
        format!(
            "the task message of attempt {} was dead-lettered by the queue ({reason}{after}); no worker claimed it; once the cause is fixed: pgvault job retry {}",
            task.attempt,
            names::job_name(task.job_id)
        ),
    )
}
