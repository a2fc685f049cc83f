//! Verifying a recovery point without a database: the manifest against the
//! SHA-256 recorded when the backup completed, then every object through
//! the same readers a restore uses (`objects::ChunkReader` for zstd chunks
//! — size, SHA-256, every frame decoded, rows counted — and ranged
//! `objects::blocks` hashed on the CPU pool for the schema archive, the
//! globals and whole bundles), and a listing of the point's directory: an
//! object the manifest names but the datastore lacks is missing, one the
//! datastore holds but the manifest does not name is unexpected ("the
//! manifest names every object and nothing else"). An encrypted point's
//! key object (`key.json`) is named by the manifest like any object; it is
//! also parsed and must name this point (verify has the data key, not the
//! vault key that wraps it, so it cannot check that it opens). Verify only
//! reads.
//!
//! Problems are gathered, not stopped at: the job fails with the code of
//! the most serious one (missing, then corrupt, then unexpected) and a
//! message naming the first few objects and their tables.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use pgvault_datastore::Datastore;
use tokio_util::sync::CancellationToken;

use crate::error::store_error;
use crate::manifest::{ChunkEntry, MANIFEST_FILE, Manifest, ObjectEntry};
use crate::objects::{ChunkReader, Source, get_small, open_small, read_back};
use crate::seal::PointKey;
use crate::seal::key_object::{KEY_OBJECT_FILE, KeyObject};
use crate::stages::{Lane, StageClock};
use crate::{EngineError, EngineOptions, ErrorCode, Progress, ProgressSink};

/// What a verify read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifySummary {
    /// Objects verified, the manifest included.
    pub objects: u64,
    /// Stored bytes read.
    pub bytes: u64,
    /// Rows counted in the table chunks.
    pub rows: u64,
}

/// Most problems named in a failure's message; the rest are counted.
const NAMED: usize = 5;

/// One problem found: its code and a line naming the object.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Finding {
    code: ErrorCode,
    line: String,
}

/// Verifies the point at `prefix` whose manifest had SHA-256
/// `manifest_sha256` when its backup completed.
pub async fn verify_point(
    store: &Datastore,
    prefix: &str,
    manifest_sha256: &str,
    options: &EngineOptions,
    progress: &dyn ProgressSink,
    cancel: &CancellationToken,
) -> Result<VerifySummary, EngineError> {
    let clock = Arc::new(StageClock::default());
    let key = options.encryption.as_ref();
    let (manifest, manifest_size) =
        read_manifest(store, prefix, manifest_sha256, key, &clock).await?;
    let owners = owners(&manifest);
    let listed = list(store, prefix).await?;
    let mut findings = Vec::new();
    findings.extend(missing_and_unexpected(&owners, &listed));
    let mut summary = VerifySummary {
        objects: 1,
        bytes: manifest_size,
        rows: 0,
    };
    let total = u32::try_from(owners.len() + 1).unwrap_or(u32::MAX);
    let mut lane = Lane::start(clock.clone());
    // Chunks by object, so a bundle's frames are read after its whole hash.
    let mut chunks: HashMap<&str, Vec<(&ChunkEntry, Option<String>)>> = HashMap::new();
    for table in &manifest.tables {
        for chunk in &table.chunks {
            let name = format!("table {}.{}", table.schema, table.name);
            chunks
                .entry(chunk.object.path.as_str())
                .or_default()
                .push((chunk, Some(name)));
        }
    }
    if let Some(lo) = &manifest.large_objects {
        chunks
            .entry(lo.data.object.path.as_str())
            .or_default()
            .push((&lo.data, None));
    }
    for object in manifest.objects() {
        if cancel.is_cancelled() {
            return Err(EngineError::cancelled());
        }
        if !listed.contains_key(&object.path) {
            continue;
        }
        let owner = owners
            .get(object.path.as_str())
            .cloned()
            .unwrap_or_default();
        let frames = chunks.get(object.path.as_str());
        let whole_frame = frames.is_some_and(|f| f.iter().all(|(c, _)| c.segment.is_none()));
        // Objects no chunk reads whole (schema, globals, bundles) are hashed whole.
        if !whole_frame {
            match hash_whole(store, prefix, object, cancel, &clock).await {
                Ok(()) => {}
                Err(e) if e.code == ErrorCode::ChecksumMismatch => {
                    findings.push(corrupt(object, &owner, &e));
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        if manifest.key_object.as_ref() == Some(object)
            && let Err(why) = check_key_object(store, prefix, key, &clock).await
        {
            findings.push(Finding {
                code: ErrorCode::VerifyObjectCorrupt,
                line: format!(
                    "object {} (the key object) is corrupted: {why}",
                    object.path
                ),
            });
            continue;
        }
        for (chunk, table) in frames.into_iter().flatten() {
            match read_chunk(
                store,
                prefix,
                chunk,
                table.is_some(),
                options,
                &clock,
                &mut lane,
            )
            .await
            {
                Ok(rows) => summary.rows += rows,
                Err(e)
                    if matches!(
                        e.code,
                        ErrorCode::ChecksumMismatch | ErrorCode::ObjectAuthenticationFailed
                    ) =>
                {
                    let owner = table.clone().unwrap_or_else(|| owner.clone());
                    findings.push(corrupt(object, &owner, &e));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        summary.objects += 1;
        summary.bytes += object.size;
        progress.report(&Progress {
            bytes_done: summary.bytes,
            rows_done: summary.rows,
            chunks_done: u32::try_from(summary.objects).unwrap_or(u32::MAX),
            chunks_total: total,
            phase: "verifying".to_string(),
        });
    }
    if let Some(error) = failure(prefix, findings) {
        return Err(error);
    }
    tracing::info!(prefix = %prefix, objects = summary.objects, bytes = summary.bytes, rows = summary.rows, "recovery point verified");
    Ok(summary)
}

/// Reads manifest.json: present, equal to the recorded SHA-256, parseable.
async fn read_manifest(
    store: &Datastore,
    prefix: &str,
    expected: &str,
    key: Option<&PointKey>,
    clock: &Arc<StageClock>,
) -> Result<(Manifest, u64), EngineError> {
    let bad = |why: String| EngineError::new(ErrorCode::VerifyManifestCorrupt, why);
    let (bytes, sha) = match get_small(store, prefix, MANIFEST_FILE, clock).await {
        Ok(found) => found,
        Err(e) if e.code == ErrorCode::ManifestInvalid => {
            return Err(bad(format!("{MANIFEST_FILE} is missing under {prefix}")));
        }
        Err(e) => return Err(e),
    };
    if !expected.is_empty() && !expected.eq_ignore_ascii_case(&sha) {
        return Err(bad(format!(
            "{MANIFEST_FILE} under {prefix} has sha256 {sha} ({} bytes), the backup recorded {expected}: it was altered or truncated",
            bytes.len()
        )));
    }
    let size = bytes.len() as u64;
    // A sealed manifest is opened with the point's key (authenticated: an
    // altered or truncated one fails here even without a recorded SHA-256).
    let bytes = open_small(key, MANIFEST_FILE, bytes, clock)
        .await
        .map_err(|e| match e.code {
            ErrorCode::EncryptionKeyUnavailable => e,
            _ => bad(format!(
                "{MANIFEST_FILE} under {prefix} cannot be opened: {}",
                e.message
            )),
        })?;
    let manifest = Manifest::from_json(&bytes, MANIFEST_FILE)
        .map_err(|e| bad(format!("{e} (under {prefix})")))?;
    Ok((manifest, size))
}

/// The key object is well-formed and names the point whose data key
/// `key` is (the hash was checked against the manifest already).
async fn check_key_object(
    store: &Datastore,
    prefix: &str,
    key: Option<&PointKey>,
    clock: &Arc<StageClock>,
) -> Result<(), String> {
    let (bytes, _) = get_small(store, prefix, KEY_OBJECT_FILE, clock)
        .await
        .map_err(|e| e.message)?;
    let object = KeyObject::from_json(&bytes)?;
    match key {
        Some(key) if key.key_id() != object.point_id => Err(format!(
            "it names point {}, not this point ({})",
            object.point_id,
            key.key_id()
        )),
        _ => Ok(()),
    }
}

/// What each named object holds, for messages: its tables, or the schema
/// archive, large objects or globals.
fn owners(manifest: &Manifest) -> BTreeMap<&str, String> {
    let mut owners: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    owners
        .entry(manifest.schema.path.as_str())
        .or_default()
        .push("the schema archive".to_string());
    for table in &manifest.tables {
        for chunk in &table.chunks {
            let names = owners.entry(chunk.object.path.as_str()).or_default();
            let name = format!("table {}.{}", table.schema, table.name);
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    if let Some(lo) = &manifest.large_objects {
        owners
            .entry(lo.data.object.path.as_str())
            .or_default()
            .push("the large objects".to_string());
    }
    if let Some(globals) = &manifest.globals {
        owners
            .entry(globals.path.as_str())
            .or_default()
            .push("the server's globals".to_string());
    }
    if let Some(key_object) = &manifest.key_object {
        owners
            .entry(key_object.path.as_str())
            .or_default()
            .push("the key object".to_string());
    }
    owners
        .into_iter()
        .map(|(path, names)| (path, names.join(", ")))
        .collect()
}

/// Every object under the point's directory: path relative to it → size.
async fn list(store: &Datastore, prefix: &str) -> Result<HashMap<String, u64>, EngineError> {
    let root = store.path(prefix);
    let base = format!("{}/", root.as_ref());
    let objects = store.object_store();
    let mut listing = objects.list(Some(&root));
    let mut found = HashMap::new();
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| store_error(&e, "list", prefix, false))?;
        if let Some(relative) = meta.location.as_ref().strip_prefix(&base) {
            found.insert(relative.to_string(), meta.size as u64);
        }
    }
    Ok(found)
}

/// Objects named but absent, and objects present but not named.
fn missing_and_unexpected(
    owners: &BTreeMap<&str, String>,
    listed: &HashMap<String, u64>,
) -> Vec<Finding> {
    let mut findings: Vec<Finding> = owners
        .iter()
        .filter(|(path, _)| !listed.contains_key(**path))
        .map(|(path, owner)| Finding {
            code: ErrorCode::VerifyObjectMissing,
            line: format!("object {path} ({owner}) is missing"),
        })
        .collect();
    let mut strays: Vec<(&String, &u64)> = listed
        .iter()
        .filter(|(path, _)| path.as_str() != MANIFEST_FILE && !owners.contains_key(path.as_str()))
        .collect();
    strays.sort();
    findings.extend(strays.into_iter().map(|(path, size)| Finding {
        code: ErrorCode::VerifyUnexpectedObject,
        line: format!("object {path} ({size} bytes) is not named by the manifest"),
    }));
    findings
}

fn corrupt(object: &ObjectEntry, owner: &str, error: &EngineError) -> Finding {
    Finding {
        code: ErrorCode::VerifyObjectCorrupt,
        line: format!(
            "object {} ({owner}) is corrupted: {}",
            object.path, error.message
        ),
    }
}

/// The job error for `findings` (none: the point is sound).
fn failure(prefix: &str, mut findings: Vec<Finding>) -> Option<EngineError> {
    let rank = |code: ErrorCode| match code {
        ErrorCode::VerifyObjectMissing => 0,
        ErrorCode::VerifyObjectCorrupt => 1,
        _ => 2,
    };
    findings.sort_by_key(|f| rank(f.code));
    let first = findings.first()?;
    let mut lines: Vec<&str> = findings
        .iter()
        .take(NAMED)
        .map(|f| f.line.as_str())
        .collect();
    let more = findings.len().saturating_sub(NAMED);
    let tail = (more > 0).then(|| format!("and {more} more problems"));
    if let Some(tail) = &tail {
        lines.push(tail);
    }
    Some(EngineError::new(
        first.code,
        format!(
            "recovery point {prefix} failed verification: {}",
            lines.join("; ")
        ),
    ))
}

/// Hashes a whole stored object (ranged reads, SHA-256 on the CPU pool)
/// against its entry; a difference is `ChecksumMismatch`.
async fn hash_whole(
    store: &Datastore,
    prefix: &str,
    entry: &ObjectEntry,
    cancel: &CancellationToken,
    clock: &Arc<StageClock>,
) -> Result<(), EngineError> {
    let (sha, size) = read_back(store, prefix, entry, cancel, clock).await?;
    if sha != entry.sha256 || size != entry.size {
        return Err(EngineError::new(
            ErrorCode::ChecksumMismatch,
            format!(
                "expected sha256 {} ({} bytes), read {sha} ({size} bytes)",
                entry.sha256, entry.size
            ),
        ));
    }
    Ok(())
}

/// Reads one chunk's frame through a [`ChunkReader`] (as a restore does):
/// size, SHA-256 and every zstd frame; for table chunks, rows and raw
/// bytes against the manifest. Returns the rows counted.
async fn read_chunk(
    store: &Datastore,
    prefix: &str,
    chunk: &ChunkEntry,
    count_rows: bool,
    options: &EngineOptions,
    clock: &Arc<StageClock>,
    lane: &mut Lane,
) -> Result<u64, EngineError> {
    let mut reader = ChunkReader::open(
        store,
        prefix,
        Source::of(chunk),
        options.parts_per_connection(),
        clock.clone(),
    )?
    .sealed(options.encryption.as_ref());
    if count_rows {
        reader = reader.count_rows();
    }
    let (mut raw, mut last) = (0u64, b'\n');
    while let Some(data) = reader.next(lane).await? {
        raw += data.len() as u64;
        last = data.last().copied().unwrap_or(last);
    }
    let rows = reader.rows().unwrap_or_default();
    reader.verify()?;
    if count_rows && (rows != chunk.rows || raw != chunk.raw_bytes || last != b'\n') {
        return Err(EngineError::new(
            ErrorCode::ChecksumMismatch,
            format!(
                "it holds {rows} rows / {raw} bytes, the manifest says {} rows / {} bytes",
                chunk.rows, chunk.raw_bytes
            ),
        ));
    }
    Ok(rows)
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
