//! The worker task of a verify job, built when a worker claims it: where
//! the point is and the manifest's SHA-256 recorded at backup time. The
//! point is checked again (it may have been soft-deleted or moved to the
//! archive tier since the job was queued). No attempt target is recorded:
//! a verify writes nothing.

use pgvault_proto::v1 as pb;
use sqlx::PgConnection;

use crate::error::{CoordinatorError, Result};
use crate::model::{Job, JobSpec};
use crate::store::recovery_points;

/// The task for verify job `job`.
pub async fn build(conn: &mut PgConnection, job: &Job) -> Result<pb::task::Kind> {
    let JobSpec::Verify {
        instance_id,
        point_id,
    } = &job.spec
    else {
        return Err(CoordinatorError::internal(format!(
            "{} is not a verify",
            job.operation()
        )));
    };
    let point = recovery_points::get(&mut *conn, &job.vault_id, *instance_id, *point_id).await?;
    if let Some(error) = super::queue::refusal(&point) {
        return Err(error);
    }
    Ok(pb::task::Kind::Verify(pb::VerifyTask {
        location: Some(pb::PointLocation {
            datastore_url: point.datastore_url,
            prefix: point.prefix,
        }),
        manifest_sha256: point.manifest_sha256,
        // Attached at claim (`worker_api::claim`).
        point_key: None,
    }))
}
