//! [`ObjectWriter`]: an uncompressed object (the schema archive, a restore
//! script, a copied object) streamed into an [`Upload`] while its SHA-256
//! is computed on the CPU pool, a block at a time. With a data key
//! ([`ObjectWriter::sealed`]) the object is one sealed stream
//! ([`crate::seal`]), sealed on the pool before it is hashed.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use pgvault_datastore::Datastore;

use super::hasher::PoolHasher;
use super::object_path;
use super::upload::Upload;
use crate::cpu::{measured, pool};
use crate::error::EngineError;
use crate::manifest::ObjectEntry;
use crate::seal::{PointKey, Sealer};
use crate::stages::{CpuStage, StageClock};

/// Bytes gathered before they are hashed and handed to the upload.
const BLOCK: usize = 1024 * 1024;

pub(crate) struct ObjectWriter {
    relative: String,
    upload: Upload,
    hasher: PoolHasher,
    /// Small writes gathered into one block.
    pending: Vec<u8>,
    /// The object's stream when sealed; `None` while a job holds it.
    sealer: Option<Sealer>,
    clock: Arc<StageClock>,
}

impl ObjectWriter {
    pub(crate) fn create(
        store: &Datastore,
        prefix: &str,
        relative: &str,
        part_size: usize,
        parts: usize,
        clock: Arc<StageClock>,
    ) -> Self {
        let path = object_path(store, prefix, relative);
        Self::create_at(store, &path, relative, part_size, parts, clock)
    }

    /// Like [`ObjectWriter::create`] for any store path; `name` is what
    /// messages and the returned entry call it.
    pub(crate) fn create_at(
        store: &Datastore,
        path: &Path,
        name: &str,
        part_size: usize,
        parts: usize,
        clock: Arc<StageClock>,
    ) -> Self {
        ObjectWriter {
            relative: name.to_string(),
            upload: Upload::new(store, path.clone(), name, part_size, parts),
            hasher: PoolHasher::new(clock.clone()),
            pending: Vec::new(),
            sealer: None,
            clock,
        }
    }

    /// Seals the object with `key` (the point's data key), if any.
    pub(crate) fn sealed(mut self, key: Option<&PointKey>) -> Self {
        self.sealer = key.map(|key| Sealer::new(key, &self.relative, 0));
        self
    }

    /// Seals `block` on the pool (the final record too at `end`).
    async fn seal(&mut self, block: Bytes, end: bool) -> Result<Bytes, EngineError> {
        let Some(mut sealer) = self.sealer.take() else {
            return Ok(block);
        };
        let clock = self.clock.clone();
        let sealed = pool()
            .run(move || {
                measured(&clock, CpuStage::Hash, block.len() as u64, || {
                    let mut out = Vec::with_capacity(block.len() + block.len() / 4096 + 64);
                    sealer.push(&block, &mut out)?;
                    if end {
                        sealer.finish(&mut out)?;
                        return Ok((None, out));
                    }
                    Ok((Some(sealer), out))
                })
            })
            .await?;
        let (sealer, out) = sealed.map_err(|e: crate::seal::SealError| {
            EngineError::internal(format!("cannot seal {}: {e}", self.relative))
        })?;
        self.sealer = sealer;
        Ok(Bytes::from(out))
    }

    /// Appends `data` (copied; small writes are gathered).
    pub(crate) async fn write(&mut self, data: &[u8]) -> Result<(), EngineError> {
        self.pending.extend_from_slice(data);
        if self.pending.len() >= BLOCK {
            let block = Bytes::from(std::mem::take(&mut self.pending));
            self.hash_and_upload(block).await?;
        }
        Ok(())
    }

    /// Appends `bytes` without copying.
    pub(crate) async fn put(&mut self, bytes: Bytes) -> Result<(), EngineError> {
        if !self.pending.is_empty() {
            let block = Bytes::from(std::mem::take(&mut self.pending));
            self.hash_and_upload(block).await?;
        }
        self.hash_and_upload(bytes).await
    }

    async fn hash_and_upload(&mut self, block: Bytes) -> Result<(), EngineError> {
        let block = self.seal(block, false).await?;
        if block.is_empty() {
            return Ok(());
        }
        self.hasher.update(block.clone()).await?;
        self.upload.put(block).await
    }

    /// Completes the upload; returns the object's entry (path, size, SHA-256).
    pub(crate) async fn finish(mut self) -> Result<ObjectEntry, EngineError> {
        if !self.pending.is_empty() {
            let block = Bytes::from(std::mem::take(&mut self.pending));
            self.hash_and_upload(block).await?;
        }
        if self.sealer.is_some() {
            let last = self.seal(Bytes::new(), true).await?;
            self.hasher.update(last.clone()).await?;
            self.upload.put(last).await?;
        }
        let size = self.upload.finish().await?;
        Ok(ObjectEntry {
            path: self.relative,
            size,
            sha256: self.hasher.finish()?,
        })
    }

    /// Abandons the upload (best effort: it is never referenced anyway).
    pub(crate) async fn abort(self) {
        self.upload.abort().await;
    }
}
