//! Dead letters: task messages the queue gave up on, recorded once each
//! (keyed by message id and payload hash), listed newest first, deleted one
//! at a time. Also the one change a dead letter makes to its job: failing it
//! when it was still queued for that very attempt with nothing left to
//! publish it again.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::dead_letters::{DeadLetter, PayloadSummary, TaskRef};
use crate::error::{CoordinatorError, Result};
use crate::model::{JobError, JobState};
use crate::store::{parse_enum, to_i32, to_i64, to_u32, to_u64};

#[derive(sqlx::FromRow)]
struct DeadLetterRow {
    id: Uuid,
    receive_time: DateTime<Utc>,
    queue: String,
    reason: String,
    delivery_count: Option<i32>,
    message_id: Option<String>,
    payload_size: i64,
    payload_sha256: String,
    job_id: Option<Uuid>,
    attempt: Option<i32>,
    preview: String,
    job_state: Option<String>,
    job_failed: bool,
}

impl TryFrom<DeadLetterRow> for DeadLetter {
    type Error = CoordinatorError;
    fn try_from(r: DeadLetterRow) -> Result<Self> {
        let task = match (r.job_id, r.attempt) {
            (Some(job_id), Some(attempt)) => Some(TaskRef {
                job_id,
                attempt: to_u32(attempt, "dead_letters.attempt")?,
            }),
            _ => None,
        };
        Ok(DeadLetter {
            id: r.id,
            receive_time: r.receive_time,
            queue: r.queue,
            reason: r.reason,
            delivery_count: r
                .delivery_count
                .map(|n| to_u32(n, "dead_letters.delivery_count"))
                .transpose()?,
            message_id: r.message_id,
            payload_size: to_u64(r.payload_size, "dead_letters.payload_size")?,
            payload_sha256: r.payload_sha256,
            task,
            preview: r.preview,
            job_state: r
                .job_state
                .as_deref()
                .map(|s| parse_enum(s, "dead_letters.job_state", JobState::parse))
                .transpose()?,
            job_failed: r.job_failed,
        })
    }
}

const COLUMNS: &str = "id, receive_time, queue, reason, delivery_count, message_id, payload_size, \
     payload_sha256, job_id, attempt, preview, job_state, job_failed";

/// A dead letter about to be recorded.
#[derive(Debug, Clone)]
pub struct NewDeadLetter<'a> {
    pub dedupe_key: &'a str,
    pub queue: &'a str,
    pub reason: &'a str,
    pub delivery_count: Option<u32>,
    pub message_id: Option<&'a str>,
    pub payload: &'a PayloadSummary,
    pub job_state: Option<JobState>,
}

/// Records a dead letter; `None` when one with the same key exists already.
pub async fn insert(db: impl PgExecutor<'_>, new: &NewDeadLetter<'_>) -> Result<Option<Uuid>> {
    let id: Option<(Uuid,)> = sqlx::query_as(
        "INSERT INTO dead_letters (id, dedupe_key, queue, reason, delivery_count, message_id,
                                   payload_size, payload_sha256, job_id, attempt, preview, job_state)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
    )
    .bind(Uuid::new_v4())
    .bind(new.dedupe_key)
    .bind(new.queue)
    .bind(new.reason)
    .bind(new.delivery_count.map(to_i32))
    .bind(new.message_id)
    .bind(to_i64(new.payload.size))
    .bind(&new.payload.sha256)
    .bind(new.payload.task.map(|t| t.job_id))
    .bind(new.payload.task.map(|t| to_i32(t.attempt)))
    .bind(&new.payload.preview)
    .bind(new.job_state.map(JobState::as_str))
    .fetch_optional(db)
    .await?;
    Ok(id.map(|(id,)| id))
}

/// Notes that recording dead letter `id` failed its job.
pub async fn mark_job_failed(db: impl PgExecutor<'_>, id: Uuid) -> Result<()> {
    sqlx::query("UPDATE dead_letters SET job_failed = true WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Dead letters newest first, continuing after `after`.
pub async fn list(
    db: impl PgExecutor<'_>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<DeadLetter>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM dead_letters
         WHERE ($1::timestamptz IS NULL OR (receive_time, id) < ($1, $2))
         ORDER BY receive_time DESC, id DESC LIMIT $3"
    );
    let rows = sqlx::query_as::<_, DeadLetterRow>(&sql)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.into_iter().map(DeadLetter::try_from).collect()
}

/// Deletes one; false when there is no such dead letter.
pub async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool> {
    let done = sqlx::query("DELETE FROM dead_letters WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Fails the job when it is still QUEUED for exactly `attempt`, waits for no
/// other job and has no outbox row (nothing will publish it again): the
/// dead-lettered message was its only delivery, so it would wait forever.
/// The job's outbox rows are locked first, so a dispatcher that published
/// the message but has not yet committed deleting its row is waited for.
/// Then one conditional UPDATE, so a concurrent claim or re-queue wins
/// cleanly. Returns whether the job was failed.
pub async fn fail_stranded_job(
    conn: &mut PgConnection,
    task: TaskRef,
    error: &JobError,
) -> Result<bool> {
    sqlx::query("SELECT id FROM outbox WHERE job_id = $1 FOR UPDATE")
        .bind(task.job_id)
        .fetch_all(&mut *conn)
        .await?;
    let done = sqlx::query(
        "UPDATE jobs SET state = 'FAILED', error_code = $3, error_message = $4, error_action = $5,
             end_time = now(), update_time = now(), lease_expires_at = NULL
         WHERE id = $1 AND attempt = $2 AND state = 'QUEUED' AND waits_for_job_id IS NULL
           AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.job_id = $1)",
    )
    .bind(task.job_id)
    .bind(to_i32(task.attempt))
    .bind(&error.code)
    .bind(&error.message)
    .bind(&error.recommended_action)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}
