//! `RestoreServer` against a real state database, with the worker played
//! by the test: a point of a scheduled run names its set (one point per
//! database of the server), an on-demand point names none, a target that
//! has the set's databases is refused naming them all, and a restore onto
//! a fresh server is one job per database of which only the first (which
//! restores the globals) is queued: its completion releases the others,
//! its failure or cancellation fails them with `UserErrorGlobalsRestoreFailed`
//! naming it (and its code) and that code's recommended action. A run whose
//! backup of a database failed is refused naming it, unless the caller
//! accepts a partial restore or leaves it out; the set may be named by an
//! instance's newest scheduled point, and when every such point is being
//! deleted the refusal says so.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::{Harness, backup_now, claim, job_id};
use pgvault_coordinator::clock::ShiftedClock;
use pgvault_localpg::TempCluster;
use pgvault_proto::v1 as pb;

/// Claims and completes backup `id` with a point of PostgreSQL 15.
async fn complete_backup(h: &Harness, id: &str) {
    let claimed = claim(h, id, "w1").await;
    assert!(claimed.claimed, "{claimed:?}");
    h.workers()
        .complete_task(pb::CompleteTaskRequest {
            job_id: id.into(),
            lease_token: claimed.lease_token,
            result: Some(pb::complete_task_request::Result::Backup(
                pb::BackupResult {
                    snapshot_time: Some(prost_types::Timestamp {
                        seconds: Utc::now().timestamp(),
                        nanos: 0,
                    }),
                    stored_bytes: 1,
                    raw_bytes: 1,
                    chunk_count: 1,
                    manifest_sha256: "ef".repeat(32),
                    server_version: "15.8".into(),
                    stage_split: None,
                },
            )),
            ..Default::default()
        })
        .await
        .expect("complete backup");
}

async fn jobs_of(h: &Harness, operation: pb::Operation) -> Vec<pb::Job> {
    h.jobs()
        .list_jobs(pb::ListJobsRequest {
            operation: operation as i32,
            page_size: 100,
            all: true,
            ..Default::default()
        })
        .await
        .expect("list jobs")
        .into_inner()
        .jobs
}

/// Restores the set of `point` onto `server`, leaving out `exclude`.
fn restore(point: &str, server: &str, exclude: &[&str]) -> pb::RestoreServerRequest {
    pb::RestoreServerRequest {
        recovery_point: point.into(),
        target_server: format!("servers/{server}"),
        secret: format!("secrets/{server}-admin"),
        exclude_databases: exclude.iter().map(|d| d.to_string()).collect(),
        ..Default::default()
    }
}

/// The error of job `name` once it has failed (the lifecycle pass fails
/// restores whose awaited job failed).
async fn failed_error(h: &Harness, name: &str) -> pb::JobError {
    for _ in 0..300 {
        let job = common::get(h, name).await;
        if job.state == pb::JobState::Failed as i32 {
            return job.error.expect("a failed job has an error");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} did not fail within 30 s");
}

#[tokio::test]
async fn a_server_restore_queues_the_globals_first_and_the_rest_follow_its_outcome() {
    let clock = Arc::new(ShiftedClock::new());
    let adjust = {
        let clock = clock.clone();
        move |c: &mut pgvault_coordinator::CoordinatorConfig| {
            c.scheduler_interval = Duration::from_millis(100);
            c.schedule_max_lateness = Duration::from_secs(3600);
            c.clock = clock.clone();
        }
    };
    let h = Harness::start_with(adjust).await;
    h.fixture().await;
    h.create_policy_due_soon(
        "v",
        pb::RetentionRule {
            kind: pb::RetentionRuleKind::Weekly as i32,
            standard_duration: "P8W".into(),
            archive_duration: String::new(),
        },
    )
    .await;
    h.cluster
        .connect("postgres")
        .await
        .expect("connect")
        .batch_execute("CREATE DATABASE orders")
        .await
        .expect("create orders");
    let configured = h
        .instances()
        .configure_backup(pb::ConfigureBackupRequest {
            parent: "vaults/v".into(),
            policy: "vaults/v/policies/soon".into(),
            default_secret: "secrets/pg1-admin".into(),
            assign_missing_permissions: true,
            all_databases_of: "servers/pg1".into(),
            ..Default::default()
        })
        .await
        .expect("configure")
        .into_inner();
    // app, orders and postgres (the harness's state database).
    assert_eq!(configured.results.len(), 3, "{configured:?}");

    // The slot: one scheduled backup per database, completed by "the worker".
    clock.set_offset(180);
    let mut scheduled = Vec::new();
    for _ in 0..300 {
        scheduled = jobs_of(&h, pb::Operation::ScheduledBackup).await;
        if scheduled.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(scheduled.len(), 3, "{scheduled:?}");
    for job in &scheduled {
        complete_backup(&h, &job_id(job)).await;
    }
    let instance = configured.results[0]
        .backup_instance
        .as_ref()
        .expect("instance")
        .name
        .clone();
    let points = |h: &Harness| {
        let instance = instance.clone();
        let mut points = h.points();
        async move {
            points
                .list_recovery_points(pb::ListRecoveryPointsRequest {
                    parent: instance,
                    ..Default::default()
                })
                .await
                .expect("points")
                .into_inner()
                .recovery_points
        }
    };
    let scheduled_point = points(&h).await.remove(0).name;

    // An on-demand point belongs to no set.
    let now_job = backup_now(&h, &instance).await;
    complete_backup(&h, &job_id(&now_job)).await;
    let on_demand = points(&h)
        .await
        .into_iter()
        .find(|p| p.name != scheduled_point)
        .expect("on-demand point")
        .name;
    let refused = h
        .restores()
        .restore_server(restore(&on_demand, "pg1", &[]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("not taken by a scheduled run"),
        "{refused:?}"
    );

    // The source server has every database of the set.
    let refused = h
        .restores()
        .restore_server(restore(&scheduled_point, "pg1", &[]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains("already has database \"app\", \"orders\", \"postgres\""),
        "{refused:?}"
    );

    // A fresh server.
    let target = TempCluster::start("target-pw").expect("target cluster");
    h.servers()
        .register_server(pb::RegisterServerRequest {
            server_id: "pg2".into(),
            server: Some(pb::Server {
                host: "127.0.0.1".into(),
                port: u32::from(target.port()),
                region: "local".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("register pg2");
    h.secrets()
        .put_secret(pb::PutSecretRequest {
            secret_id: "pg2-admin".into(),
            value: format!(
                "host=127.0.0.1 port={} user={} password={} sslmode=disable",
                target.port(),
                target.user(),
                target.password()
            ),
        })
        .await
        .expect("put secret");
    h.secrets()
        .grant_secret_access(pb::GrantSecretAccessRequest {
            secret: "secrets/pg2-admin".into(),
            vault: "vaults/v".into(),
        })
        .await
        .expect("grant");

    // First run: the globals' job fails, the waiting restore fails with its error.
    let first_run = h
        .restores()
        .restore_server(restore(&scheduled_point, "pg2", &["postgres"]))
        .await
        .expect("restore server")
        .into_inner()
        .jobs;
    // Every new server has a postgres database: left out, the others restore.
    assert_eq!(first_run.len(), 2, "{first_run:?}");
    let (globals, waiting) = (job_id(&first_run[0]), job_id(&first_run[1]));
    h.publisher.wait_for(&globals, 1).await;
    let claimed = claim(&h, &globals, "w1").await;
    match claimed.task.and_then(|t| t.kind) {
        Some(pb::task::Kind::Restore(task)) => {
            assert!(task.restore_globals, "the first job restores the globals")
        }
        other => panic!("expected a restore task, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !h.publisher
            .envelopes()
            .iter()
            .any(|(_, e)| e.job_id == waiting),
        "the second restore waits for the globals"
    );
    h.workers()
        .fail_task(pb::FailTaskRequest {
            job_id: globals.clone(),
            lease_token: claimed.lease_token,
            error: Some(pb::JobError {
                code: "PgToolFailed".into(),
                message: "psql failed".into(),
                recommended_action: "check psql".into(),
            }),
            retryable: false,
            ..Default::default()
        })
        .await
        .expect("fail globals");
    let error = failed_error(&h, &first_run[1].name).await;
    assert_eq!(error.code, "UserErrorGlobalsRestoreFailed");
    assert!(
        error.message.contains(&format!(
            "the restore jobs/{globals} of the server's globals this restore waited for failed with PgToolFailed"
        )),
        "{error:?}"
    );
    assert_eq!(
        error.recommended_action,
        pgvault_errors::ErrorCode::UserErrorGlobalsRestoreFailed.recommended_action()
    );

    // A cancelled globals restore: the same code, not "Cancelled".
    let cancelled_run = h
        .restores()
        .restore_server(restore(&scheduled_point, "pg2", &["postgres"]))
        .await
        .expect("restore server after a failure")
        .into_inner()
        .jobs;
    h.jobs()
        .cancel_job(pb::CancelJobRequest {
            name: cancelled_run[0].name.clone(),
        })
        .await
        .expect("cancel globals");
    let error = failed_error(&h, &cancelled_run[1].name).await;
    assert_eq!(error.code, "UserErrorGlobalsRestoreFailed");
    assert!(error.message.contains("was cancelled"), "{error:?}");
    assert!(!error.recommended_action.is_empty(), "{error:?}");

    // Second run: the globals' job completes (with a warning), the rest is released.
    let second_run = h
        .restores()
        .restore_server(restore(&scheduled_point, "pg2", &["postgres"]))
        .await
        .expect("restore server again")
        .into_inner()
        .jobs;
    let (globals, waiting) = (job_id(&second_run[0]), job_id(&second_run[1]));
    h.publisher.wait_for(&globals, 1).await;
    let claimed = claim(&h, &globals, "w1").await;
    h.workers()
        .complete_task(pb::CompleteTaskRequest {
            job_id: globals.clone(),
            lease_token: claimed.lease_token,
            result: Some(pb::complete_task_request::Result::Restore(
                pb::RestoreResult {
                    skipped_objects: vec!["globals: role \"postgres\" already exists".into()],
                    ..Default::default()
                },
            )),
            ..Default::default()
        })
        .await
        .expect("complete globals");
    h.publisher.wait_for(&waiting, 1).await;
    let done = common::get(&h, &second_run[0].name).await;
    assert_eq!(done.state, pb::JobState::CompletedWithWarnings as i32);
}

/// Registers a fresh server `id` with its secret `{id}-admin`, granted to vault v.
async fn fresh_target(h: &Harness, id: &str) -> TempCluster {
    let target = TempCluster::start("target-pw").expect("target cluster");
    h.servers()
        .register_server(pb::RegisterServerRequest {
            server_id: id.into(),
            server: Some(pb::Server {
                host: "127.0.0.1".into(),
                port: u32::from(target.port()),
                region: "local".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("register target");
    h.secrets()
        .put_secret(pb::PutSecretRequest {
            secret_id: format!("{id}-admin"),
            value: format!(
                "host=127.0.0.1 port={} user={} password={} sslmode=disable",
                target.port(),
                target.user(),
                target.password()
            ),
        })
        .await
        .expect("put secret");
    h.secrets()
        .grant_secret_access(pb::GrantSecretAccessRequest {
            secret: format!("secrets/{id}-admin"),
            vault: "vaults/v".into(),
        })
        .await
        .expect("grant");
    target
}

#[tokio::test]
async fn a_run_whose_backup_failed_is_refused_naming_it_unless_a_partial_restore_is_accepted() {
    let clock = Arc::new(ShiftedClock::new());
    let adjust = {
        let clock = clock.clone();
        move |c: &mut pgvault_coordinator::CoordinatorConfig| {
            c.scheduler_interval = Duration::from_millis(100);
            c.schedule_max_lateness = Duration::from_secs(3600);
            c.clock = clock.clone();
        }
    };
    let h = Harness::start_with(adjust).await;
    h.fixture().await;
    h.create_policy_due_soon(
        "v",
        pb::RetentionRule {
            kind: pb::RetentionRuleKind::Weekly as i32,
            standard_duration: "P8W".into(),
            archive_duration: String::new(),
        },
    )
    .await;
    h.cluster
        .connect("postgres")
        .await
        .expect("connect")
        .batch_execute("CREATE DATABASE orders")
        .await
        .expect("create orders");
    h.instances()
        .configure_backup(pb::ConfigureBackupRequest {
            parent: "vaults/v".into(),
            policy: "vaults/v/policies/soon".into(),
            default_secret: "secrets/pg1-admin".into(),
            assign_missing_permissions: true,
            all_databases_of: "servers/pg1".into(),
            ..Default::default()
        })
        .await
        .expect("configure");

    // The slot: app and postgres back up, orders fails.
    clock.set_offset(180);
    let mut scheduled = Vec::new();
    for _ in 0..300 {
        scheduled = jobs_of(&h, pb::Operation::ScheduledBackup).await;
        if scheduled.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(scheduled.len(), 3, "{scheduled:?}");
    for job in &scheduled {
        let id = job_id(job);
        if job.backup_instance_short_name != "pg1-orders" {
            complete_backup(&h, &id).await;
            continue;
        }
        let claimed = claim(&h, &id, "w1").await;
        h.workers()
            .fail_task(pb::FailTaskRequest {
                job_id: id,
                lease_token: claimed.lease_token,
                error: Some(pb::JobError {
                    code: "UserErrorDBNotFound".into(),
                    message: "database \"orders\" does not exist".into(),
                    recommended_action: "check".into(),
                }),
                retryable: false,
                ..Default::default()
            })
            .await
            .expect("fail the orders backup");
    }
    let _target = fresh_target(&h, "pg2").await;
    // Named by the newest scheduled point of an instance: no id to copy.
    let latest = |allow_partial: bool| pb::RestoreServerRequest {
        latest_of: "vaults/v/backupInstances/pg1-app".into(),
        target_server: "servers/pg2".into(),
        secret: "secrets/pg2-admin".into(),
        exclude_databases: vec!["postgres".into()],
        allow_partial,
        no_tablespaces: true,
        ..Default::default()
    };

    let refused = h
        .restores()
        .restore_server(latest(false))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains(
            "has no recovery point of 1 of its databases (orders: its backup failed (UserErrorDBNotFound))"
        ),
        "{refused:?}"
    );
    assert!(refused.message().contains("--allow-partial"), "{refused:?}");
    assert!(jobs_of(&h, pb::Operation::Restore).await.is_empty());

    // Accepted: the others restore, the response names what is left out.
    let partial = h
        .restores()
        .restore_server(latest(true))
        .await
        .expect("a partial restore")
        .into_inner();
    assert_eq!(partial.jobs.len(), 1, "{partial:?}");
    assert_eq!(partial.jobs[0].target_database, "app");
    assert_eq!(
        partial.left_out,
        ["orders: its backup failed (UserErrorDBNotFound)"]
    );
    // The globals' job is told to leave the tablespaces out.
    let globals = job_id(&partial.jobs[0]);
    h.publisher.wait_for(&globals, 1).await;
    match claim(&h, &globals, "w1").await.task.and_then(|t| t.kind) {
        Some(pb::task::Kind::Restore(task)) => {
            assert!(task.restore_globals && task.skip_tablespaces, "{task:?}")
        }
        other => panic!("expected a restore task, got {other:?}"),
    }

    // Leaving it out by name is accepting its absence too.
    let excluded = h
        .restores()
        .restore_server(pb::RestoreServerRequest {
            exclude_databases: vec!["postgres".into(), "orders".into()],
            ..latest(false)
        })
        .await
        .expect("orders excluded by name")
        .into_inner();
    assert_eq!(excluded.jobs.len(), 1);
    assert!(excluded.left_out.is_empty());

    // Every scheduled point of the instance being deleted: said so, not
    // that it has none.
    h.cluster
        .connect("postgres")
        .await
        .expect("connect")
        .batch_execute(
            "INSERT INTO jobs (id, operation, state, vault_id, backup_instance_id,
                               recovery_point_id, lifecycle_stage)
             SELECT gen_random_uuid(), 'DELETE', 'QUEUED', i.vault_id, i.id, p.id, 'STANDARD_EXPIRY'
               FROM recovery_points p JOIN backup_instances i ON i.id = p.backup_instance_id
              WHERE i.short_name = 'pg1-app'",
        )
        .await
        .expect("the app points' deletions");
    let removing = h.restores().restore_server(latest(true)).await.unwrap_err();
    assert_eq!(removing.code(), tonic::Code::FailedPrecondition);
    assert!(
        removing.message().starts_with(
            "every recent recovery point of a scheduled run of backup instance v/pg1-app is being deleted"
        ),
        "{removing:?}"
    );
}
