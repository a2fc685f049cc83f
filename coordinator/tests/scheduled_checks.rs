//! The scheduler's verify and drill passes against a real state database,
//! on a shifted clock (workers played by the test): when one instance's job
//! cannot be queued — here the jobs table refuses it, as migration 0012's
//! CHECK once refused every verify or drill routed to an agent — the slot
//! still queues the jobs of the policy's other instances.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Timelike;
use common::{Harness, completed_backup_at, point_id};
use pgvault_coordinator::clock::ShiftedClock;
use pgvault_proto::v1 as pb;
use sqlx::PgPool;
use uuid::Uuid;

fn daily_at(at: chrono::DateTime<chrono::Utc>) -> pb::Schedule {
    pb::Schedule {
        weekdays: (1..=7).collect(),
        time_of_day: format!("{:02}:{:02}", at.hour(), at.minute()),
        time_zone: "UTC".into(),
    }
}

/// Runs a backup of `instance` to completion as a worker; returns the
/// point's id.
async fn completed_backup(h: &Harness, instance: &str) -> Uuid {
    point_id(&completed_backup_at(h, instance, chrono::Utc::now()).await)
}

/// The points of the VERIFY and of the DRILL jobs, each sorted.
async fn checked_points(pool: &PgPool) -> (Vec<Uuid>, Vec<Uuid>) {
    let of = |operation: &'static str| async move {
        sqlx::query_scalar::<_, Uuid>(
            "SELECT recovery_point_id FROM jobs WHERE operation = $1 ORDER BY recovery_point_id",
        )
        .bind(operation)
        .fetch_all(pool)
        .await
        .expect("jobs")
    };
    (of("VERIFY").await, of("DRILL").await)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slot_queues_the_other_instances_checks_when_one_instances_job_cannot_be_queued() {
    let clock = Arc::new(ShiftedClock::new());
    let h = {
        let clock = clock.clone();
        Harness::start_with(move |c| {
            c.scheduler_interval = Duration::from_millis(100);
            c.clock = clock;
        })
        .await
    };
    h.fixture().await;
    h.secrets()
        .grant_secret_access(pb::GrantSecretAccessRequest {
            secret: "secrets/pg1-admin".into(),
            vault: "vaults/v".into(),
        })
        .await
        .expect("grant");
    let due = chrono::Utc::now() + chrono::Duration::minutes(2);
    h.policies()
        .create_policy(pb::CreatePolicyRequest {
            parent: "vaults/v".into(),
            policy_id: "checked".into(),
            policy: Some(pb::Policy {
                schedule: Some(pb::Schedule {
                    weekdays: vec![pb::Weekday::Monday as i32],
                    time_of_day: "02:00".into(),
                    time_zone: "Europe/Berlin".into(),
                }),
                retention_rules: vec![pb::RetentionRule {
                    kind: pb::RetentionRuleKind::Weekly as i32,
                    standard_duration: "P8W".into(),
                    archive_duration: String::new(),
                }],
                verify_schedule: Some(daily_at(due)),
                drill_server: "pg1".into(),
                drill_secret: "pg1-admin".into(),
                drill_schedule: Some(daily_at(due)),
                ..Default::default()
            }),
        })
        .await
        .expect("create policy");
    let admin = h.cluster.connect("postgres").await.expect("connect");
    admin
        .batch_execute("CREATE DATABASE app2")
        .await
        .expect("create database app2");
    let configured = h
        .instances()
        .configure_backup(pb::ConfigureBackupRequest {
            parent: "vaults/v".into(),
            policy: "vaults/v/policies/checked".into(),
            rows: ["app", "app2"]
                .into_iter()
                .map(|database| pb::ConfigureBackupRow {
                    server: "servers/pg1".into(),
                    database: database.into(),
                    secret: String::new(),
                })
                .collect(),
            default_secret: "secrets/pg1-admin".into(),
            assign_missing_permissions: true,
            all_databases_of: String::new(),
            role_passwords: false,
        })
        .await
        .expect("configure backup")
        .into_inner();
    let instances: Vec<String> = configured
        .results
        .iter()
        .map(|r| {
            assert_eq!(r.readiness, pb::Readiness::Success as i32, "{r:?}");
            r.backup_instance.as_ref().expect("instance").name.clone()
        })
        .collect();
    let refused = completed_backup(&h, &instances[0]).await;
    let queued = completed_backup(&h, &instances[1]).await;

    // The jobs table refuses any check of app's point.
    let pool = PgPool::connect(&h.cluster.url("postgres"))
        .await
        .expect("pool");
    sqlx::query(&format!(
        "ALTER TABLE jobs ADD CONSTRAINT test_refuses_one_point CHECK
             (operation NOT IN ('VERIFY', 'DRILL') OR recovery_point_id <> '{refused}')"
    ))
    .execute(&pool)
    .await
    .expect("refuse checks of one point");

    clock.set_offset(180);
    for _ in 0..300 {
        let (verifies, drills) = checked_points(&pool).await;
        if !verifies.is_empty() && !drills.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Later passes of the same slot queue nothing more.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (verifies, drills) = checked_points(&pool).await;
    assert_eq!(verifies, vec![queued], "verify jobs of the slot");
    assert_eq!(drills, vec![queued], "drill jobs of the slot");
    for runs in ["policy_verify_runs", "policy_drill_runs"] {
        let claimed: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {runs}"))
            .fetch_one(&pool)
            .await
            .expect("runs");
        assert_eq!(claimed, 1, "{runs}: the slot is claimed once");
    }
    h.stop().await;
}
