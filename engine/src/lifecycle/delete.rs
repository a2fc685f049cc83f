//! Deleting a recovery point's objects: the manifest first (so a delete cut
//! short leaves an incomplete point no restore accepts, never a manifest
//! naming missing chunks), then every object listed under the prefix.
//! Objects already gone count as deleted, so the task is idempotent.

use futures::StreamExt;
use object_store::ObjectStore;
use pgvault_datastore::Datastore;
use tokio_util::sync::CancellationToken;

use super::Moved;
use crate::error::store_error;
use crate::manifest::MANIFEST_FILE;
use crate::objects::object_path;
use crate::{EngineError, Progress, ProgressSink};

/// Deletes every object under `prefix`; returns how many it removed.
pub async fn delete_prefix(
    store: &Datastore,
    prefix: &str,
    progress: &dyn ProgressSink,
    cancel: &CancellationToken,
) -> Result<Moved, EngineError> {
    let objects = store.object_store();
    let mut done = Moved::default();
    let manifest = object_path(store, prefix, MANIFEST_FILE);
    if remove(objects.as_ref(), &manifest).await? {
        done.objects += 1;
    }
    let root = store.path(prefix);
    // Listing and deleting one object at a time keeps memory bounded
    // whatever the point's size.
    loop {
        let mut listing = objects.list(Some(&root));
        let mut removed_this_pass = 0u64;
        while let Some(meta) = listing.next().await {
            if cancel.is_cancelled() {
                return Err(EngineError::cancelled());
            }
            let meta = match meta {
                Ok(meta) => meta,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(store_error(&e, "list", prefix, false)),
            };
            if remove(objects.as_ref(), &meta.location).await? {
                done.objects += 1;
                done.bytes += meta.size as u64;
                removed_this_pass += 1;
                progress.report(&Progress {
                    bytes_done: done.bytes,
                    rows_done: 0,
                    chunks_done: u32::try_from(done.objects).unwrap_or(u32::MAX),
                    chunks_total: 0,
                    phase: "deleting".to_string(),
                });
            }
        }
        // Some stores page listings lazily: list again until nothing is left.
        if removed_this_pass == 0 {
            break;
        }
    }
    tracing::info!(prefix = %prefix, objects = done.objects, "recovery point objects deleted");
    Ok(done)
}

/// Deletes one object; false when it was already gone.
async fn remove(
    objects: &dyn ObjectStore,
    path: &object_store::path::Path,
) -> Result<bool, EngineError> {
    match objects.delete(path).await {
        Ok(()) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(store_error(&e, "delete", path.as_ref(), true)),
    }
}
