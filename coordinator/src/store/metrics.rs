//! Read-only queries behind `/metrics` (`crate::metrics`): the gauges read
//! at scrape time (queue, outbox, dead letters, agents, each instance's last
//! successful backup) and the feed of jobs and attempts that ended, and of
//! scheduled jobs created, since a watermark. Each query is bounded: by an
//! index range (`*_end_time_idx`, `jobs_operation_newest_idx`), by a
//! `LIMIT`, or by the size of a small table (outbox, agents, instances).

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::Result;

/// Rows one feed query returns at most; the rest come on the next pass.
pub const FEED_LIMIT: i64 = 5000;

/// Jobs of one operation and state (only states that are not final).
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveJobs {
    pub operation: String,
    pub state: String,
    pub count: i64,
    /// Seconds since the oldest of them was created.
    pub oldest_age_seconds: f64,
}

/// Jobs queued, in progress or being cancelled, by operation and state.
pub async fn active_jobs(db: impl PgExecutor<'_>) -> Result<Vec<ActiveJobs>> {
    let rows: Vec<(String, String, i64, f64)> = sqlx::query_as(
        "SELECT operation, state, count(*),
                extract(epoch FROM now() - min(create_time))::float8
           FROM jobs WHERE state IN ('QUEUED', 'IN_PROGRESS', 'CANCELLING')
          GROUP BY operation, state",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(operation, state, count, oldest_age_seconds)| ActiveJobs {
            operation,
            state,
            count,
            oldest_age_seconds,
        })
        .collect())
}

/// Outbox rows due and not yet published (or, for agents' jobs, not yet
/// claimed), and how long the oldest has been due.
pub async fn outbox_backlog(db: impl PgExecutor<'_>) -> Result<(i64, f64)> {
    let row: (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), extract(epoch FROM now() - min(not_before))::float8
           FROM outbox WHERE not_before <= now()",
    )
    .fetch_one(db)
    .await?;
    Ok((row.0, row.1.unwrap_or(0.0).max(0.0)))
}

/// Dead letters recorded in the state database.
pub async fn dead_letters(db: impl PgExecutor<'_>) -> Result<i64> {
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM dead_letters")
        .fetch_one(db)
        .await?;
    Ok(count)
}

/// Every agent with its number of live instances (0 included).
pub async fn agent_instances_live(db: impl PgExecutor<'_>) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT a.id, count(i.instance_id) FILTER (WHERE i.disconnect_time IS NULL AND i.live_until > now())
           FROM agents a LEFT JOIN agent_instances i ON i.agent_id = a.id
          GROUP BY a.id ORDER BY a.id",
    )
    .fetch_all(db)
    .await?)
}

/// A backup instance's newest recovery point.
#[derive(Debug, Clone, PartialEq)]
pub struct LastSuccess {
    pub vault: String,
    pub instance: Uuid,
    pub server: String,
    pub database: String,
    pub time: DateTime<Utc>,
}

/// The newest recovery point of every instance that has one and whose
/// protection is not stopped (deleted points count: the backup did succeed
/// then).
pub async fn last_successes(db: impl PgExecutor<'_>) -> Result<Vec<LastSuccess>> {
    let rows: Vec<(String, Uuid, String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT i.vault_id, i.id, i.server_id, i.database, rp.create_time
           FROM backup_instances i
           JOIN LATERAL (SELECT create_time FROM recovery_points
                          WHERE backup_instance_id = i.id
                          ORDER BY create_time DESC, id DESC LIMIT 1) rp ON true
          WHERE i.protection_state <> 'PROTECTION_STOPPED'
          ORDER BY i.vault_id, i.id",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(vault, instance, server, database, time)| LastSuccess {
            vault,
            instance,
            server,
            database,
            time,
        })
        .collect())
}

/// The database's clock: where a feed's watermark starts.
pub async fn now(db: impl PgExecutor<'_>) -> Result<DateTime<Utc>> {
    let (now,): (DateTime<Utc>,) = sqlx::query_as("SELECT now()").fetch_one(db).await?;
    Ok(now)
}

/// A job that reached a final state.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct EndedJob {
    pub id: Uuid,
    pub operation: String,
    pub state: String,
    /// Seconds from the first claim to the end; `None` when never claimed.
    pub run_seconds: Option<f64>,
    pub bytes: i64,
    pub end_time: DateTime<Utc>,
}

/// Jobs in a final state that ended after `since`, oldest first.
pub async fn jobs_ended_since(
    db: impl PgExecutor<'_>,
    since: DateTime<Utc>,
) -> Result<Vec<EndedJob>> {
    Ok(sqlx::query_as(
        "SELECT id, operation, state,
                extract(epoch FROM end_time - start_time)::float8 AS run_seconds,
                bytes_done AS bytes, end_time
           FROM jobs
          WHERE end_time > $1
            AND state IN ('COMPLETED', 'COMPLETED_WITH_WARNINGS', 'FAILED', 'CANCELLED')
          ORDER BY end_time LIMIT $2",
    )
    .bind(since)
    .bind(FEED_LIMIT)
    .fetch_all(db)
    .await?)
}

/// An attempt that ended (completed, failed, lease expired, fenced, cancelled).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct EndedAttempt {
    pub job_id: Uuid,
    pub attempt: i32,
    pub operation: String,
    pub outcome: String,
    pub error_code: Option<String>,
    pub end_time: DateTime<Utc>,
}

/// Attempts that ended after `since`, oldest first.
pub async fn attempts_ended_since(
    db: impl PgExecutor<'_>,
    since: DateTime<Utc>,
) -> Result<Vec<EndedAttempt>> {
    Ok(sqlx::query_as(
        "SELECT a.job_id, a.attempt, j.operation, a.outcome, a.error_code, a.end_time
           FROM job_attempts a JOIN jobs j ON j.id = a.job_id
          WHERE a.end_time > $1 AND a.outcome <> 'RUNNING'
          ORDER BY a.end_time LIMIT $2",
    )
    .bind(since)
    .bind(FEED_LIMIT)
    .fetch_all(db)
    .await?)
}

/// Scheduled backups created after `since`: (job id, seconds from the slot
/// to the job, creation time), oldest first.
pub async fn scheduled_since(
    db: impl PgExecutor<'_>,
    since: DateTime<Utc>,
) -> Result<Vec<(Uuid, f64, DateTime<Utc>)>> {
    Ok(sqlx::query_as(
        "SELECT j.id, extract(epoch FROM j.create_time - s.slot_time)::float8, j.create_time
           FROM jobs j
           JOIN schedule_runs s ON s.backup_instance_id = j.backup_instance_id AND s.job_id = j.id
          WHERE j.operation = 'SCHEDULED_BACKUP' AND j.create_time > $1
          ORDER BY j.create_time LIMIT $2",
    )
    .bind(since)
    .bind(FEED_LIMIT)
    .fetch_all(db)
    .await?)
}
