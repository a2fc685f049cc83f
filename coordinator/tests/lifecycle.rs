//! Lifecycle of recovery points against a real state database: the sweeper
//! (called directly with a chosen "now", so nothing waits for time) queues
//! tier moves and deletes exactly once, workers' tasks name the right
//! locations, completion moves or deletes the point, restores of archive
//! points wait for a rehydrate, a deletion never starts under a restore nor
//! a restore under a deletion, a failed rehydrate fails the restore waiting
//! for it, and stopping with DELETE_ALL_POINTS soft-deletes every point,
//! purged (a DELETE job per point) once the vault's window ends. A tier
//! move retried into the prefix its failed attempt left as garbage keeps
//! what it wrote there.
//! A restore of the latest point (`latest_of`) takes the newest snapshot not
//! being moved or deleted, rehydrating it first when it is archived.

use crate::common;

use chrono::{DateTime, Duration, Utc};
use common::Harness;
use pgvault_coordinator::lifecycle;
use pgvault_coordinator::store::Store;
use pgvault_proto::v1 as pb;
use sqlx::PgPool;
use tonic::Code;

/// Vault `lv` (standard + archive file datastores), policy `arch`: Default
/// kept 7 days then 6 months in archive, Weekly kept 14 days, no archive;
/// expiry never deletes the newest point (keep-min 1).
async fn setup(h: &Harness) -> String {
    let root = h.datastore_dir.path();
    h.vaults()
        .create_vault(pb::CreateVaultRequest {
            vault_id: "lv".into(),
            vault: Some(pb::Vault {
                standard_datastore: format!("file://{}/standard", root.display()),
                archive_datastore: format!("file://{}/archive", root.display()),
                region: "local".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("create vault");
    h.policies()
        .create_policy(pb::CreatePolicyRequest {
            parent: "vaults/lv".into(),
            policy_id: "arch".into(),
            policy: Some(pb::Policy {
                schedule: Some(pb::Schedule {
                    weekdays: vec![pb::Weekday::Monday as i32],
                    time_of_day: "02:00".into(),
                    time_zone: "UTC".into(),
                }),
                retention_rules: vec![
                    pb::RetentionRule {
                        kind: pb::RetentionRuleKind::Default as i32,
                        standard_duration: "P7D".into(),
                        archive_duration: "P6M".into(),
                    },
                    pb::RetentionRule {
                        kind: pb::RetentionRuleKind::Weekly as i32,
                        standard_duration: "P14D".into(),
                        archive_duration: String::new(),
                    },
                ],
                keep_min: 1,
                ..Default::default()
            }),
        })
        .await
        .expect("create policy");
    let response = h
        .instances()
        .configure_backup(pb::ConfigureBackupRequest {
            parent: "vaults/lv".into(),
            policy: "vaults/lv/policies/arch".into(),
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
    response.results[0]
        .backup_instance
        .as_ref()
        .expect("instance")
        .name
        .clone()
}

fn job_id(name: &str) -> String {
    name.trim_start_matches("jobs/").to_string()
}

/// Claims `job` (by name) as worker w1: (lease token, task).
async fn claim(h: &Harness, job: &str) -> (String, pb::task::Kind) {
    let claim = h
        .workers()
        .claim_task(pb::ClaimTaskRequest {
            job_id: job_id(job),
            worker_id: "w1".into(),
            pg_tool_majors: Vec::new(),
            connections: 0,
        })
        .await
        .expect("claim")
        .into_inner();
    assert!(claim.claimed, "{claim:?}");
    let task = claim.task.expect("task").kind.expect("kind");
    (claim.lease_token, task)
}

async fn complete(
    h: &Harness,
    job: &str,
    token: String,
    result: pb::complete_task_request::Result,
) {
    h.workers()
        .complete_task(pb::CompleteTaskRequest {
            tables: Vec::new(),
            job_id: job_id(job),
            lease_token: token,
            result: Some(result),
            progress: None,
        })
        .await
        .expect("complete");
}

/// The task's kind, for failure messages (tasks are never Debug-printed:
/// restore tasks carry a password).
fn kind_name(kind: &pb::task::Kind) -> &'static str {
    use pgvault_proto::v1::task::Kind;
    if matches!(kind, Kind::Delete(_)) {
        "delete"
    } else if matches!(kind, Kind::TierMove(_)) {
        "tier move"
    } else if matches!(kind, Kind::Rehydrate(_)) {
        "rehydrate"
    } else if matches!(kind, Kind::Restore(_)) {
        "restore"
    } else {
        "another kind of"
    }
}

fn lifecycle_result() -> pb::complete_task_request::Result {
    pb::complete_task_request::Result::Lifecycle(pb::LifecycleResult {
        objects: 3,
        bytes: 30,
    })
}

/// Backs up on demand under `rule` with a snapshot at `snapshot`; returns the point.
async fn point(
    h: &Harness,
    instance: &str,
    rule: pb::RetentionRuleKind,
    snapshot: DateTime<Utc>,
) -> pb::RecoveryPoint {
    let job = h
        .instances()
        .backup_now(pb::BackupNowRequest {
            name: instance.into(),
            rule: rule as i32,
            workers: 0,
        })
        .await
        .expect("backup now")
        .into_inner();
    let (token, _) = claim(h, &job.name).await;
    complete(
        h,
        &job.name,
        token,
        pb::complete_task_request::Result::Backup(pb::BackupResult {
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
        }),
    )
    .await;
    let job = h
        .jobs()
        .get_job(pb::GetJobRequest { name: job.name })
        .await
        .expect("get job")
        .into_inner();
    get_point(h, &job.recovery_point)
        .await
        .expect("point exists")
}

async fn get_point(h: &Harness, name: &str) -> Option<pb::RecoveryPoint> {
    match h
        .points()
        .get_recovery_point(pb::GetRecoveryPointRequest { name: name.into() })
        .await
    {
        Ok(p) => Some(p.into_inner()),
        Err(status) if status.code() == Code::NotFound => None,
        Err(status) => panic!("get point: {status}"),
    }
}

/// Lifecycle jobs (name, operation) of a point, oldest first.
async fn jobs_of(pool: &PgPool, point: &str) -> Vec<(String, String)> {
    let id = point.rsplit('/').next().expect("id");
    let id = uuid::Uuid::parse_str(id).expect("uuid");
    let rows: Vec<(uuid::Uuid, String)> = sqlx::query_as(
        "SELECT id, operation FROM jobs WHERE recovery_point_id = $1
            AND operation IN ('DELETE', 'TIER_MOVE', 'REHYDRATE') ORDER BY create_time, id",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .expect("jobs");
    rows.into_iter()
        .map(|(id, op)| (format!("jobs/{id}"), op))
        .collect()
}

fn restore_request(point: &str, days: u32) -> pb::RestoreAsDatabaseRequest {
    pb::RestoreAsDatabaseRequest {
        recovery_point: point.into(),
        target_database: "app_restored".into(),
        rehydrate_days: days,
        ..Default::default()
    }
}

#[tokio::test]
async fn expired_points_move_to_archive_or_are_deleted_once_and_archive_restores_rehydrate_first() {
    // Tasks are held across many calls without heartbeats: a lease that
    // outlives them (nothing here waits for one to expire).
    let h = Harness::start_with(|c| c.lease_ttl = std::time::Duration::from_secs(120)).await;
    h.fixture().await;
    let instance = setup(&h).await;
    let pool = PgPool::connect(&h.cluster.url("postgres"))
        .await
        .expect("pool");
    let store = Store::new(pool.clone());
    let t0 = Utc::now() - Duration::hours(1);
    let a = point(&h, &instance, pb::RetentionRuleKind::Default, t0).await;
    let b = point(&h, &instance, pb::RetentionRuleKind::Weekly, t0).await;
    // The newest point, held by keep-min 1 however old: never swept.
    let newest = point(
        &h,
        &instance,
        pb::RetentionRuleKind::Weekly,
        t0 + Duration::minutes(1),
    )
    .await;
    assert_eq!(a.tier, pb::DatastoreTier::Standard as i32);

    // Before expiry nothing happens; after it, concurrent passes queue one job.
    assert_eq!(
        lifecycle::sweep(&store, t0 + Duration::days(6))
            .await
            .expect("sweep"),
        0
    );
    let at8 = t0 + Duration::days(8);
    let (x, y) = tokio::join!(lifecycle::sweep(&store, at8), lifecycle::sweep(&store, at8));
    assert_eq!(x.expect("sweep") + y.expect("sweep"), 1);
    assert_eq!(lifecycle::sweep(&store, at8).await.expect("sweep"), 0);
    let moves = jobs_of(&pool, &a.name).await;
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert_eq!(moves[0].1, "TIER_MOVE");
    assert!(jobs_of(&pool, &b.name).await.is_empty());

    // A restore cannot start on a point being moved off the standard datastore.
    let refused = h
        .restores()
        .restore_as_database(restore_request(&a.name, 0))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains(&moves[0].0),
        "{}",
        refused.message()
    );

    let (token, task) = claim(&h, &moves[0].0).await;
    let pb::task::Kind::TierMove(task) = task else {
        panic!("expected a tier move task, got {}", kind_name(&task));
    };
    let source = task.source.expect("source");
    let destination = task.destination.expect("destination");
    assert!(source.datastore_url.ends_with("/standard"), "{source:?}");
    assert!(
        destination.datastore_url.ends_with("/archive"),
        "{destination:?}"
    );
    assert_eq!(source.prefix, destination.prefix);
    assert_eq!(task.manifest_sha256, "cd".repeat(32));
    complete(&h, &moves[0].0, token, lifecycle_result()).await;
    let archived = get_point(&h, &a.name).await.expect("still there");
    assert_eq!(archived.tier, pb::DatastoreTier::Archive as i32);
    assert!(
        archived.location.contains("/archive/"),
        "{}",
        archived.location
    );
    // Archive expiry: standard expiry (t0 + 7 days) + 6 months.
    let standard_expiry = a.expire_time.as_ref().expect("expiry").seconds;
    let archive_expiry = archived.expire_time.as_ref().expect("expiry").seconds;
    let days = (archive_expiry - standard_expiry) / 86_400;
    assert!((181..=184).contains(&days), "archive period {days} days");

    // Out-of-range rehydrate periods are refused naming the range.
    let bad = h
        .restores()
        .restore_as_database(restore_request(&a.name, 5))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().contains("between 10 and 30"),
        "{}",
        bad.message()
    );

    // Restoring the archive point rehydrates it first; the restore waits.
    let restore = h
        .restores()
        .restore_as_database(restore_request(&a.name, 0))
        .await
        .expect("restore")
        .into_inner();
    assert_eq!(restore.state, pb::JobState::Queued as i32);
    let rehydrates: Vec<_> = jobs_of(&pool, &a.name)
        .await
        .into_iter()
        .filter(|(_, op)| op == "REHYDRATE")
        .collect();
    assert_eq!(rehydrates.len(), 1, "{rehydrates:?}");
    let rehydrate = rehydrates[0].0.clone();
    h.publisher.wait_for(&job_id(&rehydrate), 1).await;
    assert!(
        !h.publisher
            .envelopes()
            .iter()
            .any(|(_, e)| e.job_id == job_id(&restore.name)),
        "the restore must not be published before its rehydrate completes"
    );
    let (token, task) = claim(&h, &rehydrate).await;
    let pb::task::Kind::Rehydrate(task) = task else {
        panic!("expected a rehydrate task, got {}", kind_name(&task));
    };
    let copy = task.destination.expect("destination");
    assert!(copy.datastore_url.ends_with("/standard"), "{copy:?}");
    assert!(copy.prefix.contains("-rehydrated-"), "{copy:?}");
    let rehydrated_at = Utc::now();
    complete(&h, &rehydrate, token, lifecycle_result()).await;
    h.publisher.wait_for(&job_id(&restore.name), 1).await;
    let (restore_token, task) = claim(&h, &restore.name).await;
    let pb::task::Kind::Restore(task) = task else {
        panic!("expected a restore task, got {}", kind_name(&task));
    };
    assert_eq!(
        task.prefix, copy.prefix,
        "the restore reads the rehydrated copy"
    );

    // While the restore runs, the rehydrated copy is not deleted even past its
    // period (15 days); the expired Weekly point B is.
    let later = rehydrated_at + Duration::days(16);
    assert_eq!(lifecycle::sweep(&store, later).await.expect("sweep"), 1);
    assert_eq!(
        jobs_of(&pool, &a.name).await.len(),
        2,
        "only the move and the rehydrate"
    );
    let deletes = jobs_of(&pool, &b.name).await;
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].1, "DELETE");
    // ...and a restore of a point being deleted is refused naming point and job.
    let refused = h
        .restores()
        .restore_as_database(restore_request(&b.name, 0))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains(&b.name), "{}", refused.message());
    assert!(
        refused.message().contains(&deletes[0].0),
        "{}",
        refused.message()
    );
    let (token, task) = claim(&h, &deletes[0].0).await;
    let pb::task::Kind::Delete(task) = task else {
        panic!("expected a delete task, got {}", kind_name(&task));
    };
    assert_eq!(task.locations.len(), 1);
    complete(&h, &deletes[0].0, token, lifecycle_result()).await;
    assert!(
        get_point(&h, &b.name).await.is_none(),
        "deleted point is gone"
    );
    let history = h
        .jobs()
        .get_job(pb::GetJobRequest {
            name: deletes[0].0.clone(),
        })
        .await
        .expect("delete job stays readable")
        .into_inner();
    assert_eq!(history.recovery_point, b.name);

    // Once the restore ends, the rehydrated copy (only) is deleted.
    complete(
        &h,
        &restore.name,
        restore_token,
        pb::complete_task_request::Result::Restore(pb::RestoreResult {
            rows: 1,
            bytes: 1,
            ..Default::default()
        }),
    )
    .await;
    // A second restore reads the same rehydrated copy: no new rehydrate.
    let again = h
        .restores()
        .restore_as_database(restore_request(&a.name, 0))
        .await
        .expect("restore again")
        .into_inner();
    h.publisher.wait_for(&job_id(&again.name), 1).await;
    let (token, task) = claim(&h, &again.name).await;
    let pb::task::Kind::Restore(task) = task else {
        panic!("expected a restore task, got {}", kind_name(&task));
    };
    assert_eq!(task.prefix, copy.prefix);
    assert_eq!(
        jobs_of(&pool, &a.name).await.len(),
        2,
        "no second rehydrate"
    );
    complete(
        &h,
        &again.name,
        token,
        pb::complete_task_request::Result::Restore(pb::RestoreResult {
            rows: 1,
            bytes: 1,
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(lifecycle::sweep(&store, later).await.expect("sweep"), 1);
    let (name, op) = jobs_of(&pool, &a.name).await.pop().expect("job");
    assert_eq!(op, "DELETE");
    let (token, task) = claim(&h, &name).await;
    let pb::task::Kind::Delete(task) = task else {
        panic!("expected a delete task, got {}", kind_name(&task));
    };
    assert_eq!(task.locations.len(), 1);
    assert_eq!(task.locations[0].prefix, copy.prefix);
    complete(&h, &name, token, lifecycle_result()).await;
    let still = get_point(&h, &a.name).await.expect("archive point stays");
    assert_eq!(still.tier, pb::DatastoreTier::Archive as i32);
    assert_eq!(lifecycle::sweep(&store, later).await.expect("sweep"), 0);

    // At its archive expiry the archive point is deleted.
    let end = DateTime::from_timestamp(archive_expiry, 0).expect("time");
    assert_eq!(lifecycle::sweep(&store, end).await.expect("sweep"), 1);
    let (name, op) = jobs_of(&pool, &a.name).await.pop().expect("job");
    assert_eq!(op, "DELETE");
    let (token, task) = claim(&h, &name).await;
    let pb::task::Kind::Delete(task) = task else {
        panic!("expected a delete task, got {}", kind_name(&task));
    };
    assert!(
        task.locations[0].datastore_url.ends_with("/archive"),
        "{task:?}"
    );
    complete(&h, &name, token, lifecycle_result()).await;
    assert!(get_point(&h, &a.name).await.is_none());
    assert!(jobs_of(&pool, &newest.name).await.is_empty());
    assert!(get_point(&h, &newest.name).await.is_some());
    h.stop().await;
}

#[tokio::test]
async fn stop_with_delete_all_points_soft_deletes_them_and_the_sweeper_purges_them_after_the_window()
 {
    let h = Harness::start().await;
    h.fixture().await;
    let instance = setup(&h).await;
    let pool = PgPool::connect(&h.cluster.url("postgres"))
        .await
        .expect("pool");
    let store = Store::new(pool.clone());
    let now = Utc::now();
    let a = point(&h, &instance, pb::RetentionRuleKind::Default, now).await;
    let b = point(&h, &instance, pb::RetentionRuleKind::Weekly, now).await;
    let stopped = h
        .instances()
        .stop_protection(pb::StopProtectionRequest {
            name: instance.clone(),
            mode: pb::StopMode::DeleteAllPoints as i32,
        })
        .await
        .expect("stop")
        .into_inner();
    assert_eq!(
        stopped.protection_state,
        pb::ProtectionState::Stopped as i32
    );
    // Soft-deleted: no job yet, hidden from the list, listed with show_deleted.
    let list = |show_deleted| {
        let mut points = h.points();
        let parent = instance.clone();
        async move {
            points
                .list_recovery_points(pb::ListRecoveryPointsRequest {
                    parent,
                    show_deleted,
                    ..Default::default()
                })
                .await
                .expect("list")
                .into_inner()
                .recovery_points
        }
    };
    assert!(list(false).await.is_empty());
    let deleted = list(true).await;
    assert_eq!(deleted.len(), 2);
    for p in &deleted {
        assert_eq!(p.deleted_by, "bootstrap", "{p:?}");
        let purge = p.purge_time.as_ref().expect("purge time").seconds;
        let window = purge - p.delete_time.as_ref().expect("delete time").seconds;
        assert_eq!(window, 14 * 86_400, "the default window is 14 days");
    }
    for p in [&a, &b] {
        assert!(jobs_of(&pool, &p.name).await.is_empty());
    }
    // Before the window ends nothing is purged, even past the points' expiry.
    assert_eq!(
        lifecycle::sweep(&store, now + Duration::days(13))
            .await
            .expect("sweep"),
        0
    );
    // After it, every copy of each point goes, recording who deleted it.
    assert_eq!(
        lifecycle::sweep(&store, now + Duration::days(15))
            .await
            .expect("sweep"),
        2
    );
    for p in [&a, &b] {
        let jobs = jobs_of(&pool, &p.name).await;
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        assert_eq!(jobs[0].1, "DELETE", "a purge never archives");
        let id = uuid::Uuid::parse_str(&job_id(&jobs[0].0)).expect("uuid");
        let (by,): (Option<String>,) =
            sqlx::query_as("SELECT requested_by FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .expect("requested_by");
        assert_eq!(by.as_deref(), Some("bootstrap"));
        let read = pgvault_coordinator::store::jobs::get(&pool, id)
            .await
            .expect("read the purge job");
        assert_eq!(
            read.requested_by.as_deref(),
            Some("bootstrap"),
            "the job as the API reads it names who deleted the point"
        );
        h.publisher.wait_for(&job_id(&jobs[0].0), 1).await;
        let (token, task) = claim(&h, &jobs[0].0).await;
        let pb::task::Kind::Delete(task) = task else {
            panic!("expected a delete task, got {}", kind_name(&task));
        };
        let objects: Vec<String> = task
            .locations
            .iter()
            .map(|l| format!("{}/{}", l.datastore_url, l.prefix))
            .collect();
        assert_eq!(
            objects,
            vec![p.location.clone()],
            "every object of the point"
        );
        complete(&h, &jobs[0].0, token, lifecycle_result()).await;
        assert!(get_point(&h, &p.name).await.is_none());
    }
    assert!(list(false).await.is_empty());
    assert!(list(true).await.is_empty(), "purged points are gone");
    h.stop().await;
}

#[tokio::test]
async fn a_failed_rehydrate_fails_the_restore_waiting_for_it_with_a_coded_error() {
    let h = Harness::start().await;
    h.fixture().await;
    let instance = setup(&h).await;
    let pool = PgPool::connect(&h.cluster.url("postgres"))
        .await
        .expect("pool");
    let store = Store::new(pool.clone());
    let t0 = Utc::now() - Duration::hours(1);
    let a = point(&h, &instance, pb::RetentionRuleKind::Default, t0).await;
    assert_eq!(
        lifecycle::sweep(&store, t0 + Duration::days(8))
            .await
            .expect("sweep"),
        1
    );
    let (moved, _) = jobs_of(&pool, &a.name).await.pop().expect("tier move");
    let (token, _) = claim(&h, &moved).await;
    complete(&h, &moved, token, lifecycle_result()).await;

    let restore = h
        .restores()
        .restore_as_database(restore_request(&a.name, 30))
        .await
        .expect("restore")
        .into_inner();
    let (rehydrate, op) = jobs_of(&pool, &a.name).await.pop().expect("rehydrate");
    assert_eq!(op, "REHYDRATE");
    let (token, _) = claim(&h, &rehydrate).await;
    h.workers()
        .fail_task(pb::FailTaskRequest {
            tables: Vec::new(),
            job_id: job_id(&rehydrate),
            lease_token: token,
            error: Some(pb::JobError {
                code: "DatastoreUnavailable".into(),
                message: "cannot read the archive".into(),
                recommended_action: "check the archive datastore".into(),
            }),
            retryable: false,
            log_tail: Vec::new(),
        })
        .await
        .expect("fail");
    lifecycle::sweep(&store, Utc::now()).await.expect("sweep");
    let failed = h
        .jobs()
        .get_job(pb::GetJobRequest {
            name: restore.name.clone(),
        })
        .await
        .expect("get restore")
        .into_inner();
    assert_eq!(failed.state, pb::JobState::Failed as i32);
    let error = failed.error.expect("coded error");
    assert_eq!(error.code, "UserErrorRehydrateFailed");
    assert!(error.message.contains(&rehydrate), "{}", error.message);
    assert!(!error.recommended_action.is_empty());
    h.stop().await;
}

fn latest_request(instance: &str, target: &str) -> pb::RestoreAsDatabaseRequest {
    pb::RestoreAsDatabaseRequest {
        latest_of: instance.into(),
        target_database: target.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn latest_restores_the_newest_point_not_being_moved_and_rehydrates_an_archived_one() {
    let h = Harness::start().await;
    h.fixture().await;
    let instance = setup(&h).await;
    let pool = PgPool::connect(&h.cluster.url("postgres"))
        .await
        .expect("pool");
    let store = Store::new(pool.clone());
    // The instance by its short name, as `--instance lv/pg1-app` sends it.
    let typed = "vaults/lv/backupInstances/pg1-app";

    let none = h
        .restores()
        .restore_as_database(latest_request(typed, "too_early"))
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::FailedPrecondition);
    assert!(
        none.message()
            .contains("lv/pg1-app has no recovery point yet")
            && none.message().contains("pgvault backup now lv/pg1-app"),
        "{}",
        none.message()
    );

    let t0 = Utc::now() - Duration::hours(2);
    let older = point(&h, &instance, pb::RetentionRuleKind::Weekly, t0).await;
    let newest = point(
        &h,
        typed,
        pb::RetentionRuleKind::Default,
        t0 + Duration::hours(1),
    )
    .await;
    let restored = h
        .restores()
        .restore_as_database(latest_request(typed, "latest_1"))
        .await
        .expect("restore latest")
        .into_inner();
    assert_eq!(restored.recovery_point, newest.name);
    assert_eq!(restored.backup_instance_short_name, "pg1-app");
    // (A queued restore would hold the point's tier move back.)
    h.jobs()
        .cancel_job(pb::CancelJobRequest {
            name: restored.name,
        })
        .await
        .expect("cancel the first restore");

    // The newest point is being moved to the archive: the one before it.
    let at8 = t0 + Duration::days(8);
    assert_eq!(lifecycle::sweep(&store, at8).await.expect("sweep"), 1);
    let moves = jobs_of(&pool, &newest.name).await;
    assert_eq!(moves.len(), 1, "{moves:?}");
    let restored = h
        .restores()
        .restore_as_database(latest_request(typed, "latest_2"))
        .await
        .expect("restore latest while the newest moves")
        .into_inner();
    assert_eq!(restored.recovery_point, older.name);

    // Once archived it is the latest again, and is rehydrated first.
    let (token, _) = claim(&h, &moves[0].0).await;
    complete(&h, &moves[0].0, token, lifecycle_result()).await;
    let restored = h
        .restores()
        .restore_as_database(latest_request(typed, "latest_3"))
        .await
        .expect("restore the archived latest")
        .into_inner();
    assert_eq!(restored.recovery_point, newest.name);
    assert_eq!(restored.state, pb::JobState::Queued as i32);
    let rehydrates = jobs_of(&pool, &newest.name)
        .await
        .into_iter()
        .filter(|(_, op)| op == "REHYDRATE")
        .count();
    assert_eq!(rehydrates, 1);

    // A point and latest_of together are refused.
    let both = h
        .restores()
        .restore_as_database(pb::RestoreAsDatabaseRequest {
            recovery_point: newest.name.clone(),
            ..latest_request(typed, "latest_4")
        })
        .await
        .unwrap_err();
    assert_eq!(both.code(), Code::InvalidArgument);
}

/// The (prefix, datastore) rows waiting for the collector.
async fn garbage_rows(pool: &PgPool) -> Vec<(String, String)> {
    sqlx::query_as("SELECT datastore_url, prefix FROM attempt_garbage ORDER BY id")
        .fetch_all(pool)
        .await
        .expect("garbage rows")
}

#[tokio::test]
async fn a_retried_tier_move_keeps_the_prefix_its_failed_attempt_left_to_the_collector() {
    let h = Harness::start().await;
    h.fixture().await;
    let instance = setup(&h).await;
    let pool = PgPool::connect(&h.cluster.url("postgres"))
        .await
        .expect("pool");
    let store = Store::new(pool.clone());
    let t0 = Utc::now() - Duration::hours(1);
    let a = point(&h, &instance, pb::RetentionRuleKind::Default, t0).await;
    lifecycle::sweep(&store, t0 + Duration::days(8))
        .await
        .expect("sweep");
    let (moved, _) = jobs_of(&pool, &a.name).await.pop().expect("tier move");

    // Attempt 1 fails after writing part of the archive copy.
    let (token, task) = claim(&h, &moved).await;
    let pb::task::Kind::TierMove(task) = task else {
        panic!("expected a tier move task, got {}", kind_name(&task));
    };
    let destination = task.destination.expect("destination");
    h.workers()
        .fail_task(pb::FailTaskRequest {
            tables: Vec::new(),
            job_id: job_id(&moved),
            lease_token: token,
            error: Some(pb::JobError {
                code: "DatastoreUnavailable".into(),
                message: "archive write timed out".into(),
                recommended_action: "check the archive datastore".into(),
            }),
            retryable: true,
            log_tail: Vec::new(),
        })
        .await
        .expect("fail");
    let left = garbage_rows(&pool).await;
    assert_eq!(
        left,
        [(
            destination.datastore_url.clone(),
            destination.prefix.clone()
        )],
        "the failed attempt's prefix waits for the collector"
    );

    // The retry writes to the same prefix: the failed attempt's row goes.
    let (token, _) = claim(&h, &moved).await;
    assert!(garbage_rows(&pool).await.is_empty());
    let archived_object = h
        .datastore_dir
        .path()
        .join("archive")
        .join(&destination.prefix)
        .join("manifest.json");
    std::fs::create_dir_all(archived_object.parent().expect("parent")).expect("mkdir");
    std::fs::write(&archived_object, b"{}").expect("write");
    complete(&h, &moved, token, lifecycle_result()).await;
    let archived = get_point(&h, &a.name).await.expect("still there");
    assert_eq!(archived.tier, pb::DatastoreTier::Archive as i32);

    // Nothing is due, even long after the grace: the archive copy stays.
    sqlx::query("UPDATE attempt_garbage SET collect_after = now() - interval '1 day'")
        .execute(&pool)
        .await
        .expect("age garbage");
    let emptied = pgvault_coordinator::collector::collect_once(&store)
        .await
        .expect("collect");
    assert_eq!(emptied, 0);
    assert!(
        archived_object.exists(),
        "the archived point lost an object"
    );
    h.stop().await;
}
