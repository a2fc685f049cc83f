//! Jobs: tracked operations with attempts, a lease measured on the database
//! clock (`now()`), progress and a terminal error, each with the spec of its
//! operation ([`JobSpec`]).
//!
//! # Layout
//! - `row`: a `jobs` row (plus a restore's `restore_targets` row) ↔ a [`Job`].
//! - this module: creating jobs and reading them (one, a page, a batch).
//! - `transitions`: claim, heartbeat, complete, fail, re-queue, cancel,
//!   retry — single conditional UPDATEs, so two workers never both win a
//!   claim.
//! - `routed`: the unfinished jobs whose route is a given server.
//!
//! Every read is one statement: `jobs` (whose indexes serve every listing
//! shape) left-joined to `restore_targets` by its primary key.

mod routed;
mod row;
mod transitions;

use chrono::{DateTime, Utc};
use pgvault_telemetry::TraceContext;
use sqlx::{PgConnection, PgExecutor, Postgres};
use tracing::Instrument;
use uuid::Uuid;

use crate::error::{CoordinatorError, Result};
use crate::model::{Job, JobSpec, JobState, Operation};
use crate::store::restore_targets;

pub use routed::unfinished_through_server;
pub use transitions::*;

/// Job states in which a job may still run, as an SQL list (`state IN …`).
pub(crate) const ACTIVE_STATES: &str = "('QUEUED', 'IN_PROGRESS', 'CANCELLING')";

use row::{JobRow, SpecColumns, select};

/// What a new job is; it starts QUEUED at attempt 1.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub vault_id: String,
    pub spec: JobSpec,
    /// A job it waits for (a restore of an archive point waits for its
    /// rehydrate); the caller writes no outbox row for it then.
    pub waits_for_job_id: Option<Uuid>,
}

/// The agent of the server a job's [`crate::model::Route`] names (NULL
/// when it has none, or for jobs routed to the workers), as a scalar
/// subquery over the route's instance (`$i`) and server (`$s`).
fn agent_of_route(instance: &str, server: &str) -> String {
    format!(
        "(SELECT nullif(s.agent, '') FROM servers s
           WHERE s.id = coalesce({server}::text, (SELECT i.server_id FROM backup_instances i WHERE i.id = {instance}::uuid)))"
    )
}

/// Creates the job (with a restore's target row) in the caller's
/// transaction. Its agent is its server's, read in the same statement.
/// The job's trace starts with a `job.create` span, a child of the
/// caller's span (the API call's) or the root of a new trace.
pub async fn insert(conn: &mut PgConnection, job: &NewJob) -> Result<Job> {
    let c = SpecColumns::of(&job.spec);
    let id = Uuid::new_v4();
    let span = tracing::info_span!(
        "job.create",
        job_id = %id,
        operation = c.operation,
        instance_id = %c.instance_id.map(|i| i.to_string()).unwrap_or_default(),
    );
    let trace = TraceContext::of_span_or_new(&span);
    sqlx::query(&format!(
        "INSERT INTO jobs (id, operation, state, vault_id, backup_instance_id, recovery_point_id,
                           retention_rule, lifecycle_stage, rehydrate_days, waits_for_job_id, agent_id,
                           trace_context)
         VALUES ($1, $2, 'QUEUED', $3, $4, $5, $6, $7, $8, $9, {}, $12)",
        agent_of_route("$10", "$11")
    ))
    .bind(id)
    .bind(c.operation)
    .bind(&job.vault_id)
    .bind(c.instance_id)
    .bind(c.recovery_point_id)
    .bind(c.retention_rule)
    .bind(&c.lifecycle_stage)
    .bind(c.rehydrate_days)
    .bind(job.waits_for_job_id)
    .bind(c.route_instance)
    .bind(&c.route_server)
    .bind(trace.traceparent())
    .execute(&mut *conn)
    .instrument(span)
    .await?;
    match &job.spec {
        JobSpec::Restore(restore) => restore_targets::insert(&mut *conn, id, restore).await?,
        JobSpec::Drill(drill) => restore_targets::insert_drill(&mut *conn, id, drill).await?,
        _ => {}
    }
    get(&mut *conn, id).await
}

/// Inserts many new jobs in one statement (the scheduler's batches), each
/// exactly as [`insert`] would, except that each job's trace starts with a
/// root `job.schedule` span of its own (one backup, one trace; not one
/// trace for a whole slot's batch). Restores need their target row: refused
/// here. Returns their ids and trace contexts, in input order.
pub async fn insert_many(
    db: impl PgExecutor<'_>,
    jobs: &[NewJob],
) -> Result<Vec<(Uuid, TraceContext)>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    if jobs
        .iter()
        .any(|j| matches!(j.spec, JobSpec::Restore(_) | JobSpec::Drill(_)))
    {
        return Err(CoordinatorError::internal(
            "restores are created one at a time, with their target",
        ));
    }
    let ids: Vec<Uuid> = jobs.iter().map(|_| Uuid::new_v4()).collect();
    let columns: Vec<SpecColumns> = jobs.iter().map(|j| SpecColumns::of(&j.spec)).collect();
    let operations: Vec<&str> = columns.iter().map(|c| c.operation).collect();
    let vaults: Vec<&str> = jobs.iter().map(|j| j.vault_id.as_str()).collect();
    let instances: Vec<Option<Uuid>> = columns.iter().map(|c| c.instance_id).collect();
    let points: Vec<Option<Uuid>> = columns.iter().map(|c| c.recovery_point_id).collect();
    let rules: Vec<Option<&str>> = columns.iter().map(|c| c.retention_rule).collect();
    let stages: Vec<Option<&str>> = columns
        .iter()
        .map(|c| c.lifecycle_stage.as_deref())
        .collect();
    let days: Vec<Option<i32>> = columns.iter().map(|c| c.rehydrate_days).collect();
    let waits: Vec<Option<Uuid>> = jobs.iter().map(|j| j.waits_for_job_id).collect();
    let route_instances: Vec<Option<Uuid>> = columns.iter().map(|c| c.route_instance).collect();
    let route_servers: Vec<Option<&str>> =
        columns.iter().map(|c| c.route_server.as_deref()).collect();
    let contexts: Vec<TraceContext> = ids
        .iter()
        .zip(&columns)
        .map(|(id, c)| {
            let span = tracing::info_span!(
                parent: None,
                "job.schedule",
                job_id = %id,
                operation = c.operation,
                instance_id = %c.instance_id.map(|i| i.to_string()).unwrap_or_default(),
            );
            TraceContext::of_span_or_new(&span)
        })
        .collect();
    let traces: Vec<String> = contexts.iter().map(TraceContext::traceparent).collect();
    sqlx::query(
        "INSERT INTO jobs (id, operation, state, vault_id, backup_instance_id, recovery_point_id,
                           retention_rule, lifecycle_stage, rehydrate_days, waits_for_job_id, agent_id,
                           trace_context)
         SELECT t.id, t.operation, 'QUEUED', t.vault_id, t.backup_instance_id, t.recovery_point_id,
                t.retention_rule, t.lifecycle_stage, t.rehydrate_days, t.waits_for_job_id, nullif(s.agent, ''),
                t.trace_context
           FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::uuid[], $6::text[],
                       $7::text[], $8::integer[], $9::uuid[], $10::uuid[], $11::text[], $12::text[])
             AS t (id, operation, vault_id, backup_instance_id, recovery_point_id, retention_rule,
                   lifecycle_stage, rehydrate_days, waits_for_job_id, route_instance, route_server,
                   trace_context)
           LEFT JOIN backup_instances i ON i.id = t.route_instance
           LEFT JOIN servers s ON s.id = coalesce(t.route_server, i.server_id)",
    )
    .bind(&ids)
    .bind(&operations)
    .bind(&vaults)
    .bind(&instances)
    .bind(&points)
    .bind(&rules)
    .bind(&stages)
    .bind(&days)
    .bind(&waits)
    .bind(&route_instances)
    .bind(&route_servers)
    .bind(&traces)
    .execute(db)
    .await?;
    Ok(ids.into_iter().zip(contexts).collect())
}

pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Job>> {
    let sql = format!("{} WHERE j.id = $1", select());
    sqlx::query_as::<_, JobRow>(&sql)
        .bind(id)
        .fetch_optional(db)
        .await?
        .map(Job::try_from)
        .transpose()
}

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<Job> {
    find(db, id)
        .await?
        .ok_or_else(|| CoordinatorError::not_found("job", crate::names::job_name(id)))
}

/// Locks the job row for the rest of the transaction.
pub async fn lock(db: impl PgExecutor<'_>, id: Uuid) -> Result<Job> {
    let sql = format!("{} WHERE j.id = $1 FOR UPDATE OF j", select());
    sqlx::query_as::<_, JobRow>(&sql)
        .bind(id)
        .fetch_optional(db)
        .await?
        .map(Job::try_from)
        .transpose()?
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
    let mut sql = sqlx::QueryBuilder::<Postgres>::new(format!("{} WHERE true", select()));
    if let Some(vault_id) = &filter.vault_id {
        sql.push(" AND j.vault_id = ").push_bind(vault_id.clone());
    }
    if let Some(instance) = filter.backup_instance_id {
        sql.push(" AND j.backup_instance_id = ").push_bind(instance);
    }
    if let Some(operation) = filter.operation {
        sql.push(" AND j.operation = ")
            .push_bind(operation.as_str());
    }
    if let Some(state) = filter.state {
        sql.push(" AND j.state = ").push_bind(state.as_str());
    }
    if let Some((time, id)) = after {
        sql.push(" AND (j.create_time, j.id) < (")
            .push_bind(time)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    if let Some(from) = filter.created_after {
        sql.push(" AND j.create_time >= ").push_bind(from);
    }
    if let Some(until) = filter.created_before {
        sql.push(" AND j.create_time < ").push_bind(until);
    }
    sql.push(" ORDER BY j.create_time DESC, j.id DESC LIMIT ")
        .push_bind(limit);
    let rows = sql.build_query_as::<JobRow>().fetch_all(db).await?;
    rows.into_iter().map(Job::try_from).collect()
}

/// Jobs whose lease expired on the database clock (in progress, or being
/// cancelled by a worker that died), locked for this transaction (others
/// reaping concurrently skip them).
pub async fn lock_expired(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<Job>> {
    let sql = format!(
        "{} WHERE j.state IN ('IN_PROGRESS', 'CANCELLING') AND j.lease_expires_at < now()
         ORDER BY j.lease_expires_at LIMIT $1 FOR UPDATE OF j SKIP LOCKED",
        select()
    );
    let rows = sqlx::query_as::<_, JobRow>(&sql)
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.into_iter().map(Job::try_from).collect()
}

/// Queued jobs routed to an agent that has had no live instance for
/// `wait`, queued for longer than `wait` themselves (jobs still waiting
/// for another job are left alone), locked for this transaction.
pub async fn lock_unserved(
    db: impl PgExecutor<'_>,
    wait: std::time::Duration,
    limit: i64,
) -> Result<Vec<Job>> {
    let sql = format!(
        "{} WHERE j.agent_id IS NOT NULL AND j.state = 'QUEUED' AND j.waits_for_job_id IS NULL
           AND j.update_time < now() - make_interval(secs => $1)
           AND NOT EXISTS (SELECT 1 FROM agent_instances i
                            WHERE i.agent_id = j.agent_id AND i.supported
                              AND ((i.disconnect_time IS NULL AND i.live_until > now())
                                   OR i.last_seen > now() - make_interval(secs => $1)))
         ORDER BY j.update_time LIMIT $2 FOR UPDATE OF j SKIP LOCKED",
        select()
    );
    let rows = sqlx::query_as::<_, JobRow>(&sql)
        .bind(wait.as_secs_f64())
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.into_iter().map(Job::try_from).collect()
}
