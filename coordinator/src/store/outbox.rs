//! The task outbox: one row per task to publish, written in the transaction
//! that creates or re-queues the job (re-queues due after a backoff),
//! deleted after the broker confirmed.

use std::time::Duration;

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::Result;
use crate::store::{to_i32, to_u32};

/// A task waiting to be published.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub job_id: Uuid,
    pub attempt: u32,
}

pub async fn insert(db: impl PgExecutor<'_>, job_id: Uuid, attempt: u32) -> Result<()> {
    insert_delayed(db, job_id, attempt, Duration::ZERO).await
}

/// A row published only once `delay` has passed (on the database clock):
/// the backoff before a re-queued attempt.
pub async fn insert_delayed(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    attempt: u32,
    delay: Duration,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbox (job_id, attempt, not_before)
         VALUES ($1, $2, now() + make_interval(secs => $3))",
    )
    .bind(job_id)
    .bind(to_i32(attempt))
    .bind(delay.as_secs_f64())
    .execute(db)
    .await?;
    Ok(())
}

/// The oldest due rows, locked for this transaction; rows another
/// dispatcher holds are skipped.
pub async fn lock_batch(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<OutboxRow>> {
    let rows: Vec<(i64, Uuid, i32)> = sqlx::query_as(
        "SELECT id, job_id, attempt FROM outbox WHERE not_before <= now()
         ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|(id, job_id, attempt)| {
            Ok(OutboxRow {
                id,
                job_id,
                attempt: to_u32(attempt, "outbox.attempt")?,
            })
        })
        .collect()
}

/// Deletes the published rows `ids` in one statement.
pub async fn delete_many(db: impl PgExecutor<'_>, ids: &[i64]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
        .bind(ids)
        .execute(db)
        .await?;
    Ok(())
}

/// Outbox rows for many new jobs (each at `attempt`, due at once) in one
/// statement.
pub async fn insert_many(db: impl PgExecutor<'_>, jobs: &[(Uuid, u32)]) -> Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.0).collect();
    let attempts: Vec<i32> = jobs.iter().map(|j| to_i32(j.1)).collect();
    sqlx::query(
        "INSERT INTO outbox (job_id, attempt, not_before)
         SELECT job_id, attempt, now() FROM UNNEST($1::uuid[], $2::int4[]) AS t (job_id, attempt)",
    )
    .bind(&ids)
    .bind(&attempts)
    .execute(db)
    .await?;
    Ok(())
}

/// Adds an outbox row for every QUEUED job that has none (after a restart
/// with a non-durable queue, whose messages were lost), except jobs still
/// waiting for another job (published when it completes). Returns how many.
pub async fn republish_queued(db: impl PgExecutor<'_>) -> Result<u64> {
    let done = sqlx::query(
        "INSERT INTO outbox (job_id, attempt)
         SELECT j.id, j.attempt FROM jobs j
         WHERE j.state = 'QUEUED' AND j.waits_for_job_id IS NULL AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.job_id = j.id)",
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
