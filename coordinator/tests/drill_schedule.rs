//! Weekly restore drills against a real state database, driven by the real
//! scheduler on a shifted clock (workers played by the test): a policy's
//! drill slot queues one drill per instance, of its newest point, once; a
//! slot before the policy existed never runs; the next slot drills again.
//! A drill schedule is refused without a drill server, and a malformed one
//! is refused naming the field; the policies table's CHECK holds a drill
//! with a frequency, a schedule or both, and nothing else.

use crate::common;

use std::time::Duration;

use chrono::Timelike;
use common::{Harness, claim, completed_backup_at, point_id};
use pgvault_coordinator::clock::ShiftedClock;
use pgvault_proto::v1 as pb;
use sqlx::PgPool;
use std::sync::Arc;
use uuid::Uuid;

/// A policy `drilled` in vault v: backups on Mondays, no drill after
/// backups, a drill of every instance's newest point every day at `at`
/// (UTC) on server pg1 with secret pg1-admin.
fn drilled_policy(drill_schedule: Option<pb::Schedule>, server: &str) -> pb::CreatePolicyRequest {
    pb::CreatePolicyRequest {
        parent: "vaults/v".into(),
        policy_id: "drilled".into(),
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
            drill_server: server.into(),
            drill_secret: if server.is_empty() {
                String::new()
            } else {
                "pg1-admin".into()
            },
            drill_schedule,
            ..Default::default()
        }),
    }
}

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

/// DRILL jobs: (job id, point id, state), oldest first.
async fn drills(pool: &PgPool) -> Vec<(Uuid, Uuid, String)> {
    sqlx::query_as(
        "SELECT id, recovery_point_id, state FROM jobs WHERE operation = 'DRILL'
          ORDER BY create_time, id",
    )
    .fetch_all(pool)
    .await
    .expect("drill jobs")
}

/// Polls until `count` drill jobs exist, then lets the scheduler tick a few
/// more times and checks there are still exactly `count`.
async fn expect_drills(pool: &PgPool, count: usize) -> Vec<(Uuid, Uuid, String)> {
    for _ in 0..300 {
        if drills(pool).await.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let jobs = drills(pool).await;
    assert_eq!(jobs.len(), count, "drill jobs: {jobs:?}");
    jobs
}

/// Completes drill job `job` as a worker would after a passed drill.
async fn pass_drill(h: &Harness, job: Uuid) {
    let claimed = claim(h, &job.to_string(), "w1").await;
    assert!(claimed.claimed, "{claimed:?}");
    h.workers()
        .complete_task(pb::CompleteTaskRequest {
            job_id: job.to_string(),
            lease_token: claimed.lease_token,
            result: Some(pb::complete_task_request::Result::Drill(pb::DrillResult {
                tables: 1,
                rows: 3,
                checksums: true,
            })),
            progress: None,
            tables: Vec::new(),
        })
        .await
        .expect("complete drill");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_drill_slot_drills_every_instances_newest_point_once() {
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
    let policy = h
        .policies()
        .create_policy(drilled_policy(Some(daily_at(due)), "pg1"))
        .await
        .expect("create drilled policy")
        .into_inner();
    assert_eq!(policy.drill_every, 0, "{policy:?}");
    assert_eq!(policy.drill_schedule, Some(daily_at(due)), "{policy:?}");

    let admin = h.cluster.connect("postgres").await.expect("connect");
    admin
        .batch_execute("CREATE DATABASE app2")
        .await
        .expect("create database app2");
    let configured = h
        .instances()
        .configure_backup(pb::ConfigureBackupRequest {
            parent: "vaults/v".into(),
            policy: "vaults/v/policies/drilled".into(),
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
    let older = completed_backup(&h, &instances[0]).await;
    let newest_app = completed_backup(&h, &instances[0]).await;
    let newest_app2 = completed_backup(&h, &instances[1]).await;
    assert_ne!(older, newest_app);
    let pool = PgPool::connect(&h.cluster.url("postgres"))
        .await
        .expect("pool");

    // Now the latest slot is yesterday's, before the policy existed: nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(drills(&pool).await.is_empty());

    // The slot is due: one drill per instance, of its newest point, once.
    clock.set_offset(180);
    let jobs = expect_drills(&pool, 2).await;
    let mut drilled: Vec<Uuid> = jobs.iter().map(|j| j.1).collect();
    drilled.sort();
    let mut newest = vec![newest_app, newest_app2];
    newest.sort();
    assert_eq!(drilled, newest, "drill jobs: {jobs:?}");
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM policy_drill_runs")
        .fetch_one(&pool)
        .await
        .expect("runs");
    assert_eq!(runs, 1);

    // Both drills pass; later passes of the same slot queue nothing.
    for (job, _, _) in &jobs {
        pass_drill(&h, *job).await;
    }
    let jobs = expect_drills(&pool, 2).await;
    assert!(jobs.iter().all(|j| j.2 == "COMPLETED"), "{jobs:?}");

    // The next day's slot drills the same newest points again.
    clock.set_offset(86_400 + 180);
    let jobs = expect_drills(&pool, 4).await;
    let mut again: Vec<Uuid> = jobs[2..].iter().map(|j| j.1).collect();
    again.sort();
    assert_eq!(again, newest, "drill jobs: {jobs:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drill_schedule_needs_a_server_and_a_malformed_one_is_named() {
    let h = Harness::start().await;
    h.fixture().await;
    h.secrets()
        .grant_secret_access(pb::GrantSecretAccessRequest {
            secret: "secrets/pg1-admin".into(),
            vault: "vaults/v".into(),
        })
        .await
        .expect("grant");
    let at = chrono::Utc::now();

    let status = h
        .policies()
        .create_policy(drilled_policy(Some(daily_at(at)), ""))
        .await
        .expect_err("a schedule without a server");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("policy.drill_server")
            && status.message().contains("--drill-server"),
        "{status:?}"
    );

    let mut bad = daily_at(at);
    bad.time_of_day = "25:00".into();
    let status = h
        .policies()
        .create_policy(drilled_policy(Some(bad), "pg1"))
        .await
        .expect_err("a malformed schedule");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("policy.drill_schedule"),
        "{status:?}"
    );

    let status = h
        .policies()
        .create_policy(drilled_policy(None, "pg1"))
        .await
        .expect_err("a server with neither frequency nor schedule");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("--drill-every") && status.message().contains("--drill "),
        "{status:?}"
    );
    h.stop().await;
}

/// Sets policy `daily`'s drill columns: server (secret with it), every,
/// weekdays and time of day (the zone with the weekdays).
async fn set_drill(
    pool: &PgPool,
    server: &str,
    every: i32,
    days: Option<Vec<i16>>,
    at: Option<&str>,
) -> Result<sqlx::postgres::PgQueryResult, sqlx::Error> {
    let zone = days.as_ref().map(|_| "UTC");
    sqlx::query(
        "UPDATE policies SET drill_server = $1, drill_secret = $2, drill_every = $3,
                drill_weekdays = $4, drill_time_of_day = $5, drill_time_zone = $6
          WHERE vault_id = 'v' AND id = 'daily'",
    )
    .bind(server)
    .bind(if server.is_empty() {
        ""
    } else {
        "secret://pg1-admin"
    })
    .bind(every)
    .bind(days)
    .bind(at)
    .bind(zone)
    .execute(pool)
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_table_holds_a_drill_with_a_frequency_a_schedule_or_both_and_nothing_else() {
    let h = Harness::start().await;
    h.fixture().await;
    let pool = PgPool::connect(&h.cluster.url("postgres"))
        .await
        .expect("pool");
    let refused = |result: Result<sqlx::postgres::PgQueryResult, sqlx::Error>| {
        let error = result.expect_err("refused by the CHECK");
        assert_eq!(
            error.as_database_error().and_then(|e| e.constraint()),
            Some("policies_drill_check"),
            "{error}"
        );
    };
    // Every Nth backup (the rows before migration 0028), a schedule, both.
    set_drill(&pool, "pg1", 3, None, None)
        .await
        .expect("every N");
    set_drill(&pool, "pg1", 0, Some(vec![7]), Some("04:00"))
        .await
        .expect("a schedule");
    set_drill(&pool, "pg1", 2, Some(vec![3, 7]), Some("04:00"))
        .await
        .expect("both");
    set_drill(&pool, "", 0, None, None).await.expect("no drill");
    // A server with neither, a schedule or frequency without a server, half a schedule.
    refused(set_drill(&pool, "pg1", 0, None, None).await);
    refused(set_drill(&pool, "", 0, Some(vec![7]), Some("04:00")).await);
    refused(set_drill(&pool, "", 2, None, None).await);
    refused(set_drill(&pool, "pg1", 0, Some(vec![7]), None).await);
    h.stop().await;
}
