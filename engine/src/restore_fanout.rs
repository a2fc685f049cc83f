//! One restore fanned out across several workers. The leader (the engine
//! running [`crate::restore_database_fanned`]) creates the database and runs
//! pre-data as always, then creates a small bookkeeping table in the target
//! and offers its planned loads to the fleet through the same
//! [`ChunkDispatch`] a fanned-out backup uses (as LOAD chunks). Its own
//! lanes take loads from the dispatch like any helper; helpers run
//! [`load_chunk`], the very per-job load code a local lane runs. Once every
//! load is recorded as done, the leader drops the bookkeeping table and runs
//! post-data and `ANALYZE` alone.
//!
//! Exactly once: every load records its chunk key in the bookkeeping table
//! in the same transaction as its COPYs. A helper that committed and died
//! before reporting leaves its key behind; whoever redoes the chunk finds it
//! and loads nothing (a concurrent take waits on the key's row lock, then
//! finds it or takes over a rolled-back one). No row is loaded twice.

use std::sync::Arc;
use std::time::Duration;

use pgvault_datastore::Datastore;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::connect::{connect, exec};
use super::error::{EngineError, ErrorCode};
use super::fanout::{ChunkDispatch, ChunkJob, OfferedChunk, StoredChunk, Take};
use super::ident::{qualified, readable};
use super::manifest::{ChunkEntry, TableEntry};
use super::progress::Tracker;
use super::restore_data::{LoadContext, LoadJob, LoadPart, load_job_once};
use super::restore_schedule::open_lane;
use super::stages::Lane;
use super::types::{EngineOptions, PgTarget};

/// How long an idle leader lane waits before asking for a load again.
const WAIT_POLL: Duration = Duration::from_millis(300);

/// The bookkeeping schema, created in the target after pre-data and
/// dropped before post-data (its name is refused if the point has it).
pub(crate) const SCHEMA: &str = "_pgvault_restore";

/// Records a key in the load's transaction; no row: recorded already.
pub(crate) const RECORD_SQL: &str = "INSERT INTO \"_pgvault_restore\".chunk_loads (chunk_key) \
     VALUES ($1) ON CONFLICT (chunk_key) DO NOTHING RETURNING 1";

/// A load offered to the fleet: the job's tables (without their chunk
/// lists) and the chunks it loads, plus what a helper's connection needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LoadSpec {
    parts: Vec<(TableEntry, Vec<ChunkEntry>)>,
    freeze: bool,
    superuser: bool,
    /// The schema's session preamble (search_path, encodings…).
    preamble: String,
}

/// What a load reports (as a stored chunk's entries).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
struct LoadReport {
    rows: u64,
    bytes: u64,
    /// Its rows were in already (a take that committed but never reported).
    already: bool,
}

fn spec_error(e: serde_json::Error) -> EngineError {
    EngineError::internal(format!("load spec unreadable: {e}"))
}

/// A load job's key: its first chunk's object, unique in the plan (a
/// table's chunk, a whole table's first chunk, or a bundle).
fn job_key(job: &LoadJob) -> String {
    job.parts
        .first()
        .and_then(|p| p.chunks.first())
        .map(|c| c.object.path.clone())
        .unwrap_or_default()
}

fn to_spec(job: &LoadJob, superuser: bool, preamble: &str) -> LoadSpec {
    LoadSpec {
        parts: job
            .parts
            .iter()
            .map(|p| {
                let table = TableEntry {
                    chunks: Vec::new(),
                    ..(*p.table).clone()
                };
                (table, p.chunks.clone())
            })
            .collect(),
        freeze: job.freeze,
        superuser,
        preamble: preamble.to_string(),
    }
}

fn from_spec(spec: LoadSpec) -> LoadJob {
    let size = spec
        .parts
        .iter()
        .flat_map(|(_, c)| c.iter())
        .map(|c| c.raw_bytes)
        .sum();
    LoadJob {
        parts: spec
            .parts
            .into_iter()
            .map(|(table, chunks)| LoadPart {
                table: Arc::new(table),
                chunks,
            })
            .collect(),
        freeze: spec.freeze,
        size,
    }
}

/// Creates the bookkeeping table (the leader, after pre-data).
pub(crate) async fn create_bookkeeping(client: &Client, describe: &str) -> Result<(), EngineError> {
    let taken = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1",
            &[&SCHEMA],
        )
        .await
        .map_err(|e| EngineError::from_pg(&e, describe))?;
    if taken.is_some() {
        return Err(EngineError::new(
            ErrorCode::UserErrorInvalidInput,
            format!(
                "the recovery point has a schema named \"{SCHEMA}\", which a fanned-out restore uses for its bookkeeping; restore it without --workers"
            ),
        ));
    }
    exec(
        client,
        &format!(
            "CREATE SCHEMA \"{SCHEMA}\"; CREATE TABLE \"{SCHEMA}\".chunk_loads (
                 chunk_key text PRIMARY KEY, rows bigint NOT NULL DEFAULT 0,
                 bytes bigint NOT NULL DEFAULT 0)"
        ),
        describe,
    )
    .await
    .map_err(|e| e.context("creating the fanned-out restore's bookkeeping table"))
}

/// Drops the bookkeeping table (the leader, once every load is in).
pub(crate) async fn drop_bookkeeping(client: &Client, describe: &str) -> Result<(), EngineError> {
    exec(
        client,
        &format!("DROP SCHEMA \"{SCHEMA}\" CASCADE"),
        describe,
    )
    .await
    .map_err(|e| e.context("dropping the fanned-out restore's bookkeeping table"))
}

/// What the recorded load of `key` loaded.
pub(crate) async fn recorded(
    client: &Client,
    key: &str,
    describe: &str,
) -> Result<(u64, u64), EngineError> {
    let row = client
        .query_one(
            "SELECT rows, bytes FROM \"_pgvault_restore\".chunk_loads WHERE chunk_key = $1",
            &[&key],
        )
        .await
        .map_err(|e| EngineError::from_pg(&e, describe))?;
    let (rows, bytes): (i64, i64) = (row.get(0), row.get(1));
    Ok((rows.max(0) as u64, bytes.max(0) as u64))
}

/// Sets what the load of `key` loaded, in its transaction.
pub(crate) async fn set_counts(
    client: &Client,
    key: &str,
    rows: u64,
    bytes: u64,
    describe: &str,
) -> Result<(), EngineError> {
    let (rows, bytes) = (
        i64::try_from(rows).unwrap_or(i64::MAX),
        i64::try_from(bytes).unwrap_or(i64::MAX),
    );
    client
        .execute(
            "UPDATE \"_pgvault_restore\".chunk_loads SET rows = $2, bytes = $3 WHERE chunk_key = $1",
            &[&key, &rows, &bytes],
        )
        .await
        .map(|_| ())
        .map_err(|e| EngineError::from_pg(&e, describe))
}

/// The report of a load: its first object (path, size, SHA-256 verified
/// before its COPY committed) and what it loaded.
fn stored_load(key: String, job: &LoadJob, report: LoadReport) -> Result<StoredChunk, EngineError> {
    let first = job
        .parts
        .first()
        .and_then(|p| p.chunks.first())
        .ok_or_else(|| EngineError::internal("a load job has no chunk"))?;
    Ok(StoredChunk {
        key,
        object_path: first.object.path.clone(),
        size: first.object.size,
        sha256: first.object.sha256.clone(),
        rows: report.rows,
        raw_bytes: report.bytes,
        entries: serde_json::to_string(&report).map_err(spec_error)?,
    })
}

/// The leader's data phase: offer the loads, load alongside the helpers
/// until every load is recorded done; returns (rows, bytes) loaded by all.
pub(crate) async fn load_fanned(
    ctx: LoadContext,
    jobs: Vec<LoadJob>,
    preamble: &str,
    dispatch: Arc<dyn ChunkDispatch>,
    helpers: u32,
) -> Result<(u64, u64), EngineError> {
    let mut offers = Vec::with_capacity(jobs.len());
    let mut keys = Vec::with_capacity(jobs.len());
    for job in &jobs {
        let key = job_key(job);
        let spec =
            serde_json::to_string(&to_spec(job, ctx.superuser, preamble)).map_err(spec_error)?;
        offers.push(OfferedChunk {
            key: key.clone(),
            spec,
            // As job details show tables: schema.name.
            tables: job
                .parts
                .iter()
                .map(|p| readable(&p.table.schema, &p.table.name))
                .collect(),
        });
        keys.push(key);
    }
    let invited = dispatch.offer_loads(offers, helpers).await?;
    tracing::info!(loads = keys.len(), invited, "restore fanned out");
    let stop = ctx.cancel.child_token();
    let mut set = JoinSet::new();
    for _ in 0..ctx.options.connections.max(1).min(jobs.len()) {
        let (ctx, dispatch, stop) = (ctx.clone(), dispatch.clone(), stop.clone());
        let preamble = preamble.to_string();
        // In the data span: the lanes' load spans and lines are the task's.
        set.spawn(
            async move {
                let result = leader_lane(&ctx, &*dispatch, &preamble, &stop).await;
                if result.is_err() {
                    stop.cancel();
                }
                result
            }
            .in_current_span(),
        );
    }
    let mut local: Vec<String> = Vec::new();
    let mut first_error: Option<EngineError> = None;
    while let Some(joined) = set.join_next().await {
        match joined
            .unwrap_or_else(|e| Err(EngineError::internal(format!("load lane crashed: {e}"))))
        {
            Ok(mut done) => local.append(&mut done),
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
    if let Some(e) = first_error {
        return Err(e);
    }
    let recorded = dispatch.recorded().await?;
    let (mut rows, mut bytes) = (0, 0);
    for (key, job) in keys.iter().zip(&jobs) {
        let Some(chunk) = recorded.iter().find(|r| &r.key == key) else {
            return Err(EngineError::internal(format!(
                "load {key} of the attempt was not recorded as done"
            )));
        };
        let report: LoadReport = serde_json::from_str(&chunk.entries)
            .map_err(|e| EngineError::internal(format!("load {key} report unreadable: {e}")))?;
        rows += report.rows;
        bytes += report.bytes;
        // Helpers' loads count in the leader's progress once recorded.
        if !local.contains(key) {
            for part in &job.parts {
                let name = qualified(&part.table.schema, &part.table.name);
                for entry in &part.chunks {
                    let range = entry.stored_range();
                    ctx.tracker.table_chunk_done(
                        &name,
                        entry.rows,
                        entry.raw_bytes,
                        range.end - range.start,
                    );
                    ctx.tracker.chunk_done(entry.rows);
                }
            }
            ctx.tracker.add_bytes(report.bytes);
        }
    }
    Ok((rows, bytes))
}

/// One of the leader's lanes: takes loads until all are done; returns the
/// keys it loaded.
async fn leader_lane(
    ctx: &LoadContext,
    dispatch: &dyn ChunkDispatch,
    preamble: &str,
    stop: &CancellationToken,
) -> Result<Vec<String>, EngineError> {
    let client = open_lane(ctx, preamble).await?;
    let mut lane = Lane::start(ctx.tracker.clock().clone());
    let mut done = Vec::new();
    loop {
        if stop.is_cancelled() {
            return Err(EngineError::cancelled());
        }
        match dispatch.take().await? {
            Take::Chunk(chunk) => {
                let spec: LoadSpec = serde_json::from_str(&chunk.spec).map_err(spec_error)?;
                let job = from_spec(spec);
                let loaded =
                    load_job_once(ctx, &client, &job, Some(&chunk.key), stop, &mut lane).await?;
                let report = LoadReport {
                    rows: loaded.rows,
                    bytes: loaded.bytes,
                    already: loaded.already,
                };
                dispatch
                    .stored(stored_load(chunk.key.clone(), &job, report)?)
                    .await?;
                done.push(chunk.key);
            }
            Take::AllStored => return Ok(done),
            Take::Wait => {
                tokio::select! {
                    _ = stop.cancelled() => return Err(EngineError::cancelled()),
                    _ = tokio::time::sleep(WAIT_POLL) => {}
                }
            }
        }
    }
}

/// A helper's work: loads one offered load into the target database the
/// leader created (one connection, the load's own transaction, SHA-256
/// verified before its COPY commits, its key recorded with it) and returns
/// what to report. A load recorded already loads nothing.
pub async fn load_chunk(
    target: &PgTarget,
    store: &Datastore,
    prefix: &str,
    chunk: &ChunkJob,
    options: &EngineOptions,
    cancel: CancellationToken,
) -> Result<StoredChunk, EngineError> {
    let spec: LoadSpec = serde_json::from_str(&chunk.spec).map_err(spec_error)?;
    let preamble = spec.preamble.clone();
    let superuser = spec.superuser;
    let job = from_spec(spec);
    let ctx = LoadContext {
        target: target.clone(),
        store: store.clone(),
        prefix: prefix.to_string(),
        options: EngineOptions {
            connections: 1,
            ..options.clone()
        },
        tracker: Tracker::new(Arc::new(super::types::NoProgress)),
        cancel: cancel.clone(),
        superuser,
    };
    let work = async {
        let client = open_lane(&ctx, &preamble).await?;
        let mut lane = Lane::start(ctx.tracker.clock().clone());
        load_job_once(&ctx, &client, &job, Some(&chunk.key), &cancel, &mut lane).await
    };
    let loaded = tokio::select! {
        _ = cancel.cancelled() => return Err(EngineError::cancelled()),
        loaded = work => loaded?,
    };
    if loaded.already {
        tracing::info!(chunk = %chunk.key, "load was committed by an earlier take; nothing loaded again");
    }
    stored_load(
        chunk.key.clone(),
        &job,
        LoadReport {
            rows: loaded.rows,
            bytes: loaded.bytes,
            already: loaded.already,
        },
    )
}

/// Whether `key`'s load is recorded in `database` on `target` (tests and
/// diagnostics: a committed load).
pub async fn load_recorded(target: &PgTarget, key: &str) -> Result<bool, EngineError> {
    let client = connect(target, &target.database).await?;
    let row = client
        .query_opt(
            "SELECT 1 FROM \"_pgvault_restore\".chunk_loads WHERE chunk_key = $1",
            &[&key],
        )
        .await
        .map_err(|e| EngineError::from_pg(&e, &target.describe()))?;
    Ok(row.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ObjectEntry;

    fn chunk(path: &str, rows: u64) -> ChunkEntry {
        ChunkEntry {
            index: 0,
            start_page: None,
            end_page: None,
            key_range: None,
            rows,
            raw_bytes: 10,
            object: ObjectEntry {
                path: path.into(),
                size: 7,
                sha256: "ab".repeat(32),
            },
            segment: None,
            row_digest: None,
        }
    }

    #[test]
    fn a_load_travels_without_its_tables_other_chunks_and_comes_back_whole() {
        let table = TableEntry {
            extension_config: false,
            oid: 5,
            schema: "s".into(),
            name: "t".into(),
            columns: vec!["a".into()],
            chunks: (0..1000)
                .map(|i| chunk(&format!("data/5/{i}"), 1))
                .collect(),
        };
        let job = LoadJob {
            parts: vec![LoadPart {
                table: Arc::new(table),
                chunks: vec![chunk("data/5/7", 3)],
            }],
            freeze: false,
            size: 10,
        };
        let text = serde_json::to_string(&to_spec(&job, true, "SET x = 1;")).unwrap();
        assert!(
            text.len() < 2000,
            "one chunk's spec, not the table's: {}",
            text.len()
        );
        let back = from_spec(serde_json::from_str(&text).unwrap());
        assert_eq!(job_key(&back), "data/5/7");
        assert_eq!(back.parts[0].chunks, job.parts[0].chunks);
        assert_eq!(back.size, 10);
        let stored = stored_load(
            "data/5/7".into(),
            &back,
            LoadReport {
                rows: 3,
                bytes: 10,
                already: true,
            },
        )
        .unwrap();
        assert_eq!(
            (stored.object_path.as_str(), stored.size, stored.rows),
            ("data/5/7", 7, 3)
        );
        let report: LoadReport = serde_json::from_str(&stored.entries).unwrap();
        assert!(report.already);
    }
}
