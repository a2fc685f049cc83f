//! SHA-256 computed on the CPU pool, a block at a time, for objects that
//! are not compressed (the schema archive, manifests, scripts, copies).

use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::cpu::{measured, pool};
use crate::error::EngineError;
use crate::stages::{CpuStage, StageClock};

pub(crate) struct PoolHasher {
    /// `None` only while a job holds it.
    hasher: Option<Sha256>,
    size: u64,
    clock: Arc<StageClock>,
}

impl PoolHasher {
    pub(crate) fn new(clock: Arc<StageClock>) -> PoolHasher {
        PoolHasher {
            hasher: Some(Sha256::new()),
            size: 0,
            clock,
        }
    }

    /// Hashes `data` on the pool.
    pub(crate) async fn update(&mut self, data: Bytes) -> Result<(), EngineError> {
        let mut hasher = self
            .hasher
            .take()
            .ok_or_else(|| EngineError::internal("hash used after a failed update"))?;
        self.size += data.len() as u64;
        let clock = self.clock.clone();
        let hasher = pool()
            .run(move || {
                measured(&clock, CpuStage::Hash, data.len() as u64, || {
                    hasher.update(&data)
                });
                hasher
            })
            .await?;
        self.hasher = Some(hasher);
        Ok(())
    }

    /// Bytes hashed so far.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The SHA-256 (hex) of everything hashed.
    pub(crate) fn finish(self) -> Result<String, EngineError> {
        self.hasher
            .map(|h| hex::encode(h.finalize()))
            .ok_or_else(|| EngineError::internal("hash used after a failed update"))
    }
}

/// SHA-256 (hex) of `data`, computed on the pool.
pub(crate) async fn sha256_hex(
    data: Bytes,
    clock: &Arc<StageClock>,
) -> Result<String, EngineError> {
    let mut hasher = PoolHasher::new(clock.clone());
    hasher.update(data).await?;
    hasher.finish()
}
