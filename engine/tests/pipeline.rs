//! The pipeline's structure, proven on a small database in seconds and
//! without timing assertions: with more connections than cores, every
//! compression, hash and decompression of a backup and a restore runs on
//! the CPU pool (none on an async runtime thread), no more CPU steps ever
//! run at once than the pool has threads, every raw byte goes through the
//! pool, and the stage accounting adds up (lane stages to the lanes'
//! lifetimes, phases to the wall time). Proven in detail at 8 connections,
//! and on a smaller database at 2 and 16 (fewer connections than cores,
//! and the most the defaults' memory budget covers): the lanes are the
//! data connections, the schema dump is timed beside them.

use crate::support;

use std::time::Duration;

use pgvault_engine::{
    CpuStage, EngineOptions, LaneStage, SideTask, StageTimes, backup, restore_database,
};
use support::*;
use tokio_util::sync::CancellationToken;

const FIXTURE: &str = "
CREATE TABLE big (id bigint PRIMARY KEY, note text NOT NULL, n numeric);
INSERT INTO big SELECT g, md5(g::text) || repeat('x', g % 50), g * 1.25 FROM generate_series(1, 60000) g;
CREATE INDEX big_note ON big (note);
CREATE TABLE mid (id int PRIMARY KEY, v text);
INSERT INTO mid SELECT g, repeat('y', g % 200) FROM generate_series(1, 5000) g;
DO $$ BEGIN
  FOR i IN 1..20 LOOP
    EXECUTE format('CREATE TABLE small_%s (id int PRIMARY KEY, v text)', i);
    EXECUTE format('INSERT INTO small_%s SELECT g, md5(g::text) FROM generate_series(1, %s) g', i, i);
  END LOOP;
END $$;
";

/// A smaller database for the connection counts around the detailed run:
/// a table cut into a few chunks and more tables than connections.
const SMALL_FIXTURE: &str = "
CREATE TABLE big (id bigint PRIMARY KEY, note text NOT NULL);
INSERT INTO big SELECT g, md5(g::text) || repeat('x', g % 50) FROM generate_series(1, 12000) g;
CREATE INDEX big_note ON big (note);
DO $$ BEGIN
  FOR i IN 1..20 LOOP
    EXECUTE format('CREATE TABLE small_%s (id int PRIMARY KEY, v text)', i);
    EXECUTE format('INSERT INTO small_%s SELECT g, md5(g::text) FROM generate_series(1, %s) g', i, i);
  END LOOP;
END $$;
";

/// The accounting every split must satisfy, whatever the operation.
fn assert_structure(what: &str, stages: &StageTimes) {
    let phased: Duration = stages.phases.iter().map(|p| p.time).sum();
    assert_eq!(
        phased, stages.wall,
        "{what}: phases add up to the wall time"
    );
    let staged: Duration = stages.lane_stages.iter().map(|l| l.time).sum();
    assert_eq!(
        staged, stages.lane_time,
        "{what}: lane stages add up to the lanes' lifetimes"
    );
    assert!(
        stages.lane_time <= stages.wall * stages.lanes,
        "{what}: no lane outlives the job: {stages:?}"
    );
    assert!(!stages.cpu.is_empty(), "{what}: CPU steps were measured");
    for cpu in &stages.cpu {
        assert_eq!(
            cpu.off_pool,
            0,
            "{what}: {} ran {} of {} jobs off the CPU pool",
            cpu.stage.as_str(),
            cpu.off_pool,
            cpu.jobs
        );
    }
    assert!(stages.pool_threads >= 1, "{what}: {stages:?}");
    assert!(
        (1..=stages.pool_threads).contains(&stages.pool_peak_busy),
        "{what}: {} CPU steps ran at once on a pool of {}",
        stages.pool_peak_busy,
        stages.pool_threads
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_work_stays_on_the_pool_and_the_stage_split_adds_up() {
    let pg = cluster();
    create_database(&pg, "src").await;
    pg.connect("src")
        .await
        .unwrap()
        .batch_execute(FIXTURE)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = datastore(&dir);
    store.ensure_exists().await.unwrap();
    // More connections than this machine (or CI) has cores, and big tables
    // cut into several chunks.
    let options = EngineOptions {
        connections: 8,
        split_threshold_bytes: 512 * 1024,
        ..options(&pg)
    };

    let summary = backup(
        &target(&pg, "src"),
        &store,
        "rp",
        &options,
        recorder(),
        CancellationToken::new(),
    )
    .await
    .expect("backup");
    let stages = &summary.stages;
    assert_structure("backup", stages);
    assert_eq!(
        stages.lanes, 8,
        "8 data lanes; the schema dump is no data lane"
    );
    assert!(
        stages.side(SideTask::SchemaDump) > Duration::ZERO,
        "the schema dump is timed beside them: {stages:?}"
    );
    let compress = stages
        .cpu
        .iter()
        .find(|c| c.stage == CpuStage::CompressHash)
        .expect("compression was measured");
    assert_eq!(
        compress.bytes, summary.raw_bytes,
        "every COPY byte went through the pool"
    );
    assert!(compress.jobs >= u64::from(summary.chunk_count));
    for stage in [
        LaneStage::CopyOutWait,
        LaneStage::Compress,
        LaneStage::UploadWait,
    ] {
        assert!(
            stages.lane_stages.iter().any(|l| l.stage == stage),
            "backup lanes entered {}: {stages:?}",
            stage.as_str()
        );
    }
    assert!(stages.phase("final flush") > Duration::ZERO);
    let on_disk: u64 = files_below(&dir.path().join("rp"))
        .iter()
        .map(|f| {
            std::fs::metadata(dir.path().join("rp").join(f))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(
        summary.stored_bytes, on_disk,
        "stored bytes count each object once, bundles included"
    );

    let restored = restore_database(
        &target(&pg, "copy"),
        &store,
        "rp",
        Some(&summary.manifest_sha256),
        &options,
        recorder(),
        CancellationToken::new(),
    )
    .await
    .expect("restore");
    let stages = &restored.stages;
    assert_structure("restore", stages);
    assert_eq!(stages.lanes, 8, "one lane per connection");
    let decompress = stages
        .cpu
        .iter()
        .find(|c| c.stage == CpuStage::DecompressVerify)
        .expect("decompression was measured");
    let manifest: pgvault_engine::Manifest =
        serde_json::from_slice(&std::fs::read(dir.path().join("rp/manifest.json")).unwrap())
            .unwrap();
    let stored: u64 = manifest
        .tables
        .iter()
        .flat_map(|t| t.chunks.iter())
        .map(|c| c.stored_range().end - c.stored_range().start)
        .sum();
    assert_eq!(
        decompress.bytes, stored,
        "every stored byte was verified on the pool"
    );
    for stage in [
        LaneStage::DownloadWait,
        LaneStage::Decompress,
        LaneStage::CopyInWait,
        LaneStage::IndexBuild,
        LaneStage::Analyze,
    ] {
        assert!(
            stages.lane_stages.iter().any(|l| l.stage == stage),
            "restore lanes entered {}: {stages:?}",
            stage.as_str()
        );
    }
    let analyzed = stages
        .lane_stages
        .iter()
        .find(|l| l.stage == LaneStage::Analyze)
        .map(|l| l.count)
        .unwrap_or(0);
    assert!(analyzed >= 1, "tables were analyzed on the lanes");
    assert_eq!(
        data_fingerprint(&pg, "src").await,
        data_fingerprint(&pg, "copy").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_split_adds_up_and_counts_data_connections_at_2_and_16_connections() {
    let pg = cluster();
    create_database(&pg, "src").await;
    pg.connect("src")
        .await
        .unwrap()
        .batch_execute(SMALL_FIXTURE)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = datastore(&dir);
    store.ensure_exists().await.unwrap();
    for connections in [2, 16] {
        let what = |op: &str| format!("{op} with {connections} connections");
        let options = EngineOptions {
            connections,
            split_threshold_bytes: 32 * 1024,
            ..options(&pg)
        };
        let prefix = format!("rp{connections}");
        let summary = backup(
            &target(&pg, "src"),
            &store,
            &prefix,
            &options,
            recorder(),
            CancellationToken::new(),
        )
        .await
        .expect("backup");
        let stages = &summary.stages;
        assert_structure(&what("backup"), stages);
        // 21 tables, the big one in several chunks: work for every lane.
        assert!(summary.chunk_count as usize > connections, "{summary:?}");
        assert_eq!(
            stages.lanes as usize,
            connections,
            "{}: one lane per data connection, none for the schema dump",
            what("backup")
        );
        assert!(
            stages.side(SideTask::SchemaDump) > Duration::ZERO,
            "{}: the schema dump is timed beside the lanes: {stages:?}",
            what("backup")
        );
        let compress = stages
            .cpu
            .iter()
            .find(|c| c.stage == CpuStage::CompressHash)
            .expect("compression was measured");
        assert_eq!(compress.bytes, summary.raw_bytes, "{}", what("backup"));

        let copy = format!("copy{connections}");
        let restored = restore_database(
            &target(&pg, &copy),
            &store,
            &prefix,
            Some(&summary.manifest_sha256),
            &options,
            recorder(),
            CancellationToken::new(),
        )
        .await
        .expect("restore");
        assert_structure(&what("restore"), &restored.stages);
        assert_eq!(
            restored.stages.lanes as usize,
            connections,
            "{}: one lane per data connection",
            what("restore")
        );
        assert_eq!(
            data_fingerprint(&pg, "src").await,
            data_fingerprint(&pg, &copy).await,
            "{}",
            what("restore")
        );
    }
}
