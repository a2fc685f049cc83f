//! Attempt history: one row per attempt of a job, opened when a worker
//! claims it and closed where the coordinator ends it (complete, fail,
//! lease expiry, take-over, cancel), with where the attempt writes (set
//! when its task is built), the agent that ran it and, when it failed, the
//! last log lines its runner sent. Read by `GetJob`/`WatchJob`, completion and the
//! garbage recorder; the job list never joins it.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::{CoordinatorError, Result};
use crate::model::{AttemptOutcome, AttemptTarget, JobAttempt, JobError, StageSplit};
use crate::store::{parse_enum, to_i32, to_u32};

#[derive(sqlx::FromRow)]
struct AttemptRow {
    attempt: i32,
    worker: String,
    agent: Option<String>,
    log_tail: Vec<String>,
    start_time: DateTime<Utc>,
    end_time: Option<DateTime<Utc>>,
    outcome: String,
    error_code: Option<String>,
    error_message: Option<String>,
    error_action: Option<String>,
}

impl TryFrom<AttemptRow> for JobAttempt {
    type Error = crate::error::CoordinatorError;
    fn try_from(r: AttemptRow) -> Result<Self> {
        Ok(JobAttempt {
            attempt: to_u32(r.attempt, "job_attempts.attempt")?,
            worker: r.worker,
            agent: r.agent,
            log_tail: r.log_tail,
            start_time: r.start_time,
            end_time: r.end_time,
            outcome: parse_enum(&r.outcome, "job_attempts.outcome", AttemptOutcome::parse)?,
            error: r.error_code.map(|code| JobError {
                code,
                message: r.error_message.unwrap_or_default(),
                recommended_action: r.error_action.unwrap_or_default(),
            }),
        })
    }
}

/// Records that `worker` (an instance of `agent`, or a worker when `None`)
/// began `attempt` of the job (a claim). A repeated claim of the same
/// attempt number starts it afresh (and forgets where it wrote).
pub async fn start(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    attempt: u32,
    worker: &str,
    agent: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO job_attempts (job_id, attempt, worker, agent) VALUES ($1, $2, $3, $4)
         ON CONFLICT (job_id, attempt) DO UPDATE SET worker = EXCLUDED.worker, agent = EXCLUDED.agent,
             start_time = now(), end_time = NULL, outcome = 'RUNNING', error_code = NULL, error_message = NULL,
             error_action = NULL, point_id = NULL, datastore_url = NULL, prefix = NULL, log_tail = '{}'",
    )
    .bind(job_id)
    .bind(to_i32(attempt))
    .bind(worker)
    .bind(agent)
    .execute(db)
    .await?;
    Ok(())
}

/// Records where `attempt` of the job writes.
pub async fn set_target(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    attempt: u32,
    target: &AttemptTarget,
) -> Result<()> {
    sqlx::query(
        "UPDATE job_attempts SET point_id = $3, datastore_url = $4, prefix = $5
         WHERE job_id = $1 AND attempt = $2",
    )
    .bind(job_id)
    .bind(to_i32(attempt))
    .bind(target.point_id)
    .bind(&target.datastore_url)
    .bind(&target.prefix)
    .execute(db)
    .await?;
    Ok(())
}

/// Where `attempt` of the job writes; `None` before its task was built (or
/// for operations that write nothing).
pub async fn target(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    attempt: u32,
) -> Result<Option<AttemptTarget>> {
    let row: Option<(Option<Uuid>, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT point_id, datastore_url, prefix FROM job_attempts WHERE job_id = $1 AND attempt = $2",
    )
    .bind(job_id)
    .bind(to_i32(attempt))
    .fetch_optional(db)
    .await?;
    Ok(match row {
        Some((point_id, Some(datastore_url), Some(prefix))) => Some(AttemptTarget {
            point_id,
            datastore_url,
            prefix,
        }),
        _ => None,
    })
}

/// Closes every open attempt of the job with `outcome` (and why). A no-op
/// when none is open (e.g. a queued job cancelled before any claim).
pub async fn end(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    outcome: AttemptOutcome,
    error: Option<&JobError>,
) -> Result<()> {
    sqlx::query(
        "UPDATE job_attempts SET end_time = now(), outcome = $2,
             error_code = $3, error_message = $4, error_action = $5
         WHERE job_id = $1 AND end_time IS NULL",
    )
    .bind(job_id)
    .bind(outcome.as_str())
    .bind(error.map(|e| e.code.as_str()))
    .bind(error.map(|e| e.message.as_str()))
    .bind(error.map(|e| e.recommended_action.as_str()))
    .execute(db)
    .await?;
    Ok(())
}

/// Keeps the last log lines `attempt`'s runner sent with its failure.
pub async fn set_log_tail(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    attempt: u32,
    lines: &[String],
) -> Result<()> {
    sqlx::query("UPDATE job_attempts SET log_tail = $3 WHERE job_id = $1 AND attempt = $2")
        .bind(job_id)
        .bind(to_i32(attempt))
        .bind(lines)
        .execute(db)
        .await?;
    Ok(())
}

/// Records where `attempt` of the job spent its time (on completion).
pub async fn set_stage_split(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    attempt: u32,
    split: &StageSplit,
) -> Result<()> {
    let json = serde_json::to_value(split)
        .map_err(|e| CoordinatorError::internal(format!("stage split as json: {e}")))?;
    sqlx::query("UPDATE job_attempts SET stage_split = $3 WHERE job_id = $1 AND attempt = $2")
        .bind(job_id)
        .bind(to_i32(attempt))
        .bind(json)
        .execute(db)
        .await?;
    Ok(())
}

/// Where the attempt that completed the job spent its time; `None` for jobs
/// not completed (or completed before splits were recorded).
pub async fn completed_stage_split(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
) -> Result<Option<StageSplit>> {
    let row: Option<(serde_json::Value,)> = sqlx::query_as(
        "SELECT stage_split FROM job_attempts
         WHERE job_id = $1 AND outcome = 'COMPLETED' AND stage_split IS NOT NULL
         ORDER BY attempt DESC LIMIT 1",
    )
    .bind(job_id)
    .fetch_optional(db)
    .await?;
    row.map(|(json,)| {
        serde_json::from_value::<StageSplit>(json)
            .map(StageSplit::without_legacy_schema_lane)
            .map_err(|e| {
                CoordinatorError::internal(format!(
                    "job_attempts.stage_split of job {job_id} is not a stage split: {e}"
                ))
            })
    })
    .transpose()
}

/// Every attempt of the job, oldest first.
pub async fn list(db: impl PgExecutor<'_>, job_id: Uuid) -> Result<Vec<JobAttempt>> {
    let rows = sqlx::query_as::<_, AttemptRow>(
        "SELECT attempt, worker, agent, log_tail, start_time, end_time, outcome, error_code, error_message,
                error_action
         FROM job_attempts WHERE job_id = $1 ORDER BY attempt",
    )
    .bind(job_id)
    .fetch_all(db)
    .await?;
    rows.into_iter().map(JobAttempt::try_from).collect()
}
