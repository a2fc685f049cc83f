//! The worker task of a lifecycle job, built when a worker claims it:
//! - DELETE: every copy of the point (its current location and any
//!   rehydrated copy), or only the rehydrated copy named by the stage;
//! - TIER_MOVE: the point's standard location → the vault's archive
//!   datastore, same prefix;
//! - REHYDRATE: the archive location → the vault's standard datastore under
//!   a prefix of its own (`<point prefix>-rehydrated-<job>`), so copies of
//!   successive rehydrates never collide;
//! - COPY: the point's location → the policy's copy datastore, same prefix
//!   (the source stays); a DELETE of a copy removes only that copy, and the
//!   purge of a soft-deleted point removes its copies too.
//!
//! The destination is recorded as where the attempt writes
//! (`job_attempts`); completion reads it from there.

use pgvault_proto::v1 as pb;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::{CoordinatorError, Result};
use crate::model::{AttemptTarget, DeleteScope, Job, JobSpec, Tier};
use crate::names;
use crate::store::{attempts, copies, garbage, lifecycle, recovery_points, vaults};

fn location(datastore_url: &str, prefix: &str) -> pb::PointLocation {
    pb::PointLocation {
        datastore_url: datastore_url.to_string(),
        prefix: prefix.to_string(),
    }
}

/// The task for lifecycle job `job`.
pub async fn build(conn: &mut PgConnection, job: &Job) -> Result<pb::task::Kind> {
    match &job.spec {
        JobSpec::Delete {
            instance_id,
            point_id,
            scope,
        } => {
            // A copy outlives its point's own expiry: found by its own row.
            if let DeleteScope::Copy { datastore_url } = scope {
                let copy = copies::live(&mut *conn, *point_id, datastore_url)
                    .await?
                    .ok_or_else(|| {
                        CoordinatorError::precondition(format!(
                            "recovery point {} has no live copy in the datastore to delete",
                            names::recovery_point_name(&job.vault_id, *instance_id, *point_id)
                        ))
                    })?;
                return Ok(pb::task::Kind::Delete(pb::DeleteTask {
                    locations: vec![location(&copy.datastore_url, &copy.prefix)],
                }));
            }
            let point =
                recovery_points::get(&mut *conn, &job.vault_id, *instance_id, *point_id).await?;
            if let DeleteScope::RehydratedCopy { prefix } = scope {
                let vault = vaults::get(&mut *conn, &job.vault_id).await?;
                let datastore = lifecycle::rehydrated(&mut *conn, point.id)
                    .await?
                    .map(|(datastore, _)| datastore)
                    .unwrap_or(vault.standard_datastore);
                return Ok(pb::task::Kind::Delete(pb::DeleteTask {
                    locations: vec![location(&datastore, prefix)],
                }));
            }
            let mut locations = vec![location(&point.datastore_url, &point.prefix)];
            if let Some((datastore, prefix)) = lifecycle::rehydrated(&mut *conn, point.id).await? {
                locations.push(location(&datastore, &prefix));
            }
            // A purge removes the copies too; an expiry leaves them to theirs.
            if point.soft_delete.is_some() {
                for copy in copies::of_points(&mut *conn, &[point.id]).await? {
                    if copy.state == copies::COPIED {
                        locations.push(location(&copy.datastore_url, &copy.prefix));
                    }
                }
            }
            Ok(pb::task::Kind::Delete(pb::DeleteTask { locations }))
        }
        JobSpec::TierMove {
            instance_id,
            point_id,
        } => {
            let point =
                recovery_points::get(&mut *conn, &job.vault_id, *instance_id, *point_id).await?;
            if point.tier != Tier::Standard {
                return Err(CoordinatorError::precondition(format!(
                    "recovery point {} is already on the archive tier",
                    names::recovery_point_name(&job.vault_id, *instance_id, *point_id)
                )));
            }
            let vault = vaults::get(&mut *conn, &job.vault_id).await?;
            if vault.archive_datastore.is_empty() {
                return Err(CoordinatorError::precondition(format!(
                    "vault \"{}\" has no archive datastore to move recovery points to",
                    vault.id
                )));
            }
            record_destination(conn, job, &vault.archive_datastore, &point.prefix).await?;
            Ok(pb::task::Kind::TierMove(pb::TierMoveTask {
                source: Some(location(&point.datastore_url, &point.prefix)),
                destination: Some(location(&vault.archive_datastore, &point.prefix)),
                manifest_sha256: point.manifest_sha256,
                // Attached at claim (`worker_api::claim`).
                point_key: None,
            }))
        }
        JobSpec::Rehydrate {
            instance_id,
            point_id,
            ..
        } => {
            let point =
                recovery_points::get(&mut *conn, &job.vault_id, *instance_id, *point_id).await?;
            let vault = vaults::get(&mut *conn, &job.vault_id).await?;
            let prefix = rehydrated_prefix(&point.prefix, job.id);
            record_destination(conn, job, &vault.standard_datastore, &prefix).await?;
            Ok(pb::task::Kind::Rehydrate(pb::RehydrateTask {
                source: Some(location(&point.datastore_url, &point.prefix)),
                destination: Some(location(&vault.standard_datastore, &prefix)),
                manifest_sha256: point.manifest_sha256,
                // Attached at claim (`worker_api::claim`).
                point_key: None,
            }))
        }
        JobSpec::Copy {
            instance_id,
            point_id,
            datastore_url,
        } => {
            let point =
                recovery_points::get(&mut *conn, &job.vault_id, *instance_id, *point_id).await?;
            record_destination(conn, job, datastore_url, &point.prefix).await?;
            Ok(pb::task::Kind::Copy(pb::CopyTask {
                source: Some(location(&point.datastore_url, &point.prefix)),
                destination: Some(location(datastore_url, &point.prefix)),
                manifest_sha256: point.manifest_sha256,
                // Attached at claim (`worker_api::claim`).
                point_key: None,
            }))
        }
        JobSpec::Backup { .. }
        | JobSpec::Restore(_)
        | JobSpec::Verify { .. }
        | JobSpec::Drill(_) => Err(CoordinatorError::internal(format!(
            "{} is not a lifecycle operation",
            job.operation()
        ))),
    }
}

/// Where a rehydrate job copies a point with `prefix`: a prefix of its own,
/// so copies of successive rehydrates never collide.
fn rehydrated_prefix(prefix: &str, job_id: Uuid) -> String {
    format!("{prefix}-rehydrated-{}", job_id.simple())
}

/// Records the destination as where this attempt writes (completion reads
/// it; a failed attempt's partial copy is collected from it). A retry
/// writes where the failed attempt did: that attempt's garbage row is
/// forgotten here, or the collector would empty the prefix under the retry
/// (or after it completed, losing the moved, rehydrated or copied point).
async fn record_destination(
    conn: &mut PgConnection,
    job: &Job,
    datastore_url: &str,
    prefix: &str,
) -> Result<()> {
    let target = AttemptTarget {
        point_id: None,
        datastore_url: datastore_url.to_string(),
        prefix: prefix.to_string(),
    };
    garbage::forget(&mut *conn, datastore_url, prefix).await?;
    attempts::set_target(&mut *conn, job.id, job.attempt, &target).await
}

/// Where a restore reads the point: its own location, or for an archive
/// point the rehydrated copy.
pub async fn restore_source(
    conn: &mut PgConnection,
    point: &crate::model::RecoveryPoint,
) -> Result<(String, String)> {
    if point.tier != Tier::Archive {
        return Ok((point.datastore_url.clone(), point.prefix.clone()));
    }
    lifecycle::rehydrated(&mut *conn, point.id)
        .await?
        .ok_or_else(|| {
            CoordinatorError::precondition(format!(
                "recovery point {} is on the archive tier and has no rehydrated copy; restore it again to rehydrate it first",
                names::recovery_point_name(&point.vault_id, point.backup_instance_id, point.id)
            ))
        })
}
