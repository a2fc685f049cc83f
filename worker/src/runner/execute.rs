//! Runs one claimed task through its executor and reports the outcome:
//! `CompleteTask` on success, `FailTask` with a stable error code and the
//! task's last log lines otherwise, nothing at all when the lease was lost
//! (another runner owns the job). Reports that cannot reach the coordinator
//! are retried for about a minute; a refusal is final. Everything a task
//! logs happens inside its `task` span, which carries `job_id`, `attempt`,
//! `instance_id` and `trace_id` (so every JSON log line of the task does)
//! and continues the job's trace: the engine's phase spans, the
//! `heartbeats` summary and the `complete`/`fail` report are its children.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use pgvault_engine::{self as engine, EngineError, ErrorCode};
use pgvault_errors::JobFailure;
use pgvault_proto::v1::{ClaimTaskResponse, CompleteTaskRequest, FailTaskRequest, JobError, Task};
use pgvault_telemetry::TraceContext;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::executor::{TaskExecutor, TaskLease};
use super::heartbeat::{self, Heartbeat, Interruption, SharedProgress};
use super::link::{CoordinatorLink, LinkError};
use super::log_tail::LogTail;

/// How long a report that cannot reach the coordinator is retried.
const REPORT_PATIENCE: Duration = Duration::from_secs(60);

/// `parent`: the claim span's context when the claim continued the job's
/// trace; else the job's own context from the task is used.
pub(super) async fn run_claimed(
    claim: ClaimTaskResponse,
    parent: Option<TraceContext>,
    worker_id: &str,
    link: &Arc<dyn CoordinatorLink>,
    executor: &dyn TaskExecutor,
    shutdown: &CancellationToken,
) {
    let Some(task) = claim.task.clone() else {
        tracing::error!("claim response carried no task");
        return;
    };
    // Named TASK_SPAN; at ERROR level so every filter that shows any of
    // the task's events keeps the span (its level decides only whether it
    // exists, not how its events print).
    let parent = parent.or_else(|| TraceContext::from_carrier(&task.trace_context));
    let span = tracing::error_span!(
        parent: None,
        "task",
        job_id = %task.job_id,
        attempt = task.attempt,
        instance_id = %task.instance_id,
        trace_id = %parent.as_ref().map(TraceContext::trace_id).unwrap_or_default(),
    );
    if let Some(parent) = &parent {
        parent.adopt(&span);
    }
    let tail = LogTail::of(&span);
    run_task(claim, task, worker_id, link, executor, shutdown, tail)
        .instrument(span)
        .await;
}

async fn run_task(
    claim: ClaimTaskResponse,
    task: Task,
    worker_id: &str,
    link: &Arc<dyn CoordinatorLink>,
    executor: &dyn TaskExecutor,
    shutdown: &CancellationToken,
    tail: LogTail,
) {
    let job_id = task.job_id.clone();
    let lease_token = claim.lease_token.clone();
    let interval = Duration::from_secs(u64::from(claim.lease_ttl_seconds.max(3)) / 3);
    let progress = Arc::new(SharedProgress::default());
    let engine_cancel = CancellationToken::new();
    let heartbeat = Heartbeat::start(
        link.clone(),
        job_id.clone(),
        lease_token.clone(),
        interval,
        progress.clone(),
        engine_cancel.clone(),
    );
    // Worker shutdown stops the engine; the job is released for a retry below.
    let on_shutdown = {
        let engine_cancel = engine_cancel.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            engine_cancel.cancel();
        })
    };
    tracing::info!(job_id = %job_id, attempt = task.attempt, "task started");
    let sink: Arc<dyn engine::ProgressSink> = progress.clone();
    let lease = TaskLease {
        job_id: job_id.clone(),
        attempt: task.attempt,
        lease_token: lease_token.clone(),
        worker_id: worker_id.to_string(),
        chunks: link.clone().chunks(),
    };
    let outcome = match task.kind {
        Some(kind) => {
            executor
                .execute_leased(kind, lease, sink, engine_cancel.clone())
                .await
        }
        None => Err(EngineError {
            code: ErrorCode::Internal,
            message: "task has no kind; the coordinator and worker versions may differ".to_string(),
            retryable: false,
        }),
    };
    on_shutdown.abort();
    let interruption = heartbeat.finish().await;
    if interruption == Interruption::Fenced {
        tracing::warn!(job_id = %job_id, "attempt fenced; its objects will not be referenced");
        return;
    }
    heartbeat::flush_tables(link.as_ref(), &job_id, &lease_token, &progress).await;
    let (tables, _) = progress.pending_tables(super::tables::BATCH);
    let final_progress = Some(progress.snapshot());
    let report = match outcome {
        Ok(result) => {
            tracing::info!(job_id = %job_id, "task completed");
            let request = CompleteTaskRequest {
                job_id: job_id.clone(),
                lease_token,
                result: Some(result),
                progress: final_progress,
                tables,
            };
            deliver(|| link.complete(request.clone()))
                .instrument(tracing::info_span!("complete"))
                .await
        }
        Err(error) => {
            let (failure, retryable) = if interruption == Interruption::CancelRequested {
                (cancelled(), false)
            } else if shutdown.is_cancelled() {
                (shut_down(), true)
            } else {
                (error.failure(), error.retryable)
            };
            let error = job_error(failure);
            tracing::warn!(job_id = %job_id, code = %error.code, message = %error.message, retryable, "task failed");
            let request = FailTaskRequest {
                job_id: job_id.clone(),
                lease_token,
                error: Some(error),
                retryable,
                tables,
                log_tail: tail.lines(),
            };
            deliver(|| link.fail(request.clone()))
                .instrument(tracing::info_span!("fail", code = %request.error.as_ref().map(|e| e.code.as_str()).unwrap_or_default()))
                .await
        }
    };
    if let Err(error) = report {
        tracing::error!(job_id = %job_id, error = %error, "coordinator did not accept the task outcome");
    }
}

/// Makes a report, retrying while the coordinator cannot be reached.
async fn deliver<F, Fut>(mut call: F) -> Result<(), LinkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), LinkError>>,
{
    let mut delay = Duration::from_millis(250);
    let mut waited = Duration::ZERO;
    loop {
        match call().await {
            Ok(()) => return Ok(()),
            Err(error) if error.is_transient() && waited < REPORT_PATIENCE => {
                tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "coordinator call failed; retrying");
                tokio::time::sleep(delay).await;
                waited += delay;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(error) => return Err(error),
        }
    }
}

/// A failure as `FailTask` carries it, with the catalogue's action.
fn job_error(failure: JobFailure) -> JobError {
    JobError {
        code: failure.code_str().to_string(),
        recommended_action: failure.recommended_action().to_string(),
        message: failure.message,
    }
}

fn cancelled() -> JobFailure {
    JobFailure::new(ErrorCode::Cancelled, "the job was cancelled by a user")
}

fn shut_down() -> JobFailure {
    JobFailure::new(
        ErrorCode::SystemErrorWorkerShutdown,
        "the worker running this job was shut down; the job is retried on another worker while attempts remain",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_reported_with_the_catalogue_action_of_their_code() {
        let reported = job_error(shut_down());
        assert_eq!(reported.code, "SystemErrorWorkerShutdown");
        assert_eq!(
            reported.recommended_action,
            ErrorCode::SystemErrorWorkerShutdown.recommended_action()
        );
        let engine = EngineError::new(ErrorCode::DatastoreFull, "disk full");
        let reported = job_error(engine.failure());
        assert_eq!(
            (reported.code.as_str(), reported.message.as_str()),
            ("DatastoreFull", "disk full")
        );
        assert_eq!(job_error(cancelled()).code, "Cancelled");
    }
}
