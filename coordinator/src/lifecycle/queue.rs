//! Creating lifecycle jobs and restores. Every job here is created in one
//! transaction with its outbox row (or, for a restore waiting for a
//! rehydrate, with the job it waits for), under the recovery point's row
//! lock, so a deletion and a restore of the same point never both start:
//! - a lifecycle job is created only when no restore of the point is active,
//!   and only once per (point, stage) (`store::lifecycle::claim`);
//! - a restore is refused while a DELETE or TIER_MOVE job of the point is
//!   active, naming the point and the job.

use futures::FutureExt;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::api::ApiContext;
use crate::error::{CoordinatorError, Result};
use crate::lifecycle::decide::Decision;
use crate::model::{DeleteScope, Job, JobSpec, Operation, RestoreSpec, Tier};
use crate::names;
use crate::store::jobs::{self, NewJob};
use crate::store::lifecycle::{self, DuePoint};
use crate::store::{Store, outbox, soft_delete};

/// Rehydrate period when the caller does not choose one, in days.
pub const DEFAULT_REHYDRATE_DAYS: u32 = 15;
/// Allowed rehydrate periods, in days.
pub const REHYDRATE_DAYS: std::ops::RangeInclusive<u32> = 10..=30;

/// The rehydrate period asked for (0: the default), checked against the range.
pub fn rehydrate_days(requested: u32) -> Result<u32> {
    if requested == 0 {
        return Ok(DEFAULT_REHYDRATE_DAYS);
    }
    if !REHYDRATE_DAYS.contains(&requested) {
        return Err(CoordinatorError::invalid(
            "rehydrate_days",
            format!(
                "must be between {} and {} days (default {DEFAULT_REHYDRATE_DAYS}), got {requested}",
                REHYDRATE_DAYS.start(),
                REHYDRATE_DAYS.end()
            ),
        ));
    }
    Ok(requested)
}

/// Queues the job `decision` asks for, in its own transaction. `None`: not
/// needed any more (a restore started, or the stage has its job).
pub async fn lifecycle_job(
    store: &Store,
    point: &DuePoint,
    decision: &Decision,
) -> Result<Option<Uuid>> {
    let point = point.clone();
    let decision = decision.clone();
    store
        .in_tx(move |conn| async move { lifecycle_job_in(conn, &point, &decision).await }.boxed())
        .await
}

/// Like [`lifecycle_job`], inside the caller's transaction.
pub async fn lifecycle_job_in(
    conn: &mut PgConnection,
    point: &DuePoint,
    decision: &Decision,
) -> Result<Option<Uuid>> {
    let (instance_id, point_id) = (point.backup_instance_id, point.id);
    let spec = match decision {
        Decision::Nothing | Decision::Postpone { .. } => return Ok(None),
        Decision::TierMove { .. } => JobSpec::TierMove {
            instance_id,
            point_id,
        },
        Decision::Delete { stage } => JobSpec::Delete {
            instance_id,
            point_id,
            scope: DeleteScope::from_stage(stage).ok_or_else(|| {
                CoordinatorError::internal(format!("a delete cannot carry out stage {stage}"))
            })?,
        },
        Decision::DeleteRehydrated { prefix, .. } => JobSpec::Delete {
            instance_id,
            point_id,
            scope: DeleteScope::RehydratedCopy {
                prefix: prefix.clone(),
            },
        },
    };
    let operation = spec.operation();
    let stage = decision.stage().unwrap_or_default().to_string();
    if !lifecycle::lock_point(&mut *conn, point.id).await?
        || lifecycle::restore_active(&mut *conn, point.id).await?
    {
        return Ok(None);
    }
    let job = jobs::insert(
        &mut *conn,
        &NewJob {
            vault_id: point.vault_id.clone(),
            spec,
            waits_for_job_id: None,
        },
    )
    .await?;
    if !lifecycle::claim(&mut *conn, point.id, &stage, job.id).await? {
        lifecycle::discard_job(&mut *conn, job.id).await?;
        return Ok(None);
    }
    if let (true, Some(by)) = (point.purge_due, &point.soft_deleted_by) {
        soft_delete::record_requester(&mut *conn, job.id, by).await?;
    }
    outbox::insert(&mut *conn, job.id, job.attempt).await?;
    crate::job_span::of("job.queued", &job).in_scope(|| {
        tracing::info!(point = %point.id, stage = %stage, operation = %operation, "lifecycle job queued");
    });
    Ok(Some(job.id))
}

/// Queues `restore` of a point of `vault_id`. A point on the archive tier
/// without a rehydrated copy first gets a REHYDRATE job (or joins the one
/// under way); the restore then waits for it and is published when it
/// completes.
pub async fn restore(
    ctx: &ApiContext,
    vault_id: String,
    restore: RestoreSpec,
    rehydrate_days: u32,
) -> Result<Job> {
    restore_fanned(ctx, vault_id, restore, rehydrate_days, 0).await
}

/// [`restore`], recording in the same transaction that the restore asked to
/// fan its loads out across `workers` workers (0: not asked).
pub async fn restore_fanned(
    ctx: &ApiContext,
    vault_id: String,
    restore: RestoreSpec,
    rehydrate_days: u32,
    workers: u32,
) -> Result<Job> {
    let now = ctx.clock.now();
    let job = ctx
        .store
        .in_tx(move |conn| {
            async move {
                let (instance_id, point_id) = (restore.instance_id, restore.point_id);
                let point_name = names::recovery_point_name(&vault_id, instance_id, point_id);
                let from_copy = restore.copy_datastore.is_some();
                if !lifecycle::lock_point_row(&mut *conn, point_id, from_copy).await? {
                    return Err(CoordinatorError::not_found("recovery point", point_name));
                }
                if let Some((job_id, operation)) = lifecycle::active_removal(&mut *conn, point_id).await? {
                    let what = if operation == Operation::TierMove {
                        "being moved to the archive datastore"
                    } else {
                        "being deleted"
                    };
                    return Err(CoordinatorError::precondition(format!(
                        "recovery point {point_name} is {what} by job {}; restore from another recovery point{}",
                        names::job_name(job_id),
                        if operation == Operation::TierMove { ", or retry once that job completes" } else { "" }
                    )));
                }
                let point = crate::store::recovery_points::get_with_copies_only(&mut *conn, &vault_id, instance_id, point_id).await?;
                if let Some(deleted) = &point.soft_delete {
                    return Err(CoordinatorError::refused(
                        pgvault_errors::ErrorCode::UserErrorRecoveryPointDeleted,
                        format!(
                            "recovery point {point_name} was deleted by {} and is purged at {}; undelete it first: pgvault recovery-point undelete {point_name}",
                            deleted.by,
                            deleted.purge_after.format("%Y-%m-%d %H:%M UTC")
                        ),
                    ));
                }
                if let Some(datastore) = &restore.copy_datastore
                    && !crate::store::copies::lock_live(&mut *conn, point_id, datastore).await?
                {
                    return Err(crate::copies::no_copy(&point_name, datastore));
                }
                let waits_for = if point.tier == Tier::Archive && restore.copy_datastore.is_none() {
                    archive_source(&mut *conn, &vault_id, instance_id, point_id, now, rehydrate_days).await?
                } else {
                    None
                };
                let new = NewJob {
                    vault_id,
                    spec: JobSpec::Restore(Box::new(restore)),
                    waits_for_job_id: waits_for,
                };
                let job = jobs::insert(&mut *conn, &new).await?;
                if workers > 0 {
                    crate::store::chunk_tasks::request_fanout(&mut *conn, job.id, workers).await?;
                }
                match waits_for {
                    Some(rehydrate) => {
                        crate::job_span::of("job.queued", &job).in_scope(|| {
                            tracing::info!(rehydrate_job = %rehydrate, point = %point_id, "restore waits for the point's rehydrate");
                        });
                    }
                    None => outbox::insert(&mut *conn, job.id, job.attempt).await?,
                }
                Ok(job)
            }
            .boxed()
        })
        .await?;
    ctx.dispatch_wake.notify_one();
    Ok(job)
}

/// For a restore of an archive point: `None` when its rehydrated copy can be
/// read (kept at least `days` more), else the REHYDRATE job to wait for —
/// the one under way, or a new one. A copy whose deletion already started
/// is not reused.
async fn archive_source(
    conn: &mut PgConnection,
    vault_id: &str,
    instance_id: Uuid,
    point_id: Uuid,
    now: chrono::DateTime<chrono::Utc>,
    days: u32,
) -> Result<Option<Uuid>> {
    if let Some((_, prefix)) = lifecycle::rehydrated(&mut *conn, point_id).await?
        && !lifecycle::copy_deletion_active(&mut *conn, point_id, &prefix).await?
    {
        let until = now + chrono::Duration::days(i64::from(days));
        lifecycle::extend_rehydrated(&mut *conn, point_id, until).await?;
        return Ok(None);
    }
    Ok(Some(
        match lifecycle::active_rehydrate(&mut *conn, point_id).await? {
            Some(running) => running,
            None => queue_rehydrate(&mut *conn, vault_id, instance_id, point_id, days).await?,
        },
    ))
}

/// Creates the REHYDRATE job of the restore's point (with its outbox row).
async fn queue_rehydrate(
    conn: &mut PgConnection,
    vault_id: &str,
    instance_id: Uuid,
    point_id: Uuid,
    days: u32,
) -> Result<Uuid> {
    let job = jobs::insert(
        &mut *conn,
        &NewJob {
            vault_id: vault_id.to_string(),
            spec: JobSpec::Rehydrate {
                instance_id,
                point_id,
                days,
            },
            waits_for_job_id: None,
        },
    )
    .await?;
    outbox::insert(&mut *conn, job.id, job.attempt).await?;
    crate::job_span::of("job.queued", &job).in_scope(|| tracing::info!(days, "rehydrate queued"));
    Ok(job.id)
}
