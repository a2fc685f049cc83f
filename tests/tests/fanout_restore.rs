//! One restore fanned out across several workers
//! (`pgvault restore database … --workers 3`) over RabbitMQ: the leader
//! creates the database and runs pre-data, loads are chunk sub-tasks any
//! worker takes, the leader runs post-data and ANALYZE; `job show --output
//! json` says who loaded which chunk, and the database comes out identical
//! (data, schema, sequences). A helper SIGKILLed mid-run costs at most its
//! chunk and no row is loaded twice. An encrypted vault's point restores
//! fanned out too (helpers open its chunks with the point key).
//!
//! Small data (pgbench scale 2, chunks of 1 MiB: the harness's
//! `worker.split_threshold_mb`), so it runs on two cores.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pgvault_e2e::compare::assert_identical;
use pgvault_e2e::scenario::Scenario;
use pgvault_proto::v1::*;

const DB: &str = "rfan";

/// A plain backup of the scenario's instance; returns its point's name.
async fn backed_up(s: &mut Scenario) -> anyhow::Result<String> {
    let instance = s.instances[0].1.clone();
    let job = s
        .api
        .instances
        .backup_now(BackupNowRequest {
            name: instance.clone(),
            rule: RetentionRuleKind::Default as i32,
            workers: 0,
        })
        .await?
        .into_inner();
    s.wait_completed(&job.name).await?;
    let points = s.points(&instance).await?;
    Ok(points.first().context("a recovery point")?.name.clone())
}

/// `pgvault restore database POINT --target-database TARGET --workers 3`;
/// returns the job's name.
fn fanned_restore(s: &Scenario, point: &str, target: &str) -> anyhow::Result<String> {
    let out = s.cluster.cli(
        &[
            "--output",
            "json",
            "restore",
            "database",
            point,
            "--target-database",
            target,
            "--workers",
            "3",
        ],
        None,
    )?;
    if !out.status.success() {
        bail!(
            "restore database --workers 3 failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let job: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(job["name"].as_str().context("the job's name")?.to_string())
}

/// What `job show --output json` prints for `job`.
fn shown(s: &Scenario, job: &str) -> anyhow::Result<serde_json::Value> {
    let out = s
        .cluster
        .cli(&["--output", "json", "job", "show", job], None)?;
    if !out.status.success() {
        bail!("job show failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Workers that loaded chunks, as `job show` lists them per chunk.
fn loaders(shown: &serde_json::Value) -> HashSet<String> {
    shown["chunks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["worker_id"].as_str())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// No table of `target` holds a row twice that the source holds once.
async fn row_counts_match(s: &Scenario, target: &str) -> anyhow::Result<()> {
    let source = s.source.connect(DB).await?;
    let restored = s.source.connect(target).await?;
    for table in [
        "pgbench_accounts",
        "pgbench_branches",
        "pgbench_tellers",
        "pgbench_history",
    ] {
        let sql = format!("SELECT count(*) FROM {table}");
        let a: i64 = source.query_one(&sql, &[]).await?.get(0);
        let b: i64 = restored.query_one(&sql, &[]).await?.get(0);
        if a != b {
            bail!("{table}: {a} rows in the source, {b} restored");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_fanned_out_over_three_workers_is_loaded_by_several_and_is_identical()
-> anyhow::Result<()> {
    let mut s = Scenario::start(&[DB], 2, 3, None).await?;
    let point = backed_up(&mut s).await?;
    let job = fanned_restore(&s, &point, "rfan_restored")?;
    let done = s.wait_completed(&job).await?;
    assert_eq!(done.attempt, 1);

    let shown = shown(&s, &job)?;
    let chunks = shown["chunks"].as_array().context("chunks listed")?;
    let by = loaders(&shown);
    assert!(
        by.len() >= 2,
        "chunks loaded by at least 2 workers, got {by:?}: {shown}"
    );
    assert!(
        chunks.iter().all(|c| c["state"] == "DONE"),
        "every load done: {shown}"
    );
    assert!(
        chunks
            .iter()
            .any(|c| c["table"].as_str() == Some("public.pgbench_accounts")),
        "the big table's chunks are listed: {shown}"
    );
    assert!(shown["workers"].as_array().is_some_and(|w| w.len() >= 2));

    row_counts_match(&s, "rfan_restored").await?;
    assert_identical(&s.source, DB, &s.source, "rfan_restored").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_helper_killed_mid_restore_costs_its_chunk_only_and_no_row_is_loaded_twice()
-> anyhow::Result<()> {
    let mut s = Scenario::start(&[DB], 2, 3, None).await?;
    let point = backed_up(&mut s).await?;
    let job = fanned_restore(&s, &point, "rfan_after_helper")?;
    // A helper that loaded a chunk, still working on the attempt.
    let deadline = Instant::now() + Duration::from_secs(120);
    let helper = loop {
        let current = s.get_job(&job).await?;
        if current.state == JobState::InProgress as i32
            && !current.worker.is_empty()
            && let Some(helper) = current.chunks.iter().find(|c| {
                c.state == "DONE" && !c.worker_id.is_empty() && c.worker_id != current.worker
            })
        {
            break helper.worker_id.clone();
        }
        if current.state == JobState::Completed as i32 || Instant::now() > deadline {
            bail!("no helper was seen loading a chunk of {job} while it ran: {current:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    s.cluster.kill_worker_holding(&Job {
        name: job.clone(),
        worker: helper,
        ..Job::default()
    })?;
    let done = s.wait_completed(&job).await?;
    assert_eq!(done.attempt, 1, "losing a helper never costs the attempt");
    assert!(done.chunks.iter().all(|c| c.state == "DONE"), "{done:?}");
    row_counts_match(&s, "rfan_after_helper").await?;
    assert_identical(&s.source, DB, &s.source, "rfan_after_helper").await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_vaults_point_restores_fanned_out_and_identical() -> anyhow::Result<()> {
    let mut s = Scenario::start_with_encryption(&[DB], 2, 3, None, "aes-256-gcm").await?;
    let point = backed_up(&mut s).await?;
    let job = fanned_restore(&s, &point, "rfan_sealed")?;
    s.wait_completed(&job).await?;
    let by = loaders(&shown(&s, &job)?);
    assert!(
        by.len() >= 2,
        "chunks loaded by at least 2 workers, got {by:?}"
    );
    row_counts_match(&s, "rfan_sealed").await?;
    assert_identical(&s.source, DB, &s.source, "rfan_sealed").await
}
