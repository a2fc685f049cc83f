//! A job's state transitions: claim (taking the lease), heartbeat,
//! completion, failure, re-queue, cancel and retry. Each is one conditional
//! UPDATE on the job row, measured on the database clock, so two workers can
//! never both win a claim and a stale lease token changes nothing.

use sqlx::PgExecutor;
use uuid::Uuid;

use super::row::{JobRow, updated};
use crate::error::Result;
use crate::model::{Job, JobError, JobState, Progress};
use crate::store::{parse_enum, to_i32, to_i64, to_u32};

/// Claims the job for `worker` if it is queued, or in progress with an
/// expired lease and attempts left (a take-over counts as a new attempt).
/// Returns `None` when it cannot be claimed.
pub async fn claim(
    db: impl PgExecutor<'_>,
    id: Uuid,
    worker: &str,
    lease_token: Uuid,
    ttl_seconds: f64,
    max_attempts: u32,
) -> Result<Option<Job>> {
    let sql = updated(
        "UPDATE jobs SET
             attempt = CASE WHEN state = 'QUEUED' THEN attempt ELSE attempt + 1 END,
             state = 'IN_PROGRESS',
             lease_owner = $2,
             lease_token = $3,
             lease_expires_at = now() + make_interval(secs => $4),
             start_time = coalesce(start_time, now()),
             update_time = now()
         WHERE id = $1
           AND (state = 'QUEUED' OR (state = 'IN_PROGRESS' AND lease_expires_at < now() AND attempt - attempts_before_retry < $5))",
    );
    let row = sqlx::query_as::<_, JobRow>(&sql)
        .bind(id)
        .bind(worker)
        .bind(lease_token)
        .bind(ttl_seconds)
        .bind(to_i32(max_attempts))
        .fetch_optional(db)
        .await?;
    row.map(Job::try_from).transpose()
}

/// Extends a live lease and stores progress (when given). `None`: the token
/// is stale, the job is no longer in progress, or the lease already
/// expired (by the database's clock, as chunk leases and connection slots
/// count it: an expired lease is over even before the reaper re-queues the
/// job, and a late heartbeat does not revive it).
pub async fn heartbeat(
    db: impl PgExecutor<'_>,
    id: Uuid,
    lease_token: Uuid,
    ttl_seconds: f64,
    progress: Option<&Progress>,
) -> Result<Option<JobState>> {
    let given = progress.is_some();
    let p = progress.cloned().unwrap_or_default();
    let state: Option<(String,)> = sqlx::query_as(
        "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3),
             bytes_done = CASE WHEN $9 THEN $4 ELSE bytes_done END,
             rows_done = CASE WHEN $9 THEN $5 ELSE rows_done END,
             chunks_done = CASE WHEN $9 THEN $6 ELSE chunks_done END,
             chunks_total = CASE WHEN $9 THEN $7 ELSE chunks_total END,
             phase = CASE WHEN $9 THEN $8 ELSE phase END,
             update_time = now()
         WHERE id = $1 AND lease_token = $2 AND state IN ('IN_PROGRESS', 'CANCELLING')
           AND lease_expires_at > now()
         RETURNING state",
    )
    .bind(id)
    .bind(lease_token)
    .bind(ttl_seconds)
    .bind(to_i64(p.bytes_done))
    .bind(to_i64(p.rows_done))
    .bind(to_i32(p.chunks_done))
    .bind(to_i32(p.chunks_total))
    .bind(&p.phase)
    .bind(given)
    .fetch_optional(db)
    .await?;
    state
        .map(|(s,)| parse_enum(&s, "jobs.state", JobState::parse))
        .transpose()
}

/// Marks the job COMPLETED with its final progress (and, for a backup, the
/// point it produced).
pub async fn complete(
    db: impl PgExecutor<'_>,
    id: Uuid,
    progress: &Progress,
    produced_point_id: Option<Uuid>,
) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET state = 'COMPLETED', end_time = now(), update_time = now(), lease_expires_at = NULL,
             produced_point_id = coalesce($2, produced_point_id),
             error_code = NULL, error_message = NULL, error_action = NULL,
             bytes_done = $3, rows_done = $4, chunks_done = $5, chunks_total = $6, phase = $7
         WHERE id = $1",
    )
    .bind(id)
    .bind(produced_point_id)
    .bind(to_i64(progress.bytes_done))
    .bind(to_i64(progress.rows_done))
    .bind(to_i32(progress.chunks_done))
    .bind(to_i32(progress.chunks_total))
    .bind(&progress.phase)
    .execute(db)
    .await?;
    Ok(())
}

/// Turns a job just marked COMPLETED into COMPLETED_WITH_WARNINGS (the
/// warnings themselves are stored with what produced them).
pub async fn mark_completed_with_warnings(db: impl PgExecutor<'_>, id: Uuid) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET state = 'COMPLETED_WITH_WARNINGS' WHERE id = $1 AND state = 'COMPLETED'",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

/// Ends the job in `state` (FAILED or CANCELLED) with `error`.
pub async fn finish_failed(
    db: impl PgExecutor<'_>,
    id: Uuid,
    state: JobState,
    error: &JobError,
) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET state = $2, error_code = $3, error_message = $4, error_action = $5,
             end_time = now(), update_time = now(), lease_expires_at = NULL
         WHERE id = $1",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(&error.code)
    .bind(&error.message)
    .bind(&error.recommended_action)
    .execute(db)
    .await?;
    Ok(())
}

/// Puts the job back in the queue for its next attempt, remembering why the
/// last one failed. Returns the new attempt number.
pub async fn requeue(db: impl PgExecutor<'_>, id: Uuid, error: &JobError) -> Result<u32> {
    let (attempt,): (i32,) = sqlx::query_as(
        "UPDATE jobs SET state = 'QUEUED', attempt = attempt + 1, lease_token = NULL, lease_expires_at = NULL,
             error_code = $2, error_message = $3, error_action = $4, update_time = now()
         WHERE id = $1 RETURNING attempt",
    )
    .bind(id)
    .bind(&error.code)
    .bind(&error.message)
    .bind(&error.recommended_action)
    .fetch_one(db)
    .await?;
    to_u32(attempt, "jobs.attempt")
}

/// Asks for the job to stop: QUEUED jobs end CANCELLED at once, jobs in
/// progress become CANCELLING (their worker learns it from its next
/// heartbeat). Returns the state after the call; `None` when the job had
/// already finished (or was already being cancelled).
pub async fn request_cancel(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<JobState>> {
    let error = crate::model::JobError::new(
        pgvault_errors::ErrorCode::Cancelled,
        "cancelled before it started",
    );
    let state: Option<(String,)> = sqlx::query_as(
        "UPDATE jobs SET
             state = CASE WHEN state = 'QUEUED' THEN 'CANCELLED' ELSE 'CANCELLING' END,
             end_time = CASE WHEN state = 'QUEUED' THEN now() ELSE end_time END,
             error_code = CASE WHEN state = 'QUEUED' THEN $2 ELSE error_code END,
             error_message = CASE WHEN state = 'QUEUED' THEN $3 ELSE error_message END,
             error_action = CASE WHEN state = 'QUEUED' THEN $4 ELSE error_action END,
             update_time = now()
         WHERE id = $1 AND state IN ('QUEUED', 'IN_PROGRESS')
         RETURNING state",
    )
    .bind(id)
    .bind(&error.code)
    .bind(&error.message)
    .bind(&error.recommended_action)
    .fetch_optional(db)
    .await?;
    state
        .map(|(s,)| parse_enum(&s, "jobs.state", JobState::parse))
        .transpose()
}

/// Re-queues a FAILED or CANCELLED job as its next attempt: error, lease,
/// progress and end time cleared. Returns the new attempt number; `None`
/// when the job is not in one of those states.
pub async fn retry(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<u32>> {
    let attempt: Option<(i32,)> = sqlx::query_as(
        "UPDATE jobs SET state = 'QUEUED', attempts_before_retry = attempt, attempt = attempt + 1,
             lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
             error_code = NULL, error_message = NULL, error_action = NULL,
             bytes_done = 0, rows_done = 0, chunks_done = 0, chunks_total = 0, phase = '',
             end_time = NULL, update_time = now()
         WHERE id = $1 AND state IN ('FAILED', 'CANCELLED')
         RETURNING attempt",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    attempt.map(|(a,)| to_u32(a, "jobs.attempt")).transpose()
}
