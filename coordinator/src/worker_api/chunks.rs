//! Chunk sub-tasks of a fanned-out backup or restore
//! ([`crate::store::chunk_tasks`]). The leader — the job's lease holder —
//! offers its attempt's planned objects (a restore: its planned loads) and invites helpers through the queue (workers' jobs only: an
//! agent's job is dumped by its leader alone); anyone claims chunks one at a
//! time (the leader's claims follow the job's lease and take no slot, a
//! helper's have their own lease and one connection slot of the server's
//! budget, or wait for one), heartbeats, and reports each chunk stored or
//! failed; the leader lists the attempt's chunks to wait for them and to
//! write the manifest from what was recorded for its attempt only.
//!
//! Fencing: every report is checked in its statement against the job's
//! current attempt and lease and the chunk's lease, so a helper of a
//! superseded attempt, or whose chunk lease expired, is refused with
//! FAILED_PRECONDITION and stops.

use pgvault_proto::v1 as pb;
use uuid::Uuid;

use crate::api::ApiContext;
use crate::budget::{self, Taken};
use crate::encryption;
use crate::error::{CoordinatorError, Result};
use crate::model::{Job, JobSpec, JobState, RestoreTarget};
use crate::store::chunk_tasks::ChunkKind;
use crate::store::{attempts, chunk_tasks, connection_slots, instances, jobs, outbox};

/// Most chunks one attempt may offer.
const MAX_CHUNKS: usize = 100_000;
/// Most helpers one offer invites.
const MAX_HELPERS: u32 = 63;

fn chunk_lost() -> CoordinatorError {
    CoordinatorError::precondition(
        "chunk lease lost: the attempt is over or the chunk was taken over; stop working on it",
    )
}

/// The job `token` leads (holds the lease of, in progress).
async fn led_job(ctx: &ApiContext, job_id: &str, token: &str) -> Result<Job> {
    let job_id = super::job_id(job_id)?;
    let token = super::lease_token(token)?;
    let job = jobs::get(ctx.store.pool(), job_id).await?;
    if job.lease_token != Some(token) || job.state != JobState::InProgress {
        return Err(CoordinatorError::precondition(
            "lease was taken over by another attempt or the job ended; stop working on this job",
        ));
    }
    Ok(job)
}

pub async fn offer(
    ctx: &ApiContext,
    req: pb::OfferChunksRequest,
) -> Result<pb::OfferChunksResponse> {
    let job = led_job(ctx, &req.job_id, &req.lease_token).await?;
    let kind = offered_kind(&job.spec, &req.kind)?;
    let snapshot = req.snapshot_id.trim();
    if kind == ChunkKind::Dump && snapshot.is_empty() {
        return Err(CoordinatorError::invalid(
            "snapshot_id",
            "the leader's exported snapshot is required",
        ));
    }
    if req.chunks.is_empty() || req.chunks.len() > MAX_CHUNKS {
        return Err(CoordinatorError::invalid(
            "chunks",
            format!("must hold 1-{MAX_CHUNKS} chunks"),
        ));
    }
    let mut keys = std::collections::HashSet::new();
    for chunk in &req.chunks {
        if chunk.key.trim().is_empty() || chunk.spec.trim().is_empty() {
            return Err(CoordinatorError::invalid(
                "chunks",
                "every chunk needs a key and a spec",
            ));
        }
        if !keys.insert(chunk.key.as_str()) {
            return Err(CoordinatorError::invalid(
                "chunks",
                format!("chunk {} is offered twice", chunk.key),
            ));
        }
    }
    let offers: Vec<chunk_tasks::Offer> = req
        .chunks
        .into_iter()
        .map(|c| chunk_tasks::Offer {
            key: c.key,
            spec: c.spec,
            tables: c.tables,
        })
        .collect();
    // An agent's job runs where only its agent reaches: no helper is invited.
    let invited = if job.agent_id.is_some() {
        0
    } else {
        req.helpers
            .min(MAX_HELPERS)
            .min(u32::try_from(offers.len()).unwrap_or(u32::MAX))
    };
    let mut tx = ctx.store.begin().await?;
    // Under the job's row lock: the lease cannot change meanwhile.
    let locked = jobs::lock(&mut *tx, job.id).await?;
    if locked.lease_token != job.lease_token || locked.attempt != job.attempt {
        return Err(CoordinatorError::precondition(
            "lease was taken over by another attempt; stop working on this job",
        ));
    }
    let snapshot = (kind == ChunkKind::Dump).then_some(snapshot);
    let added = chunk_tasks::offer(&mut *tx, job.id, job.attempt, kind, snapshot, &offers).await?;
    if added > 0 && invited > 0 {
        outbox::insert_chunk_invites(&mut *tx, job.id, job.attempt, invited).await?;
    }
    tx.commit().await?;
    ctx.dispatch_wake.notify_one();
    tracing::info!(job_id = %job.id, attempt = job.attempt, chunks = offers.len(), invited, "chunks offered");
    Ok(pb::OfferChunksResponse {
        invited: if added > 0 { invited } else { 0 },
    })
}

/// The kind of chunks `spec`'s leader may offer as `kind`: a backup's are
/// DUMPs (an empty kind, as leaders before restore fan-out send), a restore
/// as a database's are LOADs.
fn offered_kind(spec: &JobSpec, kind: &str) -> Result<ChunkKind> {
    let kind = match kind {
        "" | "DUMP" => ChunkKind::Dump,
        "LOAD" => ChunkKind::Load,
        other => {
            return Err(CoordinatorError::invalid(
                "kind",
                format!("\"{other}\" is no chunk kind; use DUMP or LOAD"),
            ));
        }
    };
    let fits = match (spec, kind) {
        (JobSpec::Backup { .. }, ChunkKind::Dump) => true,
        (JobSpec::Restore(restore), ChunkKind::Load) => {
            matches!(restore.target, RestoreTarget::Database { .. })
        }
        _ => false,
    };
    if !fits {
        return Err(CoordinatorError::invalid(
            "kind",
            "a backup offers DUMP chunks and a restore as a database LOAD chunks",
        ));
    }
    Ok(kind)
}

fn not_claimed(reason: impl Into<String>, remaining: u32, over: bool) -> pb::ClaimChunkResponse {
    pb::ClaimChunkResponse {
        claimed: false,
        reason: reason.into(),
        remaining,
        attempt_over: over,
        ..Default::default()
    }
}

pub async fn claim(
    ctx: &ApiContext,
    agent: Option<&str>,
    req: pb::ClaimChunkRequest,
) -> Result<pb::ClaimChunkResponse> {
    let job_id = super::job_id(&req.job_id)?;
    let worker = super::worker_id(&req.worker_id)?;
    let leader = if req.leader_lease_token.trim().is_empty() {
        None
    } else {
        Some(super::lease_token(&req.leader_lease_token)?)
    };
    let mut tx = ctx.store.begin().await?;
    let job = jobs::get(&mut *tx, job_id).await?;
    if let Some(refused) = super::claim::refusal(&job, agent) {
        return Ok(not_claimed(refused, 0, true));
    }
    if job.attempt != req.attempt || job.state != JobState::InProgress {
        return Ok(not_claimed(
            format!("attempt {} of the job is over", req.attempt),
            0,
            true,
        ));
    }
    if !chunk_tasks::lease_live(&mut *tx, job.id).await? {
        return Ok(not_claimed(
            format!(
                "attempt {} of the job lost its lease; the job will be taken over",
                req.attempt
            ),
            0,
            true,
        ));
    }
    if leader.is_some() && leader != job.lease_token {
        return Ok(not_claimed(
            "lease was taken over by another attempt",
            0,
            true,
        ));
    }
    let lease = leader.unwrap_or_else(Uuid::new_v4);
    let ttl = leader.is_none().then_some(ctx.lease_ttl.as_secs_f64());
    let Some(claimed) =
        chunk_tasks::claim_next(&mut *tx, job.id, job.attempt, worker, lease, ttl).await?
    else {
        let remaining = chunk_tasks::remaining(&mut *tx, job.id, job.attempt).await?;
        tx.rollback().await?;
        return Ok(not_claimed("no chunk to take now", remaining, false));
    };
    if leader.is_none()
        && let Taken::Wait(reason) = budget::take_chunk(&mut tx, &job, lease).await?
    {
        tx.rollback().await?;
        let remaining = chunk_tasks::remaining(ctx.store.pool(), job.id, job.attempt).await?;
        return Ok(not_claimed(reason, remaining, false));
    }
    let task = chunk_task(ctx, &mut tx, &job, claimed).await?;
    tx.commit().await?;
    tracing::info!(job_id = %job.id, attempt = job.attempt, worker = %worker, leader = leader.is_some(), "chunk claimed");
    Ok(pb::ClaimChunkResponse {
        claimed: true,
        lease_token: lease.to_string(),
        lease_ttl_seconds: u32::try_from(ctx.lease_ttl.as_secs())
            .unwrap_or(u32::MAX)
            .max(1),
        task: Some(task),
        reason: String::new(),
        remaining: 0,
        attempt_over: false,
    })
}

/// The chunk's task: the source (credentials resolved as for the job's
/// own claim), the attempt's point and the leader's snapshot.
async fn chunk_task(
    ctx: &ApiContext,
    conn: &mut sqlx::PgConnection,
    job: &Job,
    claimed: chunk_tasks::Claimed,
) -> Result<pb::Task> {
    let instance_id = match &job.spec {
        JobSpec::Backup { instance_id, .. } => instance_id,
        JobSpec::Restore(restore) => return load_task(ctx, conn, job, restore, claimed).await,
        _ => {
            return Err(CoordinatorError::internal(format!(
                "job {} has chunks but is no backup or restore",
                job.id
            )));
        }
    };
    let instance = instances::get_by_id(&mut *conn, *instance_id).await?;
    let (_, source) = super::claim::instance_source(ctx, &mut *conn, &instance).await?;
    let target = attempts::target(&mut *conn, job.id, job.attempt)
        .await?
        .ok_or_else(|| {
            CoordinatorError::internal(format!(
                "job {} attempt {} has no recorded point",
                job.id, job.attempt
            ))
        })?;
    // Helpers seal with the attempt's point key (made at the leader's claim).
    let point_key = match target.point_id {
        Some(point_id) => {
            encryption::existing_point_key(&mut *conn, &ctx.cipher, &instance.vault_id, point_id)
                .await?
        }
        None => None,
    };
    Ok(pb::Task {
        job_id: job.id.to_string(),
        attempt: job.attempt,
        kind: Some(pb::task::Kind::Chunk(pb::ChunkTask {
            source: Some(source),
            datastore_url: target.datastore_url,
            prefix: target.prefix,
            snapshot_id: claimed.snapshot_id,
            key: claimed.key,
            spec: claimed.spec,
            take: claimed.take,
            point_key: encryption::task_key(point_key),
            kind: ChunkKind::Dump.as_str().to_string(),
            target: None,
        })),
        instance_id: instance.id.to_string(),
        trace_context: job
            .trace_context
            .as_ref()
            .map(|c| c.to_carrier())
            .unwrap_or_default(),
    })
}

/// A restore's load chunk: the target database the leader created (the
/// restore's own credentials), the point to read and its data key — all as
/// the restore's own task carries them.
async fn load_task(
    ctx: &ApiContext,
    conn: &mut sqlx::PgConnection,
    job: &Job,
    restore: &crate::model::RestoreSpec,
    claimed: chunk_tasks::Claimed,
) -> Result<pb::Task> {
    let mut kind = super::claim::restore_task(ctx, conn, job, restore).await?;
    super::claim::attach_point_key(ctx, conn, job, &mut kind).await?;
    let pb::task::Kind::Restore(restore_task) = kind else {
        return Err(CoordinatorError::internal(format!(
            "job {} has load chunks but restores no database",
            job.id
        )));
    };
    Ok(pb::Task {
        job_id: job.id.to_string(),
        attempt: job.attempt,
        kind: Some(pb::task::Kind::Chunk(pb::ChunkTask {
            source: None,
            datastore_url: restore_task.datastore_url,
            prefix: restore_task.prefix,
            snapshot_id: String::new(),
            key: claimed.key,
            spec: claimed.spec,
            take: claimed.take,
            point_key: restore_task.point_key,
            kind: ChunkKind::Load.as_str().to_string(),
            target: restore_task.target,
        })),
        instance_id: restore.instance_id.to_string(),
        trace_context: job
            .trace_context
            .as_ref()
            .map(|c| c.to_carrier())
            .unwrap_or_default(),
    })
}

pub async fn heartbeat(ctx: &ApiContext, req: pb::HeartbeatChunkRequest) -> Result<()> {
    let job_id = super::job_id(&req.job_id)?;
    let token = super::lease_token(&req.lease_token)?;
    let ttl = ctx.lease_ttl.as_secs_f64();
    let progress = (req.bytes_done, req.rows_done);
    if chunk_tasks::heartbeat(ctx.store.pool(), job_id, token, ttl, progress).await? {
        Ok(())
    } else {
        ctx.metrics.fenced_heartbeat();
        Err(chunk_lost())
    }
}

pub async fn complete(ctx: &ApiContext, req: pb::CompleteChunkRequest) -> Result<()> {
    let job_id = super::job_id(&req.job_id)?;
    let token = super::lease_token(&req.lease_token)?;
    let sha = req.sha256.trim().to_ascii_lowercase();
    if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(CoordinatorError::invalid(
            "sha256",
            "must be 64 hexadecimal characters",
        ));
    }
    if req.object_path.trim().is_empty() || req.entries.trim().is_empty() {
        return Err(CoordinatorError::invalid(
            "object_path",
            "a stored chunk names its object and its manifest entries",
        ));
    }
    let stored = chunk_tasks::Stored {
        object_path: req.object_path,
        size: req.size,
        sha256: sha,
        rows: req.rows,
        entries: req.entries,
        raw_bytes: req.raw_bytes,
    };
    let mut tx = ctx.store.begin().await?;
    if !chunk_tasks::complete(&mut *tx, job_id, token, &req.key, &stored).await? {
        return Err(chunk_lost());
    }
    connection_slots::release_lease(&mut *tx, token).await?;
    tx.commit().await?;
    tracing::debug!(job_id = %job_id, chunk = %req.key, "chunk stored");
    Ok(())
}

pub async fn fail(ctx: &ApiContext, req: pb::FailChunkRequest) -> Result<()> {
    let job_id = super::job_id(&req.job_id)?;
    let token = super::lease_token(&req.lease_token)?;
    let error = req.error.unwrap_or_default();
    let text: String = format!("{}: {}", error.code, error.message)
        .chars()
        .take(2000)
        .collect();
    let mut tx = ctx.store.begin().await?;
    if !chunk_tasks::fail(&mut *tx, job_id, token, &req.key, &text).await? {
        return Err(chunk_lost());
    }
    connection_slots::release_lease(&mut *tx, token).await?;
    tx.commit().await?;
    tracing::warn!(job_id = %job_id, chunk = %req.key, code = %error.code, "chunk failed; queued again");
    Ok(())
}

pub async fn list(ctx: &ApiContext, req: pb::ListChunksRequest) -> Result<pb::ListChunksResponse> {
    let job = led_job(ctx, &req.job_id, &req.lease_token).await?;
    let rows = chunk_tasks::list(ctx.store.pool(), job.id, job.attempt).await?;
    Ok(pb::ListChunksResponse {
        chunks: rows
            .into_iter()
            .map(|r| pb::ChunkState {
                key: r.key,
                state: r.state,
                worker_id: r.worker_id.unwrap_or_default(),
                entries: r.entries.unwrap_or_default(),
                size: r.size,
                rows: r.rows,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BackupTrigger, RestoreSpec};

    fn restore(target: RestoreTarget) -> JobSpec {
        JobSpec::Restore(Box::new(RestoreSpec {
            instance_id: Uuid::nil(),
            point_id: Uuid::nil(),
            target,
            copy_datastore: None,
            schemas: Vec::new(),
            tables: Vec::new(),
            warnings: Vec::new(),
        }))
    }

    #[test]
    fn backups_offer_dumps_and_restores_as_a_database_offer_loads_only() {
        let backup = JobSpec::Backup {
            instance_id: Uuid::nil(),
            trigger: BackupTrigger::Scheduled,
            produced_point_id: None,
        };
        let database = restore(RestoreTarget::Database {
            server_id: "db1".into(),
            database: "copy".into(),
            secret: crate::secret_ref::SecretRef::parse("secret", "secret://app").unwrap(),
        });
        let files = restore(RestoreTarget::Files {
            url: "file:///out".into(),
            file: "x.sql".into(),
            output: None,
        });
        assert_eq!(offered_kind(&backup, "").unwrap(), ChunkKind::Dump);
        assert_eq!(offered_kind(&backup, "DUMP").unwrap(), ChunkKind::Dump);
        assert_eq!(offered_kind(&database, "LOAD").unwrap(), ChunkKind::Load);
        assert!(offered_kind(&backup, "LOAD").is_err());
        assert!(offered_kind(&database, "").is_err());
        assert!(offered_kind(&files, "LOAD").is_err());
        let unknown = offered_kind(&database, "COPY").unwrap_err().to_string();
        assert!(unknown.contains("DUMP or LOAD"), "{unknown}");
    }
}
