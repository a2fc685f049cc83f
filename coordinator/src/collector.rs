//! The collector: empties the prefixes that failed, fenced or superseded
//! attempts wrote to (recorded in `attempt_garbage`), once their grace period
//! is over. Runs on the reaper's leader. A datastore that cannot be reached
//! is retried later; nothing else depends on it. Its lines carry the
//! failed attempt's job, attempt, instance and trace ids, like every line
//! about a job.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use pgvault_datastore::Datastore;
use pgvault_datastore::redact::error_text;

use tracing::Span;

use crate::error::Result;
use crate::job_span;
use crate::model::Job;
use crate::store::garbage::Garbage;
use crate::store::{Store, garbage, jobs};

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
        // The job is read for its instance and trace only; a line without
        // them is better than no collection.
        let job = jobs::find(store.pool(), item.job_id).await.ok().flatten();
        let span = attempt_span(&item, job.as_ref());
        match empty_prefix(&item.datastore_url, &item.prefix).await {
            Ok(objects) => {
                garbage::delete(&mut *tx, item.id).await?;
                tx.commit().await?;
                emptied += 1;
                span.in_scope(|| {
                    tracing::info!(prefix = %item.prefix, objects, "objects of a failed attempt deleted")
                });
            }
            Err(error) => {
                span.in_scope(|| {
                    tracing::warn!(prefix = %item.prefix, error = %error, "cannot delete a failed attempt's objects yet")
                });
                garbage::postpone(&mut *tx, item.id, RETRY_AFTER, &error).await?;
                tx.commit().await?;
            }
        }
    }
    Ok(emptied)
}

/// The span of collecting `item`: its job's, with the attempt that wrote
/// the objects (not the job's current one).
fn attempt_span(item: &Garbage, job: Option<&Job>) -> Span {
    job_span::of_parts(
        "garbage.collected",
        item.job_id,
        u32::try_from(item.attempt).unwrap_or_default(),
        job.and_then(|j| j.spec.instance_id()),
        job.and_then(|j| j.trace_context.as_ref()),
    )
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

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::job_span::logged_lines;

    #[test]
    fn a_collection_line_names_the_job_and_the_attempt_that_wrote_the_objects() {
        let item = Garbage {
            id: 7,
            job_id: Uuid::new_v4(),
            attempt: 2,
            datastore_url: "file:///srv/backups".into(),
            prefix: "v/i/p/".into(),
            collect_after: Utc::now(),
            last_error: String::new(),
        };
        let lines = logged_lines(|| {
            attempt_span(&item, None)
                .in_scope(|| tracing::info!(objects = 3, "objects of a failed attempt deleted"))
        });
        let line = lines.first().expect("one line");
        assert_eq!(line["job_id"], item.job_id.to_string(), "{line}");
        assert_eq!(line["attempt"], 2, "{line}");
        assert_eq!(
            line["message"], "objects of a failed attempt deleted",
            "{line}"
        );
    }
}
