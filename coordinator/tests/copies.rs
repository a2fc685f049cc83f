//! Copies against a real state database: a policy's copy datastore is
//! checked on create; a backup completed under a copying policy gets one
//! COPY job whose task copies the point to the same prefix there;
//! completing it records the copy on the point with its own expiry; a locked
//! vault refuses moving the instance to a policy that makes no copies.

use crate::common;

use chrono::{Duration, Utc};
use common::{Harness, claim, completed_backup_at, job_id};
use pgvault_proto::v1 as pb;
use tonic::Code;

fn policy(copy_datastore: &str, copy_retention: &str) -> pb::Policy {
    pb::Policy {
        schedule: Some(pb::Schedule {
            weekdays: vec![pb::Weekday::Monday as i32],
            time_of_day: "02:00".into(),
            time_zone: "UTC".into(),
        }),
        retention_rules: vec![pb::RetentionRule {
            kind: pb::RetentionRuleKind::Weekly as i32,
            standard_duration: "P8W".into(),
            archive_duration: String::new(),
        }],
        copy_datastore: copy_datastore.into(),
        copy_retention: copy_retention.into(),
        ..Default::default()
    }
}

async fn create(h: &Harness, id: &str, policy: pb::Policy) -> Result<pb::Policy, tonic::Status> {
    h.policies()
        .create_policy(pb::CreatePolicyRequest {
            parent: "vaults/v".into(),
            policy_id: id.into(),
            policy: Some(policy),
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn a_backup_under_a_copying_policy_is_copied_once_and_the_copy_is_recorded() {
    let h = Harness::start().await;
    h.fixture().await;
    let copies_dir = tempfile::tempdir().expect("temp dir");
    let copy_url = format!("file://{}/copies", copies_dir.path().display());
    let own = format!("file://{}", h.datastore_dir.path().display());

    let missing = create(&h, "half", policy(&copy_url, "")).await.unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert!(
        missing.message().contains("policy.copy_retention"),
        "{missing}"
    );
    let same = create(&h, "same", policy(&own, "P30D")).await.unwrap_err();
    assert!(
        same.message().contains("one of the vault's own datastores"),
        "{same}"
    );
    let short = create(&h, "short", policy(&copy_url, "P1D"))
        .await
        .unwrap_err();
    assert!(short.message().contains("7 days (P7D)"), "{short}");
    let created = create(&h, "copying", policy(&copy_url, "P30D"))
        .await
        .expect("copying policy");
    assert_eq!(created.copy_datastore, copy_url);
    assert!(
        copies_dir.path().join("copies").is_dir(),
        "the copy datastore is prepared on create"
    );

    let instance = h.protect("app").await;
    h.instances()
        .change_policy(pb::ChangePolicyRequest {
            name: instance.clone(),
            policy: "vaults/v/policies/copying".into(),
            reapply_retention: false,
        })
        .await
        .expect("change policy");
    let snapshot = Utc::now() - Duration::days(1);
    let point = completed_backup_at(&h, &instance, snapshot).await;

    let copies = h
        .jobs()
        .list_jobs(pb::ListJobsRequest {
            operation: pb::Operation::Copy as i32,
            ..Default::default()
        })
        .await
        .expect("list jobs")
        .into_inner()
        .jobs;
    assert_eq!(copies.len(), 1, "one COPY job per point: {copies:?}");
    assert_eq!(copies[0].recovery_point, point);
    let claimed = claim(&h, &job_id(&copies[0]), "w1").await;
    assert!(claimed.claimed, "{claimed:?}");
    let Some(pb::task::Kind::Copy(task)) = claimed.task.and_then(|t| t.kind) else {
        panic!("a COPY job's task is a CopyTask");
    };
    let (source, destination) = (task.source.unwrap(), task.destination.unwrap());
    assert_eq!(destination.datastore_url, copy_url);
    assert_eq!(destination.prefix, source.prefix, "same relative layout");
    assert_eq!(source.datastore_url, own);
    assert_eq!(task.manifest_sha256, "cd".repeat(32));

    // Not copied until the job completes (the manifest is durable then).
    let before = h
        .points()
        .get_recovery_point(pb::GetRecoveryPointRequest {
            name: point.clone(),
        })
        .await
        .expect("point")
        .into_inner();
    assert!(before.copies.is_empty(), "{before:?}");
    h.workers()
        .complete_task(pb::CompleteTaskRequest {
            tables: Vec::new(),
            job_id: job_id(&copies[0]),
            lease_token: claimed.lease_token,
            result: Some(pb::complete_task_request::Result::Lifecycle(
                pb::LifecycleResult {
                    objects: 3,
                    bytes: 30,
                },
            )),
            progress: None,
        })
        .await
        .expect("complete copy");
    let after = h
        .points()
        .get_recovery_point(pb::GetRecoveryPointRequest { name: point })
        .await
        .expect("point")
        .into_inner();
    assert_eq!(after.copies.len(), 1, "{after:?}");
    let copy = &after.copies[0];
    assert_eq!(copy.datastore, copy_url);
    assert_eq!(copy.state, "COPIED");
    assert_eq!(
        copy.expire_time.as_ref().map(|t| t.seconds),
        Some((snapshot + Duration::days(30)).timestamp()),
        "kept by the copy retention after the snapshot"
    );

    // A locked vault keeps copying at least as long.
    h.vaults()
        .lock_vault(pb::LockVaultRequest {
            name: "vaults/v".into(),
            confirm: true,
        })
        .await
        .expect("lock");
    let refused = h
        .instances()
        .change_policy(pb::ChangePolicyRequest {
            name: instance,
            policy: "vaults/v/policies/daily".into(),
            reapply_retention: false,
        })
        .await
        .expect_err("dropping copies in a locked vault");
    assert!(
        refused.message().starts_with("UserErrorVaultLocked")
            && refused.message().contains("makes no copies"),
        "{refused}"
    );
}

/// Completes a backup of `instance` with a snapshot at `snapshot`, and the
/// COPY job it queued; returns the point's name.
async fn copied_point(h: &Harness, instance: &str, snapshot: chrono::DateTime<Utc>) -> String {
    let point = completed_backup_at(h, instance, snapshot).await;
    let copy = only_job(h, pb::Operation::Copy, &point).await;
    finish_lifecycle(h, &copy).await;
    point
}

/// The one queued job of `operation` on `point`.
async fn only_job(h: &Harness, operation: pb::Operation, point: &str) -> pb::Job {
    let jobs: Vec<pb::Job> = h
        .jobs()
        .list_jobs(pb::ListJobsRequest {
            operation: operation as i32,
            ..Default::default()
        })
        .await
        .expect("list jobs")
        .into_inner()
        .jobs
        .into_iter()
        .filter(|j| j.recovery_point == point && j.state == pb::JobState::Queued as i32)
        .collect();
    assert_eq!(
        jobs.len(),
        1,
        "one queued {operation:?} of {point}: {jobs:?}"
    );
    jobs.into_iter().next().expect("one job")
}

/// Claims and completes a lifecycle job (copy, delete) as a worker would.
async fn finish_lifecycle(h: &Harness, job: &pb::Job) {
    let claimed = claim(h, &job_id(job), "w1").await;
    assert!(claimed.claimed, "{claimed:?}");
    h.workers()
        .complete_task(pb::CompleteTaskRequest {
            tables: Vec::new(),
            job_id: job_id(job),
            lease_token: claimed.lease_token,
            result: Some(pb::complete_task_request::Result::Lifecycle(
                pb::LifecycleResult {
                    objects: 3,
                    bytes: 30,
                },
            )),
            progress: None,
        })
        .await
        .expect("complete lifecycle job");
}

async fn point_keys(h: &Harness, point: &str) -> i64 {
    let id = point.rsplit('/').next().expect("point id");
    let pool = sqlx::PgPool::connect(&h.cluster.url("postgres"))
        .await
        .expect("pool");
    sqlx::query_scalar("SELECT count(*) FROM point_keys WHERE point_id = $1::uuid")
        .bind(id)
        .fetch_one(&pool)
        .await
        .expect("count keys")
}

#[tokio::test]
async fn a_copy_outliving_its_point_restores_from_the_copy_until_its_own_expiry_takes_the_key() {
    let h = Harness::start().await;
    h.fixture().await;
    let copies_dir = tempfile::tempdir().expect("temp dir");
    let copy_url = format!("file://{}/copies", copies_dir.path().display());
    // The point is kept 8 weeks, its copy a year; keep-min 1 lets the
    // older of two points expire.
    let long_copies = pb::Policy {
        keep_min: 1,
        ..policy(&copy_url, "P1Y")
    };
    create(&h, "long-copies", long_copies)
        .await
        .expect("policy");
    let instance = h.protect("app").await;
    h.instances()
        .change_policy(pb::ChangePolicyRequest {
            name: instance.clone(),
            policy: "vaults/v/policies/long-copies".into(),
            reapply_retention: false,
        })
        .await
        .expect("change policy");
    let now = Utc::now();
    let old = copied_point(&h, &instance, now - Duration::days(2)).await;
    // A newer point, so keep-min lets the old one expire.
    copied_point(&h, &instance, now - Duration::days(1)).await;
    assert_eq!(
        point_keys(&h, &old).await,
        1,
        "an encrypted point has a key"
    );

    // Past the point's own expiry, before its copy's.
    let store = pgvault_coordinator::store::Store::new(
        sqlx::PgPool::connect(&h.cluster.url("postgres"))
            .await
            .expect("pool"),
    );
    pgvault_coordinator::lifecycle::sweep(&store, now + Duration::days(60))
        .await
        .expect("sweep points");
    let expiry = only_job(&h, pb::Operation::Delete, &old).await;
    finish_lifecycle(&h, &expiry).await;

    let shown = h
        .points()
        .get_recovery_point(pb::GetRecoveryPointRequest { name: old.clone() })
        .await
        .expect("a point kept as copies is still shown")
        .into_inner();
    assert!(shown.copies_only, "{shown:?}");
    assert_eq!(shown.location, "", "nothing is left at its own location");
    assert_eq!(shown.copies.len(), 1);
    assert_eq!(shown.copies[0].state, "COPIED");
    assert_eq!(
        point_keys(&h, &old).await,
        1,
        "the copy still needs the key"
    );
    let list = |copies_only: bool| {
        let h = &h;
        let instance = instance.clone();
        async move {
            h.points()
                .list_recovery_points(pb::ListRecoveryPointsRequest {
                    parent: instance,
                    copies_only,
                    ..Default::default()
                })
                .await
                .expect("list")
                .into_inner()
                .recovery_points
                .into_iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(true).await, std::slice::from_ref(&old));
    assert!(!list(false).await.contains(&old));
    let undeletable = h
        .points()
        .delete_recovery_point(pb::DeleteRecoveryPointRequest { name: old.clone() })
        .await
        .expect_err("its copies follow their own expiry");
    assert_eq!(undeletable.code(), Code::FailedPrecondition);
    assert!(
        undeletable.message().contains("kept only as copies"),
        "{undeletable}"
    );

    // Only the copy can be restored, and it restores with the point's key.
    let request = |copy: &str| pb::RestoreAsDatabaseRequest {
        recovery_point: old.clone(),
        target_database: "app_restored".into(),
        copy_datastore: copy.into(),
        ..Default::default()
    };
    let refused = h
        .restores()
        .restore_as_database(request(""))
        .await
        .expect_err("the point's own objects are gone");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("--from-copy"), "{refused}");
    let restore = h
        .restores()
        .restore_as_database(request(&copy_url))
        .await
        .expect("restore from the copy")
        .into_inner();
    let claimed = claim(&h, &job_id(&restore), "w1").await;
    assert!(claimed.claimed, "{claimed:?}");
    let Some(pb::task::Kind::Restore(task)) = claimed.task.and_then(|t| t.kind) else {
        panic!("a restore's task");
    };
    assert_eq!(task.datastore_url, copy_url);
    assert!(task.point_key.is_some(), "the point's data key travels");
    h.workers()
        .fail_task(pb::FailTaskRequest {
            tables: Vec::new(),
            job_id: job_id(&restore),
            lease_token: claimed.lease_token,
            error: Some(pb::JobError {
                code: "Cancelled".into(),
                message: "stopped by the test".into(),
                recommended_action: "none".into(),
            }),
            retryable: false,
            log_tail: Vec::new(),
        })
        .await
        .expect("end the restore");

    // The copy's own expiry deletes it, and the key with it.
    pgvault_coordinator::copies::queue::sweep(&store, now + Duration::days(400))
        .await
        .expect("sweep copies");
    let gone = only_job(&h, pb::Operation::Delete, &old).await;
    finish_lifecycle(&h, &gone).await;
    assert_eq!(
        point_keys(&h, &old).await,
        0,
        "crypto-shredded with the copy"
    );
    let missing = h
        .points()
        .get_recovery_point(pb::GetRecoveryPointRequest { name: old })
        .await
        .expect_err("nothing of the point is left");
    assert_eq!(missing.code(), Code::NotFound);
}
