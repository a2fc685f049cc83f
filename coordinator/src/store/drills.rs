//! Restore drills' own reads: the drill of a point still queued or running
//! (one at a time, `jobs_one_drill_per_point_idx`), how many points an
//! instance's backups produced (every Nth triggers a policy's drill), the
//! claim of a policy's drill slot and the newest point of each instance
//! that slot drills.

use chrono::{DateTime, Utc};
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

/// Claims drill slot `slot` of a policy; false when it was claimed before.
pub async fn claim_slot(
    db: impl PgExecutor<'_>,
    vault_id: &str,
    policy_id: &str,
    slot: DateTime<Utc>,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO policy_drill_runs (vault_id, policy_id, slot) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(vault_id)
    .bind(policy_id)
    .bind(slot)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// For up to `limit` instances under policy `policy_id` of vault `vault_id`
/// after instance `after` (keyset: instance id), the instance and its
/// newest live standard-tier point; instances with none are left out.
pub async fn newest_points(
    db: impl PgExecutor<'_>,
    vault_id: &str,
    policy_id: &str,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<(Uuid, Uuid)>> {
    Ok(sqlx::query_as(
        "SELECT DISTINCT ON (p.backup_instance_id) p.backup_instance_id, p.id
           FROM recovery_points p JOIN backup_instances i ON i.id = p.backup_instance_id
          WHERE i.vault_id = $1 AND i.policy_id = $2
            AND p.delete_time IS NULL AND p.soft_delete_time IS NULL AND p.tier = 'STANDARD'
            AND ($3::uuid IS NULL OR p.backup_instance_id > $3)
          ORDER BY p.backup_instance_id, p.create_time DESC, p.id DESC
          LIMIT $4",
    )
    .bind(vault_id)
    .bind(policy_id)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?)
}
