//! Object I/O with bounded memory and checksums, CPU work on the CPU pool
//! and I/O async:
//! - [`Upload`](upload::Upload): one object, a single `put` when it fits a
//!   part, else multipart with a fixed number of part buffers alive.
//! - [`ObjectWriter`]: uncompressed objects, hashed on the pool.
//! - [`ChunkWriter`]: COPY text → zstd frames (+ row counts, SHA-256s) on
//!   the pool → upload; one frame per chunk, or per table of a bundle.
//! - [`ChunkReader`]: ranged downloads → SHA-256 + zstd on the pool → COPY
//!   text, verified before the caller commits.
//! - small objects whole (`put_small`, `get_small`) and [`flush`].
//! - `sealing`: small objects sealed and opened whole, and streams opened
//!   block by block, with the errors a restore reports ([`crate::seal`]).

mod chunk_reader;
mod chunk_writer;
mod download;
mod hasher;
mod object_writer;
#[cfg(test)]
mod sealed_tests;
mod sealing;
#[cfg(test)]
mod tests;
mod upload;

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use pgvault_datastore::Datastore;

pub(crate) use chunk_reader::{ChunkReader, Source};
pub(crate) use chunk_writer::{ChunkWriter, Segment};
pub(crate) use download::blocks;
pub(crate) use hasher::{PoolHasher, sha256_hex};
pub(crate) use object_writer::ObjectWriter;
pub(crate) use sealing::{StreamOpener, open_small, seal_small};

use super::error::{EngineError, ErrorCode, store_error};
use super::manifest::ObjectEntry;
use super::stages::StageClock;

/// The store path of `relative` inside the recovery point at `prefix`.
pub(crate) fn object_path(store: &Datastore, prefix: &str, relative: &str) -> Path {
    store.path(&format!("{prefix}/{relative}"))
}

/// Makes everything written to `store` so far durable ([`Datastore::flush`]).
pub(crate) async fn flush(store: &Datastore) -> Result<(), EngineError> {
    store.flush().await.map_err(|e| {
        let full = matches!(
            &e,
            pgvault_datastore::DatastoreError::Flush { source, .. }
                if matches!(source.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
        );
        let code = if full {
            ErrorCode::DatastoreFull
        } else {
            ErrorCode::DatastoreWriteFailed
        };
        EngineError::new(code, e.to_string())
    })
}

/// Writes a small object in one put; returns its entry.
pub(crate) async fn put_small(
    store: &Datastore,
    prefix: &str,
    relative: &str,
    data: Vec<u8>,
    clock: &Arc<StageClock>,
) -> Result<ObjectEntry, EngineError> {
    let path = object_path(store, prefix, relative);
    let data = Bytes::from(data);
    let entry = ObjectEntry {
        path: relative.to_string(),
        size: data.len() as u64,
        sha256: sha256_hex(data.clone(), clock).await?,
    };
    store
        .object_store()
        .put(&path, PutPayload::from(data))
        .await
        .map_err(|e| store_error(&e, "write", relative, true))?;
    Ok(entry)
}

/// Reads a small object whole; returns it with its SHA-256 (hex).
pub(crate) async fn get_small(
    store: &Datastore,
    prefix: &str,
    relative: &str,
    clock: &Arc<StageClock>,
) -> Result<(Bytes, String), EngineError> {
    let path = object_path(store, prefix, relative);
    let object_store: Arc<dyn ObjectStore> = store.object_store();
    let result = object_store.get(&path).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => EngineError::new(
            ErrorCode::ManifestInvalid,
            format!("{relative} is missing under {prefix}: the recovery point is incomplete"),
        ),
        other => store_error(&other, "read", relative, false),
    })?;
    let bytes = result
        .bytes()
        .await
        .map_err(|e| store_error(&e, "read", relative, false))?;
    let sha = sha256_hex(bytes.clone(), clock).await?;
    Ok((bytes, sha))
}

/// Reads the stored object of `entry` back in ranged blocks and hashes it
/// on the CPU pool; returns its SHA-256 (hex) and size. Checking them
/// against the entry, and what a difference means, is the caller's.
pub(crate) async fn read_back(
    store: &Datastore,
    prefix: &str,
    entry: &ObjectEntry,
    cancel: &tokio_util::sync::CancellationToken,
    clock: &Arc<StageClock>,
) -> Result<(String, u64), EngineError> {
    use futures::StreamExt;
    let path = object_path(store, prefix, &entry.path);
    let mut stream = blocks(store, path, &entry.path, entry.size, 0..entry.size, 2);
    let mut hasher = PoolHasher::new(clock.clone());
    while let Some(bytes) = stream.next().await {
        if cancel.is_cancelled() {
            return Err(EngineError::cancelled());
        }
        hasher.update(bytes?).await?;
    }
    let size = hasher.size();
    Ok((hasher.finish()?, size))
}
