//! Instance management through the API: changing the policy (existing points
//! keep their expiry unless retention is re-applied), stopping protection
//! (keep all forever, or per policy with the newest kept forever), resuming.

use crate::common;

use common::Harness;
use pgvault_proto::v1 as pb;
use tonic::Code;

/// Runs an on-demand DEFAULT backup to completion with the given snapshot time.
async fn completed_backup(h: &Harness, instance: &str, snapshot_seconds: i64) {
    let job = h
        .instances()
        .backup_now(pb::BackupNowRequest {
            name: instance.into(),
            rule: pb::RetentionRuleKind::Default as i32,
            workers: 0,
        })
        .await
        .expect("backup now")
        .into_inner();
    let id = job.name.trim_start_matches("jobs/").to_string();
    let claim = h
        .workers()
        .claim_task(pb::ClaimTaskRequest {
            job_id: id.clone(),
            worker_id: "w1".into(),
            pg_tool_majors: Vec::new(),
            connections: 0,
        })
        .await
        .expect("claim")
        .into_inner();
    assert!(claim.claimed, "{claim:?}");
    h.workers()
        .complete_task(pb::CompleteTaskRequest {
            tables: Vec::new(),
            job_id: id,
            lease_token: claim.lease_token,
            result: Some(pb::complete_task_request::Result::Backup(
                pb::BackupResult {
                    snapshot_time: Some(prost_types::Timestamp {
                        seconds: snapshot_seconds,
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
        .expect("complete");
}

/// (snapshot, expiry) in seconds of every point, oldest first.
async fn expiries(h: &Harness, instance: &str) -> Vec<(i64, i64)> {
    let mut points = h
        .points()
        .list_recovery_points(pb::ListRecoveryPointsRequest {
            parent: instance.into(),
            ..Default::default()
        })
        .await
        .expect("list points")
        .into_inner()
        .recovery_points;
    points.sort_by_key(|p| p.snapshot_time.as_ref().map(|t| t.seconds));
    points
        .iter()
        .map(|p| {
            (
                p.snapshot_time.as_ref().expect("snapshot").seconds,
                p.expire_time.as_ref().expect("expiry").seconds,
            )
        })
        .collect()
}

const DAY: i64 = 86_400;
/// 2023-11-14T22:13:20Z and a day later.
const T1: i64 = 1_700_000_000;
const T2: i64 = T1 + DAY;
/// 9999-12-31T00:00:00Z.
const FOREVER: i64 = 253_402_214_400;

#[tokio::test]
async fn change_policy_stop_and_resume_protection() {
    let h = Harness::start().await;
    h.fixture().await;
    let instance = h.protect("app").await;
    completed_backup(&h, &instance, T1).await;
    completed_backup(&h, &instance, T2).await;
    // DEFAULT is P3M: 2023-11-14 + 3 months = 2024-02-14, 92 days.
    assert_eq!(
        expiries(&h, &instance).await,
        vec![(T1, T1 + 92 * DAY), (T2, T2 + 92 * DAY)]
    );

    h.policies()
        .create_policy(pb::CreatePolicyRequest {
            parent: "vaults/v".into(),
            policy_id: "long".into(),
            policy: Some(pb::Policy {
                schedule: Some(pb::Schedule {
                    weekdays: vec![pb::Weekday::Sunday as i32],
                    time_of_day: "23:00".into(),
                    time_zone: "UTC".into(),
                }),
                retention_rules: vec![pb::RetentionRule {
                    kind: pb::RetentionRuleKind::Default as i32,
                    standard_duration: "P1Y".into(),
                    archive_duration: String::new(),
                }],
                ..Default::default()
            }),
        })
        .await
        .expect("create policy");
    let change = |reapply| pb::ChangePolicyRequest {
        name: instance.clone(),
        policy: "vaults/v/policies/long".into(),
        reapply_retention: reapply,
    };
    let changed = h
        .instances()
        .change_policy(change(false))
        .await
        .expect("change policy")
        .into_inner();
    assert_eq!(changed.policy, "vaults/v/policies/long");
    // Existing points keep theirs...
    assert_eq!(expiries(&h, &instance).await[0], (T1, T1 + 92 * DAY));
    // ...unless asked to re-apply (2024 is a leap year: 366 days).
    h.instances()
        .change_policy(change(true))
        .await
        .expect("re-apply");
    assert_eq!(
        expiries(&h, &instance).await,
        vec![(T1, T1 + 366 * DAY), (T2, T2 + 366 * DAY)]
    );
    let other_vault = h
        .instances()
        .change_policy(pb::ChangePolicyRequest {
            name: instance.clone(),
            policy: "vaults/elsewhere/policies/long".into(),
            reapply_retention: false,
        })
        .await
        .unwrap_err();
    assert_eq!(other_vault.code(), Code::InvalidArgument);

    // Stop, keeping points per policy: only the newest is kept forever.
    let stop = |mode: pb::StopMode| pb::StopProtectionRequest {
        name: instance.clone(),
        mode: mode as i32,
    };
    let stopped = h
        .instances()
        .stop_protection(stop(pb::StopMode::KeepPerPolicy))
        .await
        .expect("stop")
        .into_inner();
    assert_eq!(
        stopped.protection_state,
        pb::ProtectionState::Stopped as i32
    );
    assert_eq!(
        expiries(&h, &instance).await,
        vec![(T1, T1 + 366 * DAY), (T2, FOREVER)]
    );
    let again = h
        .instances()
        .stop_protection(stop(pb::StopMode::KeepAllForever))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    let refused = h
        .instances()
        .backup_now(pb::BackupNowRequest {
            name: instance.clone(),
            rule: 0,
            workers: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);

    // Resume, then stop keeping everything forever.
    let resumed = h
        .instances()
        .resume_protection(pb::ResumeProtectionRequest {
            name: instance.clone(),
        })
        .await
        .expect("resume")
        .into_inner();
    assert_eq!(
        resumed.protection_state,
        pb::ProtectionState::Configured as i32
    );
    h.instances()
        .stop_protection(stop(pb::StopMode::KeepAllForever))
        .await
        .expect("stop keeping all");
    assert_eq!(
        expiries(&h, &instance).await,
        vec![(T1, FOREVER), (T2, FOREVER)]
    );
    let bad_mode = h
        .instances()
        .stop_protection(stop(pb::StopMode::Unspecified))
        .await
        .unwrap_err();
    assert_eq!(bad_mode.code(), Code::InvalidArgument);
    h.stop().await;
}
