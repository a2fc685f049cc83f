//! The collector: empties the prefixes that failed, fenced or superseded
//! attempts wrote to (recorded in `attempt_garbage`), once their grace period
//! is over. Runs on the reaper's leader. A datastore that cannot be reached
//! is retried later; nothing else depends on it.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use pgvault_datastore::Datastore;
use pgvault_datastore::redact::error_text;

use crate::error::Result;
use crate::store::{Store, garbage};

/// Prefixes emptied per pass.
const BATCH: i64 = 20;
/// Wait before a prefix whose deletion failed is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(300);

/// One pass; returns how many prefixes were emptied.
pub async fn collect_once(store: &Store) -> Result<usize> {
    let due = garbage::due(store.pool(), BATCH).await?;
    let mut emptied = 0;
    for item in due {
        // The row stays locked while its objects are deleted: a retry that
        // takes the prefix over (`garbage::forget` at its claim) waits, and
        // one that took it over first removed the row.
        let mut tx = store.begin().await?;
        let Some(item) = garbage::lock(&mut *tx, item.id).await? else {
            continue;
        };
        match empty_prefix(&item.datastore_url, &item.prefix).await {
            Ok(objects) => {
                garbage::delete(&mut *tx, item.id).await?;
                tx.commit().await?;
                emptied += 1;
                tracing::info!(
                    job_id = %item.job_id,
                    attempt = item.attempt,
                    prefix = %item.prefix,
                    objects,
                    "objects of a failed attempt deleted"
                );
            }
            Err(error) => {
                tracing::warn!(job_id = %item.job_id, prefix = %item.prefix, error = %error, "cannot delete a failed attempt's objects yet");
                garbage::postpone(&mut *tx, item.id, RETRY_AFTER, &error).await?;
                tx.commit().await?;
            }
        }
    }
    Ok(emptied)
}

/// Deletes every object under `prefix`; returns how many there were.
async fn empty_prefix(datastore_url: &str, prefix: &str) -> std::result::Result<usize, String> {
    let store = Datastore::open(datastore_url).map_err(|e| e.to_string())?;
    let root = store.path(prefix.trim_end_matches('/'));
    let objects = store.object_store();
    let locations: Vec<_> = objects
        .list(Some(&root))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .map_err(|e| error_text(&e))?;
    let count = locations.len();
    let mut deleted =
        objects.delete_stream(futures::stream::iter(locations.into_iter().map(Ok)).boxed());
    while let Some(result) = deleted.next().await {
        match result {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(error_text(&e)),
        }
    }
    Ok(count)
}
