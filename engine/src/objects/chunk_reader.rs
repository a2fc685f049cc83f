//! [`ChunkReader`]: a stored zstd object (or one frame of it, a
//! [`Segment`](super::Segment)) read back as COPY text. Downloads are
//! ranged reads ([`super::download`]) with `parts` of them in flight (async I/O);
//! hashing and decompression run on the CPU pool, one job per ~1 MiB of
//! output, and the next job starts before the lane sends the last one's
//! output to the server — so the pool decompresses while the server
//! parses. The caller may commit only after [`ChunkReader::verify`].
//!
//! A sealed source ([`ChunkReader::sealed`]) is opened on the same pool job
//! before decompression: the stored bytes are hashed, then authenticated
//! and decrypted ([`crate::seal::Opener`]), and the end of the range must
//! end the stream.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures::stream::{BoxStream, StreamExt};
use pgvault_datastore::Datastore;
use sha2::{Digest, Sha256};
use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};

use super::download::blocks;
use super::object_path;
use crate::cpu::{count_newlines, measured, pool};
use crate::error::{EngineError, ErrorCode};
use crate::manifest::{ChunkEntry, ObjectEntry};
use crate::seal::{Opener, PointKey};
use crate::stages::{CpuStage, Lane, LaneStage, StageClock};

/// Decompressed bytes one job produces at most.
const OUTPUT: usize = 1024 * 1024;

/// What is read: an object's path, the byte range of it and how to verify.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub path: String,
    /// Size of the whole stored object (checked on the first read).
    pub object_size: u64,
    pub range: Range<u64>,
    pub sha256: String,
}

impl Source {
    /// The frame of a chunk: its whole object, or its segment of a bundle.
    pub(crate) fn of(chunk: &ChunkEntry) -> Source {
        Source {
            path: chunk.object.path.clone(),
            object_size: chunk.object.size,
            range: chunk.stored_range(),
            sha256: chunk.stored_sha256().to_string(),
        }
    }

    /// A whole object as the manifest lists it.
    pub(crate) fn whole(object: &ObjectEntry) -> Source {
        Source {
            path: object.path.clone(),
            object_size: object.size,
            range: 0..object.size,
            sha256: object.sha256.clone(),
        }
    }
}

struct State {
    decoder: Decoder<'static>,
    hasher: Sha256,
    /// Stored bytes not decompressed yet.
    input: Bytes,
    /// The last job filled its output: more may come without new input.
    output_full: bool,
    /// Text rows seen (newlines), when asked to count.
    rows: Option<u64>,
    /// The stream being opened (sealed sources, until their end).
    opener: Option<Opener>,
    /// The source is sealed (its stream must be opened to its end).
    sealed: bool,
    /// A block was read (the first is checked for a sealed header).
    started: bool,
}

/// Why a job failed: the code and what to say after the object's name.
type StepError = (ErrorCode, String);

impl State {
    fn new(decoder: Decoder<'static>) -> State {
        State {
            decoder,
            hasher: Sha256::new(),
            input: Bytes::new(),
            output_full: false,
            rows: None,
            opener: None,
            sealed: false,
            started: false,
        }
    }

    /// Hashes a new block (if any) and opens it when sealed (at `end`, the
    /// stream's final record), then decompresses up to [`OUTPUT`] bytes.
    fn step(&mut self, block: Option<Bytes>, end: bool) -> Result<Vec<u8>, StepError> {
        let failed =
            |e: crate::seal::SealError| (ErrorCode::ObjectAuthenticationFailed, e.to_string());
        if let Some(block) = block {
            let first = !std::mem::replace(&mut self.started, true);
            if first && !self.sealed && crate::seal::is_sealed(&block) {
                return Err((
                    ErrorCode::EncryptionKeyUnavailable,
                    "it is encrypted and the task carries no data key for its recovery point"
                        .to_string(),
                ));
            }
            self.hasher.update(&block);
            self.input = match &mut self.opener {
                None => block,
                Some(opener) => {
                    let mut plain = Vec::with_capacity(block.len());
                    opener.push(&block, &mut plain).map_err(failed)?;
                    Bytes::from(plain)
                }
            };
        }
        if end && let Some(opener) = self.opener.take() {
            let mut plain = Vec::new();
            opener.finish(&mut plain).map_err(failed)?;
            self.input = Bytes::from(plain);
        }
        let corrupt = |why: String| (ErrorCode::ChecksumMismatch, why);
        let mut output: Vec<u8> = Vec::with_capacity(OUTPUT);
        loop {
            let mut input = InBuffer::around(&self.input);
            let start = output.len();
            let mut out = OutBuffer::around_pos(&mut output, start);
            let before = out.pos();
            self.decoder
                .run(&mut input, &mut out)
                .map_err(|e| corrupt(format!("cannot decompress: {e}")))?;
            let (read, written) = (input.pos(), out.pos() - before);
            self.input.advance(read);
            self.output_full = output.len() == output.capacity();
            if self.output_full || self.input.is_empty() {
                break;
            }
            if read == 0 && written == 0 {
                return Err(corrupt("decompression made no progress".to_string()));
            }
        }
        if let Some(rows) = &mut self.rows {
            *rows += count_newlines(&output);
        }
        Ok(output)
    }
}

type Done = (State, Vec<u8>);
type Pending =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Done, EngineError>> + Send>>;

pub(crate) struct ChunkReader {
    source: Source,
    blocks: BoxStream<'static, Result<Bytes, EngineError>>,
    blocks_done: bool,
    stored: u64,
    /// `None` while a job holds it.
    state: Option<State>,
    pending: Option<Pending>,
    clock: Arc<StageClock>,
}

impl ChunkReader {
    /// Starts reading `source`; nothing is requested until the first `next`.
    pub(crate) fn open(
        store: &Datastore,
        prefix: &str,
        source: Source,
        parts: usize,
        clock: Arc<StageClock>,
    ) -> Result<Self, EngineError> {
        let decoder = Decoder::new()
            .map_err(|e| EngineError::internal(format!("cannot start zstd decoder: {e}")))?;
        let path = object_path(store, prefix, &source.path);
        let blocks = blocks(
            store,
            path,
            &source.path,
            source.object_size,
            source.range.clone(),
            parts,
        );
        Ok(ChunkReader {
            source,
            blocks,
            blocks_done: false,
            stored: 0,
            state: Some(State::new(decoder)),
            pending: None,
            clock,
        })
    }

    /// Reads `source` from `bytes`, its stored bytes read already (a
    /// segment of a bundle read with its neighbours).
    pub(crate) fn from_bytes(
        source: Source,
        bytes: Bytes,
        clock: Arc<StageClock>,
    ) -> Result<Self, EngineError> {
        let decoder = Decoder::new()
            .map_err(|e| EngineError::internal(format!("cannot start zstd decoder: {e}")))?;
        Ok(ChunkReader {
            source,
            blocks: futures::stream::iter([Ok(bytes)]).boxed(),
            blocks_done: false,
            stored: 0,
            state: Some(State::new(decoder)),
            pending: None,
            clock,
        })
    }

    /// Opens the source as a sealed stream under `key` (the point's data
    /// key), if any.
    pub(crate) fn sealed(mut self, key: Option<&PointKey>) -> Self {
        if let (Some(state), Some(key)) = (&mut self.state, key) {
            state.opener = Some(Opener::new(key, &self.source.path, self.source.range.start));
            state.sealed = true;
        }
        self
    }

    /// Counts text rows (newlines) of the output on the pool; see [`ChunkReader::rows`].
    pub(crate) fn count_rows(mut self) -> Self {
        if let Some(state) = &mut self.state {
            state.rows = Some(0);
        }
        self
    }

    fn corrupt(&self, why: impl std::fmt::Display) -> EngineError {
        EngineError::new(
            ErrorCode::ChecksumMismatch,
            format!("object {} is corrupted: {why}", self.source.path),
        )
    }

    /// Starts the next job if there is anything left to decompress.
    async fn launch(&mut self, lane: &mut Lane) -> Result<(), EngineError> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        let opening = state.opener.is_some();
        let (block, end) = if state.input.is_empty() && !state.output_full {
            if self.blocks_done {
                return Ok(());
            }
            match lane.time(LaneStage::DownloadWait, self.blocks.next()).await {
                Some(block) => {
                    let block = block?;
                    self.stored += block.len() as u64;
                    (Some(block), false)
                }
                None => {
                    self.blocks_done = true;
                    if !opening {
                        return Ok(());
                    }
                    // The range ended: open the stream's final record.
                    (None, true)
                }
            }
        } else {
            (None, false)
        };
        let Some(mut state) = self.state.take() else {
            return Ok(());
        };
        let clock = self.clock.clone();
        let bytes = block.as_ref().map(|b| b.len() as u64).unwrap_or(0);
        let job = pool().run(move || {
            let out = measured(&clock, CpuStage::DecompressVerify, bytes, || {
                state.step(block, end)
            });
            out.map(|out| (state, out))
        });
        let path = self.source.path.clone();
        self.pending = Some(Box::pin(async move {
            job.await?.map_err(|(code, why)| {
                let what = match code {
                    ErrorCode::ObjectAuthenticationFailed => "failed authentication",
                    ErrorCode::EncryptionKeyUnavailable => "cannot be read",
                    _ => "is corrupted",
                };
                EngineError::new(code, format!("object {path} {what}: {why}"))
            })
        }));
        Ok(())
    }

    /// The next decompressed bytes, or `None` at the end; the lane waits in
    /// [`LaneStage::DownloadWait`] and [`LaneStage::Decompress`].
    pub(crate) async fn next(&mut self, lane: &mut Lane) -> Result<Option<Bytes>, EngineError> {
        loop {
            if self.pending.is_none() {
                self.launch(lane).await?;
                if self.pending.is_none() {
                    return Ok(None);
                }
            }
            let job = self
                .pending
                .take()
                .ok_or_else(|| EngineError::internal("no decompression job to wait for"))?;
            let (state, out) = lane.time(LaneStage::Decompress, job).await?;
            self.state = Some(state);
            // The pool works on the next piece while the caller sends this one.
            self.launch(lane).await?;
            if !out.is_empty() {
                return Ok(Some(Bytes::from(out)));
            }
        }
    }

    /// Rows counted (with [`ChunkReader::count_rows`]) once `next` returned `None`.
    pub(crate) fn rows(&self) -> Option<u64> {
        self.state.as_ref().and_then(|s| s.rows)
    }

    /// After `next` returned `None`: the size and SHA-256 must match the manifest.
    pub(crate) fn verify(self) -> Result<(), EngineError> {
        let state = self
            .state
            .as_ref()
            .ok_or_else(|| self.corrupt("it was not read to the end"))?;
        if !state.input.is_empty() {
            return Err(self.corrupt("bytes after the end of its zstd frame"));
        }
        if state.sealed && state.opener.is_some() {
            return Err(self.corrupt("its sealed stream was not read to the end"));
        }
        let actual = hex::encode(state.hasher.clone().finalize());
        let expected_size = self.source.range.end - self.source.range.start;
        if actual != self.source.sha256 || self.stored != expected_size {
            return Err(EngineError::new(
                ErrorCode::ChecksumMismatch,
                format!(
                    "checksum mismatch for object {}: expected sha256 {} ({} bytes), read {} ({} bytes)",
                    self.source.path, self.source.sha256, expected_size, actual, self.stored
                ),
            ));
        }
        Ok(())
    }
}
