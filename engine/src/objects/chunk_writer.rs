//! [`ChunkWriter`]: COPY text → zstd → one object, with the CPU work on the
//! CPU pool and the upload async. The connection (lane) hands over a batch
//! and goes back to receiving rows while the pool compresses it — counting
//! rows and hashing what zstd produced — so at most one batch per lane is
//! in the pool, and memory stays two batches plus the upload's parts.
//!
//! An object holds one or more zstd frames: a chunk of a big table is one
//! frame; a bundle of small tables is one frame per table, each a
//! [`Segment`] (byte range, rows, SHA-256 of its own) a restore can read on
//! its own.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use pgvault_datastore::Datastore;
use sha2::{Digest, Sha256};

use super::object_path;
use super::upload::Upload;
use crate::cpu::{measured, pool};
use crate::error::EngineError;
use crate::manifest::ObjectEntry;
use crate::stages::{CpuStage, Lane, LaneStage, StageClock};

type Encoder = zstd::stream::write::Encoder<'static, Vec<u8>>;

/// One frame of an object: where it is and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Byte range of the frame in the stored object.
    pub offset: u64,
    pub size: u64,
    /// SHA-256 (hex) of the frame's stored bytes.
    pub sha256: String,
    /// Uncompressed bytes and text rows (newlines).
    pub raw_bytes: u64,
    pub rows: u64,
}

/// What moves between the lane and the pool: the frame's compressor and
/// the running hashes and counts.
struct State {
    encoder: Option<Encoder>,
    level: i32,
    object: Sha256,
    frame: Sha256,
    /// Stored bytes of the object before the current frame.
    frame_offset: u64,
    stored: u64,
    raw: u64,
    rows: u64,
}

impl State {
    /// Compresses `batch`; returns what zstd produced (hashed already).
    fn compress(&mut self, batch: &[u8]) -> Result<Vec<u8>, String> {
        let level = self.level;
        let encoder = match &mut self.encoder {
            Some(encoder) => encoder,
            None => self.encoder.insert(
                Encoder::new(Vec::new(), level)
                    .map_err(|e| format!("cannot start zstd encoder: {e}"))?,
            ),
        };
        self.rows += batch.iter().filter(|b| **b == b'\n').count() as u64;
        self.raw += batch.len() as u64;
        encoder
            .write_all(batch)
            .map_err(|e| format!("zstd compression failed: {e}"))?;
        let out = std::mem::take(encoder.get_mut());
        self.hash(&out);
        Ok(out)
    }

    /// Ends the frame; returns its last bytes and its segment.
    fn end_frame(&mut self) -> Result<(Vec<u8>, Segment), String> {
        let out = match self.encoder.take() {
            Some(encoder) => encoder.finish(),
            None => Encoder::new(Vec::new(), self.level).and_then(|e| e.finish()),
        }
        .map_err(|e| format!("zstd compression failed: {e}"))?;
        self.hash(&out);
        let frame = std::mem::take(&mut self.frame);
        let segment = Segment {
            offset: self.frame_offset,
            size: self.stored - self.frame_offset,
            sha256: hex::encode(frame.finalize()),
            raw_bytes: std::mem::take(&mut self.raw),
            rows: std::mem::take(&mut self.rows),
        };
        self.frame_offset = self.stored;
        Ok((out, segment))
    }

    fn hash(&mut self, out: &[u8]) {
        self.object.update(out);
        self.frame.update(out);
        self.stored += out.len() as u64;
    }
}

/// A job's result: the state back, compressed bytes, the batch buffer (for
/// reuse) and, at a frame's end, its segment.
type Done = (State, Vec<u8>, Vec<u8>, Option<Segment>);
type Pending =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Done, EngineError>> + Send>>;

pub(crate) struct ChunkWriter {
    relative: String,
    upload: Upload,
    /// `None` while a job holds it.
    state: Option<State>,
    /// The job in the pool, at most one.
    pending: Option<Pending>,
    clock: Arc<StageClock>,
}

impl ChunkWriter {
    /// Nothing is stored until the first part fills or the writer finishes.
    pub(crate) fn create(
        store: &Datastore,
        prefix: &str,
        relative: &str,
        part_size: usize,
        parts: usize,
        level: i32,
        clock: Arc<StageClock>,
    ) -> Self {
        let path = object_path(store, prefix, relative);
        ChunkWriter {
            relative: relative.to_string(),
            upload: Upload::new(store, path, relative, part_size, parts),
            state: Some(State {
                encoder: None,
                level,
                object: Sha256::new(),
                frame: Sha256::new(),
                frame_offset: 0,
                stored: 0,
                raw: 0,
                rows: 0,
            }),
            pending: None,
            clock,
        }
    }

    /// Hands `batch` to the pool and returns at once with an empty buffer
    /// for the next batch (after the previous batch was compressed and its
    /// output handed to the upload).
    pub(crate) async fn write(
        &mut self,
        batch: Vec<u8>,
        lane: &mut Lane,
    ) -> Result<Vec<u8>, EngineError> {
        let spare = self.collect(lane).await?;
        self.submit(batch, false)?;
        Ok(spare.unwrap_or_default())
    }

    /// Ends the current frame (after `batch`, which may be empty): the next
    /// write starts a new one. Returns the frame's segment.
    pub(crate) async fn end_frame(
        &mut self,
        batch: Vec<u8>,
        lane: &mut Lane,
    ) -> Result<(Segment, Vec<u8>), EngineError> {
        self.collect(lane).await?;
        self.submit(batch, true)?;
        let (spare, segment) = self.wait(lane).await?;
        let segment =
            segment.ok_or_else(|| EngineError::internal("a frame ended without its segment"))?;
        Ok((segment, spare))
    }

    fn submit(&mut self, batch: Vec<u8>, end: bool) -> Result<(), EngineError> {
        let mut state = self
            .state
            .take()
            .ok_or_else(|| EngineError::internal("chunk writer used after a failed write"))?;
        let clock = self.clock.clone();
        let job = pool().run(move || {
            measured(&clock, CpuStage::CompressHash, batch.len() as u64, || {
                let mut out = state.compress(&batch)?;
                let segment = if end {
                    let (tail, segment) = state.end_frame()?;
                    out.extend_from_slice(&tail);
                    Some(segment)
                } else {
                    None
                };
                Ok::<_, String>((out, segment))
            })
            .map(|(out, segment)| {
                let mut batch = batch;
                batch.clear();
                (state, out, batch, segment)
            })
        });
        let relative = self.relative.clone();
        self.pending = Some(Box::pin(async move {
            job.await?
                .map_err(|e| EngineError::internal(format!("{e} (object {relative})")))
        }));
        Ok(())
    }

    /// Waits for the job in the pool (if any) and uploads its output.
    async fn collect(&mut self, lane: &mut Lane) -> Result<Option<Vec<u8>>, EngineError> {
        if self.pending.is_none() {
            return Ok(None);
        }
        self.wait(lane).await.map(|(spare, _)| Some(spare))
    }

    async fn wait(&mut self, lane: &mut Lane) -> Result<(Vec<u8>, Option<Segment>), EngineError> {
        let job = self
            .pending
            .take()
            .ok_or_else(|| EngineError::internal("no compression job to wait for"))?;
        let (state, out, spare, segment) = lane.time(LaneStage::Compress, job).await?;
        self.state = Some(state);
        lane.time(LaneStage::UploadWait, self.upload.put(Bytes::from(out)))
            .await?;
        Ok((spare, segment))
    }

    /// Ends the frame (after `batch`) and the object: the object's entry and
    /// the frame's segment.
    pub(crate) async fn finish(
        mut self,
        batch: Vec<u8>,
        lane: &mut Lane,
    ) -> Result<(ObjectEntry, Segment), EngineError> {
        let (segment, _) = self.end_frame(batch, lane).await?;
        Ok((self.close(lane).await?, segment))
    }

    /// Ends the object after its last [`ChunkWriter::end_frame`].
    pub(crate) async fn close(mut self, lane: &mut Lane) -> Result<ObjectEntry, EngineError> {
        self.collect(lane).await?;
        let state = self
            .state
            .take()
            .ok_or_else(|| EngineError::internal("chunk writer used after a failed write"))?;
        let size = lane
            .time(LaneStage::UploadWait, self.upload.finish())
            .await?;
        Ok(ObjectEntry {
            path: self.relative,
            size,
            sha256: hex::encode(state.object.finalize()),
        })
    }

    /// Abandons the upload (best effort: it is never referenced anyway).
    pub(crate) async fn abort(mut self) {
        // A job still in the pool finishes on its own; its output is dropped.
        self.pending = None;
        self.upload.abort().await;
    }
}
