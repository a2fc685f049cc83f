//! Verify jobs against a real state database (workers played by the test):
//! asking twice for a point's verify returns the one job, its task names
//! the point's location and manifest SHA-256, a failure and a completion
//! are each recorded on the point with the job, and after a verify ended a
//! new one can be queued.

use crate::common;

use common::{Harness, backup_now, claim, get, job_id};
use pgvault_proto::v1 as pb;

/// A completed point of instance `app` in vault `v`.
async fn point(h: &Harness) -> pb::RecoveryPoint {
    h.fixture().await;
    let instance = h.protect("app").await;
    let job = backup_now(h, &instance).await;
    let claimed = claim(h, &job_id(&job), "w1").await;
    assert!(claimed.claimed, "{claimed:?}");
    h.workers()
        .complete_task(pb::CompleteTaskRequest {
            job_id: job_id(&job),
            lease_token: claimed.lease_token,
            result: Some(pb::complete_task_request::Result::Backup(
                pb::BackupResult {
                    snapshot_time: Some(prost_types::Timestamp {
                        seconds: chrono::Utc::now().timestamp(),
                        nanos: 0,
                    }),
                    stored_bytes: 10,
                    raw_bytes: 20,
                    chunk_count: 1,
                    manifest_sha256: "ab".repeat(32),
                    server_version: "15".into(),
                    stage_split: None,
                },
            )),
            progress: None,
            tables: Vec::new(),
        })
        .await
        .expect("complete backup");
    let job = get(h, &job.name).await;
    h.points()
        .get_recovery_point(pb::GetRecoveryPointRequest {
            name: job.recovery_point,
        })
        .await
        .expect("get point")
        .into_inner()
}

async fn verify(h: &Harness, point: &pb::RecoveryPoint) -> pb::Job {
    h.points()
        .verify_recovery_point(pb::VerifyRecoveryPointRequest {
            name: point.name.clone(),
        })
        .await
        .expect("verify")
        .into_inner()
}

async fn shown(h: &Harness, point: &pb::RecoveryPoint) -> pb::RecoveryPoint {
    h.points()
        .get_recovery_point(pb::GetRecoveryPointRequest {
            name: point.name.clone(),
        })
        .await
        .expect("get point")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_verify_per_point_at_a_time_and_each_end_is_recorded_on_the_point() {
    let h = Harness::start().await;
    let point = point(&h).await;
    assert_eq!(point.last_verify_result, "", "never verified: {point:?}");

    let first = verify(&h, &point).await;
    assert_eq!(first.operation, pb::Operation::Verify as i32, "{first:?}");
    assert_eq!(first.recovery_point, point.name);
    let again = verify(&h, &point).await;
    assert_eq!(again.name, first.name, "one verify per point at a time");

    let claimed = claim(&h, &job_id(&first), "w1").await;
    assert!(claimed.claimed, "{claimed:?}");
    let Some(pb::task::Kind::Verify(task)) = claimed.task.and_then(|t| t.kind) else {
        panic!("a verify job's task is a VerifyTask");
    };
    assert_eq!(task.manifest_sha256, point.manifest_sha256);
    let location = task.location.expect("location");
    assert!(
        point.location.ends_with(&location.prefix),
        "{location:?} vs {}",
        point.location
    );
    h.workers()
        .fail_task(pb::FailTaskRequest {
            job_id: job_id(&first),
            lease_token: claimed.lease_token,
            error: Some(pb::JobError {
                code: "VerifyObjectCorrupt".into(),
                message: "object data/1/00000.copy.zst (table public.t) is corrupted".into(),
                recommended_action: "restore from another recovery point".into(),
            }),
            retryable: false,
            tables: Vec::new(),
            log_tail: Vec::new(),
        })
        .await
        .expect("fail");
    let failed = shown(&h, &point).await;
    assert_eq!(failed.last_verify_result, "failed", "{failed:?}");
    assert_eq!(failed.last_verify_error_code, "VerifyObjectCorrupt");
    assert_eq!(failed.last_verify_job, first.name);
    assert!(failed.last_verified_at.is_some());

    let second = verify(&h, &point).await;
    assert_ne!(second.name, first.name, "a new verify once the last ended");
    let claimed = claim(&h, &job_id(&second), "w1").await;
    h.workers()
        .complete_task(pb::CompleteTaskRequest {
            job_id: job_id(&second),
            lease_token: claimed.lease_token,
            result: Some(pb::complete_task_request::Result::Verify(
                pb::VerifyResult {
                    objects: 3,
                    bytes: 30,
                    rows: 7,
                },
            )),
            progress: None,
            tables: Vec::new(),
        })
        .await
        .expect("complete verify");
    let ok = shown(&h, &point).await;
    assert_eq!(ok.last_verify_result, "ok", "{ok:?}");
    assert_eq!(ok.last_verify_error_code, "");
    assert_eq!(ok.last_verify_job, second.name);
    assert_eq!(
        get(&h, &second.name).await.state,
        pb::JobState::Completed as i32
    );
    h.stop().await;
}
