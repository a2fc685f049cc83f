//! Jobs end to end through the coordinator: BackupNow writes a job and
//! publishes its envelope; a worker claims, heartbeats and completes it into a
//! recovery point; stale leases are fenced, and an expired one is not
//! revived by a late heartbeat; the reaper re-queues and then fails expired
//! leases; restores resolve the point and the target.

use crate::common;

use std::time::Duration;

use common::{DB_PASSWORD, Harness, backup_now, claim, job_id};
use pgvault_proto::v1 as pb;
use tonic::Code;

fn backup_result() -> pb::BackupResult {
    pb::BackupResult {
        snapshot_time: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        stored_bytes: 1234,
        raw_bytes: 5678,
        chunk_count: 3,
        manifest_sha256: "ab".repeat(32),
        server_version: "15.8".into(),
        stage_split: None,
    }
}

#[tokio::test]
async fn backup_now_claim_heartbeat_complete_and_restore() {
    let h = Harness::start().await;
    h.fixture().await;
    let instance = h.protect("app").await;
    let job = backup_now(&h, &instance).await;
    assert_eq!(job.state, pb::JobState::Queued as i32);
    assert_eq!(job.attempt, 1);
    assert_eq!(job.backup_instance, instance);
    let id = job_id(&job);
    let (message_id, envelope) = h.publisher.wait_for(&id, 1).await;
    assert_eq!(message_id, format!("{id}:1"));
    assert_eq!(envelope.attempt, 1);

    let claimed = claim(&h, &id, "host-a:1").await;
    assert!(claimed.claimed, "{}", claimed.reason);
    assert_eq!(claimed.lease_ttl_seconds, 2);
    let task = claimed.task.expect("task");
    let Some(pb::task::Kind::Backup(backup)) = task.kind else {
        panic!("backup task expected")
    };
    let source = backup.source.expect("source");
    assert_eq!(
        (source.host.as_str(), source.port, source.database.as_str()),
        ("127.0.0.1", u32::from(h.cluster.port()), "app")
    );
    assert_eq!(
        (
            source.user.as_str(),
            source.password.as_str(),
            source.ssl_mode.as_str()
        ),
        ("postgres", DB_PASSWORD, "disable")
    );
    let instance_uuid = instance.rsplit('/').next().unwrap();
    assert!(
        backup.prefix.starts_with(&format!("v/{instance_uuid}/")),
        "{}",
        backup.prefix
    );
    assert!(backup.datastore_url.starts_with("file://"));

    // A duplicate delivery of a live, claimed job is refused with a reason.
    let dup = claim(&h, &id, "host-b:2").await;
    assert!(!dup.claimed);
    assert!(
        dup.reason.contains("leased to worker host-a:1"),
        "{}",
        dup.reason
    );

    let token = claimed.lease_token.clone();
    let beat = h
        .workers()
        .heartbeat(pb::HeartbeatRequest {
            tables: Vec::new(),
            job_id: id.clone(),
            lease_token: token.clone(),
            progress: Some(pb::Progress {
                bytes_done: 10,
                chunks_done: 1,
                chunks_total: 3,
                phase: "copying".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("heartbeat")
        .into_inner();
    assert!(!beat.cancel_requested);
    let running = h
        .jobs()
        .get_job(pb::GetJobRequest {
            name: job.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(running.state, pb::JobState::InProgress as i32);
    assert_eq!(running.worker, "host-a:1");
    assert_eq!(running.progress.as_ref().unwrap().phase, "copying");

    let stale = h
        .workers()
        .heartbeat(pb::HeartbeatRequest {
            tables: Vec::new(),
            job_id: id.clone(),
            lease_token: uuid::Uuid::new_v4().to_string(),
            progress: None,
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition);
    assert!(
        stale.message().contains("lease was taken over"),
        "{}",
        stale.message()
    );

    h.workers()
        .complete_task(pb::CompleteTaskRequest {
            tables: Vec::new(),
            job_id: id.clone(),
            lease_token: token.clone(),
            result: Some(pb::complete_task_request::Result::Backup(backup_result())),
            progress: Some(pb::Progress {
                bytes_done: 1234,
                chunks_done: 3,
                chunks_total: 3,
                phase: "done".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("complete");
    let done = h
        .jobs()
        .get_job(pb::GetJobRequest {
            name: job.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.state, pb::JobState::Completed as i32);
    assert!(done.end_time.is_some());
    assert_eq!(done.progress.as_ref().unwrap().chunks_done, 3);

    let points = h
        .points()
        .list_recovery_points(pb::ListRecoveryPointsRequest {
            parent: instance.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .recovery_points;
    assert_eq!(points.len(), 1);
    let point = &points[0];
    assert_eq!(done.recovery_point, point.name);
    assert_eq!(point.job, job.name);
    assert_eq!(point.tier, pb::DatastoreTier::Standard as i32);
    assert_eq!(point.retention_tag, pb::RetentionRuleKind::Weekly as i32);
    // Weekly rule is P8W = 56 days after the snapshot.
    assert_eq!(
        point.expire_time.as_ref().unwrap().seconds,
        1_700_000_000 + 56 * 86_400
    );
    assert!(
        point.location.ends_with(&backup.prefix),
        "{}",
        point.location
    );
    assert_eq!(point.database, "app");
    let got = h
        .points()
        .get_recovery_point(pb::GetRecoveryPointRequest {
            name: point.name.clone(),
        })
        .await
        .unwrap();
    assert_eq!(got.into_inner().manifest_sha256, "ab".repeat(32));

    // A late duplicate claim of the completed job is dropped.
    let late = claim(&h, &id, "host-c:3").await;
    assert!(
        !late.claimed && late.reason.contains("COMPLETED"),
        "{}",
        late.reason
    );

    // Restore as a new database: target server and secret default to the instance's.
    let restore = h
        .restores()
        .restore_as_database(pb::RestoreAsDatabaseRequest {
            recovery_point: point.name.clone(),
            target_database: "app_restored".into(),
            ..Default::default()
        })
        .await
        .expect("restore")
        .into_inner();
    assert_eq!(restore.operation, pb::Operation::Restore as i32);
    assert_eq!(
        (
            restore.target_server.as_str(),
            restore.target_database.as_str()
        ),
        ("servers/pg1", "app_restored")
    );
    let rid = job_id(&restore);
    h.publisher.wait_for(&rid, 1).await;
    let claimed = claim(&h, &rid, "host-a:1").await;
    let Some(pb::task::Kind::Restore(task)) = claimed.task.and_then(|t| t.kind) else {
        panic!("restore task")
    };
    assert_eq!(task.prefix, backup.prefix);
    assert_eq!(task.manifest_sha256, "ab".repeat(32));
    assert_eq!(task.target.unwrap().database, "app_restored");

    let own = h
        .restores()
        .restore_as_database(pb::RestoreAsDatabaseRequest {
            recovery_point: point.name.clone(),
            target_database: "app".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(own.code(), Code::InvalidArgument);

    let listed = h
        .jobs()
        .list_jobs(pb::ListJobsRequest {
            vault: "vaults/v".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .jobs
            .iter()
            .map(|j| j.name.clone())
            .collect::<Vec<_>>(),
        [restore.name.clone(), job.name.clone()]
    );
    let backups_only = h
        .jobs()
        .list_jobs(pb::ListJobsRequest {
            operation: pb::Operation::OnDemandBackup as i32,
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(backups_only.jobs.len(), 1);
    assert!(backups_only.next_page_token.is_empty());
    let missing = h
        .jobs()
        .get_job(pb::GetJobRequest {
            name: format!("jobs/{}", uuid::Uuid::nil()),
        })
        .await
        .unwrap_err();
    assert_eq!(
        missing.message(),
        format!("job \"jobs/{}\" not found", uuid::Uuid::nil())
    );
    h.stop().await;
}

#[tokio::test]
async fn expired_leases_are_requeued_then_failed() {
    let h = Harness::start().await;
    h.fixture().await;
    let instance = h.protect("app").await;
    let job = backup_now(&h, &instance).await;
    let id = job_id(&job);
    h.publisher.wait_for(&id, 1).await;

    let first = claim(&h, &id, "w1").await;
    assert!(first.claimed);
    // No heartbeat: the 2 s lease expires and the reaper re-queues attempt 2.
    let (message_id, _) = h.publisher.wait_for(&id, 2).await;
    assert_eq!(message_id, format!("{id}:2"));
    let queued = h
        .jobs()
        .get_job(pb::GetJobRequest {
            name: job.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (queued.state, queued.attempt),
        (pb::JobState::Queued as i32, 2)
    );
    assert_eq!(
        queued.error.as_ref().unwrap().code,
        "SystemErrorLeaseExpired"
    );

    // The first worker is fenced off.
    let fenced = h
        .workers()
        .complete_task(pb::CompleteTaskRequest {
            tables: Vec::new(),
            job_id: id.clone(),
            lease_token: first.lease_token.clone(),
            result: Some(pb::complete_task_request::Result::Backup(backup_result())),
            progress: None,
        })
        .await
        .unwrap_err();
    assert_eq!(fenced.code(), Code::FailedPrecondition);
    assert!(
        fenced.message().contains("lease was taken over"),
        "{}",
        fenced.message()
    );

    // Second (last) attempt also goes silent: the job fails for good.
    let second = claim(&h, &id, "w2").await;
    assert!(second.claimed, "{}", second.reason);
    assert_eq!(second.task.unwrap().attempt, 2);
    let mut watch = h
        .jobs()
        .watch_job(pb::WatchJobRequest {
            name: job.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    let deadline = tokio::time::sleep(Duration::from_secs(20));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => panic!("watch did not end; last {last:?}"),
            next = watch.message() => match next.expect("watch stream") {
                Some(j) => last = Some(j),
                None => break,
            },
        }
    }
    let failed = last.expect("watched at least once");
    assert_eq!(failed.state, pb::JobState::Failed as i32);
    let error = failed.error.unwrap();
    assert_eq!(error.code, "SystemErrorLeaseExpired");
    assert!(!error.recommended_action.is_empty());
    assert!(h.publisher.envelopes().iter().all(|(_, e)| e.attempt <= 2));
    h.stop().await;
}

#[tokio::test]
async fn a_heartbeat_after_the_lease_expired_is_refused_before_the_reaper_runs() {
    // The reaper never runs here: only the lease's own expiry ends it.
    let h = Harness::start_with(|c| {
        c.lease_ttl = Duration::from_secs(1);
        c.reaper_interval = Duration::from_secs(3600);
    })
    .await;
    h.fixture().await;
    let instance = h.protect("app").await;
    let job = backup_now(&h, &instance).await;
    let id = job_id(&job);
    h.publisher.wait_for(&id, 1).await;
    let lease = claim(&h, &id, "w1").await;
    assert!(lease.claimed, "{}", lease.reason);
    let beat = |token: String| {
        let mut workers = h.workers();
        let id = id.clone();
        async move {
            workers
                .heartbeat(pb::HeartbeatRequest {
                    job_id: id,
                    lease_token: token,
                    progress: None,
                    tables: Vec::new(),
                })
                .await
        }
    };
    beat(lease.lease_token.clone())
        .await
        .expect("a live lease is extended");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let late = beat(lease.lease_token.clone())
        .await
        .expect_err("an expired lease is not revived");
    assert_eq!(late.code(), Code::FailedPrecondition);
    assert!(
        late.message().contains("expired before this heartbeat"),
        "{}",
        late.message()
    );
    h.stop().await;
}

#[tokio::test]
async fn failed_attempts_retry_then_fail_and_publishing_survives_broker_errors() {
    let h = Harness::start().await;
    h.fixture().await;
    let instance = h.protect("app").await;

    // While the broker refuses, the job waits in the outbox; it is published later.
    h.publisher
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let job = backup_now(&h, &instance).await;
    let id = job_id(&job);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(h.publisher.envelopes().is_empty());
    h.publisher
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    h.publisher.wait_for(&id, 1).await;

    let first = claim(&h, &id, "w1").await;
    let error = pb::JobError {
        code: "SystemErrorStorageUnavailable".into(),
        message: "datastore did not answer".into(),
        recommended_action: "check the datastore".into(),
    };
    h.workers()
        .fail_task(pb::FailTaskRequest {
            tables: Vec::new(),
            job_id: id.clone(),
            lease_token: first.lease_token,
            error: Some(error.clone()),
            retryable: true,
            log_tail: Vec::new(),
        })
        .await
        .expect("fail retryable");
    h.publisher.wait_for(&id, 2).await;
    let second = claim(&h, &id, "w1").await;
    assert!(second.claimed);
    h.workers()
        .fail_task(pb::FailTaskRequest {
            tables: Vec::new(),
            job_id: id.clone(),
            lease_token: second.lease_token,
            error: Some(error.clone()),
            retryable: true,
            log_tail: Vec::new(),
        })
        .await
        .expect("fail last attempt");
    let failed = h
        .jobs()
        .get_job(pb::GetJobRequest {
            name: job.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failed.state, pb::JobState::Failed as i32);
    assert_eq!(failed.error, Some(error));
    assert_eq!(failed.attempt, 2);
    h.stop().await;
}

#[tokio::test]
async fn backup_now_validates_its_input() {
    let h = Harness::start().await;
    h.fixture().await;
    let instance = h.protect("app").await;
    let err = h
        .instances()
        .backup_now(pb::BackupNowRequest {
            name: instance.clone(),
            rule: pb::RetentionRuleKind::Yearly as i32,
            workers: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("no YEARLY retention rule"),
        "{}",
        err.message()
    );
    let unknown = format!("vaults/v/backupInstances/{}", uuid::Uuid::new_v4());
    let err = h
        .instances()
        .backup_now(pb::BackupNowRequest {
            name: unknown,
            rule: 0,
            workers: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = h
        .instances()
        .backup_now(pb::BackupNowRequest {
            name: "vaults/v".into(),
            rule: 0,
            workers: 0,
        })
        .await
        .unwrap_err();
    assert!(err.message().starts_with("name:"), "{}", err.message());
    h.stop().await;
}
