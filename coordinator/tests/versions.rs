//! PostgreSQL versions at the API: a worker's claim reports the majors of
//! its client tools, and configuring a server newer than every reported
//! `pg_dump` fails at configure time naming both versions and the fix
//! (before any worker reported, readiness cannot confirm and passes). A
//! restore into an older major than the point's source is refused before
//! a job is queued, naming both versions.

use crate::common;

use common::{Harness, backup_now, job_id};
use pgvault_proto::v1 as pb;
use tonic::Code;

/// Takes the job's lease as a worker whose client tools are `majors`.
async fn claim_reporting(h: &Harness, job: &str, majors: Vec<u32>) -> pb::ClaimTaskResponse {
    h.workers()
        .claim_task(pb::ClaimTaskRequest {
            job_id: job.into(),
            worker_id: "w1".into(),
            pg_tool_majors: majors,
            connections: 0,
        })
        .await
        .expect("claim")
        .into_inner()
}

async fn configure(h: &Harness, database: &str) -> pb::ConfigureBackupResult {
    h.instances()
        .configure_backup(pb::ConfigureBackupRequest {
            parent: "vaults/v".into(),
            policy: "vaults/v/policies/daily".into(),
            rows: vec![pb::ConfigureBackupRow {
                server: "servers/pg1".into(),
                database: database.into(),
                secret: "secrets/pg1-admin".into(),
            }],
            default_secret: String::new(),
            assign_missing_permissions: true,
            all_databases_of: String::new(),
            role_passwords: false,
        })
        .await
        .expect("configure answers")
        .into_inner()
        .results
        .remove(0)
}

/// The state cluster's major (the harness's "protected" server).
async fn server_major(h: &Harness) -> u32 {
    let client = h.cluster.connect("postgres").await.expect("connect");
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .expect("version")
        .get(0);
    u32::try_from(version / 10_000).expect("major")
}

#[tokio::test]
async fn configuring_a_server_newer_than_every_workers_pg_dump_fails_at_configure_time() {
    let h = Harness::start().await;
    h.fixture().await;
    let major = server_major(&h).await;
    // No worker has reported yet: readiness cannot confirm, and passes.
    let instance = h.protect("app").await;

    // A worker whose newest pg_dump is one major older claims a job.
    let job = backup_now(&h, &instance).await;
    let claimed = claim_reporting(&h, &job_id(&job), vec![major - 2, major - 1]).await;
    assert!(claimed.claimed, "{}", claimed.reason);

    let admin = h.cluster.connect("postgres").await.expect("connect");
    admin
        .batch_execute("CREATE DATABASE billing")
        .await
        .expect("create billing");
    let result = configure(&h, "billing").await;
    assert_eq!(
        result.readiness,
        pb::Readiness::FailedValidation as i32,
        "{result:?}"
    );
    let error = result.error.expect("error");
    assert_eq!(error.code, "UserErrorServerVersionUnsupported");
    assert_eq!(
        error.message,
        format!(
            "server is PostgreSQL {major}; the newest pg_dump on any worker is {}; \
             install postgresql-client-{major} on the workers or set worker.pg_bin_dirs",
            major - 1
        )
    );
    let kept = result.backup_instance.expect("the row is kept");
    assert_eq!(
        kept.protection_state,
        pb::ProtectionState::ValidationFailed as i32
    );

    // Once a worker with tools of the server's major claims, re-validation protects it.
    let job = backup_now(&h, &instance).await;
    let _ = claim_reporting(&h, &job_id(&job), vec![major]).await;
    let revalidated = h
        .instances()
        .revalidate_backup_instance(pb::RevalidateBackupInstanceRequest {
            name: kept.name.clone(),
            assign_missing_permissions: false,
        })
        .await
        .expect("revalidate")
        .into_inner();
    assert_eq!(
        revalidated.readiness,
        pb::Readiness::Success as i32,
        "{revalidated:?}"
    );
}

#[tokio::test]
async fn a_restore_into_an_older_major_is_refused_before_a_job_is_queued() {
    let h = Harness::start().await;
    h.fixture().await;
    let major = server_major(&h).await;
    let instance = h.protect("app").await;
    let job = backup_now(&h, &instance).await;
    let id = job_id(&job);
    let claimed = claim_reporting(&h, &id, vec![major + 3]).await;
    // The point was taken from a newer server than the restore's target.
    let newer = format!("{}.4", major + 2);
    h.workers()
        .complete_task(pb::CompleteTaskRequest {
            job_id: id,
            lease_token: claimed.lease_token,
            result: Some(pb::complete_task_request::Result::Backup(
                pb::BackupResult {
                    snapshot_time: Some(prost_types::Timestamp {
                        seconds: 1_700_000_000,
                        nanos: 0,
                    }),
                    stored_bytes: 1,
                    raw_bytes: 1,
                    chunk_count: 1,
                    manifest_sha256: "ab".repeat(32),
                    server_version: newer.clone(),
                    stage_split: None,
                },
            )),
            progress: None,
            tables: Vec::new(),
        })
        .await
        .expect("complete");
    let points = h
        .points()
        .list_recovery_points(pb::ListRecoveryPointsRequest {
            parent: instance.clone(),
            ..Default::default()
        })
        .await
        .expect("list points")
        .into_inner()
        .recovery_points;
    assert_eq!(points[0].server_version, newer);
    let jobs_before = h
        .jobs()
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .expect("jobs")
        .into_inner()
        .jobs
        .len();

    let refused = h
        .restores()
        .restore_as_database(pb::RestoreAsDatabaseRequest {
            recovery_point: points[0].name.clone(),
            target_database: "app_restored".into(),
            ..Default::default()
        })
        .await
        .expect_err("an older target is refused");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        refused.message(),
        format!(
            "UserErrorRestoreTargetTooOld: the recovery point is from PostgreSQL {new} ({newer}) and the \
             target server runs PostgreSQL {major}: a recovery point restores only into the same or a \
             newer major; restore into a server running PostgreSQL {new} or newer (target server \"pg1\")",
            new = major + 2
        )
    );
    let jobs_after = h
        .jobs()
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .expect("jobs")
        .into_inner()
        .jobs
        .len();
    assert_eq!(jobs_before, jobs_after, "no job was queued");
}
