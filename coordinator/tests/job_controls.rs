//! Operating jobs against a real state database: cancel (queued jobs at
//! once, running ones through their worker), retry with a fresh attempt
//! budget, the job list's 7-day default and time filters, the backoff
//! between attempts, and the collection of failed attempts' objects.

use crate::common;

use std::time::Duration;

use common::{Harness, backup_now, claim, get, job_id};
use pgvault_proto::v1 as pb;
use tonic::Code;

async fn fail(h: &Harness, job_id: &str, lease_token: &str, code: &str, retryable: bool) {
    h.workers()
        .fail_task(pb::FailTaskRequest {
            tables: Vec::new(),
            job_id: job_id.into(),
            lease_token: lease_token.into(),
            error: Some(pb::JobError {
                code: code.into(),
                message: "it broke".into(),
                recommended_action: "fix it".into(),
            }),
            retryable,
            log_tail: Vec::new(),
        })
        .await
        .expect("fail task");
}

async fn state_db(h: &Harness) -> sqlx::PgPool {
    sqlx::PgPool::connect(&h.cluster.url("postgres"))
        .await
        .expect("connect to the state database")
}

#[tokio::test]
async fn queued_jobs_cancel_at_once_and_running_ones_once_their_worker_stops() {
    let h = Harness::start().await;
    h.fixture().await;
    let instance = h.protect("app").await;

    let queued = backup_now(&h, &instance).await;
    let cancelled = h
        .jobs()
        .cancel_job(pb::CancelJobRequest {
            name: queued.name.clone(),
        })
        .await
        .expect("cancel queued")
        .into_inner();
    assert_eq!(cancelled.state, pb::JobState::Cancelled as i32);
    assert_eq!(cancelled.error.expect("reason").code, "Cancelled");
    // Its task may still be on the queue: the claim refuses it.
    let late = claim(&h, &job_id(&queued), "w1").await;
    assert!(!late.claimed, "a cancelled job must not run");

    let running = backup_now(&h, &instance).await;
    let id = job_id(&running);
    let lease = claim(&h, &id, "w1").await;
    assert!(lease.claimed, "{}", lease.reason);
    let cancelling = h
        .jobs()
        .cancel_job(pb::CancelJobRequest {
            name: running.name.clone(),
        })
        .await
        .expect("cancel running")
        .into_inner();
    assert_eq!(cancelling.state, pb::JobState::Cancelling as i32);
    let beat = h
        .workers()
        .heartbeat(pb::HeartbeatRequest {
            tables: Vec::new(),
            job_id: id.clone(),
            lease_token: lease.lease_token.clone(),
            progress: None,
        })
        .await
        .expect("heartbeat")
        .into_inner();
    assert!(beat.cancel_requested, "the worker learns of the cancel");
    fail(&h, &id, &lease.lease_token, "Cancelled", false).await;
    assert_eq!(
        get(&h, &running.name).await.state,
        pb::JobState::Cancelled as i32
    );

    let again = h
        .jobs()
        .cancel_job(pb::CancelJobRequest {
            name: running.name.clone(),
        })
        .await
        .expect_err("already ended");
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(again.message().contains("CANCELLED"), "{}", again.message());
    let ghost = h
        .jobs()
        .cancel_job(pb::CancelJobRequest {
            name: format!("jobs/{}", uuid::Uuid::nil()),
        })
        .await
        .expect_err("unknown job");
    assert_eq!(ghost.code(), Code::NotFound);
    h.stop().await;
}

#[tokio::test]
async fn a_job_whose_worker_dies_while_cancelling_ends_cancelled() {
    let h = Harness::start().await;
    h.fixture().await;
    let instance = h.protect("app").await;
    let job = backup_now(&h, &instance).await;
    let lease = claim(&h, &job_id(&job), "w1").await;
    assert!(lease.claimed);
    h.jobs()
        .cancel_job(pb::CancelJobRequest {
            name: job.name.clone(),
        })
        .await
        .expect("cancel");
    // No heartbeat, no FailTask: the 2 s lease runs out and the reaper ends it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let current = get(&h, &job.name).await;
        if current.state == pb::JobState::Cancelled as i32 {
            break;
        }
        assert_eq!(current.state, pb::JobState::Cancelling as i32);
        assert!(tokio::time::Instant::now() < deadline, "still {current:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    h.stop().await;
}

#[tokio::test]
async fn failed_jobs_retry_as_a_new_attempt_with_a_fresh_attempt_budget() {
    let h = Harness::start().await;
    h.fixture().await;
    let instance = h.protect("app").await;
    let job = backup_now(&h, &instance).await;
    let id = job_id(&job);
    let first = claim(&h, &id, "w1").await;
    fail(&h, &id, &first.lease_token, "UserErrorDBNotFound", false).await;
    assert_eq!(get(&h, &job.name).await.state, pb::JobState::Failed as i32);

    let retried = h
        .jobs()
        .retry_job(pb::RetryJobRequest {
            name: job.name.clone(),
        })
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(
        (retried.state, retried.attempt),
        (pb::JobState::Queued as i32, 2)
    );
    assert!(retried.error.is_none() && retried.end_time.is_none());
    h.publisher.wait_for(&id, 2).await;
    let refused = h
        .jobs()
        .retry_job(pb::RetryJobRequest {
            name: job.name.clone(),
        })
        .await
        .expect_err("queued jobs are not retried");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("QUEUED"),
        "{}",
        refused.message()
    );

    // max_attempts is 2 and this is attempt 2, but the budget counts from
    // the retry: a transient failure is retried once more.
    let second = claim(&h, &id, "w2").await;
    assert!(second.claimed, "{}", second.reason);
    fail(&h, &id, &second.lease_token, "SystemErrorStorage", true).await;
    let requeued = get(&h, &job.name).await;
    assert_eq!(
        (requeued.state, requeued.attempt),
        (pb::JobState::Queued as i32, 3)
    );
    h.stop().await;
}

#[tokio::test]
async fn job_list_covers_the_last_week_unless_asked_for_more() {
    let h = Harness::start().await;
    h.fixture().await;
    let instance = h.protect("app").await;
    let old = backup_now(&h, &instance).await;
    let new = backup_now(&h, &instance).await;
    let db = state_db(&h).await;
    sqlx::query("UPDATE jobs SET create_time = now() - interval '10 days' WHERE id = $1::uuid")
        .bind(job_id(&old))
        .execute(&db)
        .await
        .expect("age a job");
    let list = |request: pb::ListJobsRequest| {
        let mut jobs = h.jobs();
        async move {
            jobs.list_jobs(request).await.map(|r| {
                r.into_inner()
                    .jobs
                    .into_iter()
                    .map(|j| j.name)
                    .collect::<Vec<_>>()
            })
        }
    };
    let ts = |days_ago: i64| {
        let at = chrono::Utc::now() - chrono::TimeDelta::days(days_ago);
        Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: 0,
        })
    };
    assert_eq!(
        list(pb::ListJobsRequest::default()).await.unwrap(),
        vec![new.name.clone()]
    );
    assert_eq!(
        list(pb::ListJobsRequest {
            all: true,
            ..Default::default()
        })
        .await
        .unwrap(),
        vec![new.name.clone(), old.name.clone()]
    );
    assert_eq!(
        list(pb::ListJobsRequest {
            created_after: ts(30),
            created_before: ts(5),
            ..Default::default()
        })
        .await
        .unwrap(),
        vec![old.name.clone()]
    );
    let backwards = list(pb::ListJobsRequest {
        created_after: ts(1),
        created_before: ts(2),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(backwards.code(), Code::InvalidArgument);
    assert!(
        backwards.message().contains("created_before"),
        "{}",
        backwards.message()
    );
    h.stop().await;
}

#[tokio::test]
async fn a_requeued_attempt_is_published_only_after_its_backoff() {
    let h = Harness::start_with(|c| c.retry_backoff = Duration::from_secs(3)).await;
    h.fixture().await;
    let instance = h.protect("app").await;
    let job = backup_now(&h, &instance).await;
    let id = job_id(&job);
    h.publisher.wait_for(&id, 1).await;
    let lease = claim(&h, &id, "w1").await;
    fail(&h, &id, &lease.lease_token, "SystemErrorStorage", true).await;
    let db = state_db(&h).await;
    let (waits,): (bool,) = sqlx::query_as(
        "SELECT o.not_before - j.update_time >= interval '3 seconds'
           FROM outbox o JOIN jobs j ON j.id = o.job_id WHERE o.job_id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&db)
    .await
    .expect("the re-queued attempt's outbox row");
    assert!(waits, "attempt 2 must wait for the 3 s backoff");
    assert!(
        h.publisher.envelopes().iter().all(|(_, e)| e.attempt == 1),
        "published before its backoff"
    );
    h.publisher.wait_for(&id, 2).await;
    h.stop().await;
}

#[tokio::test]
async fn objects_of_failed_attempts_are_collected_and_never_referenced() {
    let h = Harness::start().await;
    h.fixture().await;
    let instance = h.protect("app").await;
    let job = backup_now(&h, &instance).await;
    let id = job_id(&job);
    let lease = claim(&h, &id, "w1").await;
    let Some(pb::task::Kind::Backup(task)) = lease.task.and_then(|t| t.kind) else {
        panic!("a backup task");
    };
    // What a worker had written when the attempt failed.
    let root = h.datastore_dir.path().join(&task.prefix);
    std::fs::create_dir_all(root.join("data/16384")).unwrap();
    std::fs::write(root.join("schema.dump"), b"partial").unwrap();
    std::fs::write(root.join("data/16384/0.zst"), b"partial").unwrap();
    fail(&h, &id, &lease.lease_token, "SystemErrorStorage", false).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while root.join("schema.dump").exists() || root.join("data/16384/0.zst").exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "objects of the failed attempt still in {}",
            root.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let db = state_db(&h).await;
    let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM attempt_garbage")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(left, 0, "collected prefixes are forgotten");
    let (points,): (i64,) = sqlx::query_as("SELECT count(*) FROM recovery_points")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(points, 0);
    h.stop().await;
}
