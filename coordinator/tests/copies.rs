//! Copies against a real state database: a policy's copy datastore is
//! checked on create; a backup completed under a copying policy gets one
//! COPY job whose task copies the point to the same prefix there;
//! completing it records the copy on the point with its own expiry; a locked
//! vault refuses moving the instance to a policy that makes no copies.

mod common;

use chrono::{Duration, Utc};
use common::{Harness, backup_now, claim, get, job_id};
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
    let job = backup_now(&h, &instance).await;
    let claimed = claim(&h, &job_id(&job), "w1").await;
    let snapshot = Utc::now() - Duration::days(1);
    h.workers()
        .complete_task(pb::CompleteTaskRequest {
            tables: Vec::new(),
            job_id: job_id(&job),
            lease_token: claimed.lease_token,
            result: Some(pb::complete_task_request::Result::Backup(
                pb::BackupResult {
                    snapshot_time: Some(prost_types::Timestamp {
                        seconds: snapshot.timestamp(),
                        nanos: 0,
                    }),
                    stored_bytes: 10,
                    raw_bytes: 20,
                    chunk_count: 1,
                    manifest_sha256: "cd".repeat(32),
                    server_version: "15".into(),
                    stage_split: None,
                },
            )),
            progress: None,
        })
        .await
        .expect("complete backup");
    let point = get(&h, &job.name).await.recovery_point;

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
