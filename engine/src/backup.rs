//! A backup, end to end: the snapshot holder (REPEATABLE READ, exported
//! snapshot, ACCESS SHARE on every table), `pg_dump --schema-only -Fc` and
//! the data chunks in parallel on that snapshot, then sequences and large
//! objects, the key object of an encrypted point (`key.json`,
//! [`EngineOptions::key_object`]), and `manifest.json` last — the commit
//! point. Fanned out
//! ([`backup_fanned`]), the data chunks are dumped by the fleet on this
//! snapshot ([`super::fanout`]) while this process holds it.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use pgvault_datastore::Datastore;
use tokio::io::AsyncReadExt;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::backup_data::{self, DumpContext};
use super::backup_plan::{self, PlannedChunk};
use super::catalog::{self, TableInfo};
use super::connect::{connect, exec};
use super::database_properties;
use super::error::{EngineError, ErrorCode};
use super::fanout::{self, Fanout};
use super::globals;
use super::ident::{qualified, readable};
use super::key_ranges;
use super::large_objects;
use super::manifest::{
    FORMAT_VERSION, MANIFEST_FILE, Manifest, ObjectEntry, SCHEMA_FILE, TableEntry,
};
use super::objects::{self, ObjectWriter, put_small, seal_small};
use super::pgtools;
use super::progress::Tracker;
use super::seal::key_object::KEY_OBJECT_FILE;
use super::stages::{Lane, SideTask, StageClock};
use super::types::{BackupSummary, EngineOptions, PgTarget, ProgressSink};

/// Tables locked per `LOCK TABLE` statement.
const LOCK_BATCH: usize = 200;
/// Read size from pg_dump's stdout.
const PIPE_BUFFER: usize = 256 * 1024;

/// Takes a consistent backup of `source` into `<prefix>/` of `store`.
pub async fn backup(
    source: &PgTarget,
    store: &Datastore,
    prefix: &str,
    options: &EngineOptions,
    progress: Arc<dyn ProgressSink>,
    cancel: CancellationToken,
) -> Result<BackupSummary, EngineError> {
    backup_fanned(source, store, prefix, options, None, progress, cancel).await
}

/// [`backup`] that may fan its data out across the fleet through
/// `fanout` (when the job asked for workers or its data is above the
/// threshold); `None`: always dumps locally.
pub async fn backup_fanned(
    source: &PgTarget,
    store: &Datastore,
    prefix: &str,
    options: &EngineOptions,
    fanout: Option<Fanout>,
    progress: Arc<dyn ProgressSink>,
    cancel: CancellationToken,
) -> Result<BackupSummary, EngineError> {
    let tracker = Tracker::new(progress);
    let result = tokio::select! {
        _ = cancel.cancelled() => Err(EngineError::cancelled()),
        result = run(source, store, prefix, options, fanout, tracker.clone(), cancel.clone())
            .instrument(tracing::info_span!("backup", database = %source.database)) => result,
    };
    match &result {
        Ok(summary) => {
            tracing::info!(database = %source.database, chunks = summary.chunk_count, rows = summary.rows, "backup completed")
        }
        Err(e) => {
            tracing::warn!(database = %source.database, code = %e.code, error = %e, "backup failed")
        }
    }
    result
}

async fn run(
    source: &PgTarget,
    store: &Datastore,
    prefix: &str,
    options: &EngineOptions,
    fanout: Option<Fanout>,
    tracker: Arc<Tracker>,
    cancel: CancellationToken,
) -> Result<BackupSummary, EngineError> {
    let describe = source.describe();
    tracker.phase("connect");
    let holder = connect(source, &source.database).await?;
    exec(
        &holder,
        "SET row_security = off; SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0; \
         BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        &describe,
    )
    .await?;
    let row = holder
        .query_one("SELECT pg_catalog.pg_export_snapshot(), now()", &[])
        .await
        .map_err(|e| EngineError::from_pg(&e, &describe))?;
    let (snapshot_id, snapshot_time): (String, DateTime<Utc>) = (row.get(0), row.get(1));
    let lock_ms = options.lock_timeout.as_millis().max(1);
    exec(
        &holder,
        &format!("SET LOCAL lock_timeout = {lock_ms}"),
        &describe,
    )
    .await?;

    let info = catalog::database_info(&holder, &describe).await?;
    let tools = pgtools::tool_set(options, info.server_version_num.into())?;
    let bin_dir = tools.dir;
    let tables = catalog::tables(&holder, &describe, info.server_version_num).await?;
    lock_tables(&holder, &tables, &describe).await?;
    let database_properties = database_properties::capture(&holder, &describe).await?;
    let mut roles = catalog::referenced_roles(&holder, &describe).await?;
    roles.extend(database_properties.roles().map(str::to_string));
    roles.retain(|r| !r.starts_with("pg_"));
    roles.sort();
    roles.dedup();
    let materialized_views = catalog::populated_matviews(&holder, &describe).await?;
    let relations = catalog::selectable_relations(&holder, &describe).await?;
    let schemas = catalog::schemas(&holder, &describe).await?;
    tracing::info!(database = %source.database, tables = tables.len(), snapshot = %snapshot_id, "snapshot exported and tables locked");

    let version = info.server_version_num;
    let key_bounds = key_ranges::bounds(&holder, &describe, &tables, |t| {
        !backup_plan::has_tid_range_scans(version) && backup_plan::chunk_count(t, options) > 1
    })
    .await?;
    let objects = backup_plan::plan(&tables, options, version, &key_bounds);
    let chunks: Vec<&PlannedChunk> = objects.iter().flat_map(|o| o.chunks.iter()).collect();
    let lo_count = large_objects::count(&holder, &describe).await?;
    tracker.set_total(chunks.len() as u32 + u32::from(lo_count > 0));
    let table_names: Arc<Vec<String>> = Arc::new(
        tables
            .iter()
            .map(|t| qualified(&t.schema, &t.name))
            .collect(),
    );
    let mut chunks_per_table = vec![0u32; tables.len()];
    for chunk in &chunks {
        if let Some(count) = chunks_per_table.get_mut(chunk.table) {
            *count += 1;
        }
    }
    tracker.plan_tables(
        tables.iter().zip(chunks_per_table).map(|(t, chunks)| {
            (
                qualified(&t.schema, &t.name),
                readable(&t.schema, &t.name),
                chunks,
            )
        }),
        true,
    );
    tracker.phase("data");
    // Within the server's grant: the holder, pg_dump and the data lanes.
    let lanes = options.backup_lanes();
    let ctx = DumpContext {
        source: source.clone(),
        snapshot_id: snapshot_id.clone(),
        store: store.clone(),
        prefix: prefix.to_string(),
        options: EngineOptions {
            connections: lanes.data,
            ..options.clone()
        },
        tracker: tracker.clone(),
        table_names,
        readable_names: Arc::new(
            tables
                .iter()
                .map(|t| readable(&t.schema, &t.name))
                .collect(),
        ),
        cancel: cancel.clone(),
    };
    // The engine's phases as spans (the job's trace shows where the time
    // went): schema and data side by side when the server's grant allows,
    // then the manifest.
    let schema = dump_schema(
        &bin_dir,
        source,
        &snapshot_id,
        lock_ms,
        store,
        prefix,
        options,
        tracker.clock(),
    )
    .instrument(tracing::info_span!("schema"));
    let planned_bytes: u64 = objects.iter().map(|o| o.estimated_bytes).sum();
    let fanned = fanout.and_then(|f| Some((f.helpers(objects.len(), planned_bytes)?, f)));
    let data_span = tracing::info_span!(
        "data",
        objects = objects.len(),
        helpers = fanned.as_ref().map(|(h, _)| *h).unwrap_or(0)
    );
    let data = async move {
        match fanned {
            Some((helpers, f)) => fanout::dump_fanned(ctx, objects, f.dispatch, helpers).await,
            None => backup_data::dump_objects(ctx, objects).await,
        }
    }
    .instrument(data_span);
    let (schema, dumped) = if lanes.schema_alongside_data {
        tokio::try_join!(schema, data)?
    } else {
        let schema = schema.await?;
        (schema, data.await?)
    };
    if cancel.is_cancelled() {
        return Err(EngineError::cancelled());
    }

    tracker.phase("sequences");
    let sequences = catalog::sequences(&holder, &describe).await?;
    let large_objects = if lo_count > 0 {
        let lo = large_objects::dump(&holder, &describe, store, prefix, options, tracker.clock())
            .await?;
        tracker.chunk_done(0);
        Some(lo)
    } else {
        None
    };
    exec(&holder, "COMMIT", &describe).await?;
    let globals = if options.capture_globals {
        Some(
            globals::dump(
                &bin_dir,
                source,
                options.capture_role_passwords,
                store,
                prefix,
                options.encryption.as_ref(),
                tracker.clock(),
            )
            .await?,
        )
    } else {
        None
    };

    let mut table_entries: Vec<TableEntry> = tables
        .into_iter()
        .map(|t| TableEntry {
            oid: t.oid,
            schema: t.schema,
            name: t.name,
            columns: t.columns,
            chunks: Vec::new(),
            extension_config: t.extension_filter.is_some(),
        })
        .collect();
    for (table, chunk) in dumped {
        if let Some(entry) = table_entries.get_mut(table) {
            entry.chunks.push(chunk);
        }
    }
    for entry in &mut table_entries {
        entry.chunks.sort_by_key(|c| c.index);
    }
    let globals_role_passwords = globals.is_some() && options.capture_role_passwords;
    let mut manifest = Manifest {
        format_version: FORMAT_VERSION,
        tool: "pgvault".to_string(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        server_version: info.server_version.clone(),
        server_version_num: info.server_version_num,
        snapshot_time,
        database: source.database.clone(),
        encoding: info.encoding,
        collate: info.collate,
        ctype: info.ctype,
        schema,
        roles,
        tables: table_entries,
        sequences,
        materialized_views,
        large_objects,
        database_properties,
        relations: Some(relations),
        schemas: Some(schemas),
        globals,
        globals_role_passwords,
        dump_tools_major: Some(tools.major),
        key_object: None,
    };

    tracker.phase("final flush");
    // The lowest version that reads it: points without bundles stay
    // readable by older pgvault versions.
    manifest.format_version = manifest.required_format_version();
    // Every object durable before the manifest names them, and the manifest
    // durable before the point is reported: a crash never leaves a manifest
    // pointing at lost data, nor a Completed backup without its manifest.
    let written = async {
        // The key object before the manifest, which records it.
        if let Some(key_object) = &options.key_object {
            let entry = put_small(
                store,
                prefix,
                KEY_OBJECT_FILE,
                key_object.to_json(),
                tracker.clock(),
            )
            .await?;
            manifest.key_object = Some(entry);
        }
        let json = manifest.to_json();
        objects::flush(store).await?;
        let stored = seal_small(
            options.encryption.as_ref(),
            MANIFEST_FILE,
            json,
            tracker.clock(),
        )
        .await?;
        let written = put_small(store, prefix, MANIFEST_FILE, stored, tracker.clock()).await?;
        objects::flush(store).await?;
        Ok::<_, EngineError>(written)
    }
    .instrument(tracing::info_span!("manifest"))
    .await?;
    let (manifest_sha256, manifest_size) = (written.sha256, written.size);
    tracker.phase("done");

    let chunk_entries = manifest
        .tables
        .iter()
        .flat_map(|t| t.chunks.iter())
        .chain(manifest.large_objects.as_ref().map(|l| &l.data));
    // Each object once (a bundle is named by all its tables' chunks).
    let stored_bytes: u64 = manifest.objects().iter().map(|o| o.size).sum::<u64>() + manifest_size;
    let (mut raw_bytes, mut rows) = (0, 0);
    for chunk in chunk_entries {
        raw_bytes += chunk.raw_bytes;
    }
    // Table rows only (the large-object chunk counts objects, not rows).
    for chunk in manifest.tables.iter().flat_map(|t| t.chunks.iter()) {
        rows += chunk.rows;
    }
    Ok(BackupSummary {
        snapshot_time,
        stored_bytes,
        raw_bytes,
        chunk_count: manifest.chunk_count(),
        manifest_sha256,
        server_version: info.server_version,
        rows,
        stages: tracker.stage_times(),
    })
}

/// `LOCK TABLE … IN ACCESS SHARE MODE` on every dumped table, in batches.
async fn lock_tables(
    holder: &Client,
    tables: &[TableInfo],
    describe: &str,
) -> Result<(), EngineError> {
    for batch in tables.chunks(LOCK_BATCH) {
        let names = batch
            .iter()
            .map(|t| format!("ONLY {}", qualified(&t.schema, &t.name)))
            .collect::<Vec<_>>()
            .join(", ");
        exec(
            holder,
            &format!("LOCK TABLE {names} IN ACCESS SHARE MODE"),
            describe,
        )
        .await
        .map_err(|e| e.context("locking the tables to back up"))?;
    }
    Ok(())
}

/// Streams `pg_dump --schema-only -Fc` on the snapshot into `schema.dump`
/// (a side task: [`SideTask::SchemaDump`], on a connection of its own).
#[allow(clippy::too_many_arguments)]
async fn dump_schema(
    bin_dir: &Path,
    source: &PgTarget,
    snapshot_id: &str,
    lock_ms: u128,
    store: &Datastore,
    prefix: &str,
    options: &EngineOptions,
    clock: &Arc<StageClock>,
) -> Result<ObjectEntry, EngineError> {
    // Held until the archive is stored: its lifetime is the task's time.
    let _side_task = Lane::side(clock.clone(), SideTask::SchemaDump);
    let mut command = pgtools::command(bin_dir, "pg_dump", source, &source.database);
    command
        .arg("--schema-only")
        .arg("--format=custom")
        .arg(format!("--snapshot={snapshot_id}"))
        .arg(format!("--lock-wait-timeout={lock_ms}"))
        .stdout(std::process::Stdio::piped());
    let mut child = pgtools::spawn(command, "pg_dump")?;
    let stderr = pgtools::collect_stderr(&mut child);
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| EngineError::internal("pg_dump has no stdout"))?;
    let mut writer = ObjectWriter::create(
        store,
        prefix,
        SCHEMA_FILE,
        options.part_size,
        options.parts_per_connection(),
        clock.clone(),
    )
    .sealed(options.encryption.as_ref());
    let mut buffer = vec![0u8; PIPE_BUFFER];
    let copied: Result<(), EngineError> = async {
        loop {
            let n = stdout.read(&mut buffer).await.map_err(|e| {
                EngineError::new(
                    ErrorCode::PgToolFailed,
                    format!("reading pg_dump output: {e}"),
                )
            })?;
            if n == 0 {
                return Ok(());
            }
            writer.write(&buffer[..n]).await?;
        }
    }
    .await;
    let waited = pgtools::wait(child, stderr, "pg_dump", &source.describe()).await;
    if let Err(e) = copied.and(waited) {
        writer.abort().await;
        return Err(e);
    }
    writer.finish().await
}
