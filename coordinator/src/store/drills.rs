//! Restore drills' own reads: the drill of a point still queued or running
//! (one at a time, `jobs_one_drill_per_point_idx`), and how many points an
//! instance's backups produced (every Nth triggers a policy's drill).

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::Result;

/// The point's DRILL job still queued or running, if any.
pub async fn active_job(db: impl PgExecutor<'_>, point_id: Uuid) -> Result<Option<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM jobs WHERE recovery_point_id = $1 AND operation = 'DRILL'
            AND state IN ('QUEUED', 'IN_PROGRESS', 'CANCELLING') LIMIT 1",
    )
    .bind(point_id)
    .fetch_optional(db)
    .await?)
}

/// Recovery points the instance's backups produced so far (deleted ones
/// included: the count is of completed backups).
pub async fn points_produced(db: impl PgExecutor<'_>, instance_id: Uuid) -> Result<u64> {
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM recovery_points WHERE backup_instance_id = $1")
            .bind(instance_id)
            .fetch_one(db)
            .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}
