//! Restore as files: one plain SQL script that `psql -v ON_ERROR_STOP=1`
//! loads into an empty database, assembled by streaming into a multipart
//! upload (never whole in memory or on local disk):
//! guarded role creation, `pg_restore -f - --section=pre-data`, one
//! `COPY … FROM stdin` block per table fed from its verified chunks,
//! `setval` for sequences, large objects, `pg_restore --section=post-data`,
//! materialized view refreshes, `ANALYZE` and the database's own settings,
//! comment and privileges (applied to whatever database loads the script). A chunk whose checksum does
//! not match aborts the upload, so no completed file is left behind.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use pgvault_datastore::Datastore;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::database_properties;
use super::error::{EngineError, ErrorCode};
use super::ident::{dollar_quote, qualified, quote_ident, quote_literal, readable};
use super::large_objects::RecordParser;
use super::manifest::{ChunkEntry, LargeObjects, Manifest, TableEntry};
use super::objects::{self, ChunkReader, ObjectWriter, Source};
use super::pgtools;
use super::progress::Tracker;
use super::recovery_point::{self, OpenedPoint};
use super::selection::Selection;
use super::stages::{Lane, LaneStage, StageClock};
use super::types::{EngineOptions, ProgressSink, RestoreSummary};

/// Read size from pg_restore's stdout.
const PIPE_BUFFER: usize = 256 * 1024;

/// Writes the recovery point at `<prefix>/` of `store` (or the part that
/// `selection` names) as a SQL script to `output_path` in `output`.
#[allow(clippy::too_many_arguments)]
pub async fn restore_as_sql(
    store: &Datastore,
    prefix: &str,
    expected_manifest_sha256: Option<&str>,
    output: &Datastore,
    output_path: &str,
    selection: &Selection,
    options: &EngineOptions,
    progress: Arc<dyn ProgressSink>,
    cancel: CancellationToken,
) -> Result<RestoreSummary, EngineError> {
    let tracker = Tracker::new(progress);
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
    .await?;
    // pg_restore only writes the script: the tools that read the archive.
    let bin_dir = pgtools::restore_tool_set(options, &point.manifest, None)?.dir;
    tracker.set_total(point.manifest.chunk_count());
    let mut out = ObjectWriter::create_at(
        output,
        &output.path(output_path),
        output_path,
        options.part_size,
        options.parts_per_connection(),
        tracker.clock().clone(),
    );
    let written = tokio::select! {
        _ = cancel.cancelled() => Err(EngineError::cancelled()),
        r = write_script(&mut out, store, prefix, &point, &bin_dir, &tracker, options) => r,
    };
    let (rows, bytes) = match written {
        Ok(counts) => counts,
        Err(e) => {
            out.abort().await;
            tracing::warn!(output = %output_path, code = %e.code, error = %e, "restore as sql failed");
            return Err(e);
        }
    };
    let entry = out.finish().await?;
    objects::flush(output).await?;
    tracker.phase("done");
    tracing::info!(output = %output_path, rows, size = entry.size, "restore as sql completed");
    Ok(RestoreSummary {
        rows,
        bytes,
        tables: point.manifest.tables.len() as u32,
        skipped_objects: point.skipped.clone(),
        output: Some(entry),
        stages: tracker.stage_times(),
    })
}

/// Writes every part of the script; returns (rows, raw COPY bytes).
async fn write_script(
    out: &mut ObjectWriter,
    store: &Datastore,
    prefix: &str,
    point: &OpenedPoint,
    bin_dir: &Path,
    tracker: &Tracker,
    options: &EngineOptions,
) -> Result<(u64, u64), EngineError> {
    let manifest = &point.manifest;
    // The script is written by one lane: reading chunks, writing the output.
    let mut lane = Lane::start(tracker.clock().clone());
    out.write(header(manifest, &point.skipped).as_bytes())
        .await?;
    for role in &manifest.roles {
        out.write(create_role_sql(role).as_bytes()).await?;
    }

    tracker.phase("pre-data");
    pg_restore_script(out, bin_dir, point, "--section=pre-data").await?;

    tracker.phase("data");
    out.write(
        b"\nSET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\n\
          SET statement_timeout = 0;\nSET row_security = off;\n",
    )
    .await?;
    tracker.plan_tables(
        manifest.tables.iter().map(|t| {
            let key = qualified(&t.schema, &t.name);
            (key, readable(&t.schema, &t.name), t.chunks.len() as u32)
        }),
        false,
    );
    let (mut rows, mut bytes) = (0, 0);
    for table in &manifest.tables {
        let (r, b) = write_table(out, store, prefix, table, tracker, options, &mut lane).await?;
        rows += r;
        bytes += b;
    }

    tracker.phase("sequences");
    let mut sql = String::new();
    for seq in &manifest.sequences {
        sql.push_str(&format!(
            "SELECT pg_catalog.setval({}, {}, {});\n",
            quote_literal(&qualified(&seq.schema, &seq.name)),
            seq.last_value,
            seq.is_called
        ));
    }
    out.write(sql.as_bytes()).await?;
    if let Some(lo) = &manifest.large_objects {
        bytes += write_large_objects(out, store, prefix, lo, tracker.clock(), options, &mut lane)
            .await?;
        tracker.chunk_done(0);
    }

    tracker.phase("post-data");
    pg_restore_script(out, bin_dir, point, "--section=post-data").await?;
    let mut tail = String::from("\n");
    for view in &manifest.materialized_views {
        tail.push_str(&format!(
            "REFRESH MATERIALIZED VIEW {};\n",
            qualified(&view.schema, &view.name)
        ));
    }
    for table in &manifest.tables {
        tail.push_str(&format!(
            "ANALYZE {};\n",
            qualified(&table.schema, &table.name)
        ));
    }
    let properties = database_properties::statements(&manifest.database_properties, false);
    if !properties.is_empty() {
        tail.push_str(
            "\n-- Settings, comment and privileges of the database the script is loaded into\n",
        );
        for statement in properties {
            tail.push_str(&statement.for_current_database());
            tail.push('\n');
        }
    }
    tail.push_str("\n-- pgvault restore script complete\n");
    out.write(tail.as_bytes()).await?;
    Ok((rows, bytes))
}

/// Comment lines can hold anything but line breaks.
fn comment_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn header(manifest: &Manifest, skipped: &[String]) -> String {
    let mut text = format!(
        "--\n-- pgvault restore script of database {} taken at {} (PostgreSQL {})\n\
         -- Load it into an empty database: psql -v ON_ERROR_STOP=1 -d <database> -f <this file>\n",
        comment_safe(&manifest.database),
        manifest.snapshot_time.to_rfc3339(),
        comment_safe(&manifest.server_version)
    );
    if !skipped.is_empty() {
        text.push_str("-- Selective restore; left out:\n");
        for s in skipped {
            text.push_str(&format!("--   {}\n", comment_safe(s)));
        }
    }
    text.push_str("--\n\nSET client_min_messages = warning;\n");
    text
}

/// A role statement that does nothing when the role already exists.
fn create_role_sql(role: &str) -> String {
    let body = format!(
        "BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {lit}) THEN \
         EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', {lit}); END IF; END",
        lit = quote_literal(role)
    );
    format!("DO {};\n", dollar_quote(&body))
}

/// Streams `pg_restore -f - <section>` of the schema archive into `out`.
async fn pg_restore_script(
    out: &mut ObjectWriter,
    bin_dir: &Path,
    point: &OpenedPoint,
    section: &str,
) -> Result<(), EngineError> {
    let mut command = Command::new(bin_dir.join("pg_restore"));
    command
        .arg("--file=-")
        .arg(section)
        .arg("--no-tablespaces")
        .args(point.list_args())
        .arg(&point.schema_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = pgtools::spawn(command, "pg_restore")?;
    let stderr = pgtools::collect_stderr(&mut child);
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| EngineError::internal("pg_restore has no stdout"))?;
    let mut buffer = vec![0u8; PIPE_BUFFER];
    loop {
        let n = stdout.read(&mut buffer).await.map_err(|e| {
            EngineError::new(
                ErrorCode::PgToolFailed,
                format!("reading pg_restore output: {e}"),
            )
        })?;
        if n == 0 {
            break;
        }
        out.write(&buffer[..n]).await?;
    }
    pgtools::wait(child, stderr, "pg_restore", "the schema archive").await
}

/// One `COPY … FROM stdin` block holding every chunk of `table`.
async fn write_table(
    out: &mut ObjectWriter,
    store: &Datastore,
    prefix: &str,
    table: &TableEntry,
    tracker: &Tracker,
    options: &EngineOptions,
    lane: &mut Lane,
) -> Result<(u64, u64), EngineError> {
    let name = qualified(&table.schema, &table.name);
    let columns = if table.columns.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = table.columns.iter().map(|c| quote_ident(c)).collect();
        format!(" ({})", list.join(", "))
    };
    out.write(
        format!(
            "\n--\n-- Data for {}\n--\n\nCOPY {name}{columns} FROM stdin;\n",
            comment_safe(&format!("{}.{}", table.schema, table.name))
        )
        .as_bytes(),
    )
    .await?;
    tracker.table_started(&name);
    let (mut rows, mut bytes) = (0, 0);
    for chunk in &table.chunks {
        let (r, b) = match copy_chunk(out, store, prefix, chunk, tracker, options, lane).await {
            Ok(done) => done,
            Err(e) => {
                if e.code != ErrorCode::Cancelled {
                    tracker.table_failed(&name);
                }
                return Err(e);
            }
        };
        tracker.table_chunk_done(&name, r, b, chunk.object.size);
        tracker.chunk_done(r);
        rows += r;
        bytes += b;
    }
    out.write(b"\\.\n").await?;
    tracker.table_finished(&name);
    Ok((rows, bytes))
}

/// Streams one chunk's COPY text into `out`, verifying size, rows and SHA-256.
async fn copy_chunk(
    out: &mut ObjectWriter,
    store: &Datastore,
    prefix: &str,
    chunk: &ChunkEntry,
    tracker: &Tracker,
    options: &EngineOptions,
    lane: &mut Lane,
) -> Result<(u64, u64), EngineError> {
    let mut reader = ChunkReader::open(
        store,
        prefix,
        Source::of(chunk),
        options.parts_per_connection(),
        tracker.clock().clone(),
    )?
    .sealed(options.encryption.as_ref())
    .count_rows();
    let (mut raw, mut last) = (0u64, b'\n');
    while let Some(data) = reader.next(lane).await? {
        raw += data.len() as u64;
        last = data.last().copied().unwrap_or(last);
        tracker.add_bytes(data.len() as u64);
        lane.time(LaneStage::UploadWait, out.put(data)).await?;
    }
    let rows = reader.rows().unwrap_or_default();
    reader.verify()?;
    if rows != chunk.rows || raw != chunk.raw_bytes || last != b'\n' {
        return Err(EngineError::new(
            ErrorCode::ChecksumMismatch,
            format!(
                "object {} holds {rows} rows / {raw} bytes, the manifest says {} rows / {} bytes",
                chunk.object.path, chunk.rows, chunk.raw_bytes
            ),
        ));
    }
    Ok((rows, raw))
}

/// `lo_create`, owner, `lo_put` per slice and grants; returns raw bytes read.
async fn write_large_objects(
    out: &mut ObjectWriter,
    store: &Datastore,
    prefix: &str,
    large_objects: &LargeObjects,
    clock: &Arc<StageClock>,
    options: &EngineOptions,
    lane: &mut Lane,
) -> Result<u64, EngineError> {
    let mut sql = String::from("\n--\n-- Large objects\n--\n\n");
    for meta in &large_objects.objects {
        sql.push_str(&format!(
            "SELECT pg_catalog.lo_create({oid});\nALTER LARGE OBJECT {oid} OWNER TO {};\n",
            quote_ident(&meta.owner),
            oid = meta.oid
        ));
    }
    out.write(sql.as_bytes()).await?;
    let path = &large_objects.data.object.path;
    let mut reader = ChunkReader::open(
        store,
        prefix,
        Source::whole(&large_objects.data.object),
        options.parts_per_connection(),
        clock.clone(),
    )?
    .sealed(options.encryption.as_ref());
    let mut records = RecordParser::default();
    let mut raw = 0u64;
    while let Some(data) = reader.next(lane).await? {
        raw += data.len() as u64;
        records.push(&data);
        while let Some((oid, offset, bytes)) = records.next_data() {
            let line = format!(
                "SELECT pg_catalog.lo_put({oid}, {offset}, '\\x{}'::bytea);\n",
                hex::encode(&bytes)
            );
            out.write(line.as_bytes()).await?;
        }
    }
    reader.verify()?;
    let corrupt = |why: &str| {
        EngineError::new(
            ErrorCode::ChecksumMismatch,
            format!("object {path} is corrupted: {why}"),
        )
    };
    records.finish().map_err(corrupt)?;
    if raw != large_objects.data.raw_bytes {
        return Err(corrupt("unexpected size"));
    }
    let mut grants = String::new();
    for grant in &large_objects.grants {
        grants.push_str(grant);
        grants.push_str(";\n");
    }
    out.write(grants.as_bytes()).await?;
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_statements_are_guarded_and_quoted() {
        let sql = create_role_sql("it's $pgvault$ \"x\"");
        assert!(sql.starts_with("DO $pgvault1$BEGIN IF NOT EXISTS"), "{sql}");
        assert!(sql.contains("rolname = 'it''s $pgvault$ \"x\"'"), "{sql}");
        assert!(sql.ends_with("END$pgvault1$;\n"), "{sql}");
        assert_eq!(comment_safe("a\nb\r"), "a?b?");
    }
}
