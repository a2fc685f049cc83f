//! Sealing and opening whole small objects (the manifest, globals) and
//! streams read block by block (the schema archive) on the CPU pool, with
//! the errors a restore reports: an object that fails authentication names
//! itself ([`ErrorCode::ObjectAuthenticationFailed`]); a sealed object read
//! without a key asks for it ([`ErrorCode::EncryptionKeyUnavailable`]).

use std::sync::Arc;

use bytes::Bytes;

use crate::cpu::{measured, pool};
use crate::error::{EngineError, ErrorCode};
use crate::seal::{Opener, PointKey, SealError, is_sealed, open_whole, seal_whole};
use crate::stages::{CpuStage, StageClock};

/// The error of `relative` failing to open.
pub(crate) fn open_error(relative: &str, error: &SealError) -> EngineError {
    EngineError::new(
        ErrorCode::ObjectAuthenticationFailed,
        format!("object {relative} failed authentication: {error}"),
    )
}

/// The error of a sealed `relative` read without the point's key.
fn key_missing(relative: &str) -> EngineError {
    EngineError::new(
        ErrorCode::EncryptionKeyUnavailable,
        format!(
            "object {relative} is encrypted and the task carries no data key for its recovery point"
        ),
    )
}

/// `data` sealed under `key` (on the pool), or unchanged without a key.
pub(crate) async fn seal_small(
    key: Option<&PointKey>,
    relative: &str,
    data: Vec<u8>,
    clock: &Arc<StageClock>,
) -> Result<Vec<u8>, EngineError> {
    let Some(key) = key.cloned() else {
        return Ok(data);
    };
    let (name, clock) = (relative.to_string(), clock.clone());
    pool()
        .run(move || {
            measured(&clock, CpuStage::Hash, data.len() as u64, || {
                seal_whole(&key, &name, &data)
            })
        })
        .await?
        .map_err(|e| EngineError::internal(format!("cannot seal {relative}: {e}")))
}

/// The plaintext of a small object read whole: opened under `key` (on the
/// pool); without a key it must not be sealed.
pub(crate) async fn open_small(
    key: Option<&PointKey>,
    relative: &str,
    stored: Bytes,
    clock: &Arc<StageClock>,
) -> Result<Bytes, EngineError> {
    let Some(key) = key.cloned() else {
        if is_sealed(&stored) {
            return Err(key_missing(relative));
        }
        return Ok(stored);
    };
    let (name, clock) = (relative.to_string(), clock.clone());
    pool()
        .run(move || {
            measured(&clock, CpuStage::Hash, stored.len() as u64, || {
                open_whole(&key, &name, &stored)
            })
        })
        .await?
        .map(Bytes::from)
        .map_err(|e| open_error(relative, &e))
}

/// Opens a stored object block by block on the pool: plaintext out, the
/// final record checked by [`StreamOpener::finish`]. Without a key, blocks
/// pass through (and a sealed first block is refused).
pub(crate) struct StreamOpener {
    relative: String,
    /// `None` without a key, or while a job holds it.
    opener: Option<Opener>,
    sealed: bool,
    first: bool,
    clock: Arc<StageClock>,
}

impl StreamOpener {
    pub(crate) fn new(key: Option<&PointKey>, relative: &str, clock: &Arc<StageClock>) -> Self {
        StreamOpener {
            relative: relative.to_string(),
            opener: key.map(|k| Opener::new(k, relative, 0)),
            sealed: key.is_some(),
            first: true,
            clock: clock.clone(),
        }
    }

    /// The plaintext of the next stored block.
    pub(crate) async fn push(&mut self, block: Bytes) -> Result<Bytes, EngineError> {
        let first = std::mem::replace(&mut self.first, false);
        if !self.sealed {
            if first && is_sealed(&block) {
                return Err(key_missing(&self.relative));
            }
            return Ok(block);
        }
        let mut opener = self
            .opener
            .take()
            .ok_or_else(|| EngineError::internal("stream opened after a failed block"))?;
        let clock = self.clock.clone();
        let (opener, plain) = pool()
            .run(move || {
                measured(&clock, CpuStage::Hash, block.len() as u64, || {
                    let mut plain = Vec::with_capacity(block.len());
                    opener.push(&block, &mut plain).map(|()| (opener, plain))
                })
            })
            .await?
            .map_err(|e| open_error(&self.relative, &e))?;
        self.opener = Some(opener);
        Ok(Bytes::from(plain))
    }

    /// At the end of the object: the plaintext of the final record.
    pub(crate) fn finish(self) -> Result<Bytes, EngineError> {
        match self.opener {
            None if !self.sealed => Ok(Bytes::new()),
            None => Err(EngineError::internal("stream opened after a failed block")),
            Some(opener) => {
                let mut plain = Vec::new();
                opener
                    .finish(&mut plain)
                    .map_err(|e| open_error(&self.relative, &e))?;
                Ok(Bytes::from(plain))
            }
        }
    }
}
