//! A restore's work after pre-data, on one pool of connections that take
//! their next task from the shared [`Plan`] (data, post-data entries,
//! `ANALYZE`s; see [`super::restore_plan`] for the order). The first
//! failure stops the pool. Also the deferred passes (grants, event
//! triggers), run on one connection at the end.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::connect::{connect, exec};
use super::error::{EngineError, ErrorCode};
use super::manifest::Manifest;
use super::post_data::{Pass, PostData, PostEntry};
use super::restore_data::{LoadContext, LoadJob, load_job};
use super::restore_plan::{Plan, PostBatch, Task, shares_lock};
use super::stages::{Lane, LaneStage};

struct Shared {
    plan: Mutex<Plan>,
    changed: Notify,
}

/// Runs the data, main-pass post-data and table `ANALYZE`s; returns
/// (rows, raw bytes) loaded.
pub(crate) async fn run(
    ctx: LoadContext,
    jobs: Vec<LoadJob>,
    post: &PostData,
    manifest: &Manifest,
) -> Result<(u64, u64), EngineError> {
    let shared = Arc::new(Shared {
        plan: Mutex::new(Plan::new(jobs, post, manifest, ctx.options.connections)),
        changed: Notify::new(),
    });
    let stop = ctx.cancel.child_token();
    let mut set = JoinSet::new();
    for _ in 0..ctx.options.connections.max(1) {
        let (ctx, shared, stop) = (ctx.clone(), shared.clone(), stop.clone());
        let preamble = post.preamble.clone();
        // In the caller's span: the lanes' spans and lines are the task's.
        set.spawn(
            async move {
                let result = worker(&ctx, &shared, &preamble, &stop).await;
                if result.is_err() {
                    stop.cancel();
                    shared.changed.notify_waiters();
                }
                result
            }
            .in_current_span(),
        );
    }
    let (mut rows, mut bytes) = (0, 0);
    let mut first_error: Option<EngineError> = None;
    while let Some(joined) = set.join_next().await {
        match joined.unwrap_or_else(|e| {
            Err(EngineError::internal(format!(
                "restore worker crashed: {e}"
            )))
        }) {
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
    shared: &Shared,
    preamble: &str,
    stop: &CancellationToken,
) -> Result<(u64, u64), EngineError> {
    let mut lane = Lane::start(ctx.tracker.clock().clone());
    let client = open_lane(ctx, preamble).await?;
    let mut replica = ctx.superuser;
    let (mut rows, mut bytes) = (0, 0);
    loop {
        // Registered before looking, so a change made meanwhile is not missed.
        let notified = shared.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if stop.is_cancelled() {
            return Err(EngineError::cancelled());
        }
        let next = {
            let mut plan = shared.plan.lock().unwrap_or_else(|p| p.into_inner());
            match plan.next() {
                Some(task) => Some(task),
                None if plan.all_done() => return Ok((rows, bytes)),
                None => {
                    if let Some(waiting) = plan.stuck() {
                        return Err(EngineError::internal(format!(
                            "post-data entries wait on dependencies that never complete: {waiting}"
                        )));
                    }
                    None
                }
            }
        };
        let Some(task) = next else {
            lane.enter(LaneStage::Idle);
            tokio::select! {
                _ = stop.cancelled() => return Err(EngineError::cancelled()),
                _ = &mut notified => continue,
            }
        };
        let (r, b) = run_task(ctx, &client, &task, &mut replica, stop, &mut lane).await?;
        rows += r;
        bytes += b;
        shared
            .plan
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .finished(&task);
        shared.changed.notify_waiters();
    }
}

/// A connection to the target set up for loading: the schema's session
/// preamble, no statement timeout, no waiting for WAL flushes and, for a
/// superuser, no user trigger firing.
pub(crate) async fn open_lane(ctx: &LoadContext, preamble: &str) -> Result<Client, EngineError> {
    let describe = ctx.target.describe();
    let client = connect(&ctx.target, &ctx.target.database).await?;
    let mut setup = format!("{preamble}\nSET statement_timeout = 0; SET synchronous_commit = off;");
    if ctx.superuser {
        // No user trigger fires while loading; post-data entries run with
        // the default role, as pg_restore runs them.
        setup.push_str(" SET session_replication_role = replica;");
    }
    exec(&client, &setup, &describe).await?;
    Ok(client)
}

async fn run_task(
    ctx: &LoadContext,
    client: &Client,
    task: &Task,
    replica: &mut bool,
    stop: &CancellationToken,
    lane: &mut Lane,
) -> Result<(u64, u64), EngineError> {
    let describe = ctx.target.describe();
    match task {
        Task::Data(job) => {
            lane.enter(LaneStage::CopyInWait);
            if ctx.superuser && !*replica {
                exec(client, "SET session_replication_role = replica", &describe).await?;
                *replica = true;
            }
            load_job(ctx, client, job, stop, lane).await
        }
        Task::Post(batch) => {
            let builds = batch
                .entries
                .iter()
                .all(|e| shares_lock(e) || e.label.starts_with("CONSTRAINT "));
            lane.enter(if builds {
                LaneStage::IndexBuild
            } else {
                LaneStage::PostData
            });
            if *replica {
                exec(client, "SET session_replication_role = DEFAULT", &describe).await?;
                *replica = false;
            }
            // One span per batch: an index or constraint build, or other
            // post-data entries (a batch of small tables' runs together).
            let span = tracing::info_span!(
                "post",
                entry = %batch.entries.first().map(|e| e.label.as_str()).unwrap_or_default(),
                entries = batch.entries.len(),
                build = builds,
            );
            tokio::select! {
                _ = stop.cancelled() => Err(EngineError::cancelled()),
                r = run_entries(client, batch, &describe).instrument(span) => r.map(|()| (0, 0)),
            }
        }
        Task::Analyze(names) => {
            lane.enter(LaneStage::Analyze);
            let sql = format!("ANALYZE {}", names.join(", "));
            let span = tracing::info_span!(
                "analyze",
                table = %names.first().map(String::as_str).unwrap_or_default(),
                tables = names.len(),
            );
            tokio::select! {
                _ = stop.cancelled() => Err(EngineError::cancelled()),
                r = exec(client, &sql, &describe).instrument(span) => r
                    .map(|()| {
                        // The tables' last step: data, entries and statistics are in.
                        for name in names {
                            ctx.tracker.table_finished(name);
                        }
                        (0, 0)
                    })
                    .map_err(|e| e.context(format!("analyzing {}", names.join(", ")))),
            }
        }
    }
}

/// Runs a batch of entries in one round trip (one implicit transaction);
/// if that fails, each alone, so the error names the entry that failed.
async fn run_entries(
    client: &Client,
    batch: &PostBatch,
    describe: &str,
) -> Result<(), EngineError> {
    let fail = |e: tokio_postgres::Error, entry: &PostEntry| {
        EngineError::from_pg(&e, describe).context(format!("restoring {}", entry.label))
    };
    if let Some(workers) = batch.parallel_workers {
        exec(
            client,
            &format!("SET max_parallel_maintenance_workers = {workers}"),
            describe,
        )
        .await?;
    }
    let result = match &batch.entries[..] {
        [entry] => client
            .batch_execute(&entry.sql)
            .await
            .map_err(|e| fail(e, entry)),
        entries => {
            let sql: Vec<&str> = entries.iter().map(|e| e.sql.as_str()).collect();
            match client.batch_execute(&sql.join("\n")).await {
                Ok(()) => Ok(()),
                Err(_) => {
                    let mut result = Ok(());
                    for entry in entries {
                        if let Err(e) = client.batch_execute(&entry.sql).await {
                            result = Err(fail(e, entry));
                            break;
                        }
                    }
                    result
                }
            }
        }
    };
    if batch.parallel_workers.is_some() {
        exec(client, "RESET max_parallel_maintenance_workers", describe).await?;
    }
    result
}

/// Runs the entries of a deferred pass (grants, or event triggers) in
/// script order on one connection.
pub(crate) async fn run_deferred(
    client: &Client,
    describe: &str,
    post: &PostData,
    pass: Pass,
) -> Result<(), EngineError> {
    let entries: Vec<&PostEntry> = post.entries.iter().filter(|e| e.pass == pass).collect();
    if entries.is_empty() {
        return Ok(());
    }
    exec(client, &post.preamble, describe).await?;
    let mut seen = HashSet::new();
    for entry in entries {
        if !seen.insert(entry.dump_id) {
            continue;
        }
        client.batch_execute(&entry.sql).await.map_err(|e| {
            EngineError::from_pg(&e, describe).context(format!("restoring {}", entry.label))
        })?;
    }
    Ok(())
}
