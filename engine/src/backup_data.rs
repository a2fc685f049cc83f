//! The data half of a backup: tables cut into chunks (ctid page ranges for
//! large tables on PostgreSQL 14+), scheduled largest first over N
//! connections that all imported the same snapshot. Each chunk streams
//! `COPY (SELECT …) TO STDOUT` → zstd → multipart upload.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use pgvault_datastore::Datastore;
use tokio::task::JoinSet;
use tokio_postgres::Client;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::catalog::TableInfo;
use super::connect::{connect, exec};
use super::error::{EngineError, ErrorCode};
use super::ident::{qualified, quote_ident, quote_literal};
use super::manifest::ChunkEntry;
use super::objects::ChunkWriter;
use super::progress::Tracker;
use super::stages::{Lane, LaneStage};
use super::types::{EngineOptions, PgTarget};

/// Upper bound on chunks per table, whatever the threshold.
const MAX_CHUNKS_PER_TABLE: u64 = 4096;
/// COPY rows gathered before they go to the compressor.
const COPY_BATCH_BYTES: usize = 256 * 1024;
/// Room for the row that crosses [`COPY_BATCH_BYTES`].
const ROW_SLACK: usize = 64 * 1024;
/// TID range scans (fast ctid ranges) arrived in PostgreSQL 14.
const TID_RANGE_SCAN_VERSION: i32 = 140000;

/// One planned COPY.
#[derive(Debug, Clone)]
pub(crate) struct PlannedChunk {
    /// Index into the backup's table list.
    pub table: usize,
    pub index: u32,
    pub start_page: Option<u64>,
    pub end_page: Option<u64>,
    /// Estimated raw size, for largest-first scheduling.
    pub estimated_bytes: u64,
    /// `COPY (SELECT …) TO STDOUT`.
    pub sql: String,
    /// Object path relative to the recovery point.
    pub relative: String,
}

/// Cuts tables into chunks, largest first.
pub(crate) fn plan(
    tables: &[TableInfo],
    options: &EngineOptions,
    version_num: i32,
) -> Vec<PlannedChunk> {
    let mut chunks = Vec::new();
    for (t, table) in tables.iter().enumerate() {
        let pages = table.bytes.div_ceil(table.block_size);
        let threshold = options.split_threshold_bytes.max(1);
        let count = if version_num >= TID_RANGE_SCAN_VERSION
            && table.bytes > threshold
            && pages > 1
            && table.extension_filter.is_none()
        {
            table
                .bytes
                .div_ceil(threshold)
                .min(MAX_CHUNKS_PER_TABLE)
                .min(pages)
        } else {
            1
        };
        let pages_per = pages.div_ceil(count).max(1);
        for i in 0..count {
            let start_page = (i > 0).then_some(i * pages_per);
            let end_page = (i + 1 < count).then_some((i + 1) * pages_per);
            chunks.push(PlannedChunk {
                table: t,
                index: i as u32,
                start_page,
                end_page,
                estimated_bytes: table.bytes / count,
                sql: copy_sql(table, start_page, end_page),
                relative: format!("data/{}/{i:05}.copy.zst", table.oid),
            });
        }
    }
    chunks.sort_by(|a, b| {
        b.estimated_bytes
            .cmp(&a.estimated_bytes)
            .then(a.table.cmp(&b.table))
            .then(a.index.cmp(&b.index))
    });
    chunks
}

fn copy_sql(table: &TableInfo, start: Option<u64>, end: Option<u64>) -> String {
    let columns = table
        .columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let mut conditions = Vec::new();
    if let Some(start) = start {
        conditions.push(format!("ctid >= '({start},0)'::tid"));
    }
    if let Some(end) = end {
        conditions.push(format!("ctid < '({end},0)'::tid"));
    }
    let name = qualified(&table.schema, &table.name);
    if let Some(filter) = &table.extension_filter {
        // The extension's own condition, as pg_dump applies it.
        return format!("COPY (SELECT {columns} FROM ONLY {name} {filter}) TO STDOUT");
    }
    if conditions.is_empty() {
        // A whole table: plain COPY (never includes inheritance children)
        // skips the executor's query layer.
        return if table.columns.is_empty() {
            format!("COPY {name} TO STDOUT")
        } else {
            format!("COPY {name} ({columns}) TO STDOUT")
        };
    }
    format!(
        "COPY (SELECT {columns} FROM ONLY {name} WHERE {}) TO STDOUT",
        conditions.join(" AND ")
    )
}

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
    pub cancel: CancellationToken,
}

/// Dumps every planned chunk; returns (table index, chunk entry) pairs.
pub(crate) async fn dump_chunks(
    ctx: DumpContext,
    chunks: Vec<PlannedChunk>,
) -> Result<Vec<(usize, ChunkEntry)>, EngineError> {
    let workers = ctx.options.connections.max(1).min(chunks.len());
    let queue = Arc::new(Mutex::new(VecDeque::from(chunks)));
    // Stops the other workers when one fails; the caller's token stays untouched.
    let stop = ctx.cancel.child_token();
    let mut set = JoinSet::new();
    for _ in 0..workers {
        let (ctx, queue, stop) = (ctx.clone(), queue.clone(), stop.clone());
        set.spawn(async move {
            let result = worker(&ctx, &queue, &stop).await;
            if result.is_err() {
                stop.cancel();
            }
            result
        });
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

async fn worker(
    ctx: &DumpContext,
    queue: &Mutex<VecDeque<PlannedChunk>>,
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
            "SET row_security = off; SET statement_timeout = 0; \
             BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
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
        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        let Some(chunk) = next else { break };
        let name = ctx
            .table_names
            .get(chunk.table)
            .map(String::as_str)
            .unwrap_or_default();
        ctx.tracker.table_started(name);
        let entry = match dump_one(ctx, &client, &chunk, &mut lane, cancelled.as_mut()).await {
            Ok(entry) => entry,
            Err(e) => {
                if e.code != ErrorCode::Cancelled {
                    ctx.tracker.table_failed(name);
                }
                return Err(e);
            }
        };
        ctx.tracker
            .table_chunk_done(name, entry.rows, entry.raw_bytes, entry.object.size);
        ctx.tracker.chunk_done(entry.rows);
        entries.push((chunk.table, entry));
    }
    lane.enter(LaneStage::Connect);
    exec(&client, "COMMIT", &describe).await?;
    Ok(entries)
}

/// Streams one planned COPY into its object: rows are gathered into
/// batches of [`COPY_BATCH_BYTES`] on the lane, compressed and hashed on the
/// CPU pool while the lane gathers the next batch, and uploaded.
async fn dump_one(
    ctx: &DumpContext,
    client: &Client,
    chunk: &PlannedChunk,
    lane: &mut Lane,
    mut cancelled: std::pin::Pin<&mut WaitForCancellationFuture<'_>>,
) -> Result<ChunkEntry, EngineError> {
    let describe = ctx.source.describe();
    let mut writer = ChunkWriter::create(
        &ctx.store,
        &ctx.prefix,
        &chunk.relative,
        ctx.options.part_size,
        ctx.options.parts_per_connection(),
        ctx.options.zstd_level,
        ctx.tracker.clock().clone(),
    );
    let mut batch = Vec::with_capacity(COPY_BATCH_BYTES + ROW_SLACK);
    let streamed = async {
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
                None => return Ok(batch),
            }
        }
    }
    .await;
    let last = match streamed {
        Ok(last) => last,
        Err(e) => {
            writer.abort().await;
            return Err(e);
        }
    };
    ctx.tracker.add_bytes(last.len() as u64);
    let (object, segment) = writer.finish(last, lane).await?;
    tracing::debug!(object = %chunk.relative, raw_bytes = segment.raw_bytes, "chunk dumped");
    Ok(ChunkEntry {
        index: chunk.index,
        start_page: chunk.start_page,
        end_page: chunk.end_page,
        rows: segment.rows,
        raw_bytes: segment.raw_bytes,
        object,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn table(bytes: u64) -> TableInfo {
        TableInfo {
            oid: 7,
            schema: "s".into(),
            name: "T x".into(),
            columns: vec!["a".into(), "B".into()],
            bytes,
            block_size: 8192,
            extension_filter: None,
        }
    }

    #[test]
    fn splits_large_tables_into_page_ranges_largest_first() {
        let options = EngineOptions {
            split_threshold_bytes: 8192 * 10,
            ..EngineOptions::default()
        };
        let chunks = plan(&[table(8192), table(8192 * 35)], &options, 150000);
        assert_eq!(chunks.len(), 5);
        assert_eq!(chunks[0].table, 1);
        assert_eq!(chunks.last().unwrap().table, 0);
        let big: Vec<_> = chunks.iter().filter(|c| c.table == 1).collect();
        assert_eq!((big[0].start_page, big[0].end_page), (None, Some(9)));
        assert_eq!((big[3].start_page, big[3].end_page), (Some(27), None));
        assert_eq!(
            big[1].sql,
            r#"COPY (SELECT "a", "B" FROM ONLY "s"."T x" WHERE ctid >= '(9,0)'::tid AND ctid < '(18,0)'::tid) TO STDOUT"#
        );
        assert_eq!(big[1].relative, "data/7/00001.copy.zst");
    }

    #[test]
    fn old_servers_dump_whole_tables() {
        let options = EngineOptions {
            split_threshold_bytes: 8192,
            ..EngineOptions::default()
        };
        let chunks = plan(&[table(8192 * 100)], &options, 130000);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].sql, r#"COPY "s"."T x" ("a", "B") TO STDOUT"#);
    }
}
