//! A restore fanned out through the engine's `ChunkDispatch` seam, against
//! real PostgreSQL and a `file://` datastore. The dispatch here is the
//! fleet in one process: some loads are first run by a "helper" with the
//! public per-chunk code (`restore_fanout::load_chunk`), which commits and
//! then "dies" before reporting, so the chunk is handed out again — the
//! redo must load nothing and the database must come out identical.
//! Also: a job's next attempt drops the half-restored database its dead
//! earlier attempt left, and never a database that is not its job's.

use crate::support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pgvault_datastore::Datastore;
use pgvault_engine::fanout::{
    ChunkDispatch, ChunkJob, Fanout, OfferedChunk, RecordedChunk, StoredChunk, Take, TakenChunk,
};
use pgvault_engine::{
    EngineError, EngineOptions, ErrorCode, PgTarget, RestoreRun, Selection, restore_database_fanned,
};
use support::*;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Fleet {
    /// Offered loads not yet handed out, with the take they get next.
    queue: VecDeque<(OfferedChunk, u32)>,
    offered: usize,
    stored: Vec<StoredChunk>,
    /// Keys a helper loaded and never reported.
    lost_reports: Vec<String>,
}

/// Hands out every other load to a helper that commits it and dies before
/// reporting; its chunk then goes to the leader's lanes as take 2.
struct DyingHelpers {
    target: PgTarget,
    store: Datastore,
    prefix: String,
    options: EngineOptions,
    fleet: Mutex<Fleet>,
}

#[async_trait]
impl ChunkDispatch for DyingHelpers {
    async fn offer(&self, _: &str, _: Vec<OfferedChunk>, _: u32) -> Result<u32, EngineError> {
        Err(EngineError::internal("a restore offers loads, not dumps"))
    }

    async fn offer_loads(
        &self,
        chunks: Vec<OfferedChunk>,
        helpers: u32,
    ) -> Result<u32, EngineError> {
        let mut fleet = self.fleet.lock().unwrap();
        fleet.offered = chunks.len();
        fleet.queue = chunks.into_iter().map(|c| (c, 1)).collect();
        Ok(helpers)
    }

    async fn take(&self) -> Result<Take, EngineError> {
        let next = {
            let mut fleet = self.fleet.lock().unwrap();
            match fleet.queue.pop_front() {
                Some(next) => Some((next, fleet.queue.len().is_multiple_of(2))),
                None if fleet.stored.len() == fleet.offered => return Ok(Take::AllStored),
                None => None,
            }
        };
        let Some(((chunk, take), to_helper)) = next else {
            return Ok(Take::Wait);
        };
        if to_helper && take == 1 {
            let job = ChunkJob {
                snapshot_id: String::new(),
                key: chunk.key.clone(),
                spec: chunk.spec.clone(),
                take,
            };
            let loaded = pgvault_engine::restore_fanout::load_chunk(
                &self.target,
                &self.store,
                &self.prefix,
                &job,
                &self.options,
                CancellationToken::new(),
            )
            .await?;
            assert!(
                !serde_json::from_str::<serde_json::Value>(&loaded.entries).unwrap()["already"]
                    .as_bool()
                    .unwrap(),
                "a first take loads: {loaded:?}"
            );
            // Committed, then the helper died: its lease expires and the
            // chunk is taken again.
            self.fleet
                .lock()
                .unwrap()
                .lost_reports
                .push(chunk.key.clone());
        }
        let take = if to_helper && take == 1 { 2 } else { take };
        Ok(Take::Chunk(TakenChunk {
            key: chunk.key,
            spec: chunk.spec,
            take,
        }))
    }

    async fn stored(&self, chunk: StoredChunk) -> Result<(), EngineError> {
        self.fleet.lock().unwrap().stored.push(chunk);
        Ok(())
    }

    async fn recorded(&self) -> Result<Vec<RecordedChunk>, EngineError> {
        Ok(self
            .fleet
            .lock()
            .unwrap()
            .stored
            .iter()
            .map(|c| RecordedChunk {
                key: c.key.clone(),
                entries: c.entries.clone(),
            })
            .collect())
    }
}

const WIDE: &str = "CREATE TABLE wide (id int PRIMARY KEY, pad text); \
     INSERT INTO wide SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 20000) g; \
     CREATE SEQUENCE s; SELECT setval('s', 42); \
     CREATE TABLE small (v int REFERENCES wide (id)); INSERT INTO small VALUES (1), (2);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_committed_but_never_reported_is_not_loaded_again_when_its_chunk_is_redone() {
    let pg = source("fan", WIDE).await;
    let mut opts = options(&pg);
    opts.split_threshold_bytes = 8192 * 64;
    let point = back_up(&pg, "fan", &opts).await;
    let dispatch = Arc::new(DyingHelpers {
        target: target(&pg, "fan copy"),
        store: point.store.clone(),
        prefix: point.prefix.clone(),
        options: opts.clone(),
        fleet: Mutex::new(Fleet::default()),
    });
    let run = RestoreRun {
        fanout: Some(Fanout {
            dispatch: dispatch.clone(),
            workers: 3,
            threshold_bytes: u64::MAX,
        }),
        owner: Some(("job-1".into(), 1)),
    };
    let restored = restore_database_fanned(
        &target(&pg, "fan copy"),
        &point.store,
        &point.prefix,
        Some(&point.summary.manifest_sha256),
        &Selection::default(),
        &opts,
        &run,
        recorder(),
        CancellationToken::new(),
    )
    .await
    .expect("fanned-out restore");

    {
        let fleet = dispatch.fleet.lock().unwrap();
        assert!(
            fleet.offered >= 4,
            "the big table's chunks were offered apart: {}",
            fleet.offered
        );
        assert!(
            !fleet.lost_reports.is_empty(),
            "some loads lost their report"
        );
        for key in &fleet.lost_reports {
            let report = fleet.stored.iter().find(|c| &c.key == key).expect("redone");
            let entries: serde_json::Value = serde_json::from_str(&report.entries).unwrap();
            assert_eq!(
                entries["already"], true,
                "the redo found {key} loaded: {entries}"
            );
            assert!(
                report.rows > 0,
                "the redo reports the rows loaded the first time"
            );
        }
        assert_eq!(fleet.stored.len(), fleet.offered, "each load reported once");
        assert_eq!(restored.rows, point.summary.rows, "no row counted twice");
    }
    // Same rows (none twice), same schema (no bookkeeping left), sequences.
    assert_identical(&pg, "fan", &pg, "fan copy").await;
    let comment = pg
        .connect("postgres")
        .await
        .unwrap()
        .query_one(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'fan copy'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, Option<String>>(0);
    assert_eq!(comment, None, "the in-progress marker is cleared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_restore_drops_what_its_dead_attempt_left_and_never_another_database() {
    let pg = source("src", WIDE).await;
    let opts = options(&pg);
    let point = back_up(&pg, "src", &opts).await;
    let restore = |database: &'static str, owner: (&'static str, u32)| {
        let run = RestoreRun {
            fanout: None,
            owner: Some((owner.0.to_string(), owner.1)),
        };
        let (pg, point, opts) = (&pg, &point, &opts);
        async move {
            restore_database_fanned(
                &target(pg, database),
                &point.store,
                &point.prefix,
                None,
                &Selection::default(),
                opts,
                &run,
                recorder(),
                CancellationToken::new(),
            )
            .await
        }
    };
    // A dead attempt 1 of job-7 left a half-filled database behind.
    add_database(
        &pg,
        "half",
        "CREATE TABLE leftover (x int); INSERT INTO leftover VALUES (1);",
    )
    .await;
    execute(
        &pg,
        "postgres",
        "COMMENT ON DATABASE half IS 'pgvault restore in progress: job job-7 attempt 1'",
    )
    .await;
    // Another job's name clash is still refused, and its database kept.
    let refused = restore("half", ("job-8", 1)).await.unwrap_err();
    assert_eq!(
        refused.code,
        ErrorCode::UserErrorDatabaseNameAlreadyInUse,
        "{refused}"
    );
    assert!(database_exists(&pg, "half").await);

    restore("half", ("job-7", 2))
        .await
        .expect("attempt 2 restores");
    assert_identical(&pg, "src", &pg, "half").await;

    // A database nobody marked is never dropped.
    create_database(&pg, "users own").await;
    let refused = restore("users own", ("job-7", 3)).await.unwrap_err();
    assert_eq!(
        refused.code,
        ErrorCode::UserErrorDatabaseNameAlreadyInUse,
        "{refused}"
    );
    assert!(database_exists(&pg, "users own").await);
}
