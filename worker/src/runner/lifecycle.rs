//! Runs lifecycle tasks (tier move, rehydrate, delete) of recovery points:
//! turns the task messages into the engine's verified copy and delete
//! ([`pgvault_engine::lifecycle`]) and the result back into a message.
//! - tier move: copy to the archive datastore, verified, then delete the
//!   standard copy;
//! - rehydrate: the same copy back into the standard datastore, keeping the
//!   archive copy;
//! - copy: the same verified copy to the policy's copy datastore, keeping
//!   the source; any failure but a cancellation is `UserErrorCopyFailed`
//!   (the cause's code in its message);
//! - delete: remove every object under each location.

use std::sync::Arc;

use pgvault_datastore::Datastore;
use pgvault_engine::lifecycle::{Moved, copy_point, delete_prefix};
use pgvault_engine::{EngineError, EngineOptions, ErrorCode, ProgressSink};
use pgvault_proto::v1::{
    CopyTask, DeleteTask, LifecycleResult, PointLocation, RehydrateTask, TierMoveTask,
};
use tokio_util::sync::CancellationToken;

pub(super) fn result(m: Moved) -> LifecycleResult {
    LifecycleResult {
        objects: m.objects,
        bytes: m.bytes,
    }
}

fn open(location: Option<&PointLocation>, what: &str) -> Result<(Datastore, String), EngineError> {
    let location = location
        .ok_or_else(|| EngineError::internal(format!("task carried no {what} location")))?;
    let store = Datastore::open(&location.datastore_url).map_err(|e| {
        EngineError::new(
            ErrorCode::DatastoreUnavailable,
            format!("cannot open the {what} datastore: {e}"),
        )
    })?;
    Ok((store, location.prefix.clone()))
}

/// Deletes every object of every location in the task.
pub(super) async fn run_delete(
    task: DeleteTask,
    progress: Arc<dyn ProgressSink>,
    cancel: CancellationToken,
) -> Result<Moved, EngineError> {
    let mut total = Moved::default();
    for location in &task.locations {
        let (store, prefix) = open(Some(location), "recovery point")?;
        total += delete_prefix(&store, &prefix, progress.as_ref(), &cancel).await?;
    }
    Ok(total)
}

/// Copies the point to the archive datastore, verified, then deletes the source.
pub(super) async fn run_tier_move(
    task: TierMoveTask,
    options: &EngineOptions,
    progress: Arc<dyn ProgressSink>,
    cancel: CancellationToken,
) -> Result<Moved, EngineError> {
    let (source, source_prefix) = open(task.source.as_ref(), "source")?;
    let (destination, destination_prefix) = open(task.destination.as_ref(), "destination")?;
    let copied = copy_point(
        &source,
        &source_prefix,
        &destination,
        &destination_prefix,
        &task.manifest_sha256,
        options,
        progress.as_ref(),
        &cancel,
    )
    .await?;
    delete_prefix(&source, &source_prefix, progress.as_ref(), &cancel).await?;
    Ok(copied)
}

/// Copies an archive point back into the standard datastore, verified.
pub(super) async fn run_rehydrate(
    task: RehydrateTask,
    options: &EngineOptions,
    progress: Arc<dyn ProgressSink>,
    cancel: CancellationToken,
) -> Result<Moved, EngineError> {
    let (source, source_prefix) = open(task.source.as_ref(), "source")?;
    let (destination, destination_prefix) = open(task.destination.as_ref(), "destination")?;
    copy_point(
        &source,
        &source_prefix,
        &destination,
        &destination_prefix,
        &task.manifest_sha256,
        options,
        progress.as_ref(),
        &cancel,
    )
    .await
}

/// Copies a point to its policy's copy datastore, verified; the source stays.
pub(super) async fn run_copy(
    task: CopyTask,
    options: &EngineOptions,
    progress: Arc<dyn ProgressSink>,
    cancel: CancellationToken,
) -> Result<Moved, EngineError> {
    let target = task
        .destination
        .as_ref()
        .and_then(|d| Datastore::open(&d.datastore_url).ok())
        .map(|d| d.redacted_url())
        .unwrap_or_else(|| "the copy datastore".to_string());
    let copied = async {
        let (source, source_prefix) = open(task.source.as_ref(), "source")?;
        let (destination, destination_prefix) = open(task.destination.as_ref(), "copy")?;
        copy_point(
            &source,
            &source_prefix,
            &destination,
            &destination_prefix,
            &task.manifest_sha256,
            options,
            progress.as_ref(),
            &cancel,
        )
        .await
    }
    .await;
    copied.map_err(|e| copy_failed(e, &target))
}

/// A copy's failure as `UserErrorCopyFailed` naming the target and the
/// cause's code; a cancellation stays one. Retried when the cause is.
fn copy_failed(error: EngineError, target: &str) -> EngineError {
    if error.code == ErrorCode::Cancelled {
        return error;
    }
    EngineError {
        code: ErrorCode::UserErrorCopyFailed,
        message: format!(
            "copying the recovery point to {target} failed ({}): {}",
            error.code, error.message
        ),
        retryable: error.retryable,
    }
}

#[cfg(test)]
mod copy_tests {
    use super::*;

    #[test]
    fn a_failed_copy_carries_the_copy_code_and_its_cause_and_a_cancellation_stays_one() {
        let cause = EngineError::new(ErrorCode::DatastoreUnavailable, "connection refused");
        let failed = copy_failed(cause, "az://copies");
        assert_eq!(failed.code, ErrorCode::UserErrorCopyFailed);
        assert!(failed.retryable);
        assert_eq!(
            failed.message,
            "copying the recovery point to az://copies failed (DatastoreUnavailable): connection refused"
        );
        let cancelled = copy_failed(EngineError::cancelled(), "az://copies");
        assert_eq!(cancelled.code, ErrorCode::Cancelled);
    }
}
