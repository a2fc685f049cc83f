//! The data half of a restore: chunks loaded in parallel, largest first,
//! each streamed from the datastore through zstd into `COPY … FROM STDIN`.
//! The COPY is only finished (committed) when the object's SHA-256 matches
//! the manifest; tables loaded in one chunk use `COPY FREEZE`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures::SinkExt;
use pgvault_datastore::Datastore;
use tokio::task::JoinSet;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::connect::{connect, exec};
use super::error::{EngineError, ErrorCode};
use super::ident::{qualified, quote_ident};
use super::manifest::{ChunkEntry, Manifest, TableEntry};
use super::objects::ChunkReader;
use super::progress::Tracker;
use super::types::{EngineOptions, PgTarget};

/// One chunk to load.
#[derive(Clone)]
pub(crate) struct LoadJob {
    pub table: TableEntry,
    pub chunk: ChunkEntry,
    /// The table's only chunk: truncate + `COPY FREEZE` in one transaction.
    pub freeze: bool,
}

/// Chunks of the manifest, largest first.
pub(crate) fn plan(manifest: &Manifest, superuser: bool) -> Vec<LoadJob> {
    let mut jobs: Vec<LoadJob> = manifest
        .tables
        .iter()
        .flat_map(|t| {
            let single = t.chunks.len() == 1;
            t.chunks.iter().map(move |c| LoadJob {
                table: t.clone(),
                chunk: c.clone(),
                freeze: single && superuser,
            })
        })
        .collect();
    jobs.sort_by_key(|j| std::cmp::Reverse(j.chunk.object.size));
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

/// Loads every chunk; returns (rows, raw bytes).
pub(crate) async fn load_chunks(
    ctx: LoadContext,
    jobs: Vec<LoadJob>,
) -> Result<(u64, u64), EngineError> {
    let workers = ctx.options.connections.max(1).min(jobs.len());
    let queue = Arc::new(Mutex::new(VecDeque::from(jobs)));
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
    let (mut rows, mut bytes) = (0, 0);
    let mut first_error: Option<EngineError> = None;
    while let Some(joined) = set.join_next().await {
        match joined
            .unwrap_or_else(|e| Err(EngineError::internal(format!("load worker crashed: {e}"))))
        {
            Ok((r, b)) => {
                rows += r;
                bytes += b;
            }
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
        None => Ok((rows, bytes)),
    }
}

async fn worker(
    ctx: &LoadContext,
    queue: &Mutex<VecDeque<LoadJob>>,
    stop: &CancellationToken,
) -> Result<(u64, u64), EngineError> {
    let describe = ctx.target.describe();
    let client = connect(&ctx.target, &ctx.target.database).await?;
    let mut setup = String::from("SET statement_timeout = 0; SET synchronous_commit = off;");
    if ctx.superuser {
        // No user trigger may fire while loading (none exist before post-data, but be sure).
        setup.push_str(" SET session_replication_role = replica;");
    }
    exec(&client, &setup, &describe).await?;
    let (mut rows, mut bytes) = (0, 0);
    loop {
        if stop.is_cancelled() {
            return Err(EngineError::cancelled());
        }
        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        let Some(job) = next else { break };
        let (r, b) = load_one(ctx, &client, &job, stop).await.map_err(|e| {
            if e.code == ErrorCode::ChecksumMismatch || e.code == ErrorCode::Cancelled {
                e
            } else {
                e.context(format!(
                    "loading {}.{} from {}",
                    job.table.schema, job.table.name, job.chunk.object.path
                ))
            }
        })?;
        ctx.tracker.chunk_done(r);
        rows += r;
        bytes += b;
    }
    Ok((rows, bytes))
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

async fn load_one(
    ctx: &LoadContext,
    client: &Client,
    job: &LoadJob,
    stop: &CancellationToken,
) -> Result<(u64, u64), EngineError> {
    let describe = ctx.target.describe();
    let pg = |e: tokio_postgres::Error| EngineError::from_pg(&e, &describe);
    let mut reader = ChunkReader::open(&ctx.store, &ctx.prefix, &job.chunk.object).await?;
    let begin = if job.freeze {
        format!(
            "BEGIN; TRUNCATE ONLY {}",
            qualified(&job.table.schema, &job.table.name)
        )
    } else {
        "BEGIN".to_string()
    };
    client.batch_execute(&begin).await.map_err(pg)?;
    let mut sink = Box::pin(
        client
            .copy_in(copy_in_sql(&job.table, job.freeze).as_str())
            .await
            .map_err(pg)?,
    );
    let mut raw = 0u64;
    let streamed: Result<(), EngineError> = async {
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return Err(EngineError::cancelled()),
                next = reader.next() => next?,
            };
            let Some(bytes) = next else { return Ok(()) };
            raw += bytes.len() as u64;
            ctx.tracker.add_bytes(bytes.len() as u64);
            sink.send(bytes).await.map_err(pg)?;
        }
    }
    .await;
    // Only a verified object may be committed: otherwise the sink is dropped
    // unfinished (COPY fails) and the transaction rolled back.
    let verified = streamed.and_then(|()| reader.verify());
    if let Err(e) = verified {
        drop(sink);
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(e);
    }
    let rows = sink.as_mut().finish().await.map_err(pg)?;
    if rows != job.chunk.rows || raw != job.chunk.raw_bytes {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(EngineError::new(
            ErrorCode::ChecksumMismatch,
            format!(
                "object {} loaded {rows} rows / {raw} bytes, the manifest says {} rows / {} bytes",
                job.chunk.object.path, job.chunk.rows, job.chunk.raw_bytes
            ),
        ));
    }
    client.batch_execute("COMMIT").await.map_err(pg)?;
    Ok((rows, raw))
}
