//! Restore drills: a recovery point restored into a scratch database
//! (`pgvault_drill_<short id>`) on a drill server with the ordinary restore
//! path, then every table read back with `COPY (SELECT <manifest columns>
//! FROM ONLY …) TO STDOUT` in the session the backup's COPYs used
//! (`backup_data::COPY_SESSION`), its rows counted and digested
//! ([`RowDigest`], on the CPU pool) and compared with the manifest. The
//! scratch database is always dropped, whether the drill passed or failed
//! (and dropped first if an earlier attempt of the same job left it).
//!
//! A corrupted chunk fails the restore itself with the restore's code
//! naming the object; a table that restores with other rows fails with
//! `DrillRowCountMismatch` or `DrillChecksumMismatch` naming it. Points
//! written before digests were recorded are checked by row counts only
//! ([`DrillSummary::checksums`] is false).

use std::sync::Arc;

use futures::StreamExt;
use pgvault_datastore::Datastore;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::backup_data::COPY_SESSION;
use crate::connect::{connect, exec};
use crate::cpu::{measured, pool};
use crate::ident::{qualified, quote_ident, readable};
use crate::manifest::{Manifest, TableEntry};
use crate::recovery_point::read_manifest;
use crate::restore::{connect_maintenance, drop_database, restore_database};
use crate::row_digest::RowDigest;
use crate::stages::{CpuStage, StageClock};
use crate::types::{EngineOptions, PgTarget, ProgressSink, RestoreSummary};
use crate::{EngineError, ErrorCode};

/// Every scratch database's name starts with this.
pub const SCRATCH_PREFIX: &str = "pgvault_drill_";

/// Bytes of rows handed to the CPU pool at a time.
const DIGEST_BATCH_BYTES: usize = 1 << 20;

/// Most mismatched tables named in a failure's message; the rest are counted.
const NAMED: usize = 5;

/// The scratch database of the drill `id` (a job id): the prefix and the
/// first eight letters or digits of the id, lowercased.
pub fn scratch_database(id: &str) -> String {
    let short: String = id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    format!("{SCRATCH_PREFIX}{}", short.to_ascii_lowercase())
}

/// One table read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCheck {
    /// `schema.name`, as people read it.
    pub table: String,
    pub rows: u64,
    /// Whether its digest matched; `None`: not compared (the point records
    /// no digest, or an extension's configuration table, whose restored
    /// rows include what `CREATE EXTENSION` seeded).
    pub checksum: Option<bool>,
}

/// What a drill proved.
#[derive(Debug, Clone)]
pub struct DrillSummary {
    /// The scratch database (dropped again).
    pub database: String,
    pub tables: Vec<TableCheck>,
    /// Rows read back.
    pub rows: u64,
    /// Whether the point records digests and they were compared; false:
    /// row counts only.
    pub checksums: bool,
    pub restore: RestoreSummary,
}

/// Restores the point at `prefix` (manifest SHA-256 `manifest_sha256`)
/// into the scratch database `server.database` (see [`scratch_database`]),
/// checks every table against the manifest and drops the database.
pub async fn drill_point(
    server: &PgTarget,
    store: &Datastore,
    prefix: &str,
    manifest_sha256: &str,
    options: &EngineOptions,
    progress: Arc<dyn ProgressSink>,
    cancel: CancellationToken,
) -> Result<DrillSummary, EngineError> {
    if !server.database.starts_with(SCRATCH_PREFIX) {
        return Err(EngineError::internal(format!(
            "a drill's scratch database must be named {SCRATCH_PREFIX}…, not \"{}\"",
            server.database
        )));
    }
    let clock = Arc::new(StageClock::default());
    let key = options.encryption.as_ref();
    let manifest = read_manifest(store, prefix, Some(manifest_sha256), key, &clock).await?;
    drop_scratch(server).await?;
    let drilled = async {
        let restore = restore_database(
            server,
            store,
            prefix,
            Some(manifest_sha256),
            options,
            progress,
            cancel.clone(),
        )
        .await?;
        let tables = check_restored(server, &manifest, &cancel).await?;
        Ok(DrillSummary {
            database: server.database.clone(),
            rows: tables.iter().map(|t| t.rows).sum(),
            checksums: manifest.tables.iter().all(|t| t.row_digest().is_some()),
            tables,
            restore,
        })
    }
    .await;
    let dropped = drop_scratch(server).await;
    match (drilled, dropped) {
        (Err(e), Err(drop)) => {
            tracing::warn!(error = %drop.message, database = %server.database, "cannot drop the drill's scratch database");
            Err(e)
        }
        (Err(e), Ok(())) | (Ok(_), Err(e)) => Err(e),
        (Ok(summary), Ok(())) => Ok(summary),
    }
}

/// Drops the scratch database if it exists (connections to it ended).
async fn drop_scratch(server: &PgTarget) -> Result<(), EngineError> {
    let admin = connect_maintenance(server).await?;
    drop_database(&admin, &server.describe_db("postgres"), &server.database).await
}

/// Reads every table of `manifest` back from the database `target.database`
/// and compares rows and digests; fails naming the tables that differ
/// (row counts first).
pub async fn check_restored(
    target: &PgTarget,
    manifest: &Manifest,
    cancel: &CancellationToken,
) -> Result<Vec<TableCheck>, EngineError> {
    let describe = target.describe();
    let client = connect(target, &target.database).await?;
    exec(&client, COPY_SESSION, &describe).await?;
    let clock = Arc::new(StageClock::default());
    let mut checks = Vec::with_capacity(manifest.tables.len());
    let mut wrong_rows = Vec::new();
    let mut wrong_digest = Vec::new();
    for table in &manifest.tables {
        if cancel.is_cancelled() {
            return Err(EngineError::cancelled());
        }
        let (rows, digest) = read_back(&client, table, &describe, &clock).await?;
        let name = readable(&table.schema, &table.name);
        let expected_rows = table.rows();
        if table.extension_config {
            checks.push(TableCheck {
                table: name,
                rows,
                checksum: None,
            });
            continue;
        }
        if rows != expected_rows {
            wrong_rows.push(format!(
                "table {name}: {rows} rows restored, the manifest records {expected_rows}"
            ));
        }
        let checksum = table.row_digest().map(|expected| expected == digest);
        if checksum == Some(false) {
            wrong_digest.push(format!("table {name}: the rows read back differ from the rows backed up (row checksum mismatch)"));
        }
        checks.push(TableCheck {
            table: name,
            rows,
            checksum,
        });
    }
    if !wrong_rows.is_empty() {
        return Err(mismatch(ErrorCode::DrillRowCountMismatch, &wrong_rows));
    }
    if !wrong_digest.is_empty() {
        return Err(mismatch(ErrorCode::DrillChecksumMismatch, &wrong_digest));
    }
    Ok(checks)
}

fn mismatch(code: ErrorCode, lines: &[String]) -> EngineError {
    let mut message = lines
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if lines.len() > NAMED {
        message.push_str(&format!(" (and {} more tables)", lines.len() - NAMED));
    }
    EngineError::new(code, format!("restore drill: {message}"))
}

/// Rows and digest of one restored table, its COPY text digested on the
/// CPU pool a batch at a time.
async fn read_back(
    client: &Client,
    table: &TableEntry,
    describe: &str,
    clock: &Arc<StageClock>,
) -> Result<(u64, u128), EngineError> {
    let columns = table
        .columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "COPY (SELECT {columns} FROM ONLY {}) TO STDOUT",
        qualified(&table.schema, &table.name)
    );
    let stream = client
        .copy_out(sql.as_str())
        .await
        .map_err(|e| EngineError::from_pg(&e, describe))?;
    futures::pin_mut!(stream);
    let mut digest = RowDigest::default();
    let mut rows = 0u64;
    let mut sum = 0u128;
    let mut batch = Vec::with_capacity(DIGEST_BATCH_BYTES);
    let mut end = false;
    while !end {
        match stream.next().await {
            Some(Ok(bytes)) => batch.extend_from_slice(&bytes),
            Some(Err(e)) => return Err(EngineError::from_pg(&e, describe)),
            None => end = true,
        }
        if batch.len() >= DIGEST_BATCH_BYTES || end {
            let clock = clock.clone();
            let full = std::mem::take(&mut batch);
            let (back, buffer, done) = pool()
                .run(move || {
                    measured(&clock, CpuStage::Hash, full.len() as u64, || {
                        digest.update(&full);
                        let done = end.then(|| (digest.rows(), digest.finish()));
                        (digest, full, done)
                    })
                })
                .await?;
            digest = back;
            batch = buffer;
            batch.clear();
            if let Some((n, d)) = done {
                rows = n;
                sum = d;
            }
        }
    }
    Ok((rows, sum))
}
