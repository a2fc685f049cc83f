//! The data half of a backup: the planned objects ([`super::backup_plan`]:
//! ctid page ranges on PostgreSQL 14+, integer key ranges before)
//! dumped largest first over N connections that all imported the same
//! snapshot. Each COPY streams `COPY … TO STDOUT` → batches → zstd + SHA-256
//! on the CPU pool → upload; a bundle holds one frame per small table.
//! Lanes take their objects from an [`ObjectFeed`]: the backup's own list
//! ([`LocalFeed`]), or, in a fanned-out backup, the fleet's chunk
//! sub-tasks ([`super::fanout`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use pgvault_datastore::Datastore;
use tokio::task::JoinSet;
use tokio_postgres::Client;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tracing::Instrument;

use super::backup_plan::{PlannedChunk, PlannedObject};
use super::connect::{connect, exec};
use super::error::{EngineError, ErrorCode};
use super::ident::quote_literal;
use super::manifest::{ChunkEntry, SegmentEntry};
use super::objects::{ChunkWriter, Segment};
use super::progress::Tracker;
use super::stages::{Lane, LaneStage};
use super::types::{EngineOptions, PgTarget};

/// COPY rows gathered before they go to the compressor (one zstd frame).
const COPY_BATCH_BYTES: usize = 1024 * 1024;
/// Room for the row that crosses [`COPY_BATCH_BYTES`].
const ROW_SLACK: usize = 64 * 1024;

/// What every data worker needs; cloned into each task.
#[derive(Clone)]
pub(crate) struct DumpContext {
    pub source: PgTarget,
    pub snapshot_id: String,
    pub store: Datastore,
    pub prefix: String,
    pub options: EngineOptions,
    pub tracker: Arc<Tracker>,
    /// Qualified table names by table index (the sub-tasks' keys).
    pub table_names: Arc<Vec<String>>,
    /// Table names as users read them (`public.orders`), by table index:
    /// what a fanned-out backup's job details show.
    pub readable_names: Arc<Vec<String>>,
    pub cancel: CancellationToken,
}

/// Where a lane takes its next object, and whom it tells once the object
/// is stored.
#[async_trait]
pub(crate) trait ObjectFeed: Send + Sync {
    /// The next object to dump; `None`: nothing left for this lane.
    async fn next(&self, stop: &CancellationToken) -> Result<Option<PlannedObject>, EngineError>;

    /// The object is stored with these entries.
    async fn stored(
        &self,
        object: &PlannedObject,
        entries: &[(usize, ChunkEntry)],
    ) -> Result<(), EngineError>;
}

/// The backup's own objects, largest first.
pub(crate) struct LocalFeed(Mutex<VecDeque<PlannedObject>>);

impl LocalFeed {
    pub(crate) fn new(objects: Vec<PlannedObject>) -> Self {
        LocalFeed(Mutex::new(VecDeque::from(objects)))
    }
}

#[async_trait]
impl ObjectFeed for LocalFeed {
    async fn next(&self, _stop: &CancellationToken) -> Result<Option<PlannedObject>, EngineError> {
        Ok(self.0.lock().unwrap_or_else(|p| p.into_inner()).pop_front())
    }

    async fn stored(
        &self,
        _object: &PlannedObject,
        _entries: &[(usize, ChunkEntry)],
    ) -> Result<(), EngineError> {
        Ok(())
    }
}

/// Dumps every planned object; returns (table index, chunk entry) pairs.
pub(crate) async fn dump_objects(
    ctx: DumpContext,
    objects: Vec<PlannedObject>,
) -> Result<Vec<(usize, ChunkEntry)>, EngineError> {
    let lanes = ctx.options.connections.max(1).min(objects.len());
    dump_from(ctx, Arc::new(LocalFeed::new(objects)), lanes).await
}

/// Dumps what `feed` hands out over `lanes` connections that each import
/// the snapshot; returns the (table index, chunk entry) pairs they stored.
pub(crate) async fn dump_from(
    ctx: DumpContext,
    feed: Arc<dyn ObjectFeed>,
    lanes: usize,
) -> Result<Vec<(usize, ChunkEntry)>, EngineError> {
    // Stops the other workers when one fails; the caller's token stays untouched.
    let stop = ctx.cancel.child_token();
    let mut set = JoinSet::new();
    for _ in 0..lanes {
        let (ctx, queue, stop) = (ctx.clone(), feed.clone(), stop.clone());
        // In the caller's span, so each object's span joins the job's trace.
        set.spawn(
            async move {
                let result = worker(&ctx, queue.as_ref(), &stop).await;
                if result.is_err() {
                    stop.cancel();
                }
                result
            }
            .in_current_span(),
        );
    }
    let mut done = Vec::new();
    let mut first_error: Option<EngineError> = None;
    while let Some(joined) = set.join_next().await {
        let result = joined
            .unwrap_or_else(|e| Err(EngineError::internal(format!("data worker crashed: {e}"))));
        match result {
            Ok(mut entries) => done.append(&mut entries),
            // Keep the root cause, not the cancellations it triggered.
            Err(e)
                if first_error
                    .as_ref()
                    .is_none_or(|f| f.code == ErrorCode::Cancelled) =>
            {
                first_error = Some(e)
            }
            Err(_) => {}
        }
    }
    if ctx.cancel.is_cancelled() {
        return Err(EngineError::cancelled());
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

/// The session every data COPY runs in, at backup time and when a drill
/// reads a restored table back: the text of dates, times, intervals and
/// floats does not depend on the server's or the role's defaults, so the
/// rows' digests (`ChunkEntry::row_digest`) compare across servers.
pub(crate) const COPY_SESSION: &str = "SET row_security = off; SET statement_timeout = 0; \
     SET DateStyle = ISO; SET IntervalStyle = postgres; SET TimeZone = 'UTC'; \
     SET extra_float_digits = 3;";

async fn worker(
    ctx: &DumpContext,
    feed: &dyn ObjectFeed,
    stop: &CancellationToken,
) -> Result<Vec<(usize, ChunkEntry)>, EngineError> {
    let describe = ctx.source.describe();
    let mut lane = Lane::start(ctx.tracker.clock().clone());
    // Registered once for the lane's life, polled only while the lane waits.
    let cancelled = stop.cancelled();
    tokio::pin!(cancelled);
    let client = connect(&ctx.source, &ctx.source.database).await?;
    exec(
        &client,
        &format!(
            "{COPY_SESSION} BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
            quote_literal(&ctx.snapshot_id)
        ),
        &describe,
    )
    .await?;
    let mut entries = Vec::new();
    loop {
        if stop.is_cancelled() {
            return Err(EngineError::cancelled());
        }
        let Some(object) = feed.next(stop).await? else {
            break;
        };
        // One span per stored object: a table, one chunk group of a split
        // table, or a bundle of small tables.
        let span = tracing::info_span!(
            "table",
            object = %object.relative,
            table = object.chunks.first().map(|c| ctx.table_name(c.table)).unwrap_or_default(),
            chunks = object.chunks.len(),
            bundle = object.bundle,
        );
        let dumped = dump_object(ctx, &client, &object, &mut lane, cancelled.as_mut())
            .instrument(span)
            .await?;
        feed.stored(&object, &dumped).await?;
        for (table, entry) in dumped {
            let name = ctx.table_name(table);
            ctx.tracker
                .table_chunk_done(name, entry.rows, entry.raw_bytes, stored_size(&entry));
            ctx.tracker.chunk_done(entry.rows);
            entries.push((table, entry));
        }
    }
    lane.enter(LaneStage::Connect);
    exec(&client, "COMMIT", &describe).await?;
    Ok(entries)
}

/// Stored bytes of one chunk (its segment's, for a bundled table).
fn stored_size(entry: &ChunkEntry) -> u64 {
    let range = entry.stored_range();
    range.end - range.start
}

impl DumpContext {
    fn table_name(&self, table: usize) -> &str {
        self.table_names
            .get(table)
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// Writes one object: each planned COPY as one zstd frame. Entries are
/// returned once the object is stored.
async fn dump_object(
    ctx: &DumpContext,
    client: &Client,
    object: &PlannedObject,
    lane: &mut Lane,
    mut cancelled: std::pin::Pin<&mut WaitForCancellationFuture<'_>>,
) -> Result<Vec<(usize, ChunkEntry)>, EngineError> {
    let mut writer = ChunkWriter::create(
        &ctx.store,
        &ctx.prefix,
        &object.relative,
        ctx.options.part_size,
        ctx.options.parts_per_connection(),
        ctx.options.zstd_level,
        object.bundle,
        ctx.tracker.clock().clone(),
    )
    .sealed(ctx.options.encryption.as_ref());
    let mut segments = Vec::with_capacity(object.chunks.len());
    for chunk in &object.chunks {
        let name = ctx.table_name(chunk.table);
        ctx.tracker.table_started(name);
        match copy_chunk(ctx, client, chunk, &mut writer, lane, cancelled.as_mut()).await {
            Ok(segment) => segments.push(segment),
            Err(e) => {
                writer.abort().await;
                if e.code != ErrorCode::Cancelled {
                    ctx.tracker.table_failed(name);
                }
                return Err(e);
            }
        }
    }
    let stored = writer.close(lane).await?;
    tracing::debug!(object = %object.relative, tables = object.chunks.len(), size = stored.size, "object dumped");
    Ok(object
        .chunks
        .iter()
        .zip(segments)
        .map(|(chunk, segment)| {
            let entry = ChunkEntry {
                index: chunk.index,
                start_page: chunk.start_page,
                end_page: chunk.end_page,
                key_range: chunk.key_range.clone(),
                rows: segment.rows,
                raw_bytes: segment.raw_bytes,
                object: stored.clone(),
                segment: object.bundle.then_some(SegmentEntry {
                    offset: segment.offset,
                    size: segment.size,
                    sha256: segment.sha256,
                }),
                row_digest: Some(crate::manifest::format_row_digest(segment.row_digest)),
            };
            (chunk.table, entry)
        })
        .collect())
}

/// Streams one COPY into the writer as one frame: rows are gathered into
/// batches of [`COPY_BATCH_BYTES`] on the lane, compressed and hashed on the
/// CPU pool while the lane gathers the next batch.
async fn copy_chunk(
    ctx: &DumpContext,
    client: &Client,
    chunk: &PlannedChunk,
    writer: &mut ChunkWriter,
    lane: &mut Lane,
    mut cancelled: std::pin::Pin<&mut WaitForCancellationFuture<'_>>,
) -> Result<Segment, EngineError> {
    let describe = ctx.source.describe();
    lane.enter(LaneStage::CopyOutWait);
    let stream = tokio::select! {
        biased;
        stream = client.copy_out(chunk.sql.as_str()) => stream,
        _ = &mut cancelled => return Err(EngineError::cancelled()),
    }
    .map_err(|e| EngineError::from_pg(&e, &describe))?;
    futures::pin_mut!(stream);
    // COPY sends one message per row: rows are gathered so compression,
    // hashing and progress run per batch, not per row.
    let mut batch = Vec::with_capacity(COPY_BATCH_BYTES + ROW_SLACK);
    loop {
        let item = tokio::select! {
            biased;
            item = next_timed(&mut stream, lane) => item,
            _ = &mut cancelled => return Err(EngineError::cancelled()),
        };
        match item {
            Some(Ok(bytes)) => {
                batch.extend_from_slice(&bytes);
                if batch.len() >= COPY_BATCH_BYTES {
                    let n = batch.len() as u64;
                    batch = writer.write(std::mem::take(&mut batch), lane).await?;
                    batch.reserve(COPY_BATCH_BYTES + ROW_SLACK);
                    ctx.tracker.add_bytes(n);
                }
            }
            Some(Err(e)) => return Err(EngineError::from_pg(&e, &describe)),
            None => break,
        }
    }
    ctx.tracker.add_bytes(batch.len() as u64);
    let (segment, _) = writer.end_segment(batch, lane).await?;
    Ok(segment)
}

/// The next COPY row; the lane is in [`LaneStage::CopyOutWait`] while the
/// connection has nothing buffered (a clock read per network wait, not per
/// row) and in [`LaneStage::CopyOutReceive`] otherwise.
async fn next_timed<S: futures::Stream + Unpin>(
    stream: &mut S,
    lane: &mut Lane,
) -> Option<S::Item> {
    let mut waiting = false;
    std::future::poll_fn(|cx| match stream.poll_next_unpin(cx) {
        std::task::Poll::Pending => {
            if !waiting {
                lane.enter(LaneStage::CopyOutWait);
                waiting = true;
            }
            std::task::Poll::Pending
        }
        std::task::Poll::Ready(item) => {
            lane.enter(LaneStage::CopyOutReceive);
            std::task::Poll::Ready(item)
        }
    })
    .await
}
