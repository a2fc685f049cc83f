//! Copying one recovery point between datastores with bounded memory: each
//! object streams from the source into a multipart upload (a fixed number
//! of parts in flight), hashed on the way; the copy is then read back and
//! its SHA-256 and size compared with the manifest. The manifest itself
//! (checked against the SHA-256 recorded at backup time) is written last, so
//! the destination holds a complete point or none. A destination that
//! already holds the complete, verified point (a retried attempt whose
//! source was partly deleted) is accepted without copying again. Sealed
//! objects copy as stored; only the manifest is opened (with the point's
//! key, [`EngineOptions::encryption`]) to list them.

use std::sync::Arc;

use futures::StreamExt;
use pgvault_datastore::Datastore;
use tokio_util::sync::CancellationToken;

use super::Moved;
use crate::manifest::{MANIFEST_FILE, ObjectEntry};
use crate::objects::{
    ObjectWriter, blocks, flush, get_small, object_path, open_small, put_small, read_back,
};
use crate::seal::PointKey;
use crate::stages::StageClock;
use crate::{EngineError, EngineOptions, ErrorCode, Manifest, Progress, ProgressSink};

/// Every object a manifest references once (a bundle shared by many
/// tables too), schema archive first.
fn objects_of(manifest: &Manifest) -> Vec<ObjectEntry> {
    manifest.objects().into_iter().cloned().collect()
}

/// Reads the manifest at `prefix` if its SHA-256 is `expected`; returns
/// it as stored (sealed when the point is encrypted: the copy keeps it so)
/// and parsed (opened with the point's key).
async fn manifest_at(
    store: &Datastore,
    prefix: &str,
    expected: &str,
    key: Option<&PointKey>,
    clock: &Arc<StageClock>,
) -> Result<Option<(bytes::Bytes, Manifest)>, EngineError> {
    let (bytes, sha) = match get_small(store, prefix, MANIFEST_FILE, clock).await {
        Ok(found) => found,
        Err(e) if e.code == ErrorCode::ManifestInvalid => return Ok(None),
        Err(e) => return Err(e),
    };
    if !expected.is_empty() && sha != expected {
        return Ok(None);
    }
    let plain = open_small(key, MANIFEST_FILE, bytes.clone(), clock).await?;
    let manifest = Manifest::from_json(&plain, MANIFEST_FILE)?;
    Ok(Some((bytes, manifest)))
}

/// Copies the point at `source_prefix` to `destination_prefix`, verified.
#[allow(clippy::too_many_arguments)]
pub async fn copy_point(
    source: &Datastore,
    source_prefix: &str,
    destination: &Datastore,
    destination_prefix: &str,
    manifest_sha256: &str,
    options: &EngineOptions,
    progress: &dyn ProgressSink,
    cancel: &CancellationToken,
) -> Result<Moved, EngineError> {
    // Hashing runs on the CPU pool; the split itself is not reported.
    let clock = Arc::new(StageClock::default());
    let key = options.encryption.as_ref();
    if let Some((_, manifest)) = manifest_at(
        destination,
        destination_prefix,
        manifest_sha256,
        key,
        &clock,
    )
    .await?
    {
        let objects = objects_of(&manifest);
        let mut complete = true;
        for entry in &objects {
            if verify(destination, destination_prefix, entry, cancel, &clock)
                .await
                .is_err()
            {
                complete = false;
                break;
            }
        }
        if complete {
            tracing::info!(prefix = %destination_prefix, "destination already holds the verified point");
            let bytes = objects.iter().map(|o| o.size).sum();
            return Ok(Moved {
                objects: objects.len() as u64 + 1,
                bytes,
            });
        }
    }
    let Some((manifest_bytes, manifest)) =
        manifest_at(source, source_prefix, manifest_sha256, key, &clock).await?
    else {
        return Err(EngineError::new(
            ErrorCode::ManifestInvalid,
            format!(
                "the manifest under {source_prefix} is missing or does not match the checksum recorded at backup time"
            ),
        ));
    };
    let objects = objects_of(&manifest);
    let total = u32::try_from(objects.len() + 1).unwrap_or(u32::MAX);
    let mut moved = Moved::default();
    for entry in &objects {
        if cancel.is_cancelled() {
            return Err(EngineError::cancelled());
        }
        copy_object(
            source,
            source_prefix,
            destination,
            destination_prefix,
            entry,
            options,
            &clock,
        )
        .await?;
        verify(destination, destination_prefix, entry, cancel, &clock).await?;
        moved.objects += 1;
        moved.bytes += entry.size;
        progress.report(&Progress {
            bytes_done: moved.bytes,
            rows_done: 0,
            chunks_done: u32::try_from(moved.objects).unwrap_or(u32::MAX),
            chunks_total: total,
            phase: "copying".to_string(),
        });
    }
    // The copies durable before the manifest names them, and all of it
    // durable before the caller deletes the source.
    flush(destination).await?;
    let written = put_small(
        destination,
        destination_prefix,
        MANIFEST_FILE,
        manifest_bytes.to_vec(),
        &clock,
    )
    .await?;
    flush(destination).await?;
    let (_, read_back) = get_small(destination, destination_prefix, MANIFEST_FILE, &clock).await?;
    if read_back != written.sha256 {
        return Err(EngineError::new(
            ErrorCode::ChecksumMismatch,
            format!("the copied manifest under {destination_prefix} does not read back as written"),
        ));
    }
    moved.objects += 1;
    moved.bytes += written.size;
    progress.report(&Progress {
        bytes_done: moved.bytes,
        rows_done: 0,
        chunks_done: total,
        chunks_total: total,
        phase: "copied".to_string(),
    });
    tracing::info!(from = %source_prefix, to = %destination_prefix, objects = moved.objects, bytes = moved.bytes, "recovery point copied and verified");
    Ok(moved)
}

/// Streams one object from source to destination; the bytes read must match
/// the manifest entry (else the source is corrupt and nothing is committed).
async fn copy_object(
    source: &Datastore,
    source_prefix: &str,
    destination: &Datastore,
    destination_prefix: &str,
    entry: &ObjectEntry,
    options: &EngineOptions,
    clock: &Arc<StageClock>,
) -> Result<(), EngineError> {
    let from = object_path(source, source_prefix, &entry.path);
    let mut stream = blocks(source, from, &entry.path, entry.size, 0..entry.size, 2);
    let mut writer = ObjectWriter::create(
        destination,
        destination_prefix,
        &entry.path,
        options.part_size,
        options.parts_in_flight,
        clock.clone(),
    );
    while let Some(bytes) = stream.next().await {
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(e) => {
                writer.abort().await;
                return Err(e);
            }
        };
        if let Err(e) = writer.put(bytes).await {
            writer.abort().await;
            return Err(e);
        }
    }
    let written = writer.finish().await?;
    if written.sha256 != entry.sha256 || written.size != entry.size {
        return Err(EngineError::new(
            ErrorCode::ChecksumMismatch,
            format!(
                "source object {} under {source_prefix} is corrupted: expected sha256 {} ({} bytes), read {} ({} bytes)",
                entry.path, entry.sha256, entry.size, written.sha256, written.size
            ),
        ));
    }
    Ok(())
}

/// Reads an object back and checks its SHA-256 and size against the entry.
async fn verify(
    store: &Datastore,
    prefix: &str,
    entry: &ObjectEntry,
    cancel: &CancellationToken,
    clock: &Arc<StageClock>,
) -> Result<(), EngineError> {
    let (sha, size) = read_back(store, prefix, entry, cancel, clock).await?;
    if sha != entry.sha256 || size != entry.size {
        return Err(EngineError::new(
            ErrorCode::ChecksumMismatch,
            format!(
                "copy of {} under {prefix} does not match the manifest: expected sha256 {} ({} bytes), read {sha} ({size} bytes)",
                entry.path, entry.sha256, entry.size
            ),
        ));
    }
    Ok(())
}
