//! Runs verify tasks: the engine's [`verify_point`] over the point's
//! location (no database connection, nothing written) and its summary back
//! as a [`VerifyResult`].

use std::sync::Arc;

use pgvault_datastore::Datastore;
use pgvault_engine::{EngineError, EngineOptions, ErrorCode, ProgressSink, verify_point};
use pgvault_proto::v1::{VerifyResult, VerifyTask};
use tokio_util::sync::CancellationToken;

/// Verifies the point the task names.
pub(super) async fn run(
    task: VerifyTask,
    options: &EngineOptions,
    progress: Arc<dyn ProgressSink>,
    cancel: CancellationToken,
) -> Result<VerifyResult, EngineError> {
    let location = task
        .location
        .ok_or_else(|| EngineError::internal("verify task carried no location"))?;
    let store = Datastore::open(&location.datastore_url).map_err(|e| {
        EngineError::new(
            ErrorCode::DatastoreUnavailable,
            format!("cannot open the recovery point's datastore: {e}"),
        )
    })?;
    let summary = verify_point(
        &store,
        &location.prefix,
        &task.manifest_sha256,
        options,
        progress.as_ref(),
        &cancel,
    )
    .await?;
    Ok(VerifyResult {
        objects: summary.objects,
        bytes: summary.bytes,
        rows: summary.rows,
    })
}
