//! Opening a recovery point for a restore (as a database or as a SQL file):
//! the manifest checked against its expected SHA-256, the schema archive
//! downloaded to a temporary directory and verified, and a [`Selection`]
//! applied — the manifest reduced to what is restored and a `pg_restore -L`
//! list written next to the archive.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use futures::StreamExt;
use pgvault_datastore::Datastore;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::error::{EngineError, ErrorCode};
use super::manifest::{MANIFEST_FILE, Manifest, ObjectEntry};
use super::objects::{PoolHasher, StreamOpener, blocks, get_small, object_path, open_small};
use super::seal::PointKey;
use super::selection::{self, Selection};
use super::stages::StageClock;
use super::toc;

/// A recovery point ready to restore from.
pub(crate) struct OpenedPoint {
    /// The manifest, reduced to the selection.
    pub manifest: Manifest,
    /// Objects the selection left out (see [`selection`]).
    pub skipped: Vec<String>,
    pub schema_file: PathBuf,
    list_file: Option<PathBuf>,
    /// Holds the schema archive and list until the restore ends.
    _workdir: tempfile::TempDir,
}

impl OpenedPoint {
    /// `-L <list>` when restoring a selection, nothing otherwise.
    pub(crate) fn list_args(&self) -> Vec<OsString> {
        match &self.list_file {
            Some(list) => vec!["-L".into(), list.as_os_str().to_owned()],
            None => Vec::new(),
        }
    }
}

/// Reads and verifies the manifest and schema archive, then applies `selection`.
pub(crate) async fn open(
    store: &Datastore,
    prefix: &str,
    expected_manifest_sha256: Option<&str>,
    key: Option<&PointKey>,
    selection: &Selection,
    cancel: &CancellationToken,
    clock: &Arc<StageClock>,
) -> Result<OpenedPoint, EngineError> {
    let manifest = read_manifest(store, prefix, expected_manifest_sha256, key, clock).await?;
    let workdir = tempfile::tempdir()
        .map_err(|e| EngineError::internal(format!("cannot create a temporary directory: {e}")))?;
    let schema_file = workdir.path().join("schema.dump");
    tokio::select! {
        _ = cancel.cancelled() => return Err(EngineError::cancelled()),
        r = download_verified(store, prefix, &manifest.schema, key, &schema_file, clock) => r?,
    }
    let io = |e: std::io::Error| EngineError::internal(format!("schema archive: {e}"));
    let (manifest, skipped, list_file) = if selection.is_everything() {
        (manifest, Vec::new(), None)
    } else {
        let archive = tokio::fs::read(&schema_file).await.map_err(io)?;
        let entries = toc::read_toc(&archive)?;
        let plan = selection::plan(&entries, &manifest, selection)?;
        let list_file = workdir.path().join("restore.list");
        tokio::fs::write(&list_file, plan.list.unwrap_or_default())
            .await
            .map_err(io)?;
        tracing::info!(
            tables = plan.manifest.tables.len(),
            skipped = plan.skipped.len(),
            "selection applied"
        );
        (plan.manifest, plan.skipped, Some(list_file))
    };
    Ok(OpenedPoint {
        manifest,
        skipped,
        schema_file,
        list_file,
        _workdir: workdir,
    })
}

/// Reads manifest.json, checks it against the expected SHA-256 (of what is
/// stored), opens it with the point's key if sealed and parses it.
pub(crate) async fn read_manifest(
    store: &Datastore,
    prefix: &str,
    expected: Option<&str>,
    key: Option<&PointKey>,
    clock: &Arc<StageClock>,
) -> Result<Manifest, EngineError> {
    let (bytes, sha) = get_small(store, prefix, MANIFEST_FILE, clock).await?;
    if let Some(expected) = expected
        && !expected.eq_ignore_ascii_case(&sha)
    {
        return Err(EngineError::new(
            ErrorCode::ChecksumMismatch,
            format!(
                "checksum mismatch for object {MANIFEST_FILE}: expected sha256 {expected}, read {sha}"
            ),
        ));
    }
    let bytes = open_small(key, MANIFEST_FILE, bytes, clock).await?;
    Ok(Manifest::from_json(&bytes, MANIFEST_FILE)?)
}

/// Copies an uncompressed object to `dest` in ranged reads, hashed on the
/// CPU pool (and opened there when sealed); fails unless size and SHA-256
/// match and a sealed stream ends with its final record.
async fn download_verified(
    store: &Datastore,
    prefix: &str,
    entry: &ObjectEntry,
    key: Option<&PointKey>,
    dest: &Path,
    clock: &Arc<StageClock>,
) -> Result<(), EngineError> {
    let io =
        |e: std::io::Error| EngineError::internal(format!("cannot write {}: {e}", dest.display()));
    let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
    let mut hasher = PoolHasher::new(clock.clone());
    let path = object_path(store, prefix, &entry.path);
    let mut blocks = blocks(store, path, &entry.path, entry.size, 0..entry.size, 2);
    let mut opener = StreamOpener::new(key, &entry.path, clock);
    while let Some(block) = blocks.next().await {
        let block = block?;
        hasher.update(block.clone()).await?;
        let plain = opener.push(block).await?;
        file.write_all(&plain).await.map_err(io)?;
    }
    file.write_all(&opener.finish()?).await.map_err(io)?;
    file.flush().await.map_err(io)?;
    let read = hasher.size();
    let sha = hasher.finish()?;
    if sha != entry.sha256 || read != entry.size {
        return Err(EngineError::new(
            ErrorCode::ChecksumMismatch,
            format!(
                "checksum mismatch for object {}: expected sha256 {}, read {sha}",
                entry.path, entry.sha256
            ),
        ));
    }
    Ok(())
}
