//! Creating copy jobs, each with its outbox row in one transaction and
//! exactly once per (point, stage) through `lifecycle_runs`:
//! - the COPY job of a completed backup, in the transaction that records
//!   the point (so a completed point under a copying policy always has one);
//! - the DELETE job of an expired copy, under the copy's row lock, never
//!   while a restore or copy reads the point.

use chrono::{DateTime, Utc};
use futures::FutureExt;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::copies::decide::{self, CopyDecision};
use crate::error::Result;
use crate::model::{DeleteScope, JobSpec, Policy};
use crate::store::copies::{self, DueCopy};
use crate::store::jobs::{self, NewJob};
use crate::store::{Store, lifecycle, outbox};

/// Copies looked at per sweeper pass.
const BATCH: i64 = 200;

/// Queues the COPY job of the point a backup under `policy` just produced,
/// if the policy copies. Returns the job's id.
pub async fn after_backup(
    conn: &mut PgConnection,
    policy: &Policy,
    instance_id: Uuid,
    point_id: Uuid,
) -> Result<Option<Uuid>> {
    let Some(rule) = decide::copy_due(policy) else {
        return Ok(None);
    };
    let spec = JobSpec::Copy {
        instance_id,
        point_id,
        datastore_url: rule.datastore_url.clone(),
    };
    let stage = spec.lifecycle_stage().unwrap_or_default();
    let job = jobs::insert(
        &mut *conn,
        &NewJob {
            vault_id: policy.vault_id.clone(),
            spec,
            waits_for_job_id: None,
        },
    )
    .await?;
    if !lifecycle::claim(&mut *conn, point_id, &stage, job.id).await? {
        lifecycle::discard_job(&mut *conn, job.id).await?;
        return Ok(None);
    }
    outbox::insert(&mut *conn, job.id, job.attempt).await?;
    crate::job_span::of("job.queued", &job)
        .in_scope(|| tracing::info!(point = %point_id, "copy queued"));
    Ok(Some(job.id))
}

/// One sweeper pass over the expired copies. Returns how many DELETE jobs
/// it queued.
pub async fn sweep(store: &Store, now: DateTime<Utc>) -> Result<usize> {
    let mut queued = 0;
    for copy in copies::due(store.pool(), now, BATCH).await? {
        match decide::decide(&copy, now) {
            CopyDecision::Nothing => {}
            CopyDecision::Postpone => {
                tracing::info!(point = %copy.recovery_point_id, "copy expiry postponed: a restore or copy reads the point");
            }
            CopyDecision::Delete => {
                let copy = copy.clone();
                let job = store
                    .in_tx(move |conn| async move { expiry_job(conn, &copy).await }.boxed())
                    .await?;
                queued += usize::from(job.is_some());
            }
        }
    }
    Ok(queued)
}

/// Queues the DELETE job of the expired `copy` in the caller's transaction.
/// `None`: not needed any more (the copy is gone, a restore started, or the
/// stage has its job).
async fn expiry_job(conn: &mut PgConnection, copy: &DueCopy) -> Result<Option<Uuid>> {
    let point_id = copy.recovery_point_id;
    if !copies::lock_live(&mut *conn, point_id, &copy.datastore_url).await?
        || lifecycle::restore_active(&mut *conn, point_id).await?
    {
        return Ok(None);
    }
    let spec = JobSpec::Delete {
        instance_id: copy.backup_instance_id,
        point_id,
        scope: DeleteScope::Copy {
            datastore_url: copy.datastore_url.clone(),
        },
    };
    let stage = spec.lifecycle_stage().unwrap_or_default();
    let job = jobs::insert(
        &mut *conn,
        &NewJob {
            vault_id: copy.vault_id.clone(),
            spec,
            waits_for_job_id: None,
        },
    )
    .await?;
    if !lifecycle::claim(&mut *conn, point_id, &stage, job.id).await? {
        lifecycle::discard_job(&mut *conn, job.id).await?;
        return Ok(None);
    }
    outbox::insert(&mut *conn, job.id, job.attempt).await?;
    crate::job_span::of("job.queued", &job)
        .in_scope(|| tracing::info!(point = %point_id, "expired copy deletion queued"));
    Ok(Some(job.id))
}
