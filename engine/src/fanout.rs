//! One backup fanned out across several workers. The leader (the engine
//! running [`crate::backup_fanned`]) holds the snapshot, the locks and the
//! schema dump as always, then offers its planned objects to the fleet
//! through a [`ChunkDispatch`] (the runner's link to the coordinator;
//! the engine knows no transport). Its own lanes take chunks from the same
//! dispatch as any helper; helpers run [`dump_chunk`] on the leader's
//! exported snapshot with the very code a local lane runs. Once every chunk
//! is stored, the leader builds the manifest from the chunks the
//! coordinator recorded for its attempt — never from what it saw itself —
//! and writes it last.
//!
//! Every take of a chunk writes its own object (`….t{take}.copy.zst`), so
//! a chunk redone after its helper died never overwrites, and the manifest
//! never names, the half-written object of an earlier take.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pgvault_datastore::Datastore;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::backup_data::{self, DumpContext, ObjectFeed};
use super::backup_plan::PlannedObject;
use super::error::EngineError;
use super::manifest::ChunkEntry;
use super::progress::Tracker;
use super::types::{EngineOptions, PgTarget, ProgressSink};

/// How long a leader's idle lane waits before asking for a chunk again.
const WAIT_POLL: Duration = Duration::from_millis(300);

/// A planned object offered to the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedChunk {
    /// Its path under the recovery point, unique in the attempt.
    pub key: String,
    /// What to dump (JSON, read back by [`dump_chunk`]).
    pub spec: String,
    /// Schema-qualified tables it holds.
    pub tables: Vec<String>,
}

/// A chunk handed to this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenChunk {
    pub key: String,
    pub spec: String,
    /// The claim's number: names the object this take writes.
    pub take: u32,
}

/// What asking for a chunk gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Take {
    Chunk(TakenChunk),
    /// Every chunk left is being dumped elsewhere: ask again soon.
    Wait,
    /// Every chunk of the attempt is stored.
    AllStored,
}

/// A stored chunk, as reported to the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChunk {
    pub key: String,
    pub object_path: String,
    pub size: u64,
    pub sha256: String,
    pub rows: u64,
    /// Its manifest entries (JSON of (table index, chunk entry) pairs).
    pub entries: String,
    /// Uncompressed COPY bytes it holds.
    pub raw_bytes: u64,
}

/// A stored chunk as the coordinator recorded it for the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedChunk {
    pub key: String,
    pub entries: String,
}

/// The leader's seam to the fleet (implemented by the runner).
#[async_trait]
pub trait ChunkDispatch: Send + Sync {
    /// Records the attempt's chunks and invites up to `helpers` workers;
    /// returns how many were invited (0: the leader dumps everything).
    async fn offer(
        &self,
        snapshot_id: &str,
        chunks: Vec<OfferedChunk>,
        helpers: u32,
    ) -> Result<u32, EngineError>;

    /// Records a restore attempt's planned loads (LOAD chunks: no
    /// snapshot) and invites up to `helpers` workers; returns how many were
    /// invited.
    async fn offer_loads(
        &self,
        chunks: Vec<OfferedChunk>,
        helpers: u32,
    ) -> Result<u32, EngineError>;

    /// The next chunk for one of the leader's own lanes.
    async fn take(&self) -> Result<Take, EngineError>;

    /// One of the leader's chunks is stored.
    async fn stored(&self, chunk: StoredChunk) -> Result<(), EngineError>;

    /// Every chunk of the attempt, as recorded; only called once all are
    /// stored.
    async fn recorded(&self) -> Result<Vec<RecordedChunk>, EngineError>;
}

/// How the leader may fan a backup (or a restore's loads) out.
#[derive(Clone)]
pub struct Fanout {
    pub dispatch: Arc<dyn ChunkDispatch>,
    /// Workers the job asked for (0: not asked; the threshold decides).
    pub workers: u32,
    /// Planned data above this fans out even when not asked.
    pub threshold_bytes: u64,
}

impl Fanout {
    /// Helpers to invite for `objects` planned objects of `bytes` in total;
    /// `None`: dump locally.
    pub(crate) fn helpers(&self, objects: usize, bytes: u64) -> Option<u32> {
        if objects < 2 {
            return None;
        }
        let most = u32::try_from(objects - 1).unwrap_or(u32::MAX);
        if self.workers >= 2 {
            return Some((self.workers - 1).min(most));
        }
        if bytes > self.threshold_bytes.max(1) {
            // One helper per threshold's worth of data, at most 7.
            let wanted = bytes
                .div_ceil(self.threshold_bytes.max(1))
                .saturating_sub(1);
            return Some(
                u32::try_from(wanted)
                    .unwrap_or(u32::MAX)
                    .clamp(1, 7)
                    .min(most),
            );
        }
        None
    }
}

/// A chunk's spec: the planned object and the names of its tables (by the
/// leader's table index).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChunkSpec {
    object: PlannedObject,
    tables: Vec<(usize, String)>,
}

/// The object path take `take` of chunk `key` writes.
pub(crate) fn take_path(key: &str, take: u32) -> String {
    match key.strip_suffix(".copy.zst") {
        Some(stem) => format!("{stem}.t{take}.copy.zst"),
        None => format!("{key}.t{take}"),
    }
}

fn spec_error(e: serde_json::Error) -> EngineError {
    EngineError::internal(format!("chunk spec unreadable: {e}"))
}

/// The leader's data phase: offer, dump alongside the helpers, then read
/// back what the coordinator recorded for the attempt.
pub(crate) async fn dump_fanned(
    ctx: DumpContext,
    objects: Vec<PlannedObject>,
    dispatch: Arc<dyn ChunkDispatch>,
    helpers: u32,
) -> Result<Vec<(usize, ChunkEntry)>, EngineError> {
    let mut offers = Vec::with_capacity(objects.len());
    for object in &objects {
        let tables: Vec<(usize, String)> = object
            .chunks
            .iter()
            .map(|c| {
                (
                    c.table,
                    ctx.table_names.get(c.table).cloned().unwrap_or_default(),
                )
            })
            .collect();
        let names = object
            .chunks
            .iter()
            .map(|c| ctx.readable_names.get(c.table).cloned().unwrap_or_default())
            .collect();
        let spec = serde_json::to_string(&ChunkSpec {
            object: object.clone(),
            tables,
        })
        .map_err(spec_error)?;
        offers.push(OfferedChunk {
            key: object.relative.clone(),
            spec,
            tables: names,
        });
    }
    let keys: Vec<String> = offers.iter().map(|o| o.key.clone()).collect();
    let invited = dispatch.offer(&ctx.snapshot_id, offers, helpers).await?;
    tracing::info!(chunks = keys.len(), invited, "backup fanned out");
    let lanes = ctx.options.connections.max(1).min(objects.len());
    let (tracker, names) = (ctx.tracker.clone(), ctx.table_names.clone());
    let feed = Arc::new(DispatchFeed {
        dispatch: dispatch.clone(),
        keys: std::sync::Mutex::new(std::collections::HashMap::new()),
    });
    let local = backup_data::dump_from(ctx, feed, lanes).await?;
    let recorded = dispatch.recorded().await?;
    let mut entries = Vec::new();
    for key in &keys {
        let Some(chunk) = recorded.iter().find(|r| &r.key == key) else {
            return Err(EngineError::internal(format!(
                "chunk {key} of the attempt was not recorded as stored"
            )));
        };
        let mut decoded: Vec<(usize, ChunkEntry)> = serde_json::from_str(&chunk.entries)
            .map_err(|e| EngineError::internal(format!("chunk {key} entries unreadable: {e}")))?;
        entries.append(&mut decoded);
    }
    // Helpers' chunks count in the leader's progress once recorded.
    for (table, entry) in &entries {
        let done_here = local.iter().any(|(t, e)| {
            t == table && e.object.path == entry.object.path && e.index == entry.index
        });
        if !done_here {
            let range = entry.stored_range();
            let name = names.get(*table).map(String::as_str).unwrap_or_default();
            tracker.table_chunk_done(name, entry.rows, entry.raw_bytes, range.end - range.start);
            tracker.add_bytes(entry.raw_bytes);
            tracker.chunk_done(entry.rows);
        }
    }
    Ok(entries)
}

/// The leader's lanes take chunks from the dispatch like any helper.
struct DispatchFeed {
    dispatch: Arc<dyn ChunkDispatch>,
    /// The chunk key of each object path being written.
    keys: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

#[async_trait]
impl ObjectFeed for DispatchFeed {
    async fn next(&self, stop: &CancellationToken) -> Result<Option<PlannedObject>, EngineError> {
        loop {
            match self.dispatch.take().await? {
                Take::Chunk(chunk) => {
                    let spec: ChunkSpec = serde_json::from_str(&chunk.spec).map_err(spec_error)?;
                    let mut object = spec.object;
                    object.relative = take_path(&chunk.key, chunk.take);
                    self.keys
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(object.relative.clone(), chunk.key);
                    return Ok(Some(object));
                }
                Take::AllStored => return Ok(None),
                Take::Wait => {
                    tokio::select! {
                        _ = stop.cancelled() => return Err(EngineError::cancelled()),
                        _ = tokio::time::sleep(WAIT_POLL) => {}
                    }
                }
            }
        }
    }

    async fn stored(
        &self,
        object: &PlannedObject,
        entries: &[(usize, ChunkEntry)],
    ) -> Result<(), EngineError> {
        let key = self
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&object.relative)
            .ok_or_else(|| EngineError::internal(format!("no chunk for {}", object.relative)))?;
        self.dispatch.stored(stored_chunk(key, entries)?).await
    }
}

/// The report of chunk `key`'s stored object.
fn stored_chunk(key: String, entries: &[(usize, ChunkEntry)]) -> Result<StoredChunk, EngineError> {
    let first = entries
        .first()
        .ok_or_else(|| EngineError::internal("a stored chunk has no entries"))?;
    Ok(StoredChunk {
        key,
        object_path: first.1.object.path.clone(),
        size: first.1.object.size,
        sha256: first.1.object.sha256.clone(),
        rows: entries.iter().map(|(_, e)| e.rows).sum(),
        entries: serde_json::to_string(entries).map_err(spec_error)?,
        raw_bytes: entries.iter().map(|(_, e)| e.raw_bytes).sum(),
    })
}

/// A chunk handed to a helper, as the runner passes it on.
#[derive(Debug, Clone)]
pub struct ChunkJob {
    pub snapshot_id: String,
    pub key: String,
    pub spec: String,
    pub take: u32,
}

/// A helper's work: dumps one chunk on the leader's snapshot (one
/// connection, `REPEATABLE READ READ ONLY`, `SET TRANSACTION SNAPSHOT`)
/// into the point and returns what to report.
pub async fn dump_chunk(
    source: &PgTarget,
    store: &Datastore,
    prefix: &str,
    chunk: &ChunkJob,
    options: &EngineOptions,
    progress: Arc<dyn ProgressSink>,
    cancel: CancellationToken,
) -> Result<StoredChunk, EngineError> {
    let spec: ChunkSpec = serde_json::from_str(&chunk.spec).map_err(spec_error)?;
    let size = spec.tables.iter().map(|(t, _)| t + 1).max().unwrap_or(0);
    let mut names = vec![String::new(); size];
    for (table, name) in &spec.tables {
        names[*table] = name.clone();
    }
    let mut object = spec.object;
    object.relative = take_path(&chunk.key, chunk.take);
    let ctx = DumpContext {
        source: source.clone(),
        snapshot_id: chunk.snapshot_id.clone(),
        store: store.clone(),
        prefix: prefix.to_string(),
        options: EngineOptions {
            connections: 1,
            ..options.clone()
        },
        tracker: Tracker::new(progress),
        table_names: Arc::new(names.clone()),
        readable_names: Arc::new(names),
        cancel: cancel.clone(),
    };
    let feed = Arc::new(OneObject(std::sync::Mutex::new(Some(object))));
    let entries = tokio::select! {
        _ = cancel.cancelled() => return Err(EngineError::cancelled()),
        entries = backup_data::dump_from(ctx, feed, 1) => entries?,
    };
    stored_chunk(chunk.key.clone(), &entries)
}

/// A feed of exactly one object.
struct OneObject(std::sync::Mutex<Option<PlannedObject>>);

#[async_trait]
impl ObjectFeed for OneObject {
    async fn next(&self, _stop: &CancellationToken) -> Result<Option<PlannedObject>, EngineError> {
        Ok(self.0.lock().unwrap_or_else(|p| p.into_inner()).take())
    }

    async fn stored(
        &self,
        _object: &PlannedObject,
        _entries: &[(usize, ChunkEntry)],
    ) -> Result<(), EngineError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_take_of_a_chunk_writes_its_own_object() {
        assert_eq!(
            take_path("data/7/00001.copy.zst", 1),
            "data/7/00001.t1.copy.zst"
        );
        assert_eq!(
            take_path("data/7/00001.copy.zst", 2),
            "data/7/00001.t2.copy.zst"
        );
        assert_ne!(
            take_path("data/bundles/00003.copy.zst", 1),
            "data/bundles/00003.copy.zst"
        );
    }

    fn fanout(workers: u32, threshold: u64) -> Fanout {
        struct Never;
        #[async_trait]
        impl ChunkDispatch for Never {
            async fn offer(
                &self,
                _: &str,
                _: Vec<OfferedChunk>,
                _: u32,
            ) -> Result<u32, EngineError> {
                Ok(0)
            }
            async fn offer_loads(&self, _: Vec<OfferedChunk>, _: u32) -> Result<u32, EngineError> {
                Ok(0)
            }
            async fn take(&self) -> Result<Take, EngineError> {
                Ok(Take::AllStored)
            }
            async fn stored(&self, _: StoredChunk) -> Result<(), EngineError> {
                Ok(())
            }
            async fn recorded(&self) -> Result<Vec<RecordedChunk>, EngineError> {
                Ok(Vec::new())
            }
        }
        Fanout {
            dispatch: Arc::new(Never),
            workers,
            threshold_bytes: threshold,
        }
    }

    #[test]
    fn a_backup_fans_out_when_asked_or_above_the_threshold() {
        let gib = 1 << 30;
        // Asked: up to the workers asked, never more helpers than objects - 1.
        assert_eq!(fanout(3, 4 * gib).helpers(10, 1), Some(2));
        assert_eq!(fanout(8, 4 * gib).helpers(3, 1), Some(2));
        // Not asked: only above the threshold, one helper per threshold.
        assert_eq!(fanout(0, 4 * gib).helpers(10, gib), None);
        assert_eq!(fanout(0, 4 * gib).helpers(100, 9 * gib), Some(2));
        assert_eq!(fanout(0, 4 * gib).helpers(100, 400 * gib), Some(7));
        // A single object is never fanned out.
        assert_eq!(fanout(4, 1).helpers(1, 9 * gib), None);
    }
}
