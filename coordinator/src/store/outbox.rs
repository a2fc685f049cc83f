//! The task outbox: one row per task to publish, written in the transaction
//! that creates or re-queues the job (re-queues due after a backoff).
//! Rows of jobs for the workers are deleted after the broker confirmed;
//! rows of jobs routed to an agent stay, offered again every few seconds,
//! until a claim of the job deletes them (or the job ended without one).

use std::time::Duration;

use pgvault_telemetry::TraceContext;
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
    /// The job's instance, for the dispatch span's log fields.
    pub instance_id: Option<Uuid>,
    /// The job's trace context, the parent of its dispatch span.
    pub trace_context: Option<TraceContext>,
    /// An invitation to help with the attempt's chunk sub-tasks, not the
    /// job's own task.
    pub chunk_invite: bool,
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

/// An outbox row with its job's instance and trace context.
type BatchColumns = (i64, Uuid, i32, Option<Uuid>, Option<String>, bool);

/// The oldest due rows of jobs for the workers (agents' jobs never reach
/// the broker), locked for this transaction; rows another dispatcher holds
/// are skipped.
pub async fn lock_batch(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<OutboxRow>> {
    let rows: Vec<BatchColumns> = sqlx::query_as(
        "SELECT o.id, o.job_id, o.attempt, j.backup_instance_id, j.trace_context, o.chunk_invite
         FROM outbox o JOIN jobs j ON j.id = o.job_id
         WHERE o.not_before <= now() AND j.agent_id IS NULL
         ORDER BY o.id LIMIT $1 FOR UPDATE OF o SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(
            |(id, job_id, attempt, instance_id, trace_context, chunk_invite)| {
                Ok(OutboxRow {
                    id,
                    job_id,
                    attempt: to_u32(attempt, "outbox.attempt")?,
                    instance_id,
                    trace_context: trace_context.as_deref().and_then(TraceContext::parse),
                    chunk_invite,
                })
            },
        )
        .collect()
}

/// `count` invitations to help with the chunk sub-tasks of the job's
/// `attempt`, due at once.
pub async fn insert_chunk_invites(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    attempt: u32,
    count: u32,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbox (job_id, attempt, chunk_invite)
         SELECT $1, $2, true FROM generate_series(1, $3)",
    )
    .bind(job_id)
    .bind(to_i32(attempt))
    .bind(to_i32(count))
    .execute(db)
    .await?;
    Ok(())
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

/// Deletes every row of the job (it was claimed, or it ended unclaimed).
pub async fn delete_for_job(db: impl PgExecutor<'_>, job_id: Uuid) -> Result<()> {
    sqlx::query("DELETE FROM outbox WHERE job_id = $1")
        .bind(job_id)
        .execute(db)
        .await?;
    Ok(())
}

/// A due row of a job routed to an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentOutboxRow {
    pub id: i64,
    pub job_id: Uuid,
    pub attempt: u32,
    pub agent_id: String,
    /// The job's trace context, offered with the task.
    pub trace_context: Option<TraceContext>,
}

/// The oldest due rows of queued jobs routed to one of `agents`, locked
/// for this transaction (another coordinator's dispatcher skips them).
pub async fn lock_agent_batch(
    db: impl PgExecutor<'_>,
    agents: &[String],
    limit: i64,
) -> Result<Vec<AgentOutboxRow>> {
    let rows: Vec<(i64, Uuid, i32, String, Option<String>)> = sqlx::query_as(
        "SELECT o.id, o.job_id, o.attempt, j.agent_id, j.trace_context
         FROM outbox o JOIN jobs j ON j.id = o.job_id
         WHERE o.not_before <= now() AND j.agent_id = ANY($1) AND j.state = 'QUEUED'
         ORDER BY o.id LIMIT $2 FOR UPDATE OF o SKIP LOCKED",
    )
    .bind(agents)
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|(id, job_id, attempt, agent_id, trace_context)| {
            Ok(AgentOutboxRow {
                id,
                job_id,
                attempt: to_u32(attempt, "outbox.attempt")?,
                agent_id,
                trace_context: trace_context.as_deref().and_then(TraceContext::parse),
            })
        })
        .collect()
}

/// Makes the rows `ids` due again only after `delay` (an offer made: it is
/// repeated then unless a claim deleted the row first).
pub async fn postpone(db: impl PgExecutor<'_>, ids: &[i64], delay: Duration) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE outbox SET not_before = now() + make_interval(secs => $2) WHERE id = ANY($1)",
    )
    .bind(ids)
    .bind(delay.as_secs_f64())
    .execute(db)
    .await?;
    Ok(())
}

/// Makes the rows of `tasks` (job, attempt) due now: they were offered to
/// an agent instance whose stream ended, so another may take them at once.
/// (No condition on `not_before`: an offer may still be committing its
/// postponement, and the row must be found and waited for, not skipped.)
pub async fn make_due(db: impl PgExecutor<'_>, tasks: &[(Uuid, u32)]) -> Result<()> {
    if tasks.is_empty() {
        return Ok(());
    }
    let jobs: Vec<Uuid> = tasks.iter().map(|t| t.0).collect();
    let attempts: Vec<i32> = tasks.iter().map(|t| to_i32(t.1)).collect();
    sqlx::query(
        "UPDATE outbox o SET not_before = now()
           FROM UNNEST($1::uuid[], $2::int4[]) AS t (job_id, attempt)
          WHERE o.job_id = t.job_id AND o.attempt = t.attempt",
    )
    .bind(&jobs)
    .bind(&attempts)
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes rows of agents' jobs that are no longer queued (cancelled or
/// failed before any claim, or claimed by a coordinator that crashed
/// before deleting them). Returns how many.
pub async fn delete_unqueued_agent_rows(db: impl PgExecutor<'_>) -> Result<u64> {
    let done = sqlx::query(
        "DELETE FROM outbox o USING jobs j
         WHERE j.id = o.job_id AND j.agent_id IS NOT NULL AND j.state <> 'QUEUED'",
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
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

/// Offers a queued job of the workers again after `delay`, unless a row of
/// it is already waiting (a claim that could not start it: e.g. its
/// server's connection budget was full). Call with the job row locked.
pub async fn reoffer_queued(db: impl PgExecutor<'_>, job_id: Uuid, delay: Duration) -> Result<u64> {
    let done = sqlx::query(
        "INSERT INTO outbox (job_id, attempt, not_before)
         SELECT j.id, j.attempt, now() + make_interval(secs => $2) FROM jobs j
         WHERE j.id = $1 AND j.state = 'QUEUED' AND j.agent_id IS NULL
           AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.job_id = j.id)",
    )
    .bind(job_id)
    .bind(delay.as_secs_f64())
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
