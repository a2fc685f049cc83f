//! Where failed, fenced or superseded attempts wrote: one row per
//! (datastore, prefix), deleted by the collector once it has removed the
//! objects there. A backup's prefix is never reused (each attempt writes
//! a fresh point); a tier move, rehydrate or copy retries into the same
//! prefix, so its retry forgets the row at claim and the collector holds
//! the row locked while it deletes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::Result;
use crate::store::to_i32;

/// A prefix waiting to be emptied.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Garbage {
    pub id: i64,
    pub job_id: Uuid,
    pub attempt: i32,
    pub datastore_url: String,
    pub prefix: String,
    pub collect_after: DateTime<Utc>,
    pub last_error: String,
}

/// Records where `attempt` of the job wrote (if it was told where) as
/// garbage, collectable after `grace` (long enough for a fenced worker to
/// notice).
pub async fn record_attempt(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    attempt: u32,
    grace: Duration,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO attempt_garbage (job_id, attempt, datastore_url, prefix, collect_after)
         SELECT job_id, attempt, datastore_url, prefix, now() + make_interval(secs => $3)
           FROM job_attempts
          WHERE job_id = $1 AND attempt = $2 AND datastore_url IS NOT NULL AND prefix IS NOT NULL
         ON CONFLICT (datastore_url, prefix) DO NOTHING",
    )
    .bind(job_id)
    .bind(to_i32(attempt))
    .bind(grace.as_secs_f64())
    .execute(db)
    .await?;
    Ok(())
}

/// Forgets the garbage recorded at (`datastore_url`, `prefix`): a later
/// attempt of the same job writes there now (a tier move, rehydrate or
/// copy retried to the same prefix) or completed there, so the objects are
/// live again. Waits for a collector emptying that prefix right now (it
/// holds the row locked, see [`lock`]): the new attempt writes only after
/// the old objects are gone.
pub async fn forget(db: impl PgExecutor<'_>, datastore_url: &str, prefix: &str) -> Result<()> {
    sqlx::query("DELETE FROM attempt_garbage WHERE datastore_url = $1 AND prefix = $2")
        .bind(datastore_url)
        .bind(prefix)
        .execute(db)
        .await?;
    Ok(())
}

/// Locks row `id` for its collection; `None` when it was forgotten
/// meanwhile (a retry took the prefix over). Held until the objects are
/// deleted and the row with them, so [`forget`] cannot slip in between.
pub async fn lock(db: impl PgExecutor<'_>, id: i64) -> Result<Option<Garbage>> {
    Ok(sqlx::query_as::<_, Garbage>(
        "SELECT id, job_id, attempt, datastore_url, prefix, collect_after, last_error
         FROM attempt_garbage WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(db)
    .await?)
}

/// Rows due for collection, oldest first.
pub async fn due(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<Garbage>> {
    Ok(sqlx::query_as::<_, Garbage>(
        "SELECT id, job_id, attempt, datastore_url, prefix, collect_after, last_error
         FROM attempt_garbage WHERE collect_after <= now()
         ORDER BY collect_after, id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Every row (for tests and diagnostics), oldest first.
pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<Garbage>> {
    Ok(sqlx::query_as::<_, Garbage>(
        "SELECT id, job_id, attempt, datastore_url, prefix, collect_after, last_error
         FROM attempt_garbage ORDER BY id",
    )
    .fetch_all(db)
    .await?)
}

pub async fn delete(db: impl PgExecutor<'_>, id: i64) -> Result<()> {
    sqlx::query("DELETE FROM attempt_garbage WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Tries again after `delay`, remembering why this pass failed.
pub async fn postpone(
    db: impl PgExecutor<'_>,
    id: i64,
    delay: Duration,
    error: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE attempt_garbage SET collect_after = now() + make_interval(secs => $2), last_error = $3
         WHERE id = $1",
    )
    .bind(id)
    .bind(delay.as_secs_f64())
    .bind(error)
    .execute(db)
    .await?;
    Ok(())
}
