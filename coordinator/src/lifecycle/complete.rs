//! What a completed lifecycle job changes, in the transaction that marks it
//! COMPLETED:
//! - TIER_MOVE: the point is on the archive tier at its new location, kept
//!   until its standard expiry plus its rule's archive period;
//! - DELETE: the point is marked deleted (its row stays, hidden, so job
//!   history and tagging history stay readable), or only its rehydrated copy
//!   is forgotten;
//! - REHYDRATE: the copy is recorded with the end of its period, and the
//!   restores waiting for it are released (outbox rows written);
//! - COPY: the verified copy is recorded on the point with its expiry (the
//!   copy's manifest is durable by then); a DELETE of a copy marks only that
//!   copy deleted, the purge of a soft-deleted point all of them;
//! - RESTORE: the restores waiting for it (the other databases of a
//!   whole-server restore, after the one that restored the globals) are
//!   released.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;

use crate::error::{CoordinatorError, Result};
use crate::model::{AttemptTarget, DeleteScope, Job, JobSpec};
use crate::retention::IsoDuration;
use crate::store::copies::{self, PointCopy};
use crate::store::{
    attempts, garbage, instances, keys, lifecycle, outbox, policies, recovery_points,
};

/// Applies the effect of lifecycle job `job` (no-op for other operations).
/// Returns true when jobs were released for publishing.
pub async fn on_complete(conn: &mut PgConnection, job: &Job, now: DateTime<Utc>) -> Result<bool> {
    match &job.spec {
        JobSpec::Delete {
            point_id, scope, ..
        } => {
            if let DeleteScope::Copy { datastore_url } = scope {
                copies::mark_deleted(&mut *conn, *point_id, Some(datastore_url)).await?;
                // The last copy of a point whose own objects expired takes
                // the data key with it.
                if lifecycle::deleted(&mut *conn, *point_id).await?
                    && !copies::any_live(&mut *conn, *point_id).await?
                {
                    keys::delete_point_key(&mut *conn, *point_id).await?;
                }
                tracing::info!(point = %point_id, job_id = %job.id, "expired copy deleted");
            } else if let DeleteScope::RehydratedCopy { prefix } = scope {
                lifecycle::clear_rehydrated(&mut *conn, *point_id, prefix).await?;
                tracing::info!(point = %point_id, job_id = %job.id, "rehydrated copy deleted");
            } else {
                if lifecycle::soft_deleted(&mut *conn, *point_id).await? {
                    copies::mark_deleted(&mut *conn, *point_id, None).await?;
                }
                lifecycle::mark_deleted(&mut *conn, *point_id).await?;
                // Its data key goes with it (crypto-shredding), unless a copy
                // lives on by its own retention: the copy's expiry takes it.
                if copies::any_live(&mut *conn, *point_id).await? {
                    tracing::info!(point = %point_id, job_id = %job.id, "recovery point expired; its copies remain restorable until their own expiry");
                } else {
                    keys::delete_point_key(&mut *conn, *point_id).await?;
                    tracing::info!(point = %point_id, job_id = %job.id, "recovery point deleted");
                }
            }
            Ok(false)
        }
        JobSpec::TierMove {
            instance_id,
            point_id,
        } => {
            let point =
                recovery_points::get(&mut *conn, &job.vault_id, *instance_id, *point_id).await?;
            // Kept in archive for the rule's period after the standard expiry;
            // a corrupt period (never expected) keeps it rather than losing it.
            let archive_expiry = IsoDuration::parse(&point.archive_duration)
                .ok()
                .and_then(|d| d.after(point.expire_time))
                .unwrap_or_else(crate::api::protection::forever);
            let destination = destination(conn, job).await?;
            // As for copies: no garbage row may empty the moved point.
            garbage::forget(&mut *conn, &destination.datastore_url, &destination.prefix).await?;
            lifecycle::moved_to_archive(
                &mut *conn,
                *point_id,
                &destination.datastore_url,
                &destination.prefix,
                archive_expiry,
            )
            .await?;
            tracing::info!(point = %point_id, job_id = %job.id, expire_time = %archive_expiry, "recovery point moved to archive");
            Ok(false)
        }
        JobSpec::Rehydrate { point_id, days, .. } => {
            let until = now + Duration::days(i64::from(*days));
            let destination = destination(conn, job).await?;
            garbage::forget(&mut *conn, &destination.datastore_url, &destination.prefix).await?;
            lifecycle::set_rehydrated(
                &mut *conn,
                *point_id,
                &destination.datastore_url,
                &destination.prefix,
                until,
            )
            .await?;
            let released = lifecycle::release_waiting(&mut *conn, job.id).await?;
            for (waiting, attempt) in &released {
                outbox::insert(&mut *conn, *waiting, *attempt).await?;
                tracing::info!(job_id = %waiting, rehydrate_job = %job.id, "restore released after rehydrate");
            }
            Ok(!released.is_empty())
        }
        JobSpec::Restore(_) => {
            let released = lifecycle::release_waiting(&mut *conn, job.id).await?;
            for (waiting, attempt) in &released {
                outbox::insert(&mut *conn, *waiting, *attempt).await?;
                tracing::info!(job_id = %waiting, globals_job = %job.id, "restore released after the server's globals");
            }
            Ok(!released.is_empty())
        }
        JobSpec::Copy {
            instance_id,
            point_id,
            datastore_url,
        } => {
            let point =
                recovery_points::get(&mut *conn, &job.vault_id, *instance_id, *point_id).await?;
            let destination = destination(conn, job).await?;
            let instance = instances::get_by_id(&mut *conn, *instance_id).await?;
            let policy = policies::get(&mut *conn, &instance.vault_id, &instance.policy_id).await?;
            // The copy datastore's retention while the policy still copies
            // there; else kept as long as the point itself.
            let rule = policy
                .copy
                .as_ref()
                .filter(|r| &r.datastore_url == datastore_url);
            let expires_at =
                crate::copies::decide::copy_expiry(rule, point.snapshot_time, point.expire_time);
            copies::record(
                &mut *conn,
                &PointCopy {
                    recovery_point_id: *point_id,
                    datastore_url: destination.datastore_url.clone(),
                    prefix: destination.prefix.clone(),
                    state: copies::COPIED.to_string(),
                    job_id: job.id,
                    copied_at: now,
                    expires_at,
                },
            )
            .await?;
            // A failed earlier attempt wrote to the same prefix: its garbage
            // row must not empty the verified copy.
            garbage::forget(&mut *conn, &destination.datastore_url, &destination.prefix).await?;
            tracing::info!(point = %point_id, job_id = %job.id, expire_time = %expires_at, "recovery point copied");
            Ok(false)
        }
        JobSpec::Backup { .. } | JobSpec::Verify { .. } | JobSpec::Drill(_) => Ok(false),
    }
}

/// Where the completing attempt copied the point (recorded at its claim).
async fn destination(conn: &mut PgConnection, job: &Job) -> Result<AttemptTarget> {
    attempts::target(&mut *conn, job.id, job.attempt)
        .await?
        .ok_or_else(|| {
            CoordinatorError::internal(format!(
                "job {} attempt {} has no recorded destination",
                job.id, job.attempt
            ))
        })
}
