//! The data half of a restore: load jobs planned largest first (run by
//! [`super::restore_schedule`]), each chunk streamed from the datastore
//! through zstd into `COPY … FROM STDIN`.
//! The COPY is only finished (committed) when the object's SHA-256 matches
//! the manifest. A table is loaded whole by one connection with `COPY
//! FREEZE` unless it exceeds a connection's fair share of the data; then its
//! chunks are spread over the connections.

use std::sync::Arc;

use futures::SinkExt;
use pgvault_datastore::Datastore;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::error::{EngineError, ErrorCode};
use super::ident::{qualified, quote_ident};
use super::manifest::{ChunkEntry, Manifest, TableEntry};
use super::objects::{ChunkReader, Source};
use super::progress::Tracker;
use super::stages::{Lane, LaneStage};
use super::types::{EngineOptions, PgTarget};

/// Chunks of one table loaded on one connection in one transaction.
#[derive(Clone)]
pub(crate) struct LoadJob {
    pub table: Arc<TableEntry>,
    pub chunks: Vec<ChunkEntry>,
    /// The job holds every chunk of the table: truncate + `COPY FREEZE` in
    /// one transaction, so rows arrive frozen and all-visible.
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
    for table in &manifest.tables {
        let table_size: u64 = table.chunks.iter().map(|c| c.raw_bytes).sum();
        let shared = Arc::new(table.clone());
        if table.chunks.len() <= 1 || table_size <= share {
            jobs.push(LoadJob {
                table: shared,
                chunks: table.chunks.clone(),
                freeze: superuser && table_size >= FREEZE_MIN_BYTES && !table.extension_config,
                size: table_size,
            });
        } else {
            for chunk in &table.chunks {
                jobs.push(LoadJob {
                    table: shared.clone(),
                    chunks: vec![chunk.clone()],
                    freeze: false,
                    size: chunk.raw_bytes,
                });
            }
        }
    }
    jobs.sort_by_key(|j| std::cmp::Reverse(j.size));
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
    let describe = ctx.target.describe();
    let pg = |e: tokio_postgres::Error| EngineError::from_pg(&e, &describe);
    let table = &job.table;
    let begin = if job.freeze {
        format!(
            "BEGIN; TRUNCATE ONLY {}",
            qualified(&table.schema, &table.name)
        )
    } else {
        "BEGIN".to_string()
    };
    let name = qualified(&table.schema, &table.name);
    ctx.tracker.table_started(&name);
    lane.enter(LaneStage::CopyInWait);
    client.batch_execute(&begin).await.map_err(pg)?;
    let sql = copy_in_sql(table, job.freeze);
    let (mut rows, mut bytes) = (0, 0);
    for chunk in &job.chunks {
        match load_chunk(ctx, client, &sql, chunk, stop, lane).await {
            Ok((r, b)) => {
                ctx.tracker.table_chunk_done(&name, r, b, chunk.object.size);
                ctx.tracker.chunk_done(r);
                rows += r;
                bytes += b;
            }
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
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
    client.batch_execute("COMMIT").await.map_err(pg)?;
    Ok((rows, bytes))
}

/// One `COPY … FROM STDIN` of one chunk inside the job's transaction.
async fn load_chunk(
    ctx: &LoadContext,
    client: &Client,
    sql: &str,
    chunk: &ChunkEntry,
    stop: &CancellationToken,
    lane: &mut Lane,
) -> Result<(u64, u64), EngineError> {
    let describe = ctx.target.describe();
    let pg = |e: tokio_postgres::Error| EngineError::from_pg(&e, &describe);
    let mut reader = ChunkReader::open(
        &ctx.store,
        &ctx.prefix,
        Source::whole(&chunk.object),
        ctx.options.parts_per_connection(),
        ctx.tracker.clock().clone(),
    )?;
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
                    rows: 1,
                    raw_bytes: *size,
                    object: ObjectEntry {
                        path: format!("data/{oid}/{i}"),
                        size: *size,
                        sha256: String::new(),
                    },
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
            .map(|j| (j.table.oid, j.chunks.len(), j.freeze, j.size))
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
}
