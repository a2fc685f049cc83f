//! Runs lifecycle tasks (tier move, rehydrate, delete) of recovery points:
//! turns the task messages into the engine's verified copy and delete
//! ([`pgvault_engine::lifecycle`]) and the result back into a message.
//! - tier move: copy to the archive datastore, verified, then delete the
//!   standard copy;
//! - rehydrate: the same copy back into the standard datastore, keeping the
//!   archive copy;
//! - delete: remove every object under each location.

use std::sync::Arc;

use pgvault_datastore::Datastore;
use pgvault_engine::lifecycle::{Moved, copy_point, delete_prefix};
use pgvault_engine::{EngineError, EngineOptions, ErrorCode, ProgressSink};
use pgvault_proto::v1::{DeleteTask, LifecycleResult, PointLocation, RehydrateTask, TierMoveTask};
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
