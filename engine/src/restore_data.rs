//! The data half of a restore: load jobs planned largest first (run by
//! [`super::restore_schedule`]), each chunk streamed from the datastore
//! through SHA-256 + zstd on the CPU pool into `COPY … FROM STDIN`.
//! A COPY is only finished (committed) when its stored bytes' SHA-256
//! matches the manifest. A table is loaded whole by one connection with
//! `COPY FREEZE` unless it exceeds a connection's fair share of the data;
//! then its chunks are spread over the connections. The small tables of a
//! bundle load together, one COPY each in one transaction, from one read of
//! the bundle's bytes (only the selected tables' byte ranges, when a
//! selection leaves some out).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use pgvault_datastore::Datastore;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::error::{EngineError, ErrorCode};
use super::ident::{qualified, quote_ident, readable};
use super::manifest::{ChunkEntry, Manifest, TableEntry};
use super::objects::{ChunkReader, Source, blocks, object_path};
use super::progress::Tracker;
use super::stages::{Lane, LaneStage};
use super::types::{EngineOptions, PgTarget};

/// The chunks of one table that a load job loads.
#[derive(Clone)]
pub(crate) struct LoadPart {
    pub table: Arc<TableEntry>,
    pub chunks: Vec<ChunkEntry>,
}

/// Chunks loaded on one connection in one transaction: some or all chunks
/// of one table, or the tables of one bundle.
#[derive(Clone)]
pub(crate) struct LoadJob {
    pub parts: Vec<LoadPart>,
    /// The job holds every chunk of its one table: truncate + `COPY FREEZE`
    /// in one transaction, so rows arrive frozen and all-visible.
    pub freeze: bool,
    /// Raw COPY bytes (what loading costs), for largest-first scheduling.
    pub size: u64,
}

/// Below this many raw bytes a table is loaded without `TRUNCATE` + `COPY
/// FREEZE`: the truncate (a new file set) costs more than the later hint-bit
/// writes it saves on a table this small, and databases have thousands.
const FREEZE_MIN_BYTES: u64 = 1024 * 1024;

/// Load jobs, largest first. A table is loaded whole by one connection
/// (with `COPY FREEZE` when `superuser` and it is not tiny) unless it is
/// larger than a connection's fair share of the data: then its chunks load
/// in parallel.
pub(crate) fn plan(manifest: &Manifest, superuser: bool, connections: usize) -> Vec<LoadJob> {
    let total: u64 = manifest
        .tables
        .iter()
        .flat_map(|t| t.chunks.iter())
        .map(|c| c.raw_bytes)
        .sum();
    let share = total / connections.max(1) as u64;
    let mut jobs = Vec::new();
    // Bundled tables by bundle object, in the order of their bytes in it.
    let mut bundles: HashMap<&str, Vec<LoadPart>> = HashMap::new();
    for table in &manifest.tables {
        let table_size: u64 = table.chunks.iter().map(|c| c.raw_bytes).sum();
        let shared = Arc::new(table.clone());
        if let [chunk] = table.chunks.as_slice()
            && chunk.segment.is_some()
        {
            bundles
                .entry(chunk.object.path.as_str())
                .or_default()
                .push(LoadPart {
                    table: shared,
                    chunks: vec![chunk.clone()],
                });
        } else if table.chunks.len() <= 1 || table_size <= share {
            jobs.push(LoadJob {
                parts: vec![LoadPart {
                    table: shared,
                    chunks: table.chunks.clone(),
                }],
                freeze: superuser && table_size >= FREEZE_MIN_BYTES && !table.extension_config,
                size: table_size,
            });
        } else {
            for chunk in &table.chunks {
                jobs.push(LoadJob {
                    parts: vec![LoadPart {
                        table: shared.clone(),
                        chunks: vec![chunk.clone()],
                    }],
                    freeze: false,
                    size: chunk.raw_bytes,
                });
            }
        }
    }
    for (_, mut parts) in bundles {
        parts.sort_by_key(|p| p.chunks[0].stored_range().start);
        let size = parts.iter().map(|p| p.chunks[0].raw_bytes).sum();
        jobs.push(LoadJob {
            parts,
            freeze: false,
            size,
        });
    }
    jobs.sort_by(|a, b| {
        b.size
            .cmp(&a.size)
            .then_with(|| a.parts[0].table.oid.cmp(&b.parts[0].table.oid))
    });
    jobs
}

#[derive(Clone)]
pub(crate) struct LoadContext {
    pub target: PgTarget,
    pub store: Datastore,
    pub prefix: String,
    pub options: EngineOptions,
    pub tracker: Arc<Tracker>,
    pub cancel: CancellationToken,
    pub superuser: bool,
}

fn copy_in_sql(table: &TableEntry, freeze: bool) -> String {
    let columns = if table.columns.is_empty() {
        String::new()
    } else {
        format!(
            " ({})",
            table
                .columns
                .iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let options = if freeze { " WITH (FREEZE)" } else { "" };
    format!(
        "COPY {}{columns} FROM STDIN{options}",
        qualified(&table.schema, &table.name)
    )
}

/// Loads a job's chunks in one transaction, committed only when every
/// chunk's SHA-256, size and row count match the manifest.
pub(crate) async fn load_job(
    ctx: &LoadContext,
    client: &Client,
    job: &LoadJob,
    stop: &CancellationToken,
    lane: &mut Lane,
) -> Result<(u64, u64), EngineError> {
    load_job_once(ctx, client, job, None, stop, lane)
        .await
        .map(|loaded| (loaded.rows, loaded.bytes))
}

/// What one load job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loaded {
    pub rows: u64,
    pub bytes: u64,
    /// The job's key was recorded already: its rows were in, nothing loaded.
    pub already: bool,
}

/// [`load_job`]; with `once` (a fanned-out restore's chunk key, see
/// [`super::restore_fanout`]) the key is recorded in the target's
/// bookkeeping table in the same transaction as the COPYs, so a load
/// committed by a worker that died before reporting it is never loaded
/// again: a key found recorded loads nothing and reports what was loaded.
pub(crate) async fn load_job_once(
    ctx: &LoadContext,
    client: &Client,
    job: &LoadJob,
    once: Option<&str>,
    stop: &CancellationToken,
    lane: &mut Lane,
) -> Result<Loaded, EngineError> {
    let span = load_span(job, once);
    let loaded = load_job_in_span(ctx, client, job, once, stop, lane)
        .instrument(span.clone())
        .await;
    if let Ok(loaded) = &loaded {
        span.record("rows", loaded.rows);
        span.record("already", loaded.already);
    }
    loaded
}

/// One span per load job (bounded like the stored objects: a table, some
/// chunks of a split table, or a bundle of small tables), named like the
/// backup's span per stored object; its first table names it.
fn load_span(job: &LoadJob, once: Option<&str>) -> tracing::Span {
    let table = job
        .parts
        .first()
        .map(|p| readable(&p.table.schema, &p.table.name))
        .unwrap_or_default();
    tracing::info_span!(
        "table",
        table = %table,
        tables = job.parts.len(),
        chunks = job.parts.iter().map(|p| p.chunks.len()).sum::<usize>(),
        bytes = job.size,
        freeze = job.freeze,
        load = once.unwrap_or_default(),
        rows = tracing::field::Empty,
        already = tracing::field::Empty,
    )
}

async fn load_job_in_span(
    ctx: &LoadContext,
    client: &Client,
    job: &LoadJob,
    once: Option<&str>,
    stop: &CancellationToken,
    lane: &mut Lane,
) -> Result<Loaded, EngineError> {
    let describe = ctx.target.describe();
    let pg = |e: tokio_postgres::Error| EngineError::from_pg(&e, &describe);
    lane.enter(LaneStage::CopyInWait);
    client.batch_execute("BEGIN").await.map_err(pg)?;
    if let Some(key) = once {
        // Waits for a concurrent take of the same key to end: then either
        // its rows are in (conflict) or it rolled back (the key is ours).
        let claimed = client
            .query_opt(super::restore_fanout::RECORD_SQL, &[&key])
            .await;
        match claimed {
            Ok(Some(_)) => {}
            Ok(None) => {
                let _ = client.batch_execute("ROLLBACK").await;
                let (rows, bytes) = super::restore_fanout::recorded(client, key, &describe).await?;
                return Ok(Loaded {
                    rows,
                    bytes,
                    already: true,
                });
            }
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(pg(e));
            }
        }
    }
    if let ([part], true) = (&job.parts[..], job.freeze) {
        let truncate = format!(
            "TRUNCATE ONLY {}",
            qualified(&part.table.schema, &part.table.name)
        );
        if let Err(e) = client.batch_execute(&truncate).await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(pg(e));
        }
    }
    let loaded = async {
        let segments = lane
            .time(LaneStage::DownloadWait, read_segments(ctx, job))
            .await?;
        let (mut rows, mut bytes) = (0, 0);
        for part in &job.parts {
            let (r, b) = load_part(ctx, client, job.freeze, part, &segments, stop, lane).await?;
            rows += r;
            bytes += b;
        }
        Ok::<_, EngineError>((rows, bytes))
    }
    .await;
    let loaded = match (loaded, once) {
        (Ok((rows, bytes)), Some(key)) => {
            super::restore_fanout::set_counts(client, key, rows, bytes, &describe)
                .await
                .map(|()| (rows, bytes))
        }
        (loaded, _) => loaded,
    };
    match loaded {
        Ok((rows, bytes)) => {
            client.batch_execute("COMMIT").await.map_err(pg)?;
            Ok(Loaded {
                rows,
                bytes,
                already: false,
            })
        }
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// One table's chunks of a job, each its own `COPY … FROM STDIN`.
async fn load_part(
    ctx: &LoadContext,
    client: &Client,
    freeze: bool,
    part: &LoadPart,
    segments: &Segments,
    stop: &CancellationToken,
    lane: &mut Lane,
) -> Result<(u64, u64), EngineError> {
    let table = &part.table;
    let name = qualified(&table.schema, &table.name);
    ctx.tracker.table_started(&name);
    let sql = copy_in_sql(table, freeze);
    let (mut rows, mut bytes) = (0, 0);
    for chunk in &part.chunks {
        match load_chunk(ctx, client, &sql, chunk, segments, stop, lane).await {
            Ok((r, b)) => {
                let stored = chunk.stored_range();
                ctx.tracker
                    .table_chunk_done(&name, r, b, stored.end - stored.start);
                ctx.tracker.chunk_done(r);
                rows += r;
                bytes += b;
            }
            Err(e) => {
                if e.code != ErrorCode::Cancelled {
                    ctx.tracker.table_failed(&name);
                }
                return Err(
                    if e.code == ErrorCode::ChecksumMismatch || e.code == ErrorCode::Cancelled {
                        e
                    } else {
                        e.context(format!(
                            "loading {}.{} from {}",
                            table.schema, table.name, chunk.object.path
                        ))
                    },
                );
            }
        }
    }
    Ok((rows, bytes))
}

/// Bytes of bundle objects read ahead for a job: per object, runs of
/// adjacent segments, each read at once.
type Segments = HashMap<String, Vec<(Range<u64>, Bytes)>>;

/// Reads the segments a job's bundled chunks need, one read per run of
/// adjacent segments (a whole bundle in one read when all its tables are
/// restored, just the selected tables' ranges otherwise).
async fn read_segments(ctx: &LoadContext, job: &LoadJob) -> Result<Segments, EngineError> {
    let mut ranges: HashMap<&str, (u64, Vec<Range<u64>>)> = HashMap::new();
    for chunk in job.parts.iter().flat_map(|p| p.chunks.iter()) {
        if chunk.segment.is_some() {
            let entry = ranges
                .entry(chunk.object.path.as_str())
                .or_insert_with(|| (chunk.object.size, Vec::new()));
            entry.1.push(chunk.stored_range());
        }
    }
    let mut segments = Segments::new();
    for (path, (object_size, mut wanted)) in ranges {
        wanted.sort_by_key(|r| r.start);
        let mut runs: Vec<Range<u64>> = Vec::new();
        for range in wanted {
            match runs.last_mut() {
                Some(run) if run.end == range.start => run.end = range.end,
                _ => runs.push(range),
            }
        }
        let mut read = Vec::new();
        for run in runs {
            let location = object_path(&ctx.store, &ctx.prefix, path);
            let mut stream = blocks(
                &ctx.store,
                location,
                path,
                object_size,
                run.clone(),
                ctx.options.parts_per_connection(),
            );
            let mut bytes = BytesMut::with_capacity((run.end - run.start) as usize);
            while let Some(block) = stream.next().await {
                bytes.extend_from_slice(&block?);
            }
            read.push((run, bytes.freeze()));
        }
        segments.insert(path.to_string(), read);
    }
    Ok(segments)
}

/// The stored bytes of a bundled chunk, out of the runs read for its job.
fn segment_bytes(chunk: &ChunkEntry, segments: &Segments) -> Option<Bytes> {
    let range = chunk.stored_range();
    segments
        .get(&chunk.object.path)?
        .iter()
        .find(|(run, _)| run.start <= range.start && range.end <= run.end)
        .map(|(run, bytes)| {
            bytes.slice((range.start - run.start) as usize..(range.end - run.start) as usize)
        })
}

/// One `COPY … FROM STDIN` of one chunk inside the job's transaction.
async fn load_chunk(
    ctx: &LoadContext,
    client: &Client,
    sql: &str,
    chunk: &ChunkEntry,
    segments: &Segments,
    stop: &CancellationToken,
    lane: &mut Lane,
) -> Result<(u64, u64), EngineError> {
    let describe = ctx.target.describe();
    let pg = |e: tokio_postgres::Error| EngineError::from_pg(&e, &describe);
    let source = Source::of(chunk);
    let parts = ctx.options.parts_per_connection();
    let clock = ctx.tracker.clock().clone();
    let reader = match segment_bytes(chunk, segments) {
        Some(bytes) => ChunkReader::from_bytes(source, bytes, clock)?,
        None => ChunkReader::open(&ctx.store, &ctx.prefix, source, parts, clock)?,
    };
    let mut reader = reader.sealed(ctx.options.encryption.as_ref());
    let mut sink = Box::pin(client.copy_in(sql).await.map_err(pg)?);
    let mut raw = 0u64;
    let streamed: Result<(), EngineError> = async {
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return Err(EngineError::cancelled()),
                next = reader.next(lane) => next?,
            };
            let Some(bytes) = next else { return Ok(()) };
            raw += bytes.len() as u64;
            ctx.tracker.add_bytes(bytes.len() as u64);
            lane.time(LaneStage::CopyInWait, sink.send(bytes))
                .await
                .map_err(pg)?;
        }
    }
    .await;
    // Only a verified object may be committed: otherwise the sink is dropped
    // unfinished (COPY fails) and the caller rolls the transaction back.
    streamed.and_then(|()| reader.verify())?;
    let rows = lane
        .time(LaneStage::CopyInWait, sink.as_mut().finish())
        .await
        .map_err(pg)?;
    if rows != chunk.rows || raw != chunk.raw_bytes {
        return Err(EngineError::new(
            ErrorCode::ChecksumMismatch,
            format!(
                "object {} loaded {rows} rows / {raw} bytes, the manifest says {} rows / {} bytes",
                chunk.object.path, chunk.rows, chunk.raw_bytes
            ),
        ));
    }
    Ok((rows, raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ObjectEntry;

    fn table(oid: u32, sizes: &[u64]) -> TableEntry {
        TableEntry {
            extension_config: false,
            oid,
            schema: "s".into(),
            name: format!("t{oid}"),
            columns: vec!["a".into()],
            chunks: sizes
                .iter()
                .enumerate()
                .map(|(i, size)| ChunkEntry {
                    index: i as u32,
                    start_page: None,
                    end_page: None,
                    key_range: None,
                    rows: 1,
                    raw_bytes: *size,
                    object: ObjectEntry {
                        path: format!("data/{oid}/{i}"),
                        size: *size,
                        sha256: String::new(),
                    },
                    segment: None,
                    row_digest: None,
                })
                .collect(),
        }
    }

    #[test]
    fn big_tables_spread_small_ones_load_whole_and_frozen_unless_tiny() {
        let json = serde_json::json!({
            "format_version": 1, "tool": "pgvault", "tool_version": "0", "server_version": "15",
            "server_version_num": 150000, "snapshot_time": "2024-01-01T00:00:00Z", "database": "d",
            "encoding": "UTF8", "collate": "C", "ctype": "C",
            "schema": {"path": "schema.dump", "size": 0, "sha256": ""},
            "roles": [], "tables": [], "sequences": [], "materialized_views": [], "large_objects": null
        });
        let mut manifest: Manifest = serde_json::from_value(json).unwrap();
        const MB: u64 = 1024 * 1024;
        manifest.tables = vec![
            table(1, &[60 * MB, 60 * MB, 60 * MB]),
            table(2, &[20 * MB, 20 * MB]),
            table(3, &[5 * MB]),
            table(4, &[3000]),
        ];
        let jobs = plan(&manifest, true, 2);
        let shape: Vec<(u32, usize, bool, u64)> = jobs
            .iter()
            .map(|j| {
                (
                    j.parts[0].table.oid,
                    j.parts[0].chunks.len(),
                    j.freeze,
                    j.size,
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (1, 1, false, 60 * MB),
                (1, 1, false, 60 * MB),
                (1, 1, false, 60 * MB),
                (2, 2, true, 40 * MB),
                (3, 1, true, 5 * MB),
                (4, 1, false, 3000)
            ]
        );
        assert!(plan(&manifest, false, 8).iter().all(|j| !j.freeze));
    }

    #[test]
    fn a_bundles_tables_load_together_in_the_order_of_their_bytes() {
        let json = serde_json::json!({
            "format_version": 2, "tool": "pgvault", "tool_version": "0", "server_version": "15",
            "server_version_num": 150000, "snapshot_time": "2024-01-01T00:00:00Z", "database": "d",
            "encoding": "UTF8", "collate": "C", "ctype": "C",
            "schema": {"path": "schema.dump", "size": 0, "sha256": ""},
            "roles": [], "tables": [], "sequences": [], "materialized_views": [], "large_objects": null
        });
        let mut manifest: Manifest = serde_json::from_value(json).unwrap();
        let bundled = |oid: u32, bundle: &str, offset: u64| {
            let mut t = table(oid, &[100]);
            t.chunks[0].object.path = bundle.to_string();
            t.chunks[0].object.size = 1000;
            t.chunks[0].segment = Some(crate::manifest::SegmentEntry {
                offset,
                size: 10,
                sha256: String::new(),
            });
            t
        };
        manifest.tables = vec![
            bundled(1, "data/bundles/00001.copy.zst", 20),
            bundled(2, "data/bundles/00001.copy.zst", 0),
            bundled(3, "data/bundles/00002.copy.zst", 0),
            table(4, &[5000]),
            bundled(5, "data/bundles/00001.copy.zst", 10),
        ];
        let jobs = plan(&manifest, true, 2);
        let shape: Vec<(Vec<u32>, bool, u64)> = jobs
            .iter()
            .map(|j| {
                (
                    j.parts.iter().map(|p| p.table.oid).collect(),
                    j.freeze,
                    j.size,
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (vec![4], false, 5000),
                (vec![2, 5, 1], false, 300),
                (vec![3], false, 100)
            ]
        );
    }
}
