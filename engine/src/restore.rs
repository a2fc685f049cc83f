//! Restore as a new database: open the recovery point (manifest, schema
//! archive, selection), create missing roles (NOLOGIN, no password) and the
//! database, then pre-data; then table data, post-data entries (indexes,
//! constraints, triggers) and each table's `ANALYZE` on one pool of
//! connections, each step as soon as what it needs is in
//! ([`super::restore_schedule`]); then sequences, large objects, grants,
//! materialized views, event triggers and a final durable commit; then the
//! database's own settings, comment, privileges and owner. A failure after
//! the database was created drops it again, so nothing half-written is left.
//! Run for a job ([`RestoreRun`]), the data may be fanned out across the
//! fleet ([`super::restore_fanout`]) and the database is marked as the
//! job's restore in progress until it completes, so the job's next attempt
//! can drop what a dead attempt left.
//!
//! Each phase is a `tracing` span, so the job's trace shows where a
//! restore's time went: `restore`, with `schema` (the point's manifest and
//! schema archive) and `load`; under `load`: `pre-data`, `data` (a `table`
//! span per load, a `post` span per post-data batch, index and constraint
//! builds among them, an `analyze` span per table's `ANALYZE`; fanned out,
//! the post-data work after the loads is under `post-data`), `sequences`,
//! `large-objects`, `grants`, `analyze` and `flush`. The engine stays free
//! of any trace exporter: whoever installs one (the runner) gets the spans.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;

use pgvault_datastore::Datastore;
use pgvault_localpg::ToolSet;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::analyze;
use super::connect::{connect, exec};
use super::database_properties;
use super::error::{EngineError, ErrorCode};
use super::fanout::Fanout;
use super::ident::{qualified, quote_ident, quote_literal, readable};
use super::large_objects;
use super::manifest::DatabaseProperties;
use super::manifest::Manifest;
use super::pgtools;
use super::post_data::{self, Pass};
use super::progress::Tracker;
use super::recovery_point::{self, OpenedPoint};
use super::restore_data::{self, LoadContext};
use super::restore_fanout;
use super::restore_schedule;
use super::selection::Selection;
use super::toc;
use super::tool_compat;
use super::types::{EngineOptions, PgTarget, ProgressSink, RestoreSummary};

/// Restores the recovery point at `<prefix>/` as the new database `target.database`.
pub async fn restore_database(
    target: &PgTarget,
    store: &Datastore,
    prefix: &str,
    expected_manifest_sha256: Option<&str>,
    options: &EngineOptions,
    progress: Arc<dyn ProgressSink>,
    cancel: CancellationToken,
) -> Result<RestoreSummary, EngineError> {
    restore_database_selected(
        target,
        store,
        prefix,
        expected_manifest_sha256,
        &Selection::default(),
        options,
        progress,
        cancel,
    )
    .await
}

/// Restores the part of the recovery point that `selection` names (see
/// [`Selection`] for what comes along and what is skipped) as the new
/// database `target.database`. Only the restored tables' chunks are read.
#[allow(clippy::too_many_arguments)]
pub async fn restore_database_selected(
    target: &PgTarget,
    store: &Datastore,
    prefix: &str,
    expected_manifest_sha256: Option<&str>,
    selection: &Selection,
    options: &EngineOptions,
    progress: Arc<dyn ProgressSink>,
    cancel: CancellationToken,
) -> Result<RestoreSummary, EngineError> {
    restore_database_fanned(
        target,
        store,
        prefix,
        expected_manifest_sha256,
        selection,
        options,
        &RestoreRun::default(),
        progress,
        cancel,
    )
    .await
}

/// How a restore runs, beyond what it restores.
#[derive(Clone, Default)]
pub struct RestoreRun {
    /// The fleet to fan the loads out to (when the job asked for workers or
    /// the data is above the threshold); `None`: loads locally.
    pub fanout: Option<Fanout>,
    /// The job attempt the restore runs as ("<job id>" and its attempt):
    /// the new database is marked as this job's restore in progress until
    /// it is done, so the job's next attempt drops what a dead attempt left
    /// behind instead of refusing the name, and a failed attempt drops only
    /// its own database. `None`: not marked (a failure drops the database).
    pub owner: Option<(String, u32)>,
}

/// [`restore_database_selected`] run as `run` says: fanned out, and marked
/// as its job's.
#[allow(clippy::too_many_arguments)]
pub async fn restore_database_fanned(
    target: &PgTarget,
    store: &Datastore,
    prefix: &str,
    expected_manifest_sha256: Option<&str>,
    selection: &Selection,
    options: &EngineOptions,
    run: &RestoreRun,
    progress: Arc<dyn ProgressSink>,
    cancel: CancellationToken,
) -> Result<RestoreSummary, EngineError> {
    restore_in_span(
        target,
        store,
        prefix,
        expected_manifest_sha256,
        selection,
        options,
        run,
        progress,
        cancel,
    )
    .instrument(tracing::info_span!("restore", database = %target.database))
    .await
}

#[allow(clippy::too_many_arguments)]
async fn restore_in_span(
    target: &PgTarget,
    store: &Datastore,
    prefix: &str,
    expected_manifest_sha256: Option<&str>,
    selection: &Selection,
    options: &EngineOptions,
    run: &RestoreRun,
    progress: Arc<dyn ProgressSink>,
    cancel: CancellationToken,
) -> Result<RestoreSummary, EngineError> {
    // Within the server's grant: the maintenance connection and the data lanes.
    let options = &EngineOptions {
        connections: options.restore_data_connections(),
        ..options.clone()
    };
    let tracker = Tracker::new(progress);
    tracker.phase("connect");
    let admin = connect_maintenance(target).await?;
    let admin_describe = target.describe_db("postgres");
    let exists = admin
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
            &[&target.database],
        )
        .await
        .map_err(|e| EngineError::from_pg(&e, &admin_describe))?;
    if exists.is_some() {
        if let Some((job, _)) = &run.owner
            && in_progress_marker(&admin, &admin_describe, &target.database)
                .await?
                .is_some_and(|m| m.starts_with(&marker_prefix(job)))
        {
            // An earlier attempt of this very job died half-way.
            tracing::warn!(database = %target.database, "dropping the partial database an earlier attempt of this restore left");
            drop_database(&admin, &admin_describe, &target.database).await?;
        } else {
            return Err(EngineError::new(
                ErrorCode::UserErrorDatabaseNameAlreadyInUse,
                format!(
                    "database \"{}\" already exists on server {}:{}",
                    target.database, target.host, target.port
                ),
            ));
        }
    }

    tracker.phase("schema");
    let point = recovery_point::open(
        store,
        prefix,
        expected_manifest_sha256,
        options.encryption.as_ref(),
        selection,
        &cancel,
        tracker.clock(),
    )
    .instrument(tracing::info_span!("schema"))
    .await?;
    let target_version = server_version_num(&admin, &admin_describe).await?;
    let tools = restorable_into(options, &point.manifest, target_version)?;
    let unknown_settings = tool_compat::unknown_settings(tools.major, target_version);
    tracker.set_total(point.manifest.chunk_count());
    let superuser = is_superuser(&admin, &admin_describe).await?;
    create_missing_roles(&admin, &admin_describe, &point.manifest.roles).await?;
    create_database(&admin, &admin_describe, &target.database, &point.manifest).await?;
    tracing::info!(database = %target.database, "target database created");
    let marker = run
        .owner
        .as_ref()
        .map(|(job, attempt)| marker(job, *attempt));

    let loaded = async {
        if let Some(marker) = &marker {
            set_marker(&admin, &admin_describe, &target.database, Some(marker)).await?;
        }
        tokio::select! {
            _ = cancel.cancelled() => Err(EngineError::cancelled()),
            r = load(target, store, prefix, options, &point, &tools.dir, tracker.clone(), cancel.clone(), superuser, &unknown_settings, run.fanout.clone())
                .instrument(tracing::info_span!("load", database = %target.database)) => r,
        }
    }
    .await;
    let loaded = match loaded {
        Ok(mut summary) => {
            tracker.phase("database properties");
            // The data is in: no longer a restore in progress (a failure to
            // say so fails the restore like any other, dropping the database).
            let cleared = match &marker {
                Some(_) => set_marker(&admin, &admin_describe, &target.database, None).await,
                None => Ok(()),
            };
            match cleared {
                Ok(()) => {
                    let props = &point.manifest.database_properties;
                    summary.skipped_objects.extend(
                        apply_properties(
                            &admin,
                            &admin_describe,
                            &target.database,
                            props,
                            superuser,
                        )
                        .await,
                    );
                    Ok(summary)
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    match loaded {
        Ok(mut summary) => {
            tracker.phase("done");
            summary.stages = tracker.stage_times();
            tracing::info!(database = %target.database, rows = summary.rows, "restore completed");
            Ok(summary)
        }
        Err(mut error) => {
            // A fenced attempt must not drop the database its successor made.
            if let Some(marker) = &marker
                && in_progress_marker(&admin, &admin_describe, &target.database)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|m| &m != marker)
            {
                tracing::warn!(database = %target.database, code = %error.code, error = %error, "restore failed; the database is another attempt's now");
                return Err(error);
            }
            let dropped = drop_database(&admin, &admin_describe, &target.database).await;
            error.message = match dropped {
                Ok(()) => format!(
                    "{}; the partially restored database \"{}\" was dropped",
                    error.message, target.database
                ),
                Err(e) => format!(
                    "{}; dropping the partially restored database \"{}\" failed too: {e}",
                    error.message, target.database
                ),
            };
            tracing::warn!(database = %target.database, code = %error.code, error = %error, "restore failed");
            Err(error)
        }
    }
}

/// The comment marking a database as `job`'s restore in progress.
fn marker(job: &str, attempt: u32) -> String {
    format!("{}attempt {attempt}", marker_prefix(job))
}

fn marker_prefix(job: &str) -> String {
    format!("pgvault restore in progress: job {job} ")
}

/// The database's comment if it is a pgvault in-progress marker.
async fn in_progress_marker(
    admin: &Client,
    describe: &str,
    database: &str,
) -> Result<Option<String>, EngineError> {
    let row = admin
        .query_opt(
            "SELECT pg_catalog.shobj_description(oid, 'pg_database') FROM pg_catalog.pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .map_err(|e| EngineError::from_pg(&e, describe))?;
    Ok(row
        .and_then(|r| r.get::<_, Option<String>>(0))
        .filter(|c| c.starts_with("pgvault restore in progress: job ")))
}

async fn set_marker(
    admin: &Client,
    describe: &str,
    database: &str,
    marker: Option<&str>,
) -> Result<(), EngineError> {
    let value = marker.map(quote_literal).unwrap_or_else(|| "NULL".into());
    exec(
        admin,
        &format!("COMMENT ON DATABASE {} IS {value}", quote_ident(database)),
        describe,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn load(
    target: &PgTarget,
    store: &Datastore,
    prefix: &str,
    options: &EngineOptions,
    point: &OpenedPoint,
    bin_dir: &Path,
    tracker: Arc<Tracker>,
    cancel: CancellationToken,
    superuser: bool,
    unknown: &[&str],
    fanout: Option<Fanout>,
) -> Result<RestoreSummary, EngineError> {
    let describe = target.describe();
    let manifest = &point.manifest;
    let list = point.list_args();
    tracker.phase("pre-data");
    let mut args: Vec<OsString> = vec!["--section=pre-data".into()];
    args.extend(list.iter().cloned());
    pg_restore(bin_dir, target, &point.schema_file, &args, unknown)
        .instrument(tracing::info_span!("pre-data"))
        .await?;

    tracker.phase("data and indexes");
    let archive = tokio::fs::read(&point.schema_file)
        .await
        .map_err(|e| EngineError::internal(format!("schema archive: {e}")))?;
    let toc = toc::read_toc(&archive)?;
    drop(archive);
    let mut post = post_data::read(bin_dir, &point.schema_file, &list, &toc, manifest).await?;
    post.preamble = tool_compat::without_settings(&post.preamble, unknown);
    let ctx = LoadContext {
        target: target.clone(),
        store: store.clone(),
        prefix: prefix.to_string(),
        options: options.clone(),
        tracker: tracker.clone(),
        cancel: cancel.clone(),
        superuser,
    };
    // Fanned out: planned for every lane of every worker, so a big table's
    // chunks spread over the fleet.
    let total_bytes: u64 = manifest
        .tables
        .iter()
        .flat_map(|t| t.chunks.iter())
        .map(|c| c.raw_bytes)
        .sum();
    let fanned =
        fanout.and_then(|f| Some((f.helpers(manifest.chunk_count() as usize, total_bytes)?, f)));
    let lanes = match &fanned {
        Some((helpers, _)) => options.connections * (*helpers as usize + 1),
        None => options.connections,
    };
    let jobs = restore_data::plan(manifest, superuser, lanes);
    // A table is done once its data, indexes and constraints are in and it
    // is analyzed (restore_schedule says when).
    tracker.plan_tables(
        manifest.tables.iter().map(|t| {
            let key = qualified(&t.schema, &t.name);
            (key, readable(&t.schema, &t.name), t.chunks.len() as u32)
        }),
        false,
    );
    // The trace shows where the time went: the loads (one `table` span
    // each), post-data entries (`post`: index and constraint builds among
    // them) and each table's `analyze`, under `data`; fanned out, the
    // post-data work after the loads under `post-data`.
    let loads = jobs.len();
    let (rows, mut bytes) = match fanned {
        Some((helpers, fanout)) if jobs.len() > 1 => {
            let client = connect(target, &target.database).await?;
            restore_fanout::create_bookkeeping(&client, &describe).await?;
            let (rows, bytes) = restore_fanout::load_fanned(
                ctx.clone(),
                jobs,
                &post.preamble,
                fanout.dispatch,
                helpers,
            )
            .instrument(tracing::info_span!("data", loads, helpers))
            .await?;
            restore_fanout::drop_bookkeeping(&client, &describe).await?;
            // Every load is in: post-data and ANALYZE on the leader alone.
            let (more_rows, more_bytes) = restore_schedule::run(ctx, Vec::new(), &post, manifest)
                .instrument(tracing::info_span!("post-data"))
                .await?;
            (rows + more_rows, bytes + more_bytes)
        }
        _ => {
            restore_schedule::run(ctx, jobs, &post, manifest)
                .instrument(tracing::info_span!("data", loads, helpers = 0u32))
                .await?
        }
    };

    let client = connect(target, &target.database).await?;
    tracker.phase("sequences");
    async {
        for seq in &manifest.sequences {
            client
                .query_one(
                    "SELECT pg_catalog.setval($1::text::regclass, $2, $3)",
                    &[
                        &qualified(&seq.schema, &seq.name),
                        &seq.last_value,
                        &seq.is_called,
                    ],
                )
                .await
                .map_err(|e| {
                    EngineError::from_pg(&e, &describe)
                        .context(format!("setting sequence {}.{}", seq.schema, seq.name))
                })?;
        }
        Ok::<_, EngineError>(())
    }
    .instrument(tracing::info_span!(
        "sequences",
        sequences = manifest.sequences.len()
    ))
    .await?;
    if let Some(lo) = &manifest.large_objects {
        bytes += large_objects::restore(
            &client,
            &describe,
            store,
            prefix,
            lo,
            options,
            tracker.clock(),
        )
        .instrument(tracing::info_span!("large-objects"))
        .await?;
        tracker.chunk_done(0);
    }

    tracker.phase("grants and views");
    async {
        restore_schedule::run_deferred(&client, &describe, &post, Pass::Acl).await?;
        refresh_matviews(&client, &describe, manifest).await?;
        restore_schedule::run_deferred(&client, &describe, &post, Pass::PostAcl).await
    }
    .instrument(tracing::info_span!("grants"))
    .await?;

    tracker.phase("analyze");
    analyze::analyze_views_and_parents(&client, &describe, manifest)
        .instrument(tracing::info_span!("analyze", scope = "views and parents"))
        .await?;
    tracker.phase("final flush");
    // Loads and entries committed without waiting for WAL flushes; one
    // synchronous commit makes all of them durable before success is reported.
    exec(
        &client,
        "SET synchronous_commit = on; BEGIN; SELECT pg_catalog.txid_current(); COMMIT",
        &describe,
    )
    .instrument(tracing::info_span!("flush"))
    .await?;
    Ok(RestoreSummary {
        rows,
        bytes,
        tables: manifest.tables.len() as u32,
        skipped_objects: point.skipped.clone(),
        output: None,
        stages: Default::default(),
    })
}

/// Restores the database's own settings, comment, privileges and (for a
/// superuser) owner; returns one line per statement the target refused
/// (e.g. a per-role setting needs CREATEROLE), which ends the job
/// completed with warnings instead of failing a restore whose data is in.
async fn apply_properties(
    admin: &Client,
    describe: &str,
    database: &str,
    props: &DatabaseProperties,
    superuser: bool,
) -> Vec<String> {
    let mut refused = Vec::new();
    for statement in database_properties::statements(props, superuser) {
        if let Err(e) = exec(admin, &statement.for_database(database), describe).await {
            tracing::warn!(database = %database, what = %statement.what, error = %e, "database property not restored");
            refused.push(format!(
                "DATABASE PROPERTY {} (not restored: {})",
                statement.what, e.message
            ));
        }
    }
    refused
}

pub(crate) async fn connect_maintenance(target: &PgTarget) -> Result<Client, EngineError> {
    match connect(target, "postgres").await {
        Err(e) if e.code == ErrorCode::UserErrorDBNotFound => connect(target, "template1").await,
        other => other,
    }
}

async fn is_superuser(admin: &Client, describe: &str) -> Result<bool, EngineError> {
    let row = admin
        .query_one(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| EngineError::from_pg(&e, describe))?;
    Ok(row.get(0))
}

/// `CREATE ROLE … NOLOGIN` for every referenced role the target lacks.
async fn create_missing_roles(
    admin: &Client,
    describe: &str,
    roles: &[String],
) -> Result<(), EngineError> {
    for role in roles {
        let exists = admin
            .query_opt(
                "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
                &[role],
            )
            .await
            .map_err(|e| EngineError::from_pg(&e, describe))?;
        if exists.is_none() {
            exec(
                admin,
                &format!("CREATE ROLE {} NOLOGIN", quote_ident(role)),
                describe,
            )
            .await
            .map_err(|e| e.context(format!("creating role \"{role}\" referenced by the backup")))?;
            tracing::info!(role = %role, "created missing role without login");
        }
    }
    Ok(())
}

/// Creates the database from template0 with the source encoding and locale,
/// falling back to the server defaults when the locale does not exist here.
async fn create_database(
    admin: &Client,
    describe: &str,
    name: &str,
    manifest: &Manifest,
) -> Result<(), EngineError> {
    let base = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(name));
    let encoding = format!(" ENCODING {}", quote_literal(&manifest.encoding));
    let locale = format!(
        " LC_COLLATE {} LC_CTYPE {}",
        quote_literal(&manifest.collate),
        quote_literal(&manifest.ctype)
    );
    let attempts = [
        format!("{base}{encoding}{locale}"),
        format!("{base}{encoding}"),
        base.clone(),
    ];
    let mut last = None;
    for sql in attempts {
        match exec(admin, &sql, describe).await {
            Ok(()) => return Ok(()),
            Err(e) if matches!(e.code, ErrorCode::Internal) => {
                tracing::debug!(error = %e, "create database attempt failed, trying server defaults");
                last = Some(e);
            }
            Err(e) => return Err(e.context(format!("creating database \"{name}\""))),
        }
    }
    Err(last
        .unwrap_or_else(|| EngineError::internal("create database failed"))
        .context(format!("creating database \"{name}\"")))
}

/// The target's `server_version_num`.
async fn server_version_num(admin: &Client, describe: &str) -> Result<i32, EngineError> {
    Ok(admin
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .map_err(|e| EngineError::from_pg(&e, describe))?
        .get(0))
}

/// Refuses a target older than the point's source (before anything is
/// created there) and chooses the tools: the lowest major at least the
/// target's, the source's and that of the `pg_dump` that wrote the
/// point's schema archive.
fn restorable_into(
    options: &EngineOptions,
    manifest: &Manifest,
    target_version: i32,
) -> Result<ToolSet, EngineError> {
    let target_major = u32::try_from(target_version / 10_000).unwrap_or(0);
    pgvault_manifest::check_restorable(&manifest.server_version, target_major)
        .map_err(|e| EngineError::new(ErrorCode::UserErrorRestoreTargetTooOld, e.to_string()))?;
    pgtools::restore_tool_set(options, manifest, Some(target_version))
}

pub(crate) async fn drop_database(
    admin: &Client,
    describe: &str,
    name: &str,
) -> Result<(), EngineError> {
    let version = server_version_num(admin, describe).await?;
    let force = if version >= 130000 {
        " WITH (FORCE)"
    } else {
        ""
    };
    exec(
        admin,
        &format!("DROP DATABASE IF EXISTS {}{force}", quote_ident(name)),
        describe,
    )
    .await
}

async fn pg_restore(
    bin_dir: &Path,
    target: &PgTarget,
    file: &Path,
    args: &[OsString],
    unknown_settings: &[&str],
) -> Result<(), EngineError> {
    let mut command = pgtools::command(bin_dir, "pg_restore", target, &target.database);
    command.args(args);
    if unknown_settings.is_empty() {
        command.arg("--exit-on-error");
    }
    // One commit per statement; none waits for its WAL flush (the restore
    // ends with one synchronous commit that makes everything durable).
    command.env("PGOPTIONS", "-c synchronous_commit=off");
    command
        .arg("--no-tablespaces")
        .arg(file)
        .stdout(std::process::Stdio::null());
    let mut child = pgtools::spawn(command, "pg_restore")?;
    let stderr = pgtools::collect_stderr(&mut child);
    if unknown_settings.is_empty() {
        return pgtools::wait(child, stderr, "pg_restore", &target.describe()).await;
    }
    // A newer pg_restore than the target: its session settings the target
    // lacks are the only errors tolerated (see tool_compat).
    let status = child.wait().await.map_err(|e| {
        EngineError::new(
            ErrorCode::PgToolFailed,
            format!("pg_restore did not finish: {e}"),
        )
    })?;
    let stderr = stderr.await.unwrap_or_default();
    if status.success() || tool_compat::only_unknown_settings_failed(&stderr, unknown_settings) {
        return Ok(());
    }
    Err(pgtools::tool_error(
        "pg_restore",
        &target.describe(),
        &status.to_string(),
        &stderr,
    ))
}

/// Refreshes materialized views that were populated, retrying ones that
/// depend on views not refreshed yet.
async fn refresh_matviews(
    client: &Client,
    describe: &str,
    manifest: &Manifest,
) -> Result<(), EngineError> {
    let mut pending: Vec<_> = manifest.materialized_views.iter().collect();
    while !pending.is_empty() {
        let mut failed = Vec::new();
        let mut last_error = None;
        for view in &pending {
            let sql = format!(
                "REFRESH MATERIALIZED VIEW {}",
                qualified(&view.schema, &view.name)
            );
            if let Err(e) = exec(client, &sql, describe).await {
                last_error = Some(e.context(format!(
                    "refreshing materialized view {}.{}",
                    view.schema, view.name
                )));
                failed.push(*view);
            }
        }
        if failed.len() == pending.len() {
            return Err(last_error.unwrap_or_else(|| EngineError::internal("refresh failed")));
        }
        pending = failed;
    }
    Ok(())
}
