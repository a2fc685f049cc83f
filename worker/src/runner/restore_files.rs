//! Runs a restore-as-files task: prepares the destination (creates the
//! directory, bucket or container when missing) and streams the recovery
//! point, or the selected part of it, into one SQL file there. Failing to
//! create or write the destination is `UserErrorDestinationNotWritable`.

use std::sync::Arc;

use pgvault_datastore::Datastore;
use pgvault_engine::{self as engine, EngineError, EngineOptions, ErrorCode};
use pgvault_proto::v1::{RestoreFilesTask, RestoreResult, complete_task_request};
use tokio_util::sync::CancellationToken;

use super::executor::open_datastore;
use super::stage_split::{bytes_read, stage_split};

pub(super) async fn run(
    task: RestoreFilesTask,
    options: &EngineOptions,
    progress: Arc<dyn engine::ProgressSink>,
    cancel: CancellationToken,
) -> Result<complete_task_request::Result, EngineError> {
    let store = open_datastore(&task.datastore_url)?;
    let destination = open_destination(&task.target_url).await?;
    let expected = (!task.manifest_sha256.is_empty()).then_some(task.manifest_sha256.as_str());
    let selection = engine::Selection {
        schemas: task.schemas,
        tables: task.tables,
    };
    let summary = engine::restore_as_sql(
        &store,
        &task.prefix,
        expected,
        &destination,
        &task.target_file,
        &selection,
        options,
        progress,
        cancel,
    )
    .await
    .map_err(|e| not_writable_if_write_failed(e, &destination, &task.target_file))?;
    let output = summary
        .output
        .unwrap_or_else(|| engine::manifest::ObjectEntry {
            path: task.target_file.clone(),
            size: 0,
            sha256: String::new(),
        });
    Ok(complete_task_request::Result::Restore(RestoreResult {
        rows: summary.rows,
        bytes: summary.bytes,
        output_path: output.path,
        output_size: output.size,
        output_sha256: output.sha256,
        stage_split: Some(stage_split(
            &summary.stages,
            summary.bytes,
            bytes_read(&summary.stages),
        )),
        skipped_objects: summary.skipped_objects,
    }))
}

/// Opens the destination URL and makes sure its directory, bucket or
/// container exists.
async fn open_destination(url: &str) -> Result<Datastore, EngineError> {
    let destination = Datastore::open(url).map_err(|e| {
        EngineError::new(
            ErrorCode::UserErrorDestinationNotWritable,
            format!("cannot open the destination: {e}"),
        )
    })?;
    destination.ensure_exists().await.map_err(|e| {
        EngineError::new(
            ErrorCode::UserErrorDestinationNotWritable,
            format!("cannot prepare the destination: {e}"),
        )
    })?;
    Ok(destination)
}

/// The engine writes nothing but the output file here, so a failed write
/// means the destination refused it.
fn not_writable_if_write_failed(
    error: EngineError,
    destination: &Datastore,
    file: &str,
) -> EngineError {
    if error.code != ErrorCode::DatastoreWriteFailed {
        return error;
    }
    EngineError::new(
        ErrorCode::UserErrorDestinationNotWritable,
        format!(
            "cannot write {file} to {}: {}",
            destination.redacted_url(),
            error.message
        ),
    )
}
