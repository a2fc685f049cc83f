//! Soft delete of recovery points: marking a point (or every live point of
//! an instance) deleted with who and until when it stays recoverable, and
//! bringing it back. The sweeper purges marked points after `purge_after`
//! (`store::lifecycle::due`); a purged point gets `delete_time` like any
//! other deleted point.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::Result;

/// Marks the live point soft-deleted. False: it is not live (already
/// soft-deleted or purged).
pub async fn mark(
    db: impl PgExecutor<'_>,
    point_id: Uuid,
    by: &str,
    now: DateTime<Utc>,
    purge_after: DateTime<Utc>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE recovery_points SET soft_delete_time = $2, soft_deleted_by = $3, purge_after = $4
          WHERE id = $1 AND delete_time IS NULL AND soft_delete_time IS NULL",
    )
    .bind(point_id)
    .bind(now)
    .bind(by)
    .bind(purge_after)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks every live point of the instance soft-deleted; returns how many.
pub async fn mark_instance(
    db: impl PgExecutor<'_>,
    instance_id: Uuid,
    by: &str,
    now: DateTime<Utc>,
    purge_after: DateTime<Utc>,
) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE recovery_points SET soft_delete_time = $2, soft_deleted_by = $3, purge_after = $4
          WHERE backup_instance_id = $1 AND delete_time IS NULL AND soft_delete_time IS NULL",
    )
    .bind(instance_id)
    .bind(now)
    .bind(by)
    .bind(purge_after)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Brings a soft-deleted point back. False: it is not soft-deleted.
pub async fn unmark(db: impl PgExecutor<'_>, point_id: Uuid) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE recovery_points SET soft_delete_time = NULL, soft_deleted_by = NULL, purge_after = NULL
          WHERE id = $1 AND delete_time IS NULL AND soft_delete_time IS NOT NULL",
    )
    .bind(point_id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records on a purge job who deleted the point it removes.
pub async fn record_requester(db: impl PgExecutor<'_>, job_id: Uuid, by: &str) -> Result<()> {
    sqlx::query("UPDATE jobs SET requested_by = $2 WHERE id = $1")
        .bind(job_id)
        .bind(by)
        .execute(db)
        .await?;
    Ok(())
}
