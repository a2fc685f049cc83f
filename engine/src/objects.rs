//! Object I/O with bounded memory and checksums: [`ObjectWriter`] streams
//! bytes into a multipart upload with a fixed number of parts in flight while
//! hashing them; [`ChunkWriter`] puts zstd in front of it; [`ChunkReader`]
//! streams an object back through zstd, hashing what it read so the caller
//! can refuse to commit unless the SHA-256 matches the manifest.

use std::io::Write;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use pgvault_datastore::Datastore;
use sha2::{Digest, Sha256};
use zstd::stream::raw::{Decoder, Operation};

use super::cpu::measured;
use super::error::{EngineError, ErrorCode, store_error};
use super::manifest::ObjectEntry;
use super::stages::{CpuStage, Lane, LaneStage, StageClock};

/// Compressed output is handed to the upload once it reaches this size.
const FLUSH_BYTES: usize = 1024 * 1024;
/// Decompressed bytes produced per step of a [`ChunkReader`].
const DECODE_BUFFER: usize = 128 * 1024;

/// The store path of `relative` inside the recovery point at `prefix`.
pub(crate) fn object_path(store: &Datastore, prefix: &str, relative: &str) -> Path {
    store.path(&format!("{prefix}/{relative}"))
}

/// A multipart upload that hashes and counts what it writes.
pub(crate) struct ObjectWriter {
    relative: String,
    upload: WriteMultipart,
    hasher: Sha256,
    size: u64,
    parts_in_flight: usize,
}

impl ObjectWriter {
    pub(crate) async fn create(
        store: &Datastore,
        prefix: &str,
        relative: &str,
        part_size: usize,
        parts_in_flight: usize,
    ) -> Result<Self, EngineError> {
        let path = object_path(store, prefix, relative);
        Self::create_at(store, &path, relative, part_size, parts_in_flight).await
    }

    /// Like [`ObjectWriter::create`] for any store path; `name` is what
    /// messages and the returned entry call it.
    pub(crate) async fn create_at(
        store: &Datastore,
        path: &Path,
        name: &str,
        part_size: usize,
        parts_in_flight: usize,
    ) -> Result<Self, EngineError> {
        let upload = store
            .object_store()
            .put_multipart(path)
            .await
            .map_err(|e| store_error(&e, "start upload of", name, true))?;
        Ok(ObjectWriter {
            relative: name.to_string(),
            upload: WriteMultipart::new_with_chunk_size(upload, part_size.max(5 * 1024 * 1024)),
            hasher: Sha256::new(),
            size: 0,
            parts_in_flight: parts_in_flight.max(1),
        })
    }

    /// Buffers `data`, waiting first until fewer than `parts_in_flight` parts upload.
    pub(crate) async fn write(&mut self, data: &[u8]) -> Result<(), EngineError> {
        self.upload
            .wait_for_capacity(self.parts_in_flight)
            .await
            .map_err(|e| store_error(&e, "upload", &self.relative, true))?;
        self.hasher.update(data);
        self.size += data.len() as u64;
        self.upload.write(data);
        Ok(())
    }

    /// Completes the upload; returns the object's entry (path, size, SHA-256).
    pub(crate) async fn finish(self) -> Result<ObjectEntry, EngineError> {
        self.upload
            .finish()
            .await
            .map_err(|e| store_error(&e, "complete upload of", &self.relative, true))?;
        Ok(ObjectEntry {
            path: self.relative,
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }

    /// Abandons the upload (best effort: it is never referenced anyway).
    pub(crate) async fn abort(self) {
        if let Err(error) = self.upload.abort().await {
            tracing::debug!(%error, object = %self.relative, "could not abort multipart upload");
        }
    }
}

/// COPY bytes → zstd → [`ObjectWriter`], counting raw bytes and text rows.
pub(crate) struct ChunkWriter {
    encoder: zstd::stream::write::Encoder<'static, Vec<u8>>,
    object: ObjectWriter,
    raw_bytes: u64,
    newlines: u64,
    clock: Arc<StageClock>,
}

impl ChunkWriter {
    pub(crate) fn new(
        object: ObjectWriter,
        level: i32,
        clock: Arc<StageClock>,
    ) -> Result<Self, EngineError> {
        let encoder = zstd::stream::write::Encoder::new(Vec::with_capacity(FLUSH_BYTES), level)
            .map_err(|e| EngineError::internal(format!("cannot start zstd encoder: {e}")))?;
        Ok(ChunkWriter {
            encoder,
            object,
            raw_bytes: 0,
            newlines: 0,
            clock,
        })
    }

    pub(crate) async fn write(&mut self, data: &[u8]) -> Result<(), EngineError> {
        self.raw_bytes += data.len() as u64;
        let (encoder, newlines) = (&mut self.encoder, &mut self.newlines);
        measured(
            &self.clock,
            CpuStage::CompressHash,
            data.len() as u64,
            || {
                *newlines += data.iter().filter(|b| **b == b'\n').count() as u64;
                encoder.write_all(data)
            },
        )
        .map_err(|e| EngineError::internal(format!("zstd compression failed: {e}")))?;
        if self.encoder.get_ref().len() >= FLUSH_BYTES {
            let out = std::mem::take(self.encoder.get_mut());
            self.object.write(&out).await?;
        }
        Ok(())
    }

    /// Raw bytes written so far.
    pub(crate) fn raw_bytes(&self) -> u64 {
        self.raw_bytes
    }

    /// Finishes the frame and the upload: (object, raw bytes, newline count).
    pub(crate) async fn finish(mut self) -> Result<(ObjectEntry, u64, u64), EngineError> {
        let out = match self.encoder.finish() {
            Ok(out) => out,
            Err(e) => {
                self.object.abort().await;
                return Err(EngineError::internal(format!(
                    "zstd compression failed: {e}"
                )));
            }
        };
        self.object.write(&out).await?;
        let entry = self.object.finish().await?;
        Ok((entry, self.raw_bytes, self.newlines))
    }

    pub(crate) async fn abort(self) {
        self.object.abort().await;
    }
}

/// Streams an object back decompressed, hashing the stored bytes.
pub(crate) struct ChunkReader {
    expected: ObjectEntry,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    hasher: Sha256,
    stored: u64,
    decoder: Decoder<'static>,
    pending: Bytes,
    output: Vec<u8>,
    /// The last step filled `output`: more may come without new input.
    output_full: bool,
    clock: Arc<StageClock>,
}

impl ChunkReader {
    pub(crate) async fn open(
        store: &Datastore,
        prefix: &str,
        expected: &ObjectEntry,
        clock: Arc<StageClock>,
    ) -> Result<Self, EngineError> {
        let path = object_path(store, prefix, &expected.path);
        let result = store
            .object_store()
            .get(&path)
            .await
            .map_err(|e| store_error(&e, "read", &expected.path, false))?;
        let decoder = Decoder::new()
            .map_err(|e| EngineError::internal(format!("cannot start zstd decoder: {e}")))?;
        Ok(ChunkReader {
            expected: expected.clone(),
            stream: result.into_stream(),
            hasher: Sha256::new(),
            stored: 0,
            decoder,
            pending: Bytes::new(),
            output: vec![0; DECODE_BUFFER],
            output_full: false,
            clock,
        })
    }

    fn corrupt(&self, why: impl std::fmt::Display) -> EngineError {
        EngineError::new(
            ErrorCode::ChecksumMismatch,
            format!("object {} is corrupted: {why}", self.expected.path),
        )
    }

    /// The next decompressed bytes, or `None` at the end of the object;
    /// `lane` waits in [`LaneStage::DownloadWait`] and [`LaneStage::Decompress`].
    pub(crate) async fn next(&mut self, lane: &mut Lane) -> Result<Option<Bytes>, EngineError> {
        let previous = lane.enter(LaneStage::Decompress);
        let next = self.step(lane).await;
        lane.enter(previous);
        next
    }

    async fn step(&mut self, lane: &mut Lane) -> Result<Option<Bytes>, EngineError> {
        loop {
            if !self.pending.is_empty() || self.output_full {
                let (decoder, pending, output) =
                    (&mut self.decoder, &self.pending, &mut self.output);
                let status = measured(&self.clock, CpuStage::DecompressVerify, 0, || {
                    decoder.run_on_buffers(pending, output)
                })
                .map_err(|e| self.corrupt(format!("cannot decompress: {e}")))?;
                self.pending.advance(status.bytes_read);
                self.output_full = status.bytes_written == self.output.len();
                if status.bytes_written > 0 {
                    return Ok(Some(Bytes::copy_from_slice(
                        &self.output[..status.bytes_written],
                    )));
                }
                if !self.pending.is_empty() && status.bytes_read == 0 {
                    return Err(self.corrupt("decompression made no progress"));
                }
                continue;
            }
            let next = lane.time(LaneStage::DownloadWait, self.stream.next()).await;
            match next {
                Some(Ok(bytes)) => {
                    let hasher = &mut self.hasher;
                    measured(
                        &self.clock,
                        CpuStage::DecompressVerify,
                        bytes.len() as u64,
                        || hasher.update(&bytes),
                    );
                    self.stored += bytes.len() as u64;
                    self.pending = bytes;
                }
                Some(Err(e)) => return Err(store_error(&e, "read", &self.expected.path, false)),
                None => return Ok(None),
            }
        }
    }

    /// After `next` returned `None`: the size and SHA-256 must match the manifest.
    pub(crate) fn verify(self) -> Result<(), EngineError> {
        let actual = hex::encode(self.hasher.clone().finalize());
        if actual != self.expected.sha256 || self.stored != self.expected.size {
            return Err(EngineError::new(
                ErrorCode::ChecksumMismatch,
                format!(
                    "checksum mismatch for object {}: expected sha256 {} ({} bytes), read {} ({} bytes)",
                    self.expected.path,
                    self.expected.sha256,
                    self.expected.size,
                    actual,
                    self.stored
                ),
            ));
        }
        Ok(())
    }
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
) -> Result<ObjectEntry, EngineError> {
    let path = object_path(store, prefix, relative);
    let entry = ObjectEntry {
        path: relative.to_string(),
        size: data.len() as u64,
        sha256: hex::encode(Sha256::digest(&data)),
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
    let sha = hex::encode(Sha256::digest(&bytes));
    Ok((bytes, sha))
}
