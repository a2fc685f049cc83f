//! Restore as a new database: verify the manifest, download and verify the
//! schema archive, create missing roles (NOLOGIN, no password) and the
//! database, then pre-data, chunks in parallel, sequences, large objects,
//! post-data in parallel, materialized views and `ANALYZE`. A failure after
//! the database was created drops it again, so nothing half-written is left.

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use pgvault_datastore::Datastore;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::connect::{connect, exec};
use super::error::{EngineError, ErrorCode, store_error};
use super::ident::{qualified, quote_ident, quote_literal};
use super::large_objects;
use super::manifest::{MANIFEST_FILE, Manifest, ObjectEntry};
use super::objects::{get_small, object_path};
use super::pgtools;
use super::progress::Tracker;
use super::restore_data::{self, LoadContext};
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
    let tracker = Tracker::new(progress);
    let bin_dir = pgtools::bin_dir(options)?;
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
        return Err(EngineError::new(
            ErrorCode::UserErrorDatabaseNameAlreadyInUse,
            format!(
                "database \"{}\" already exists on server {}:{}",
                target.database, target.host, target.port
            ),
        ));
    }

    let manifest = read_manifest(store, prefix, expected_manifest_sha256).await?;
    tracker.set_total(manifest.chunk_count());
    tracker.phase("schema");
    let workdir = tempfile::tempdir()
        .map_err(|e| EngineError::internal(format!("cannot create a temporary directory: {e}")))?;
    let schema_file = workdir.path().join("schema.dump");
    tokio::select! {
        _ = cancel.cancelled() => return Err(EngineError::cancelled()),
        r = download_verified(store, prefix, &manifest.schema, &schema_file) => r?,
    }
    let superuser = is_superuser(&admin, &admin_describe).await?;
    create_missing_roles(&admin, &admin_describe, &manifest.roles).await?;
    create_database(&admin, &admin_describe, &target.database, &manifest).await?;
    tracing::info!(database = %target.database, "target database created");

    let loaded = tokio::select! {
        _ = cancel.cancelled() => Err(EngineError::cancelled()),
        r = load(target, store, prefix, options, &manifest, &bin_dir, &schema_file, tracker.clone(), cancel.clone(), superuser) => r,
    };
    match loaded {
        Ok(summary) => {
            tracker.phase("done");
            tracing::info!(database = %target.database, rows = summary.rows, "restore completed");
            Ok(summary)
        }
        Err(mut error) => {
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

#[allow(clippy::too_many_arguments)]
async fn load(
    target: &PgTarget,
    store: &Datastore,
    prefix: &str,
    options: &EngineOptions,
    manifest: &Manifest,
    bin_dir: &Path,
    schema_file: &Path,
    tracker: Arc<Tracker>,
    cancel: CancellationToken,
    superuser: bool,
) -> Result<RestoreSummary, EngineError> {
    let describe = target.describe();
    tracker.phase("pre-data");
    pg_restore(bin_dir, target, schema_file, &["--section=pre-data"]).await?;

    tracker.phase("data");
    let ctx = LoadContext {
        target: target.clone(),
        store: store.clone(),
        prefix: prefix.to_string(),
        options: options.clone(),
        tracker: tracker.clone(),
        cancel: cancel.clone(),
        superuser,
    };
    let (rows, mut bytes) =
        restore_data::load_chunks(ctx, restore_data::plan(manifest, superuser)).await?;

    let client = connect(target, &target.database).await?;
    tracker.phase("sequences");
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
    if let Some(lo) = &manifest.large_objects {
        bytes += large_objects::restore(&client, &describe, store, prefix, lo).await?;
        tracker.chunk_done(0);
    }

    tracker.phase("post-data");
    let jobs = format!("--jobs={}", options.connections.max(1));
    pg_restore(
        bin_dir,
        target,
        schema_file,
        &["--section=post-data", &jobs],
    )
    .await?;
    refresh_matviews(&client, &describe, manifest).await?;

    tracker.phase("analyze");
    exec(&client, "ANALYZE", &describe).await?;
    Ok(RestoreSummary { rows, bytes })
}

async fn connect_maintenance(target: &PgTarget) -> Result<Client, EngineError> {
    match connect(target, "postgres").await {
        Err(e) if e.code == ErrorCode::UserErrorDBNotFound => connect(target, "template1").await,
        other => other,
    }
}

/// Reads manifest.json, checks it against the expected SHA-256 and parses it.
async fn read_manifest(
    store: &Datastore,
    prefix: &str,
    expected: Option<&str>,
) -> Result<Manifest, EngineError> {
    let (bytes, sha) = get_small(store, prefix, MANIFEST_FILE).await?;
    if let Some(expected) = expected
        && !expected.eq_ignore_ascii_case(&sha)
    {
        return Err(EngineError::new(
            ErrorCode::ChecksumMismatch,
            format!(
                "checksum mismatch for object {MANIFEST_FILE}: expected sha256 {expected}, read {sha}"
            ),
        ));
    }
    Manifest::from_json(&bytes, MANIFEST_FILE)
}

/// Streams an uncompressed object to `dest`, failing unless size and SHA-256 match.
async fn download_verified(
    store: &Datastore,
    prefix: &str,
    entry: &ObjectEntry,
    dest: &Path,
) -> Result<(), EngineError> {
    let path = object_path(store, prefix, &entry.path);
    let result = store
        .object_store()
        .get(&path)
        .await
        .map_err(|e| store_error(&e, "read", &entry.path, false))?;
    let mut stream = result.into_stream();
    let io =
        |e: std::io::Error| EngineError::internal(format!("cannot write {}: {e}", dest.display()));
    let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
    let (mut hasher, mut size) = (Sha256::new(), 0u64);
    while let Some(bytes) = stream.next().await {
        let bytes = bytes.map_err(|e| store_error(&e, "read", &entry.path, false))?;
        hasher.update(&bytes);
        size += bytes.len() as u64;
        file.write_all(&bytes).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    let sha = hex::encode(hasher.finalize());
    if sha != entry.sha256 || size != entry.size {
        return Err(EngineError::new(
            ErrorCode::ChecksumMismatch,
            format!(
                "checksum mismatch for object {}: expected sha256 {}, read {sha}",
                entry.path, entry.sha256
            ),
        ));
    }
    Ok(())
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

async fn drop_database(admin: &Client, describe: &str, name: &str) -> Result<(), EngineError> {
    let version: i32 = admin
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .map_err(|e| EngineError::from_pg(&e, describe))?
        .get(0);
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
    args: &[&str],
) -> Result<(), EngineError> {
    let mut command = pgtools::command(bin_dir, "pg_restore", target, &target.database);
    command
        .args(args)
        .arg("--exit-on-error")
        .arg("--no-tablespaces")
        .arg(file)
        .stdout(std::process::Stdio::null());
    let mut child = pgtools::spawn(command, "pg_restore")?;
    let stderr = pgtools::collect_stderr(&mut child);
    pgtools::wait(child, stderr, "pg_restore", &target.describe()).await
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
