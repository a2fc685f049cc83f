//! One backup fanned out across several workers (`backup now --workers 3`)
//! over RabbitMQ: chunks are dumped by more than one worker on the
//! leader's snapshot, `job show --output json` says who did which and
//! what each contributed to the combined throughput, and the point
//! restores identical. A helper SIGKILLed mid-run costs at most its
//! chunk; the leader SIGKILLed costs the attempt, and the next attempt's
//! point references none of the failed attempt's objects.
//!
//! In an encrypted vault, helpers seal their chunks with the attempt's
//! point key like the leader: the point restores and verifies.
//!
//! Small data (pgbench scale 2, chunks of 1 MiB: the harness's
//! `worker.split_threshold_mb`), so it runs on two cores.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pgvault_e2e::scenario::{Scenario, assert_manifest_objects_complete};
use pgvault_proto::v1::*;

const DB: &str = "fan";

/// `backup now --workers 3` of the scenario's instance.
async fn fanned_backup(s: &mut Scenario) -> anyhow::Result<Job> {
    let instance = s.instances[0].1.clone();
    Ok(s.api
        .instances
        .backup_now(BackupNowRequest {
            name: instance,
            rule: RetentionRuleKind::Default as i32,
            workers: 3,
        })
        .await?
        .into_inner())
}

/// Waits until the job's current attempt has stored a chunk done by a
/// worker other than the leader; returns (leader, that helper).
async fn wait_for_helper(s: &mut Scenario, job: &str) -> anyhow::Result<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let current = s.get_job(job).await?;
        if current.state == JobState::InProgress as i32
            && !current.worker.is_empty()
            && let Some(helper) = current.chunks.iter().find(|c| {
                c.state == "DONE" && !c.worker_id.is_empty() && c.worker_id != current.worker
            })
        {
            return Ok((current.worker.clone(), helper.worker_id.clone()));
        }
        if current.state == JobState::Completed as i32 || Instant::now() > deadline {
            bail!("no helper was seen storing a chunk of {job} while it ran: {current:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_fanned_out_backup_is_sealed_by_every_worker_and_restores_and_verifies()
-> anyhow::Result<()> {
    let mut s = Scenario::start_with_encryption(&[DB], 2, 3, None, "aes-256-gcm").await?;
    let job = fanned_backup(&mut s).await?;
    s.wait_completed(&job.name).await?;
    let done = s.get_job(&job.name).await?;
    let by: HashSet<&str> = done
        .chunks
        .iter()
        .map(|c| c.worker_id.as_str())
        .filter(|w| !w.is_empty())
        .collect();
    assert!(
        by.len() >= 2,
        "chunks done by at least 2 workers, got {by:?}"
    );

    // A chunk left unsealed (or sealed under another key) by any worker
    // fails the sealed readers of both the restore and the verify.
    let points = s.points(&s.instances[0].1.clone()).await?;
    let point = points.first().context("a recovery point")?.clone();
    s.restore_and_compare(&point.name, DB, "fan_sealed_restored")
        .await?;
    let out = s
        .cluster
        .cli(&["recovery-point", "verify", &point.name, "--wait"], None)?;
    if !out.status.success() {
        bail!(
            "verify of the encrypted fanned-out point failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_fanned_out_over_three_workers_is_dumped_by_several_and_restores_identical()
-> anyhow::Result<()> {
    let mut s = Scenario::start(&[DB], 2, 3, None).await?;
    let job = fanned_backup(&mut s).await?;
    s.wait_completed(&job.name).await?;

    // What `job show --output json` prints: the workers and who did each chunk.
    let out = s
        .cluster
        .cli(&["--output", "json", "job", "show", &job.name], None)?;
    if !out.status.success() {
        bail!("job show failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let chunks = shown["chunks"].as_array().context("chunks listed")?;
    let by: HashSet<&str> = chunks
        .iter()
        .filter_map(|c| c["worker_id"].as_str())
        .filter(|w| !w.is_empty())
        .collect();
    assert!(
        by.len() >= 2,
        "chunks done by at least 2 workers, got {by:?}: {shown}"
    );
    assert!(
        chunks.iter().all(|c| c["state"] == "DONE"),
        "every chunk stored: {shown}"
    );
    assert!(
        chunks
            .iter()
            .any(|c| c["table"].as_str() == Some("public.pgbench_accounts")),
        "the big table's chunks are listed: {shown}"
    );
    assert!(shown["workers"].as_array().is_some_and(|w| w.len() >= 2));
    // The fleet's combined throughput: every chunk's bytes, more than one
    // worker contributing, and the parts adding up to the whole.
    let throughput = &shown["throughput"];
    let contributing: Vec<&serde_json::Value> = throughput["workers"]
        .as_array()
        .context("throughput per worker")?
        .iter()
        .filter(|w| w["bytes_done"].as_u64().unwrap_or(0) > 0)
        .collect();
    assert!(
        contributing.len() >= 2,
        "at least 2 workers contribute to the throughput: {throughput}"
    );
    let total = throughput["bytes_done"].as_u64().unwrap_or(0);
    let parts: u64 = contributing
        .iter()
        .filter_map(|w| w["bytes_done"].as_u64())
        .sum();
    assert!(total > 0 && parts == total, "{throughput}");
    assert!(throughput["bytes_per_second"].as_f64().unwrap_or(0.0) > 0.0);
    assert_eq!(throughput["chunks_total"], throughput["chunks_done"]);
    let shown_text = s.cluster.cli(&["job", "show", &job.name], None)?;
    let text = String::from_utf8_lossy(&shown_text.stdout);
    assert!(
        text.contains("MB/s combined"),
        "job show prints the combined throughput: {text}"
    );

    let points = s.points(&s.instances[0].1.clone()).await?;
    let point = points.first().context("a recovery point")?.clone();
    assert_manifest_objects_complete(&point).await?;
    s.restore_and_compare(&point.name, DB, "fan_restored")
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_helper_killed_mid_backup_costs_its_chunk_only_and_the_backup_restores_identical()
-> anyhow::Result<()> {
    let mut s = Scenario::start(&[DB], 2, 3, None).await?;
    let job = fanned_backup(&mut s).await?;
    let (leader, helper) = wait_for_helper(&mut s, &job.name).await?;
    assert_ne!(leader, helper);
    s.cluster.kill_worker_holding(&Job {
        name: job.name.clone(),
        worker: helper.clone(),
        ..Job::default()
    })?;
    let done = s.wait_completed(&job.name).await?;
    assert_eq!(done.attempt, 1, "losing a helper never costs the attempt");
    let points = s.points(&s.instances[0].1.clone()).await?;
    let point = points.first().context("a recovery point")?.clone();
    assert_manifest_objects_complete(&point).await?;
    s.restore_and_compare(&point.name, DB, "fan_after_helper")
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_leader_fails_the_attempt_and_the_next_attempt_references_none_of_its_objects()
-> anyhow::Result<()> {
    let mut s = Scenario::start(&[DB], 2, 3, None).await?;
    let job = fanned_backup(&mut s).await?;
    let (leader, _) = wait_for_helper(&mut s, &job.name).await?;
    let running = s.get_job(&job.name).await?;
    s.cluster.kill_worker_holding(&running)?;
    let done = s.wait_completed(&job.name).await?;
    assert!(done.attempt >= 2, "the job was retried as a new attempt");
    assert!(
        done.chunks.iter().all(|c| c.state == "DONE"),
        "the committing attempt's chunks are all stored: {done:?}"
    );
    assert!(
        !done.chunks.iter().any(|c| c.worker_id == leader),
        "no chunk of the committing attempt is the dead leader's: {done:?}"
    );
    let points = s.points(&s.instances[0].1.clone()).await?;
    assert_eq!(points.len(), 1, "one point, of the committing attempt");
    let point = points[0].clone();
    // Every object the manifest names exists with its size, and all sit
    // under the committing attempt's own point (a fresh prefix per attempt).
    assert_manifest_objects_complete(&point).await?;
    s.restore_and_compare(&point.name, DB, "fan_after_leader")
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fanned_out_backup_stays_within_the_servers_connection_budget() -> anyhow::Result<()> {
    let mut s = Scenario::start(&[DB], 2, 3, None).await?;
    let out = s.cluster.cli(
        &["server", "update", "source", "--max-connections", "3"],
        None,
    )?;
    if !out.status.success() {
        bail!(
            "server update failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let sampler = s.source.connect("postgres").await?;
    let job = fanned_backup(&mut s).await?;
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut most = 0i64;
    loop {
        // Every connection to the backed-up database is pgvault's.
        let row = sampler
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                &[&DB],
            )
            .await?;
        most = most.max(row.get::<_, i64>(0));
        let current = s.get_job(&job.name).await?;
        if current.state != JobState::Queued as i32 && current.state != JobState::InProgress as i32
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("backup did not end: {current:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.wait_completed(&job.name).await?;
    assert!(most > 0, "the sampler saw the backup's connections");
    assert!(
        most <= 3,
        "the source saw {most} pgvault connections at once with a budget of 3"
    );
    Ok(())
}
