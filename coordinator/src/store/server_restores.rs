//! Whole-server restores: the point set a point belongs to (the points of
//! the same scheduled run of every database of its server in its vault),
//! and which restore job also restores the globals.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::Result;

/// One point of a set.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SetPoint {
    pub instance_id: Uuid,
    pub point_id: Uuid,
    pub database: String,
}

/// The slot of the scheduled run that produced `point_id`, if it was one.
pub async fn slot_of(db: impl PgExecutor<'_>, point_id: Uuid) -> Result<Option<DateTime<Utc>>> {
    let slot: Option<(DateTime<Utc>,)> = sqlx::query_as(
        "SELECT r.slot_time FROM recovery_points p
           JOIN schedule_runs r ON r.job_id = p.job_id AND r.backup_instance_id = p.backup_instance_id
          WHERE p.id = $1",
    )
    .bind(point_id)
    .fetch_optional(db)
    .await?;
    Ok(slot.map(|(s,)| s))
}

/// The points (not deleted) of the scheduled run of `slot` of every
/// instance of `vault_id` on `server_id`, by database.
pub async fn point_set(
    db: impl PgExecutor<'_>,
    vault_id: &str,
    server_id: &str,
    slot: DateTime<Utc>,
) -> Result<Vec<SetPoint>> {
    Ok(sqlx::query_as(
        "SELECT i.id AS instance_id, p.id AS point_id, p.database
           FROM schedule_runs r
           JOIN backup_instances i ON i.id = r.backup_instance_id
           JOIN recovery_points p ON p.job_id = r.job_id AND p.backup_instance_id = i.id
          WHERE r.slot_time = $3 AND i.vault_id = $1 AND i.server_id = $2
            AND p.delete_time IS NULL
          ORDER BY p.database",
    )
    .bind(vault_id)
    .bind(server_id)
    .bind(slot)
    .fetch_all(db)
    .await?)
}

/// Records that restore job `job_id` restores the point's globals first.
pub async fn mark_globals(db: impl PgExecutor<'_>, job_id: Uuid) -> Result<()> {
    sqlx::query("INSERT INTO restore_globals (job_id) VALUES ($1)")
        .bind(job_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Whether restore job `job_id` restores the point's globals first.
pub async fn restores_globals(db: impl PgExecutor<'_>, job_id: Uuid) -> Result<bool> {
    let (found,): (bool,) =
        sqlx::query_as("SELECT EXISTS (SELECT 1 FROM restore_globals WHERE job_id = $1)")
            .bind(job_id)
            .fetch_one(db)
            .await?;
    Ok(found)
}
