//! Data protection against a real state database: keep-min holds an
//! instance's newest points while backups fail for longer than the
//! retention period (the sweeper is called with a "now" moved months
//! ahead); deleting a point soft-deletes it (listed with show_deleted,
//! refused for restore, undeletable, purged after the window); and a locked
//! vault refuses an Owner every deletion, shortening and unlock with the
//! stable code `UserErrorVaultLocked`.

use crate::common;

use chrono::{DateTime, Duration, Utc};
use common::{Harness, backup_now, claim, completed_backup_at, get, job_id};
use pgvault_coordinator::lifecycle;
use pgvault_coordinator::store::Store;
use pgvault_proto::v1 as pb;
use sqlx::PgPool;
use tonic::{Code, Status};

/// A completed backup of `instance` with a snapshot at `snapshot`: its point.
async fn point(h: &Harness, instance: &str, snapshot: DateTime<Utc>) -> pb::RecoveryPoint {
    let name = completed_backup_at(h, instance, snapshot).await;
    h.points()
        .get_recovery_point(pb::GetRecoveryPointRequest { name })
        .await
        .expect("point")
        .into_inner()
}

/// A backup of `instance` that fails for good.
async fn failed_backup(h: &Harness, instance: &str) {
    let job = backup_now(h, instance).await;
    let claimed = claim(h, &job_id(&job), "w1").await;
    assert!(claimed.claimed, "{claimed:?}");
    h.workers()
        .fail_task(pb::FailTaskRequest {
            tables: Vec::new(),
            job_id: job_id(&job),
            lease_token: claimed.lease_token,
            error: Some(pb::JobError {
                code: "UserErrorDBNotFound".into(),
                message: "database \"app\" does not exist".into(),
                recommended_action: "create it".into(),
            }),
            retryable: false,
            log_tail: Vec::new(),
        })
        .await
        .expect("fail");
    assert_eq!(get(h, &job.name).await.state, pb::JobState::Failed as i32);
}

async fn list(h: &Harness, instance: &str, show_deleted: bool) -> Vec<String> {
    h.points()
        .list_recovery_points(pb::ListRecoveryPointsRequest {
            parent: instance.into(),
            show_deleted,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .recovery_points
        .into_iter()
        .map(|p| p.name)
        .collect()
}

/// DELETE jobs of a point.
async fn deletes_of(pool: &PgPool, point: &str) -> Vec<uuid::Uuid> {
    let id = uuid::Uuid::parse_str(point.rsplit('/').next().expect("id")).expect("uuid");
    let rows: Vec<(uuid::Uuid,)> = sqlx::query_as(
        "SELECT id FROM jobs WHERE recovery_point_id = $1 AND operation = 'DELETE' ORDER BY create_time",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .expect("jobs");
    rows.into_iter().map(|(id,)| id).collect()
}

fn restore(point: &str) -> pb::RestoreAsDatabaseRequest {
    pb::RestoreAsDatabaseRequest {
        recovery_point: point.into(),
        target_database: "app_restored".into(),
        ..Default::default()
    }
}

fn assert_locked(result: Result<impl std::fmt::Debug, Status>, what: &str) {
    let status = result.expect_err(what);
    assert_eq!(status.code(), Code::FailedPrecondition, "{what}: {status}");
    assert!(
        status
            .message()
            .starts_with("UserErrorVaultLocked: vault \"v\" is locked"),
        "{what}: {}",
        status.message()
    );
}

#[tokio::test]
async fn keep_min_holds_the_newest_three_points_while_backups_fail_past_the_retention_period() {
    let h = Harness::start().await;
    h.fixture().await;
    let instance = h.protect("app").await;
    let pool = PgPool::connect(&h.cluster.url("postgres"))
        .await
        .expect("pool");
    let store = Store::new(pool.clone());
    let policy = h
        .policies()
        .get_policy(pb::GetPolicyRequest {
            name: "vaults/v/policies/daily".into(),
        })
        .await
        .expect("policy")
        .into_inner();
    assert_eq!(policy.keep_min, 3, "the default floor");
    // Five weekly points (kept 8 weeks), then every backup fails.
    let t0 = Utc::now() - Duration::days(5);
    let mut points = Vec::new();
    for day in 0..5 {
        points.push(point(&h, &instance, t0 + Duration::days(day)).await);
    }
    for _ in 0..3 {
        failed_backup(&h, &instance).await;
    }
    // A year later (far past the 8 weeks) only the two oldest go.
    let later = Utc::now() + Duration::days(365);
    assert_eq!(lifecycle::sweep(&store, later).await.expect("sweep"), 2);
    assert_eq!(lifecycle::sweep(&store, later).await.expect("sweep"), 0);
    for (i, p) in points.iter().enumerate() {
        let deletes = deletes_of(&pool, &p.name).await;
        assert_eq!(deletes.len(), usize::from(i < 2), "point {i}: {deletes:?}");
    }
    for id in deletes_of(&pool, &points[0].name)
        .await
        .into_iter()
        .chain(deletes_of(&pool, &points[1].name).await)
    {
        let claimed = claim(&h, &id.to_string(), "w1").await;
        assert!(claimed.claimed, "{claimed:?}");
        h.workers()
            .complete_task(pb::CompleteTaskRequest {
                tables: Vec::new(),
                job_id: id.to_string(),
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
            .expect("complete");
    }
    let mut left = list(&h, &instance, false).await;
    left.sort();
    let mut newest: Vec<String> = points[2..].iter().map(|p| p.name.clone()).collect();
    newest.sort();
    assert_eq!(left, newest, "the newest three remain");
    // Years on, still nothing more is deleted.
    let much_later = Utc::now() + Duration::days(3650);
    assert_eq!(
        lifecycle::sweep(&store, much_later).await.expect("sweep"),
        0
    );
    h.stop().await;
}

#[tokio::test]
async fn a_deleted_point_is_listed_as_deleted_refused_for_restore_undeleted_and_restored() {
    let h = Harness::start().await;
    h.fixture().await;
    let instance = h.protect("app").await;
    let pool = PgPool::connect(&h.cluster.url("postgres"))
        .await
        .expect("pool");
    let store = Store::new(pool.clone());
    let now = Utc::now();
    let kept = point(&h, &instance, now - Duration::hours(2)).await;
    let p = point(&h, &instance, now - Duration::hours(1)).await;

    let deleted = h
        .points()
        .delete_recovery_point(pb::DeleteRecoveryPointRequest {
            name: p.name.clone(),
        })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(deleted.deleted_by, "bootstrap");
    assert!(deleted.delete_time.is_some() && deleted.purge_time.is_some());
    assert_eq!(list(&h, &instance, false).await, vec![kept.name.clone()]);
    assert_eq!(list(&h, &instance, true).await, vec![p.name.clone()]);
    let again = h
        .points()
        .delete_recovery_point(pb::DeleteRecoveryPointRequest {
            name: p.name.clone(),
        })
        .await
        .expect_err("deleted twice");
    assert!(again.message().contains("already deleted"), "{again}");

    let refused = h
        .restores()
        .restore_as_database(restore(&p.name))
        .await
        .expect_err("restore of a deleted point");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .starts_with("UserErrorRecoveryPointDeleted: recovery point")
            && refused
                .message()
                .contains("pgvault recovery-point undelete"),
        "{}",
        refused.message()
    );
    // The latest restorable point is the older one.
    let latest = h
        .restores()
        .restore_as_database(pb::RestoreAsDatabaseRequest {
            latest_of: instance.clone(),
            target_database: "app_latest".into(),
            ..Default::default()
        })
        .await
        .expect("restore latest")
        .into_inner();
    assert_eq!(latest.recovery_point, kept.name);

    let undeleted = h
        .points()
        .undelete_recovery_point(pb::UndeleteRecoveryPointRequest {
            name: p.name.clone(),
        })
        .await
        .expect("undelete")
        .into_inner();
    assert!(undeleted.delete_time.is_none() && undeleted.deleted_by.is_empty());
    assert!(list(&h, &instance, true).await.is_empty());
    let job = h
        .restores()
        .restore_as_database(restore(&p.name))
        .await
        .expect("restore after undelete")
        .into_inner();
    assert_eq!(job.recovery_point, p.name);

    // Deleted again: after the window the sweeper purges it, and from then
    // on it cannot be undeleted.
    h.jobs()
        .cancel_job(pb::CancelJobRequest { name: job.name })
        .await
        .expect("cancel the restore");
    h.points()
        .delete_recovery_point(pb::DeleteRecoveryPointRequest {
            name: p.name.clone(),
        })
        .await
        .expect("delete again");
    assert_eq!(
        lifecycle::sweep(&store, now + Duration::days(13))
            .await
            .expect("sweep"),
        0
    );
    assert_eq!(
        lifecycle::sweep(&store, now + Duration::days(15))
            .await
            .expect("sweep"),
        1
    );
    let purge = deletes_of(&pool, &p.name).await;
    assert_eq!(purge.len(), 1);
    let late = h
        .points()
        .undelete_recovery_point(pb::UndeleteRecoveryPointRequest {
            name: p.name.clone(),
        })
        .await
        .expect_err("undelete during purge");
    assert!(late.message().contains("being purged"), "{late}");
    h.stop().await;
}

#[tokio::test]
async fn an_owner_cannot_delete_shorten_weaken_or_unlock_a_locked_vault() {
    let h = Harness::start().await;
    h.fixture().await;
    let instance = h.protect("app").await;
    let p = point(&h, &instance, Utc::now() - Duration::hours(1)).await;
    let policy = |id: &str, weekly: &str| pb::CreatePolicyRequest {
        parent: "vaults/v".into(),
        policy_id: id.into(),
        policy: Some(pb::Policy {
            schedule: Some(pb::Schedule {
                weekdays: vec![pb::Weekday::Monday as i32],
                time_of_day: "02:00".into(),
                time_zone: "UTC".into(),
            }),
            retention_rules: vec![pb::RetentionRule {
                kind: pb::RetentionRuleKind::Weekly as i32,
                standard_duration: weekly.into(),
                archive_duration: String::new(),
            }],
            ..Default::default()
        }),
    };
    for (id, weekly) in [("short", "P4W"), ("long", "P1Y")] {
        h.policies()
            .create_policy(policy(id, weekly))
            .await
            .expect("create policy");
    }

    let unconfirmed = h
        .vaults()
        .lock_vault(pb::LockVaultRequest {
            name: "vaults/v".into(),
            confirm: false,
        })
        .await
        .expect_err("lock without confirm");
    assert_eq!(unconfirmed.code(), Code::InvalidArgument);
    let locked = h
        .vaults()
        .lock_vault(pb::LockVaultRequest {
            name: "vaults/v".into(),
            confirm: true,
        })
        .await
        .expect("lock")
        .into_inner();
    assert!(locked.lock_time.is_some());

    assert_locked(
        h.points()
            .delete_recovery_point(pb::DeleteRecoveryPointRequest {
                name: p.name.clone(),
            })
            .await,
        "delete a point",
    );
    assert_locked(
        h.instances()
            .stop_protection(pb::StopProtectionRequest {
                name: instance.clone(),
                mode: pb::StopMode::DeleteAllPoints as i32,
            })
            .await,
        "stop with delete",
    );
    let change = |policy: &str| pb::ChangePolicyRequest {
        name: instance.clone(),
        policy: format!("vaults/v/policies/{policy}"),
        reapply_retention: true,
    };
    assert_locked(
        h.instances().change_policy(change("short")).await,
        "shorten retention",
    );
    h.instances()
        .change_policy(change("long"))
        .await
        .expect("lengthening retention is allowed");
    assert_locked(
        h.vaults()
            .update_vault(pb::UpdateVaultRequest {
                name: "vaults/v".into(),
                soft_delete_days: 7,
            })
            .await,
        "shrink the soft-delete window",
    );
    let off = h
        .vaults()
        .update_vault(pb::UpdateVaultRequest {
            name: "vaults/v".into(),
            soft_delete_days: 0,
        })
        .await
        .expect_err("turn soft delete off");
    assert!(off.message().contains("cannot be turned off"), "{off}");
    let longer = h
        .vaults()
        .update_vault(pb::UpdateVaultRequest {
            name: "vaults/v".into(),
            soft_delete_days: 30,
        })
        .await
        .expect("a longer window is allowed")
        .into_inner();
    assert_eq!(longer.soft_delete_days, 30);
    assert_locked(
        h.vaults()
            .unlock_vault(pb::UnlockVaultRequest {
                name: "vaults/v".into(),
            })
            .await,
        "unlock",
    );
    assert_locked(
        h.vaults()
            .delete_vault(pb::DeleteVaultRequest {
                name: "vaults/v".into(),
            })
            .await,
        "delete the vault",
    );
    let still = h
        .points()
        .get_recovery_point(pb::GetRecoveryPointRequest { name: p.name })
        .await
        .expect("point")
        .into_inner();
    assert!(still.delete_time.is_none());
    h.stop().await;
}
