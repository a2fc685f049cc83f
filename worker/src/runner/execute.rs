//! Runs one claimed task through the engine and reports the outcome:
//! `CompleteTask` on success, `FailTask` with a stable error code otherwise,
//! nothing at all when the lease was lost (another worker owns the job).

use std::sync::Arc;
use std::time::Duration;

use pgvault_datastore::Datastore;
use pgvault_errors::JobFailure;
use pgvault_proto::v1::{
    BackupResult, BackupTask, ClaimTaskResponse, CompleteTaskRequest, ConnectionSpec,
    FailTaskRequest, JobError, RestoreResult, RestoreTask, complete_task_request, task,
};
use tokio_util::sync::CancellationToken;

use super::heartbeat::{self, Heartbeat, Interruption, SharedProgress};
use super::{CoordinatorClient, WorkerOptions};
use pgvault_engine::{self as engine, EngineError, ErrorCode, PgTarget};

pub(super) async fn run_claimed(
    claim: ClaimTaskResponse,
    client: &CoordinatorClient,
    options: &WorkerOptions,
    shutdown: &CancellationToken,
) {
    let Some(task) = claim.task else {
        tracing::error!("claim response carried no task");
        return;
    };
    let job_id = task.job_id.clone();
    let lease_token = claim.lease_token.clone();
    let interval = Duration::from_secs(u64::from(claim.lease_ttl_seconds.max(3)) / 3);
    let progress = Arc::new(SharedProgress::default());
    let engine_cancel = CancellationToken::new();
    let heartbeat = Heartbeat::start(
        client.clone(),
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
    let outcome = match task.kind {
        Some(task::Kind::Backup(backup)) => {
            run_backup(backup, options, sink, engine_cancel.clone()).await
        }
        Some(task::Kind::Restore(restore)) => {
            run_restore(restore, options, sink, engine_cancel.clone()).await
        }
        Some(task::Kind::RestoreFiles(files)) => {
            super::restore_files::run(files, options, sink, engine_cancel.clone()).await
        }
        Some(task::Kind::Delete(delete)) => {
            super::lifecycle::run_delete(delete, sink, engine_cancel.clone())
                .await
                .map(|moved| {
                    complete_task_request::Result::Lifecycle(super::lifecycle::result(moved))
                })
        }
        Some(task::Kind::TierMove(tier_move)) => {
            super::lifecycle::run_tier_move(tier_move, &options.engine, sink, engine_cancel.clone())
                .await
                .map(|moved| {
                    complete_task_request::Result::Lifecycle(super::lifecycle::result(moved))
                })
        }
        Some(task::Kind::Rehydrate(rehydrate)) => {
            super::lifecycle::run_rehydrate(rehydrate, &options.engine, sink, engine_cancel.clone())
                .await
                .map(|moved| {
                    complete_task_request::Result::Lifecycle(super::lifecycle::result(moved))
                })
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
    heartbeat::flush_sub_tasks(client, &job_id, &lease_token, &progress).await;
    let (sub_tasks, _) = progress.pending_sub_tasks(super::sub_tasks::BATCH);
    let final_progress = Some(progress.snapshot());
    let report = match outcome {
        Ok(result) => {
            tracing::info!(job_id = %job_id, "task completed");
            client
                .complete(CompleteTaskRequest {
                    job_id: job_id.clone(),
                    lease_token,
                    result: Some(result),
                    progress: final_progress,
                    sub_tasks,
                })
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
            client
                .fail(FailTaskRequest {
                    job_id: job_id.clone(),
                    lease_token,
                    error: Some(error),
                    retryable,
                    sub_tasks,
                })
                .await
        }
    };
    if let Err(status) = report {
        tracing::error!(job_id = %job_id, error = %status.message(), "coordinator did not accept the task outcome");
    }
}

async fn run_backup(
    task: BackupTask,
    options: &WorkerOptions,
    progress: Arc<dyn engine::ProgressSink>,
    cancel: CancellationToken,
) -> Result<complete_task_request::Result, EngineError> {
    let source = pg_target(task.source)?;
    let store = open_datastore(&task.datastore_url)?;
    let summary = engine::backup(
        &source,
        &store,
        &task.prefix,
        &options.engine,
        progress,
        cancel,
    )
    .await?;
    Ok(complete_task_request::Result::Backup(BackupResult {
        snapshot_time: Some(pgvault_proto::Timestamp {
            seconds: summary.snapshot_time.timestamp(),
            nanos: summary.snapshot_time.timestamp_subsec_nanos() as i32,
        }),
        stored_bytes: summary.stored_bytes,
        raw_bytes: summary.raw_bytes,
        chunk_count: summary.chunk_count,
        manifest_sha256: summary.manifest_sha256,
        server_version: summary.server_version,
    }))
}

async fn run_restore(
    task: RestoreTask,
    options: &WorkerOptions,
    progress: Arc<dyn engine::ProgressSink>,
    cancel: CancellationToken,
) -> Result<complete_task_request::Result, EngineError> {
    let target = pg_target(task.target)?;
    let store = open_datastore(&task.datastore_url)?;
    let expected = (!task.manifest_sha256.is_empty()).then_some(task.manifest_sha256.as_str());
    let selection = engine::Selection {
        schemas: task.schemas,
        tables: task.tables,
    };
    let summary = engine::restore_database_selected(
        &target,
        &store,
        &task.prefix,
        expected,
        &selection,
        &options.engine,
        progress,
        cancel,
    )
    .await?;
    Ok(complete_task_request::Result::Restore(RestoreResult {
        rows: summary.rows,
        bytes: summary.bytes,
        skipped_objects: summary.skipped_objects,
        ..RestoreResult::default()
    }))
}

fn pg_target(spec: Option<ConnectionSpec>) -> Result<PgTarget, EngineError> {
    let spec = spec.ok_or_else(|| EngineError {
        code: ErrorCode::Internal,
        message: "task carried no connection details".to_string(),
        retryable: false,
    })?;
    let port = u16::try_from(spec.port).map_err(|_| EngineError {
        code: ErrorCode::Internal,
        message: format!("server port {} is out of range", spec.port),
        retryable: false,
    })?;
    Ok(PgTarget {
        host: spec.host,
        port,
        database: spec.database,
        user: spec.user,
        password: spec.password,
        ssl_mode: spec.ssl_mode,
        trust_server_certificate: spec.trust_server_certificate,
        ssl_root_cert: (!spec.ssl_root_cert.is_empty())
            .then(|| std::path::PathBuf::from(spec.ssl_root_cert)),
    })
}

pub(super) fn open_datastore(url: &str) -> Result<Datastore, EngineError> {
    Datastore::open(url).map_err(|e| EngineError {
        code: ErrorCode::DatastoreUnavailable,
        message: format!("cannot open datastore: {e}"),
        retryable: false,
    })
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
