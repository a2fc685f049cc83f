//! The worker task of a drill job, built when a worker claims it: where the
//! point is (its rehydrated copy is never used: archive points are refused),
//! the manifest's SHA-256 recorded at backup time, and the drill server's
//! connection to the scratch database, its secret resolved again on every
//! claim. No attempt target is recorded: a drill writes nothing in a
//! datastore, and the engine drops the scratch database itself.

use pgvault_proto::v1 as pb;
use sqlx::PgConnection;

use crate::api::ApiContext;
use crate::api::resolve::{connection_spec, reference_credentials};
use crate::error::{CoordinatorError, Result};
use crate::model::{Job, JobSpec, drill_database};
use crate::store::{recovery_points, servers};

/// The task for drill job `job`.
pub async fn build(ctx: &ApiContext, conn: &mut PgConnection, job: &Job) -> Result<pb::task::Kind> {
    let JobSpec::Drill(drill) = &job.spec else {
        return Err(CoordinatorError::internal(format!(
            "{} is not a drill",
            job.operation()
        )));
    };
    let point =
        recovery_points::get(&mut *conn, &job.vault_id, drill.instance_id, drill.point_id).await?;
    if let Some(error) = crate::verify::queue::refusal(&point) {
        return Err(error);
    }
    let server = servers::get(&mut *conn, &drill.server_id).await?;
    let creds = reference_credentials(
        &mut *conn,
        &ctx.cipher,
        &ctx.external_secrets,
        Some(&job.vault_id),
        &drill.secret,
    )
    .await?;
    Ok(pb::task::Kind::Drill(pb::DrillTask {
        target: Some(connection_spec(&server, &drill_database(job.id), &creds)),
        location: Some(pb::PointLocation {
            datastore_url: point.datastore_url,
            prefix: point.prefix,
        }),
        manifest_sha256: point.manifest_sha256,
        max_server_connections: 0,
        // Attached at claim (`worker_api::claim`).
        point_key: None,
    }))
}
