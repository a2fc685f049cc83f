//! Lifecycle tasks: moving recovery points between datastores and deleting
//! them. Like the engine, this knows nothing of AMQP or gRPC beyond the task
//! messages it is handed: it takes datastores, prefixes, a progress sink and
//! a cancellation token.
//! - tier move: copy every object of the point (manifest last) to the
//!   archive datastore, verify each copy's SHA-256 against the manifest,
//!   then delete the standard copy;
//! - rehydrate: the same copy back into the standard datastore, keeping the
//!   archive copy;
//! - delete: remove every object under each location; objects already gone
//!   are not an error, so a retried delete finishes the job.
//!
//! # Layout
//! - `copy`: streaming, verified copy of one recovery point.
//! - `delete`: removing every object under a prefix.

mod copy;
mod delete;

use std::sync::Arc;

use pgvault_datastore::Datastore;
use pgvault_proto::v1::{DeleteTask, LifecycleResult, PointLocation, RehydrateTask, TierMoveTask};
use tokio_util::sync::CancellationToken;

pub use copy::copy_point;
pub use delete::delete_prefix;

use crate::engine::{EngineError, EngineOptions, ErrorCode, ProgressSink};

/// Objects and bytes a lifecycle task copied or removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    pub objects: u64,
    pub bytes: u64,
}

impl From<Moved> for LifecycleResult {
    fn from(m: Moved) -> Self {
        LifecycleResult {
            objects: m.objects,
            bytes: m.bytes,
        }
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
pub async fn run_delete(
    task: DeleteTask,
    progress: Arc<dyn ProgressSink>,
    cancel: CancellationToken,
) -> Result<Moved, EngineError> {
    let mut total = Moved::default();
    for location in &task.locations {
        let (store, prefix) = open(Some(location), "recovery point")?;
        let done = delete_prefix(&store, &prefix, progress.as_ref(), &cancel).await?;
        total.objects += done.objects;
        total.bytes += done.bytes;
    }
    Ok(total)
}

/// Copies the point to the archive datastore, verified, then deletes the source.
pub async fn run_tier_move(
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
pub async fn run_rehydrate(
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

#[cfg(test)]
mod tests;
