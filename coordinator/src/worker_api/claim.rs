//! `ClaimTask`: one conditional UPDATE takes the lease (database clock), then
//! the task is resolved in the same transaction: for a backup a fresh
//! recovery-point id and prefix per attempt plus the source connection (and,
//! for a server protected whole, the request to capture its globals); for a
//! restore the point's location, manifest checksum, selection and target
//! (a connection, or for a restore as files a destination URL and file).
//! The secret reference is resolved again on every claim (latest version,
//! external value, the vault's grant), so a rotated password needs no
//! reconfiguration. A job whose task cannot be resolved (its secret is
//! unusable, its server gone) fails at once with a coded error instead of
//! bouncing forever. Each claim opens a row in the job's attempt history
//! (closing a taken-over attempt as fenced, recording the agent that runs
//! it), starts a fresh set of per-table progress and deletes the job's
//! outbox rows (an agent's job keeps them, re-offered, until claimed).
//!
//! An encrypted vault's backup gets a fresh data key for its point (stored
//! wrapped in the same transaction); a task that reads a point gets that
//! point's unwrapped key (`crate::encryption`), never a vault's.
//!
//! A backup, a restore as a database or a restore drill takes slots of its server's
//! connection budget in the same transaction ([`crate::budget`]); the task
//! carries how many. With too few free the claim is undone: the job stays
//! queued and is offered again after [`SLOT_RETRY`].
//!
//! A worker's claim reports the majors of its client tools; the newest is
//! remembered for the readiness checks (`crate::readiness::tool_versions`).
//!
//! Who may claim: a job routed to an agent only with that agent's token,
//! and an agent's token only its agent's jobs. Anyone else gets
//! `claimed = false` with the reason, never the task.

use pgvault_errors::ErrorCode;
use pgvault_proto::v1 as pb;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::api::ApiContext;
use crate::api::resolve::{connection_spec, reference_credentials};
use crate::budget::{self, Taken};
use crate::encryption;
use crate::error::{CoordinatorError, Result};
use crate::model::{
    AttemptOutcome, AttemptTarget, BackupInstance, Job, JobError, JobSpec, JobState, RestoreSpec,
    RestoreTarget, Server,
};
use crate::store::{
    attempts, garbage, instances, job_tables, jobs, outbox, recovery_points, server_protections,
    server_restores, servers, vaults,
};

/// How soon a job that found its server's budget full is offered again.
pub const SLOT_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// `agent`: the agent whose token claims (`None`: a worker's or Owner's).
pub async fn claim(
    ctx: &ApiContext,
    agent: Option<&str>,
    req: pb::ClaimTaskRequest,
) -> Result<pb::ClaimTaskResponse> {
    let job_id = super::job_id(&req.job_id)?;
    let worker = super::worker_id(&req.worker_id)?;
    if agent.is_none() {
        ctx.worker_tools.record(&req.pg_tool_majors);
    }
    let lease_token = Uuid::new_v4();
    let mut tx = ctx.store.begin().await?;
    let before = jobs::find(&mut *tx, job_id).await?;
    if let Some(refused) = before.as_ref().and_then(|b| refusal(b, agent)) {
        tx.rollback().await?;
        tracing::warn!(job_id = %job_id, worker = %worker, agent = agent.unwrap_or(""), "claim refused: wrong claimer");
        return Ok(not_claimed(refused));
    }
    let claimed = jobs::claim(
        &mut *tx,
        job_id,
        worker,
        lease_token,
        ctx.lease_ttl.as_secs_f64(),
        ctx.retry.max_attempts,
    )
    .await?;
    let Some(job) = claimed else {
        tx.rollback().await?;
        return Ok(not_claimed(why_not(ctx, job_id).await?));
    };
    let slots = match budget::take(&mut tx, &job, lease_token, req.connections).await? {
        Taken::Wait(reason) => {
            tx.rollback().await?;
            wait_for_slots(ctx, job_id).await?;
            tracing::info!(job_id = %job_id, worker = %worker, reason = %reason, "claim deferred: no connection slot");
            return Ok(not_claimed(reason));
        }
        Taken::Slots(slots) => slots,
        Taken::NotNeeded => 0,
    };
    // A take-over: the attempt whose lease expired may have written objects.
    if let Some(before) = before.filter(|b| b.state == JobState::InProgress) {
        garbage::record_attempt(&mut *tx, job.id, before.attempt, ctx.retry.garbage_grace).await?;
        let fenced = fenced_error(&before, worker);
        attempts::end(&mut *tx, job.id, AttemptOutcome::Fenced, Some(&fenced)).await?;
    }
    attempts::start(&mut *tx, job.id, job.attempt, worker, agent).await?;
    job_tables::clear_other_attempts(&mut *tx, job.id, job.attempt).await?;
    outbox::delete_for_job(&mut *tx, job.id).await?;
    match build_task(ctx, &mut tx, &job).await {
        Ok(mut task) => {
            limit_connections(&mut task, slots);
            tx.commit().await?;
            tracing::info!(job_id = %job.id, attempt = job.attempt, worker = %worker, agent = agent.unwrap_or(""), slots, "task claimed");
            Ok(pb::ClaimTaskResponse {
                claimed: true,
                lease_token: lease_token.to_string(),
                lease_ttl_seconds: u32::try_from(ctx.lease_ttl.as_secs())
                    .unwrap_or(u32::MAX)
                    .max(1),
                task: Some(task),
                reason: String::new(),
            })
        }
        Err(CoordinatorError::SecretUnusable(job_error)) => {
            // Not granted, missing, unreadable: the job's own code and fix.
            tx.rollback().await?;
            jobs::finish_failed(ctx.store.pool(), job_id, JobState::Failed, &job_error).await?;
            tracing::warn!(job_id = %job_id, code = %job_error.code, "secret unusable at claim; job failed");
            Ok(not_claimed(format!("job failed: {}", job_error.message)))
        }
        Err(
            error @ (CoordinatorError::NotFound { .. } | CoordinatorError::FailedPrecondition(_)),
        ) => {
            tx.rollback().await?;
            let job_error = JobError::new(
                ErrorCode::UserErrorTaskUnresolvable,
                format!("the task cannot be prepared: {error}"),
            );
            jobs::finish_failed(ctx.store.pool(), job_id, JobState::Failed, &job_error).await?;
            tracing::warn!(job_id = %job_id, error = %error, "task cannot be resolved; job failed");
            Ok(not_claimed(format!("job failed: {}", job_error.message)))
        }
        Err(error) => Err(error),
    }
}

/// A job left queued for want of slots is offered again after
/// [`SLOT_RETRY`]: a worker's job gets a delayed outbox row (unless one is
/// pending); an agent's keeps the rows it is re-offered from.
async fn wait_for_slots(ctx: &ApiContext, job_id: Uuid) -> Result<()> {
    let mut tx = ctx.store.begin().await?;
    jobs::lock(&mut *tx, job_id).await?;
    outbox::reoffer_queued(&mut *tx, job_id, SLOT_RETRY).await?;
    tx.commit().await?;
    Ok(())
}

/// Tells the task how many connections its slots allow (0: not limited).
fn limit_connections(task: &mut pb::Task, slots: u32) {
    match task.kind.as_mut() {
        Some(pb::task::Kind::Backup(backup)) => backup.max_server_connections = slots,
        Some(pb::task::Kind::Restore(restore)) => restore.max_server_connections = slots,
        Some(pb::task::Kind::Drill(drill)) => drill.max_server_connections = slots,
        _ => {}
    }
}

/// Why `agent` (`None`: not an agent's token) may not claim `job`.
pub(super) fn refusal(job: &Job, agent: Option<&str>) -> Option<String> {
    match (job.agent_id.as_deref(), agent) {
        (Some(owner), Some(claimer)) if owner == claimer => None,
        (None, None) => None,
        (Some(owner), _) => Some(format!(
            "job runs on agent \"{owner}\": only that agent's token may claim it"
        )),
        (None, Some(claimer)) => Some(format!(
            "agent \"{claimer}\" may claim only jobs of the servers bound to it; this job runs on the workers"
        )),
    }
}

/// Why an attempt whose lease expired ended when another worker took over.
fn fenced_error(before: &Job, worker: &str) -> JobError {
    JobError::new(
        ErrorCode::SystemErrorLeaseExpired,
        format!(
            "attempt {} sent no heartbeat before its lease expired; worker {worker} took the job over and it continues there",
            before.attempt
        ),
    )
}

fn not_claimed(reason: String) -> pb::ClaimTaskResponse {
    pb::ClaimTaskResponse {
        claimed: false,
        lease_token: String::new(),
        lease_ttl_seconds: 0,
        task: None,
        reason,
    }
}

/// Why a claim did not take (the job exists but is finished or leased).
async fn why_not(ctx: &ApiContext, job_id: Uuid) -> Result<String> {
    let job = jobs::get(ctx.store.pool(), job_id).await?;
    Ok(if job.state.is_terminal() {
        format!("job is already {}", job.state)
    } else if job.state == JobState::InProgress {
        match (&job.lease_owner, job.lease_expires_at) {
            (Some(owner), Some(until)) if until > chrono::Utc::now() => {
                format!(
                    "job is leased to worker {owner} until {}",
                    until.to_rfc3339()
                )
            }
            _ => format!(
                "job's lease expired on its last attempt ({}); it will be failed",
                job.attempt
            ),
        }
    } else {
        format!("job is {}", job.state)
    })
}

async fn build_task(ctx: &ApiContext, conn: &mut PgConnection, job: &Job) -> Result<pb::Task> {
    let mut kind = match &job.spec {
        JobSpec::Backup { instance_id, .. } => {
            pb::task::Kind::Backup(backup_task(ctx, conn, job, *instance_id).await?)
        }
        JobSpec::Restore(restore) => restore_task(ctx, conn, job, restore).await?,
        JobSpec::Delete { .. }
        | JobSpec::TierMove { .. }
        | JobSpec::Rehydrate { .. }
        | JobSpec::Copy { .. } => crate::lifecycle::tasks::build(conn, job).await?,
        JobSpec::Verify { .. } => crate::verify::task::build(conn, job).await?,
        JobSpec::Drill(_) => crate::drill::task::build(ctx, conn, job).await?,
    };
    attach_point_key(ctx, conn, job, &mut kind).await?;
    Ok(pb::Task {
        job_id: job.id.to_string(),
        attempt: job.attempt,
        kind: Some(kind),
        instance_id: job
            .spec
            .instance_id()
            .map(|i| i.to_string())
            .unwrap_or_default(),
        trace_context: job
            .trace_context
            .as_ref()
            .map(|c| c.to_carrier())
            .unwrap_or_default(),
    })
}

/// A task that reads a point (restores, tier moves, rehydrates, copies,
/// verifies) carries the point's unwrapped data key, if the point is
/// encrypted. Deletes need none; a backup's key is made in [`backup_task`].
pub(super) async fn attach_point_key(
    ctx: &ApiContext,
    conn: &mut PgConnection,
    job: &Job,
    kind: &mut pb::task::Kind,
) -> Result<()> {
    let point_id = match &job.spec {
        JobSpec::Restore(restore) => restore.point_id,
        JobSpec::TierMove { point_id, .. }
        | JobSpec::Rehydrate { point_id, .. }
        | JobSpec::Copy { point_id, .. }
        | JobSpec::Verify { point_id, .. } => *point_id,
        JobSpec::Drill(drill) => drill.point_id,
        JobSpec::Backup { .. } | JobSpec::Delete { .. } => return Ok(()),
    };
    let key = encryption::existing_point_key(conn, &ctx.cipher, &job.vault_id, point_id).await?;
    let key = encryption::task_key(key);
    match kind {
        pb::task::Kind::Restore(task) => task.point_key = key,
        pb::task::Kind::RestoreFiles(task) => task.point_key = key,
        pb::task::Kind::TierMove(task) => task.point_key = key,
        pb::task::Kind::Rehydrate(task) => task.point_key = key,
        pb::task::Kind::Copy(task) => task.point_key = key,
        pb::task::Kind::Verify(task) => task.point_key = key,
        pb::task::Kind::Drill(task) => task.point_key = key,
        // A backup's key is made at claim; helpers get theirs with ClaimChunk.
        pb::task::Kind::Backup(_) | pb::task::Kind::Delete(_) | pb::task::Kind::Chunk(_) => {}
    }
    Ok(())
}

/// The instance's source server and how to connect to its database (the
/// instance's secret resolved): a backup's and a chunk helper's source.
pub(super) async fn instance_source(
    ctx: &ApiContext,
    conn: &mut PgConnection,
    instance: &BackupInstance,
) -> Result<(Server, pb::ConnectionSpec)> {
    let server = servers::get(&mut *conn, &instance.server_id).await?;
    let creds = reference_credentials(
        &mut *conn,
        &ctx.cipher,
        &ctx.external_secrets,
        Some(&instance.vault_id),
        &instance.secret,
    )
    .await?;
    let spec = connection_spec(&server, &instance.database, &creds);
    Ok((server, spec))
}

async fn backup_task(
    ctx: &ApiContext,
    conn: &mut PgConnection,
    job: &Job,
    instance_id: Uuid,
) -> Result<pb::BackupTask> {
    let instance = instances::get_by_id(&mut *conn, instance_id).await?;
    let vault = vaults::get(&mut *conn, &instance.vault_id).await?;
    let (server, source) = instance_source(ctx, conn, &instance).await?;
    // A fresh point per attempt: a fenced attempt never overwrites a live one.
    let point_id = Uuid::new_v4();
    let target = AttemptTarget {
        point_id: Some(point_id),
        datastore_url: vault.standard_datastore,
        prefix: format!("{}/{}/{}", vault.id, instance.id, point_id),
    };
    attempts::set_target(&mut *conn, job.id, job.attempt, &target).await?;
    // An encrypted vault's point gets its data key now, stored before any
    // object is sealed with it.
    let point_key =
        encryption::new_point_key(&mut *conn, &ctx.cipher, &instance.vault_id, point_id).await?;
    // Every point of a server protected whole carries the server's globals
    // (small), so any point set restores them.
    let protection = server_protections::find(&mut *conn, &server.id)
        .await?
        .filter(|p| p.vault_id == instance.vault_id);
    let capture_globals = protection.is_some();
    // Passwords only into an encrypted vault, whatever the row says.
    let capture_role_passwords = protection.is_some_and(|p| p.role_passwords)
        && vault.encryption != crate::model::Encryption::None;
    let fanout_workers = crate::store::chunk_tasks::requested_workers(&mut *conn, job.id).await?;
    Ok(pb::BackupTask {
        source: Some(source),
        datastore_url: target.datastore_url,
        prefix: target.prefix,
        capture_globals,
        capture_role_passwords,
        max_server_connections: 0,
        point_key: encryption::backup_task_key(point_key),
        fanout_workers,
    })
}

pub(super) async fn restore_task(
    ctx: &ApiContext,
    conn: &mut PgConnection,
    job: &Job,
    restore: &RestoreSpec,
) -> Result<pb::task::Kind> {
    // A point whose own objects expired still restores from its copy.
    let point = recovery_points::get_with_copies_only(
        &mut *conn,
        &job.vault_id,
        restore.instance_id,
        restore.point_id,
    )
    .await?;
    // Archive points are read from their rehydrated copy; a restore from a
    // copy reads that copy.
    let (datastore_url, prefix) = match &restore.copy_datastore {
        Some(datastore) => crate::copies::copy_location(conn, &point, datastore).await?,
        None => crate::lifecycle::tasks::restore_source(conn, &point).await?,
    };
    let (server_id, database, secret) = match &restore.target {
        RestoreTarget::Files { url, file, .. } => {
            return Ok(pb::task::Kind::RestoreFiles(pb::RestoreFilesTask {
                datastore_url,
                prefix,
                manifest_sha256: point.manifest_sha256,
                target_url: url.clone(),
                target_file: file.clone(),
                schemas: restore.schemas.clone(),
                tables: restore.tables.clone(),
                point_key: None,
            }));
        }
        RestoreTarget::Database {
            server_id,
            database,
            secret,
        } => (server_id, database, secret),
    };
    let server = servers::get(&mut *conn, server_id).await?;
    let creds = reference_credentials(
        &mut *conn,
        &ctx.cipher,
        &ctx.external_secrets,
        Some(&job.vault_id),
        secret,
    )
    .await?;
    let globals = server_restores::restores_globals(&mut *conn, job.id).await?;
    let fanout_workers = crate::store::chunk_tasks::requested_workers(&mut *conn, job.id).await?;
    Ok(pb::task::Kind::Restore(pb::RestoreTask {
        target: Some(connection_spec(&server, database, &creds)),
        datastore_url,
        prefix,
        manifest_sha256: point.manifest_sha256,
        schemas: restore.schemas.clone(),
        tables: restore.tables.clone(),
        restore_globals: globals.is_some(),
        skip_tablespaces: globals.is_some_and(|g| g.skip_tablespaces),
        max_server_connections: 0,
        point_key: None,
        fanout_workers,
    }))
}
