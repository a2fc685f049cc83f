//! Jobs: tracked operations with attempts, a lease measured on the database
//! clock (`now()`), progress and a terminal error. Lease transitions are
//! single conditional UPDATEs so two workers can never both win a claim.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::{CoordinatorError, Result};
use crate::model::{Job, JobError, JobState, Operation, Progress, RuleKind};
use crate::store::{parse_enum, to_i32, to_i64, to_u32, to_u64};

#[derive(sqlx::FromRow)]
struct JobRow {
    id: Uuid,
    operation: String,
    state: String,
    vault_id: String,
    backup_instance_id: Option<Uuid>,
    recovery_point_id: Option<Uuid>,
    retention_rule: Option<String>,
    target_server_id: Option<String>,
    target_database: Option<String>,
    target_secret_id: Option<String>,
    target_secret_ref: Option<String>,
    attempt: i32,
    attempts_before_retry: i32,
    lease_owner: Option<String>,
    lease_token: Option<Uuid>,
    lease_expires_at: Option<DateTime<Utc>>,
    attempt_point_id: Option<Uuid>,
    attempt_datastore: Option<String>,
    attempt_prefix: Option<String>,
    bytes_done: i64,
    rows_done: i64,
    chunks_done: i32,
    chunks_total: i32,
    phase: String,
    error_code: Option<String>,
    error_message: Option<String>,
    error_action: Option<String>,
    create_time: DateTime<Utc>,
    start_time: Option<DateTime<Utc>>,
    end_time: Option<DateTime<Utc>>,
    update_time: DateTime<Utc>,
}

impl TryFrom<JobRow> for Job {
    type Error = CoordinatorError;
    fn try_from(r: JobRow) -> Result<Self> {
        let error = r.error_code.map(|code| JobError {
            code,
            message: r.error_message.unwrap_or_default(),
            recommended_action: r.error_action.unwrap_or_default(),
        });
        Ok(Job {
            id: r.id,
            operation: parse_enum(&r.operation, "jobs.operation", Operation::parse)?,
            state: parse_enum(&r.state, "jobs.state", JobState::parse)?,
            vault_id: r.vault_id,
            backup_instance_id: r.backup_instance_id,
            recovery_point_id: r.recovery_point_id,
            retention_rule: r
                .retention_rule
                .as_deref()
                .map(|t| parse_enum(t, "jobs.retention_rule", RuleKind::parse))
                .transpose()?,
            target_server_id: r.target_server_id,
            target_database: r.target_database,
            target_secret_id: r.target_secret_id,
            target_secret_ref: r.target_secret_ref,
            attempt: to_u32(r.attempt, "jobs.attempt")?,
            attempts_before_retry: to_u32(r.attempts_before_retry, "jobs.attempts_before_retry")?,
            lease_owner: r.lease_owner,
            lease_token: r.lease_token,
            lease_expires_at: r.lease_expires_at,
            attempt_point_id: r.attempt_point_id,
            attempt_datastore: r.attempt_datastore,
            attempt_prefix: r.attempt_prefix,
            progress: Progress {
                bytes_done: to_u64(r.bytes_done, "jobs.bytes_done")?,
                rows_done: to_u64(r.rows_done, "jobs.rows_done")?,
                chunks_done: to_u32(r.chunks_done, "jobs.chunks_done")?,
                chunks_total: to_u32(r.chunks_total, "jobs.chunks_total")?,
                phase: r.phase,
            },
            error,
            create_time: r.create_time,
            start_time: r.start_time,
            end_time: r.end_time,
            update_time: r.update_time,
        })
    }
}

const COLUMNS: &str = "id, operation, state, vault_id, backup_instance_id, recovery_point_id, retention_rule, \
     target_server_id, target_database, target_secret_id, target_secret_ref, attempt, attempts_before_retry, lease_owner, lease_token, lease_expires_at, \
     attempt_point_id, attempt_datastore, attempt_prefix, bytes_done, rows_done, chunks_done, chunks_total, phase, \
     error_code, error_message, error_action, create_time, start_time, end_time, update_time";

fn one(row: JobRow) -> Result<Job> {
    row.try_into()
}

fn many(rows: Vec<JobRow>) -> Result<Vec<Job>> {
    rows.into_iter().map(Job::try_from).collect()
}

/// What a new job is about; it starts QUEUED at attempt 1.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub operation: Operation,
    pub vault_id: String,
    pub backup_instance_id: Option<Uuid>,
    pub recovery_point_id: Option<Uuid>,
    pub retention_rule: Option<RuleKind>,
    pub target_server_id: Option<String>,
    pub target_database: Option<String>,
    pub target_secret_id: Option<String>,
    /// Restores whose secret is not the latest version of `target_secret_id`.
    pub target_secret_ref: Option<String>,
}

pub async fn insert(db: impl PgExecutor<'_>, job: &NewJob) -> Result<Job> {
    let sql = format!(
        "INSERT INTO jobs (id, operation, state, vault_id, backup_instance_id, recovery_point_id, retention_rule,
                           target_server_id, target_database, target_secret_id, target_secret_ref)
         VALUES ($1, $2, 'QUEUED', $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}"
    );
    let row = sqlx::query_as::<_, JobRow>(&sql)
        .bind(Uuid::new_v4())
        .bind(job.operation.as_str())
        .bind(&job.vault_id)
        .bind(job.backup_instance_id)
        .bind(job.recovery_point_id)
        .bind(job.retention_rule.map(RuleKind::as_str))
        .bind(&job.target_server_id)
        .bind(&job.target_database)
        .bind(&job.target_secret_id)
        .bind(&job.target_secret_ref)
        .fetch_one(db)
        .await?;
    one(row)
}

/// Inserts many new jobs in one statement (the scheduler's batches), each
/// exactly as [`insert`] would. Returns their ids, in input order.
pub async fn insert_many(db: impl PgExecutor<'_>, jobs: &[NewJob]) -> Result<Vec<Uuid>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = jobs.iter().map(|_| Uuid::new_v4()).collect();
    let operations: Vec<&str> = jobs.iter().map(|j| j.operation.as_str()).collect();
    let vaults: Vec<&str> = jobs.iter().map(|j| j.vault_id.as_str()).collect();
    let instances: Vec<Option<Uuid>> = jobs.iter().map(|j| j.backup_instance_id).collect();
    let points: Vec<Option<Uuid>> = jobs.iter().map(|j| j.recovery_point_id).collect();
    let rules: Vec<Option<&str>> = jobs
        .iter()
        .map(|j| j.retention_rule.map(RuleKind::as_str))
        .collect();
    let servers: Vec<Option<&str>> = jobs.iter().map(|j| j.target_server_id.as_deref()).collect();
    let databases: Vec<Option<&str>> = jobs.iter().map(|j| j.target_database.as_deref()).collect();
    let secrets: Vec<Option<&str>> = jobs.iter().map(|j| j.target_secret_id.as_deref()).collect();
    let secret_refs: Vec<Option<&str>> = jobs
        .iter()
        .map(|j| j.target_secret_ref.as_deref())
        .collect();
    sqlx::query(
        "INSERT INTO jobs (id, operation, state, vault_id, backup_instance_id, recovery_point_id, retention_rule,
                           target_server_id, target_database, target_secret_id, target_secret_ref)
         SELECT id, operation, 'QUEUED', vault_id, backup_instance_id, recovery_point_id, retention_rule,
                target_server_id, target_database, target_secret_id, target_secret_ref
           FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::uuid[], $6::text[],
                       $7::text[], $8::text[], $9::text[], $10::text[])
             AS t (id, operation, vault_id, backup_instance_id, recovery_point_id, retention_rule,
                   target_server_id, target_database, target_secret_id, target_secret_ref)",
    )
    .bind(&ids)
    .bind(&operations)
    .bind(&vaults)
    .bind(&instances)
    .bind(&points)
    .bind(&rules)
    .bind(&servers)
    .bind(&databases)
    .bind(&secrets)
    .bind(&secret_refs)
    .execute(db)
    .await?;
    Ok(ids)
}

pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Job>> {
    let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1");
    sqlx::query_as::<_, JobRow>(&sql)
        .bind(id)
        .fetch_optional(db)
        .await?
        .map(one)
        .transpose()
}

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<Job> {
    find(db, id)
        .await?
        .ok_or_else(|| CoordinatorError::not_found("job", crate::names::job_name(id)))
}

/// Optional filters of a job listing.
#[derive(Debug, Default, Clone)]
pub struct JobFilter {
    pub vault_id: Option<String>,
    pub backup_instance_id: Option<Uuid>,
    pub operation: Option<Operation>,
    pub state: Option<JobState>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

/// Jobs newest first, continuing after `after`. Only the filters given
/// appear in the SQL, so each shape of listing gets its own plan on the
/// index that serves it (a generic `$1 IS NULL OR ...` statement would be
/// planned once for all shapes and scan the whole history).
pub async fn list(
    db: impl PgExecutor<'_>,
    filter: &JobFilter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Job>> {
    let mut sql =
        sqlx::QueryBuilder::<sqlx::Postgres>::new(format!("SELECT {COLUMNS} FROM jobs WHERE true"));
    if let Some(vault_id) = &filter.vault_id {
        sql.push(" AND vault_id = ").push_bind(vault_id.clone());
    }
    if let Some(instance) = filter.backup_instance_id {
        sql.push(" AND backup_instance_id = ").push_bind(instance);
    }
    if let Some(operation) = filter.operation {
        sql.push(" AND operation = ").push_bind(operation.as_str());
    }
    if let Some(state) = filter.state {
        sql.push(" AND state = ").push_bind(state.as_str());
    }
    if let Some((time, id)) = after {
        sql.push(" AND (create_time, id) < (")
            .push_bind(time)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    if let Some(from) = filter.created_after {
        sql.push(" AND create_time >= ").push_bind(from);
    }
    if let Some(until) = filter.created_before {
        sql.push(" AND create_time < ").push_bind(until);
    }
    sql.push(" ORDER BY create_time DESC, id DESC LIMIT ")
        .push_bind(limit);
    let rows = sql.build_query_as::<JobRow>().fetch_all(db).await?;
    many(rows)
}

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
    let sql = format!(
        "UPDATE jobs SET
             attempt = CASE WHEN state = 'QUEUED' THEN attempt ELSE attempt + 1 END,
             state = 'IN_PROGRESS',
             lease_owner = $2,
             lease_token = $3,
             lease_expires_at = now() + make_interval(secs => $4),
             start_time = coalesce(start_time, now()),
             attempt_point_id = NULL, attempt_datastore = NULL, attempt_prefix = NULL,
             update_time = now()
         WHERE id = $1
           AND (state = 'QUEUED' OR (state = 'IN_PROGRESS' AND lease_expires_at < now() AND attempt - attempts_before_retry < $5))
         RETURNING {COLUMNS}"
    );
    let row = sqlx::query_as::<_, JobRow>(&sql)
        .bind(id)
        .bind(worker)
        .bind(lease_token)
        .bind(ttl_seconds)
        .bind(to_i32(max_attempts))
        .fetch_optional(db)
        .await?;
    row.map(one).transpose()
}

/// Records where the current backup attempt writes.
pub async fn set_attempt_target(
    db: impl PgExecutor<'_>,
    id: Uuid,
    point_id: Uuid,
    datastore: &str,
    prefix: &str,
) -> Result<()> {
    sqlx::query("UPDATE jobs SET attempt_point_id = $2, attempt_datastore = $3, attempt_prefix = $4 WHERE id = $1")
        .bind(id)
        .bind(point_id)
        .bind(datastore)
        .bind(prefix)
        .execute(db)
        .await?;
    Ok(())
}

/// Extends a live lease and stores progress (when given). `None`: the token
/// is stale or the job is no longer in progress.
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

/// Locks the job row for the rest of the transaction.
pub async fn lock(db: impl PgExecutor<'_>, id: Uuid) -> Result<Job> {
    let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE");
    sqlx::query_as::<_, JobRow>(&sql)
        .bind(id)
        .fetch_optional(db)
        .await?
        .map(one)
        .transpose()?
        .ok_or_else(|| CoordinatorError::not_found("job", crate::names::job_name(id)))
}

/// Marks the job COMPLETED with its final progress (and produced point).
pub async fn complete(
    db: impl PgExecutor<'_>,
    id: Uuid,
    progress: &Progress,
    recovery_point_id: Option<Uuid>,
) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET state = 'COMPLETED', end_time = now(), update_time = now(), lease_expires_at = NULL,
             recovery_point_id = coalesce($2, recovery_point_id),
             error_code = NULL, error_message = NULL, error_action = NULL,
             bytes_done = $3, rows_done = $4, chunks_done = $5, chunks_total = $6, phase = $7
         WHERE id = $1",
    )
    .bind(id)
    .bind(recovery_point_id)
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

/// Jobs whose lease expired on the database clock (in progress, or being
/// cancelled by a worker that died), locked for this transaction (others
/// reaping concurrently skip them).
pub async fn lock_expired(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<Job>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM jobs
         WHERE state IN ('IN_PROGRESS', 'CANCELLING') AND lease_expires_at < now()
         ORDER BY lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED"
    );
    let rows = sqlx::query_as::<_, JobRow>(&sql)
        .bind(limit)
        .fetch_all(db)
        .await?;
    many(rows)
}

/// Asks for the job to stop: QUEUED jobs end CANCELLED at once, jobs in
/// progress become CANCELLING (their worker learns it from its next
/// heartbeat). Returns the state after the call; `None` when the job had
/// already finished (or was already being cancelled).
pub async fn request_cancel(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<JobState>> {
    let error = JobError::new(
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
             attempt_point_id = NULL, attempt_datastore = NULL, attempt_prefix = NULL,
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
