//! Runs drill tasks: the engine's [`drill_point`] — the point restored into
//! the scratch database on the drill server, every table read back and
//! compared with the manifest, the scratch database dropped — and what it
//! checked back as a [`DrillResult`].

use std::sync::Arc;

use pgvault_datastore::Datastore;
use pgvault_engine::{EngineError, EngineOptions, ErrorCode, PgTarget, ProgressSink, drill_point};
use pgvault_proto::v1::{DrillResult, DrillTask};
use tokio_util::sync::CancellationToken;

/// Drills the point the task names into `target` (its scratch database).
pub(super) async fn run(
    task: DrillTask,
    target: PgTarget,
    options: &EngineOptions,
    progress: Arc<dyn ProgressSink>,
    cancel: CancellationToken,
) -> Result<DrillResult, EngineError> {
    let location = task
        .location
        .ok_or_else(|| EngineError::internal("drill task carried no location"))?;
    let store = Datastore::open(&location.datastore_url).map_err(|e| {
        EngineError::new(
            ErrorCode::DatastoreUnavailable,
            format!("cannot open the recovery point's datastore: {e}"),
        )
    })?;
    let options = &options.within_server_grant(task.max_server_connections);
    let summary = drill_point(
        &target,
        &store,
        &location.prefix,
        &task.manifest_sha256,
        options,
        progress,
        cancel,
    )
    .await?;
    tracing::info!(
        database = %summary.database,
        tables = summary.tables.len(),
        rows = summary.rows,
        checksums = summary.checksums,
        "drill passed; scratch database dropped"
    );
    Ok(DrillResult {
        tables: summary.tables.len() as u64,
        rows: summary.rows,
        checksums: summary.checksums,
    })
}
