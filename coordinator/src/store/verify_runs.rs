//! What verify jobs need from the state database beyond jobs and points:
//! the verify job of a point still queued or running, the claim of a
//! policy's verify slot, and the points that slot verifies.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::Result;

/// The verify job of point `point_id` that is queued or running, if any
/// (at most one: `jobs_one_verify_per_point_idx`).
pub async fn active_job(db: impl PgExecutor<'_>, point_id: Uuid) -> Result<Option<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM jobs WHERE recovery_point_id = $1 AND operation = 'VERIFY'
            AND state IN ('QUEUED', 'IN_PROGRESS', 'CANCELLING') LIMIT 1",
    )
    .bind(point_id)
    .fetch_optional(db)
    .await?)
}

/// Claims verify slot `slot` of a policy; false when it was claimed before.
pub async fn claim_slot(
    db: impl PgExecutor<'_>,
    vault_id: &str,
    policy_id: &str,
    slot: DateTime<Utc>,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO policy_verify_runs (vault_id, policy_id, slot) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(vault_id)
    .bind(policy_id)
    .bind(slot)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Up to `limit` live standard-tier points of the instances under policy
/// `policy_id` of vault `vault_id` created before `slot`, with no verify
/// queued or running, after `after` (keyset: create time, id), oldest
/// first: (create time, instance id, point id).
pub async fn due_points(
    db: impl PgExecutor<'_>,
    vault_id: &str,
    policy_id: &str,
    slot: DateTime<Utc>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<(DateTime<Utc>, Uuid, Uuid)>> {
    Ok(sqlx::query_as(
        "SELECT p.create_time, p.backup_instance_id, p.id
           FROM recovery_points p JOIN backup_instances i ON i.id = p.backup_instance_id
          WHERE i.vault_id = $1 AND i.policy_id = $2 AND p.create_time < $3
            AND p.delete_time IS NULL AND p.soft_delete_time IS NULL AND p.tier = 'STANDARD'
            AND ($4::timestamptz IS NULL OR (p.create_time, p.id) > ($4, $5))
            AND NOT EXISTS (SELECT 1 FROM jobs j
                             WHERE j.recovery_point_id = p.id AND j.operation = 'VERIFY'
                               AND j.state IN ('QUEUED', 'IN_PROGRESS', 'CANCELLING'))
          ORDER BY p.create_time, p.id
          LIMIT $6",
    )
    .bind(vault_id)
    .bind(policy_id)
    .bind(slot)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .fetch_all(db)
    .await?)
}
