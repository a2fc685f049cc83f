//! The scheduler against a real state database with two coordinators: a slot
//! fires exactly once whoever leads, the survivor takes over when one stops,
//! slots missed while no coordinator ran fire once (or are skipped with a
//! reason when too old), and scheduled points are tagged from the history of
//! scheduled successes.
//! Time moves through one shifted clock all coordinators share; nothing
//! sleeps for a schedule.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Harness, TOKEN};
use pgvault_coordinator::Coordinator;
use pgvault_coordinator::clock::ShiftedClock;
use pgvault_proto::v1 as pb;
use pgvault_proto::v1::worker_service_client::WorkerServiceClient;
use sqlx::PgPool;
use tonic::transport::Channel;

// The signature is tonic's interceptor contract.
#[allow(clippy::result_large_err)]
fn with_token(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let value = format!("Bearer {TOKEN}")
        .parse()
        .map_err(|_| tonic::Status::internal("bad token"))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// Claims and completes `job_id` on the coordinator at `addr` with a
/// snapshot taken at `snapshot` (Unix seconds).
async fn complete(addr: std::net::SocketAddr, job_id: uuid::Uuid, snapshot: i64) {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut workers = WorkerServiceClient::with_interceptor(channel, with_token);
    let claim = workers
        .claim_task(pb::ClaimTaskRequest {
            job_id: job_id.to_string(),
            worker_id: "w1".into(),
            pg_tool_majors: Vec::new(),
            connections: 0,
        })
        .await
        .expect("claim")
        .into_inner();
    assert!(claim.claimed, "{claim:?}");
    workers
        .complete_task(pb::CompleteTaskRequest {
            tables: Vec::new(),
            job_id: job_id.to_string(),
            lease_token: claim.lease_token,
            result: Some(pb::complete_task_request::Result::Backup(
                pb::BackupResult {
                    snapshot_time: Some(prost_types::Timestamp {
                        seconds: snapshot,
                        nanos: 0,
                    }),
                    stored_bytes: 1,
                    raw_bytes: 1,
                    chunk_count: 1,
                    manifest_sha256: "ef".repeat(32),
                    server_version: "15".into(),
                    stage_split: None,
                },
            )),
            progress: None,
        })
        .await
        .expect("complete");
}

/// Scheduled backup jobs of the instance, oldest first.
async fn scheduled_jobs(pool: &PgPool) -> Vec<uuid::Uuid> {
    sqlx::query_scalar(
        "SELECT id FROM jobs WHERE operation = 'SCHEDULED_BACKUP' ORDER BY create_time",
    )
    .fetch_all(pool)
    .await
    .expect("jobs")
}

async fn runs(pool: &PgPool) -> Vec<(DateTime<Utc>, String, String)> {
    sqlx::query_as("SELECT slot_time, status, reason FROM schedule_runs ORDER BY slot_time")
        .fetch_all(pool)
        .await
        .expect("runs")
}

/// Polls until `count` scheduled jobs exist, then waits a few more ticks and
/// checks no more appear.
async fn expect_jobs(pool: &PgPool, count: usize) -> Vec<uuid::Uuid> {
    for _ in 0..300 {
        if scheduled_jobs(pool).await.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Several scheduler ticks of both coordinators.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let jobs = scheduled_jobs(pool).await;
    assert_eq!(jobs.len(), count, "scheduled jobs: {jobs:?}");
    jobs
}

#[tokio::test]
async fn a_slot_fires_once_with_two_coordinators_and_after_restarts() {
    let clock = Arc::new(ShiftedClock::new());
    let adjust = {
        let clock = clock.clone();
        move |c: &mut pgvault_coordinator::CoordinatorConfig| {
            c.scheduler_interval = Duration::from_millis(100);
            c.schedule_max_lateness = Duration::from_secs(3600);
            c.clock = clock.clone();
        }
    };
    let mut h = Harness::start_with(adjust.clone()).await;
    h.fixture().await;
    let pool = PgPool::connect(&h.cluster.url("postgres"))
        .await
        .expect("pool");

    // A policy due every day, two minutes from now (UTC).
    h.create_policy_due_soon(
        "v",
        pb::RetentionRule {
            kind: pb::RetentionRuleKind::Weekly as i32,
            standard_duration: "P8W".into(),
            archive_duration: String::new(),
        },
    )
    .await;
    let configured = h
        .instances()
        .configure_backup(pb::ConfigureBackupRequest {
            parent: "vaults/v".into(),
            policy: "vaults/v/policies/soon".into(),
            rows: vec![pb::ConfigureBackupRow {
                server: "servers/pg1".into(),
                database: "app".into(),
                secret: String::new(),
            }],
            default_secret: "secrets/pg1-admin".into(),
            assign_missing_permissions: true,
            all_databases_of: String::new(),
            role_passwords: false,
        })
        .await
        .expect("configure")
        .into_inner();
    assert_eq!(
        configured.results[0].readiness,
        pb::Readiness::Success as i32
    );

    // A second coordinator on the same state database.
    let mut config2 = common::config(&h.cluster);
    adjust(&mut config2);
    // Every coordinator publishes into the one recorder: whichever
    // dispatcher takes the outbox row, the envelope is seen.
    let second = Coordinator::start(config2, h.publisher.clone())
        .await
        .expect("second coordinator");
    // Before the slot: nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(scheduled_jobs(&pool).await.is_empty());

    // Three minutes later the slot is due: exactly one job, published.
    clock.set_offset(180);
    let jobs = expect_jobs(&pool, 1).await;
    h.publisher.wait_for(&jobs[0].to_string(), 1).await;

    // Restart both coordinators mid-slot: still one job.
    second.shutdown().await.expect("stop second");
    if let Some(first) = h.handle.take() {
        first.shutdown().await.expect("stop first");
    }
    let mut config3 = common::config(&h.cluster);
    adjust(&mut config3);
    let third = Coordinator::start(config3, h.publisher.clone())
        .await
        .expect("restart");
    let mut config4 = common::config(&h.cluster);
    adjust(&mut config4);
    let fourth = Coordinator::start(config4, h.publisher.clone())
        .await
        .expect("restart another");
    expect_jobs(&pool, 1).await;

    // One of them stops; the other takes over for the next day's slot.
    third.shutdown().await.expect("stop third");
    clock.set_offset(86_400 + 180);
    expect_jobs(&pool, 2).await;

    // Down for three days: the missed slots fire once, not three times.
    clock.set_offset(4 * 86_400 + 180);
    expect_jobs(&pool, 3).await;

    // Back two hours after the next slot (bound: one hour): skipped, with why.
    clock.set_offset(5 * 86_400 + 2 * 3600);
    expect_jobs(&pool, 3).await;
    let mut recorded = runs(&pool).await;
    for _ in 0..300 {
        if recorded.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        recorded = runs(&pool).await;
    }
    assert_eq!(recorded.len(), 4, "{recorded:?}");
    let (slot, status, reason) = &recorded[3];
    assert_eq!(status, "SKIPPED");
    assert!(
        reason.contains("missed by 1") && reason.contains("later than 60 minutes are skipped"),
        "{reason}"
    );
    assert_eq!(*slot - recorded[2].0, chrono::Duration::days(1));
    assert!(recorded[..3].iter().all(|(_, s, _)| s == "QUEUED"));

    // Completed, the scheduled points are tagged from the history: the first
    // of a week WEEKLY (P8W), the second of that week DEFAULT (P3M).
    let jobs = scheduled_jobs(&pool).await;
    let monday = 1_736_762_400; // 2025-01-13T10:00:00Z
    for (job, snapshot) in jobs
        .iter()
        .zip([monday, monday + 86_400, monday + 7 * 86_400])
    {
        complete(fourth.local_addr(), *job, snapshot).await;
    }
    let tags: Vec<(String, i64)> = sqlx::query_as(
        "SELECT retention_tag, extract(epoch FROM expire_time - snapshot_time)::bigint / 86400
           FROM recovery_points ORDER BY snapshot_time",
    )
    .fetch_all(&pool)
    .await
    .expect("points");
    assert_eq!(
        tags,
        vec![
            ("WEEKLY".to_string(), 56),
            ("DEFAULT".to_string(), 90),
            ("WEEKLY".to_string(), 56)
        ]
    );

    fourth.shutdown().await.expect("stop fourth");
    h.stop().await;
}
