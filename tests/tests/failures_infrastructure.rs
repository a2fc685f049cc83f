//! Failures of the servers around pgvault, with real processes (issue 6,
//! failure tests 2, 3 and 4): RabbitMQ restarted with jobs queued and in
//! flight (and one created while it was down), the coordinator restarted in
//! the middle of jobs and of a schedule slot, and the Azure datastore
//! stopped while a backup uploads. A table lock held by the test keeps a
//! backup inside its dump until the fault is injected.

use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
use pgvault_e2e::fixtures;
use pgvault_e2e::scenario::{JOB_TIMEOUT, Scenario, assert_manifest_objects_complete};
use pgvault_proto::v1::*;

/// Fails unless `instance` has exactly one job, completed, and one point
/// made by it whose manifest objects are all there.
async fn assert_one_job_one_point(s: &mut Scenario, instance: &str) {
    let jobs = s.jobs_of(instance).await.expect("list jobs");
    assert_eq!(jobs.len(), 1, "one job for {instance}: {jobs:?}");
    let points = s.points(instance).await.expect("list points");
    assert_eq!(points.len(), 1, "one point for {instance}: {points:?}");
    assert_eq!(points[0].job, jobs[0].name, "{points:?}");
    assert_manifest_objects_complete(&points[0])
        .await
        .expect("manifest objects complete");
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_queued_in_flight_and_created_during_a_rabbitmq_restart_each_complete_exactly_once() {
    let databases = ["mq_a", "mq_b", "mq_c", "mq_d"];
    let mut s = Scenario::start(&databases, 1, 1, None)
        .await
        .expect("start servers");
    let instances: Vec<String> = s.instances.iter().map(|(_, i)| i.clone()).collect();
    // mq_a in flight (held in its dump); mq_b and mq_c queued behind it on
    // the only worker slot.
    let lock = s.hold_table_lock("mq_a").await.expect("lock a table");
    let mut jobs = vec![s.backup_now(&instances[0]).await.expect("backup a")];
    s.wait_in_progress(&jobs[0].name).await.expect("a runs");
    s.wait_for_blocked_backup("mq_a")
        .await
        .expect("a in its dump");
    for instance in &instances[1..3] {
        jobs.push(s.backup_now(instance).await.expect("backup now"));
    }
    // mq_d is created while the broker is down: the outbox publishes it later.
    tokio::task::block_in_place(|| s.broker.stop());
    jobs.push(s.backup_now(&instances[3]).await.expect("backup d"));
    tokio::task::block_in_place(|| s.broker.restart()).expect("start RabbitMQ again");
    lock.batch_execute("COMMIT").await.expect("release lock");
    for job in &jobs {
        s.wait_completed(&job.name).await.expect("job completes");
    }
    for instance in &instances {
        assert_one_job_one_point(&mut s, instance).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_and_a_schedule_slot_survive_a_coordinator_restart_and_the_slot_runs_once() {
    let mut s = Scenario::start(&["co_a", "co_b"], 1, 1, None)
        .await
        .expect("start servers");
    let a = s.instances[0].1.clone();
    let b = s.instances[1].1.clone();
    // co_sched follows a policy due one to two minutes from now.
    fixtures::pgbench(&s.source, "co_sched", 1)
        .await
        .expect("pgbench fixture");
    let due = Utc::now() + chrono::Duration::minutes(2);
    s.api
        .policies
        .create_policy(CreatePolicyRequest {
            parent: "vaults/f".into(),
            policy_id: "soon".into(),
            policy: Some(Policy {
                schedule: Some(Schedule {
                    weekdays: (1..=7).collect(),
                    time_of_day: format!("{:02}:{:02}", due.hour(), due.minute()),
                    time_zone: "UTC".into(),
                }),
                retention_rules: vec![RetentionRule {
                    kind: RetentionRuleKind::Default as i32,
                    standard_duration: "P7D".into(),
                    archive_duration: String::new(),
                }],
                ..Default::default()
            }),
        })
        .await
        .expect("create policy");
    let configured = s
        .api
        .instances
        .configure_backup(ConfigureBackupRequest {
            parent: "vaults/f".into(),
            policy: "vaults/f/policies/soon".into(),
            rows: vec![ConfigureBackupRow {
                server: "servers/source".into(),
                database: "co_sched".into(),
                secret: "secrets/source-admin".into(),
            }],
            default_secret: String::new(),
            assign_missing_permissions: true,
            all_databases_of: String::new(),
            role_passwords: false,
        })
        .await
        .expect("configure")
        .into_inner()
        .results
        .remove(0);
    let scheduled = configured.backup_instance.expect("configured").name;

    // co_a in flight, co_b queued, then the slot fires.
    let lock = s.hold_table_lock("co_a").await.expect("lock a table");
    let job_a = s.backup_now(&a).await.expect("backup a");
    s.wait_in_progress(&job_a.name).await.expect("a runs");
    s.wait_for_blocked_backup("co_a")
        .await
        .expect("a in its dump");
    let job_b = s.backup_now(&b).await.expect("backup b");
    s.cluster.set_clock_offset(180).expect("move the clock");
    let deadline = Instant::now() + JOB_TIMEOUT;
    while s.jobs_of(&scheduled).await.expect("list").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the slot never fired\n{}",
            s.cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    tokio::task::block_in_place(|| s.cluster.restart_coordinator()).expect("restart coordinator");
    s.api = s.cluster.api().await.expect("reconnect");
    lock.batch_execute("COMMIT").await.expect("release lock");
    s.wait_completed(&job_a.name).await.expect("a completes");
    s.wait_completed(&job_b.name).await.expect("b completes");
    let slot_jobs = s.jobs_of(&scheduled).await.expect("list");
    s.wait_completed(&slot_jobs[0].name)
        .await
        .expect("the slot's backup completes");
    // The restarted coordinator leads the scheduler again (its log file is
    // shared with the first run: two "now the leader" lines), and its first
    // passes over the still-due slot happened while the jobs above ran.
    let deadline = Instant::now() + JOB_TIMEOUT;
    while s
        .cluster
        .coordinator
        .log_text()
        .lines()
        .filter(|l| l.contains("now the leader") && l.contains("scheduler"))
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the restarted coordinator never led the scheduler\n{}",
            s.cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for instance in [&a, &b, &scheduled] {
        assert_one_job_one_point(&mut s, instance).await;
    }
    let slot_jobs = s.jobs_of(&scheduled).await.expect("list");
    assert_eq!(
        slot_jobs[0].operation,
        Operation::ScheduledBackup as i32,
        "{slot_jobs:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_whose_azure_datastore_goes_away_mid_upload_retries_and_no_point_references_a_partial_object()
 {
    let mut s = Scenario::start(&["az_down"], 2, 1, None)
        .await
        .expect("start servers");
    let (db, instance) = s.instances[0].clone();
    let lock = s.hold_table_lock(&db).await.expect("lock a table");
    let job = s.backup_now(&instance).await.expect("backup now");
    s.wait_in_progress(&job.name).await.expect("job runs");
    s.wait_for_blocked_backup(&db)
        .await
        .expect("backup in its dump");
    // The datastore goes away; the backup then starts uploading its data.
    tokio::task::block_in_place(|| s.azurite.stop());
    lock.batch_execute("COMMIT").await.expect("release lock");
    // The outage lasts until the attempt has failed on it (a few seconds,
    // not the 30 s: what matters is that an upload met the outage,
    // and waiting for that event rather than a fixed time keeps the test
    // short and free of timing).
    let job_id = job.name.trim_start_matches("jobs/").to_string();
    let deadline = Instant::now() + JOB_TIMEOUT;
    let failed = loop {
        let log = s.cluster.coordinator.log_text();
        if let Some(line) = log
            .lines()
            .find(|l| l.contains("attempt failed") && l.contains(&job_id))
        {
            break line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no attempt failed while the datastore was down\n{}",
            s.cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        failed.contains("code=DatastoreUnavailable"),
        "an unreachable datastore is reported as unavailable: {failed}"
    );
    tokio::task::block_in_place(|| s.azurite.start_again()).expect("start Azurite again");
    let ended = s
        .api
        .wait_for_job(&job.name, JOB_TIMEOUT)
        .await
        .expect("job ends");
    let state = JobState::try_from(ended.state).unwrap_or_default();
    match state {
        JobState::Completed => {
            assert!(ended.attempt >= 2, "a retry completed it: {ended:?}");
            let points = s.points(&instance).await.expect("list points");
            assert_eq!(points.len(), 1, "{points:?}");
            s.restore_and_compare(&points[0].name, &db, "az_down_restored")
                .await
                .expect("restore matches the source");
        }
        JobState::Failed => {
            let error = ended.error.clone().expect("a failed job carries an error");
            assert!(
                error.code.starts_with("Datastore")
                    && ended.attempt == 3
                    && !error.message.is_empty()
                    && !error.recommended_action.is_empty(),
                "a clear datastore error: {error:?}"
            );
        }
        other => panic!("job ended as {other:?}: {ended:?}\n{}", s.cluster.logs()),
    }
    for point in s.points(&instance).await.expect("list points") {
        assert_manifest_objects_complete(&point)
            .await
            .expect("manifest objects complete");
    }
}
