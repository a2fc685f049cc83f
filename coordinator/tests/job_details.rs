//! Job details through the coordinator against real PostgreSQL: the progress
//! of each table, sent as heartbeat deltas, accumulates into `GetJob`, `WatchJob`
//! sends only what is running or changed, and every attempt is recorded
//! with its worker and how it ended (completed, lease expired, taken over).

use crate::common;

use common::{Harness, backup_now, claim, get, job_id};
use pgvault_proto::v1 as pb;
use tonic::Code;

fn table(name: &str, state: pb::TableState, done: u32, total: u32, rows: u64) -> pb::TableProgress {
    pb::TableProgress {
        name: name.into(),
        state: state as i32,
        chunks_done: done,
        chunks_total: total,
        rows,
        raw_bytes: rows * 10,
        stored_bytes: rows * 3,
        start_time: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        end_time: None,
    }
}

async fn heartbeat(h: &Harness, id: &str, token: &str, tables: Vec<pb::TableProgress>) {
    h.workers()
        .heartbeat(pb::HeartbeatRequest {
            job_id: id.into(),
            lease_token: token.into(),
            progress: None,
            tables,
        })
        .await
        .expect("heartbeat");
}

fn backup_result() -> pb::BackupResult {
    pb::BackupResult {
        snapshot_time: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        stored_bytes: 1,
        raw_bytes: 1,
        chunk_count: 4,
        manifest_sha256: "cd".repeat(32),
        server_version: "15.8".into(),
        stage_split: None,
    }
}

/// (name, state, chunks done, rows) of each table, by name.
fn shape(job: &pb::Job) -> Vec<(String, i32, u32, u64)> {
    let mut out: Vec<_> = job
        .table_progress
        .iter()
        .map(|t| (t.name.clone(), t.state, t.chunks_done, t.rows))
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn heartbeat_table_deltas_accumulate_into_get_job_and_watch_sends_running_ones() {
    use pb::TableState::{Done, Queued, Running};
    let h = Harness::start().await;
    h.fixture().await;
    let instance = h.protect("app").await;
    let job = backup_now(&h, &instance).await;
    let id = job_id(&job);
    h.publisher.wait_for(&id, 1).await;
    let claimed = claim(&h, &id, "host-a:1").await;
    assert!(claimed.claimed, "{}", claimed.reason);
    let token = claimed.lease_token;

    heartbeat(
        &h,
        &id,
        &token,
        vec![
            table("public.orders", Running, 1, 3, 100),
            table("public.items", Queued, 0, 1, 0),
        ],
    )
    .await;
    // Only the table that changed travels with the next heartbeat.
    heartbeat(
        &h,
        &id,
        &token,
        vec![table("public.orders", Running, 2, 3, 200)],
    )
    .await;
    let running = get(&h, &job.name).await;
    assert!(!running.table_progress_delta);
    assert_eq!(
        shape(&running),
        vec![
            ("public.items".into(), Queued as i32, 0, 0),
            ("public.orders".into(), Running as i32, 2, 200),
        ]
    );
    assert_eq!(running.attempts.len(), 1);
    let attempt = &running.attempts[0];
    assert_eq!((attempt.attempt, attempt.worker.as_str()), (1, "host-a:1"));
    assert_eq!(attempt.outcome, pb::AttemptOutcome::Running as i32);
    assert!(attempt.start_time.is_some() && attempt.end_time.is_none());

    // WatchJob's first message carries the running tables only, as a delta.
    let mut watch = h
        .jobs()
        .watch_job(pb::WatchJobRequest {
            name: job.name.clone(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch
        .message()
        .await
        .expect("stream")
        .expect("first message");
    assert!(first.table_progress_delta);
    assert_eq!(
        shape(&first),
        vec![("public.orders".into(), Running as i32, 2, 200)]
    );
    assert_eq!(first.attempts.len(), 1);
    drop(watch);

    // A malformed table is refused naming the field, and changes nothing.
    let bad = h
        .workers()
        .heartbeat(pb::HeartbeatRequest {
            job_id: id.clone(),
            lease_token: token.clone(),
            progress: None,
            tables: vec![table("", Running, 0, 1, 0)],
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("tables.name"), "{}", bad.message());

    // The completion carries the last changes.
    h.workers()
        .complete_task(pb::CompleteTaskRequest {
            job_id: id.clone(),
            lease_token: token.clone(),
            result: Some(pb::complete_task_request::Result::Backup(backup_result())),
            progress: None,
            tables: vec![
                table("public.orders", Done, 3, 3, 300),
                table("public.items", Done, 1, 1, 7),
            ],
        })
        .await
        .expect("complete");
    let done = get(&h, &job.name).await;
    assert_eq!(done.state, pb::JobState::Completed as i32);
    assert_eq!(
        shape(&done),
        vec![
            ("public.items".into(), Done as i32, 1, 7),
            ("public.orders".into(), Done as i32, 3, 300),
        ]
    );
    let orders = done
        .table_progress
        .iter()
        .find(|t| t.name == "public.orders")
        .unwrap();
    assert_eq!(
        (orders.chunks_total, orders.raw_bytes, orders.stored_bytes),
        (3, 3000, 900)
    );
    assert_eq!(done.attempts.len(), 1);
    assert_eq!(
        done.attempts[0].outcome,
        pb::AttemptOutcome::Completed as i32
    );
    assert!(done.attempts[0].end_time.is_some());
    h.stop().await;
}

#[tokio::test]
async fn an_expired_lease_requeued_and_claimed_again_shows_two_attempts_with_their_workers() {
    use pb::TableState::{Done, Running};
    let h = Harness::start().await;
    h.fixture().await;
    let instance = h.protect("app").await;
    let job = backup_now(&h, &instance).await;
    let id = job_id(&job);
    h.publisher.wait_for(&id, 1).await;

    let first = claim(&h, &id, "worker-one:1").await;
    assert!(first.claimed, "{}", first.reason);
    heartbeat(
        &h,
        &id,
        &first.lease_token,
        vec![table("public.a", Running, 0, 2, 5)],
    )
    .await;
    // No more heartbeats: the lease expires and the reaper re-queues attempt 2.
    h.publisher.wait_for(&id, 2).await;

    let second = claim(&h, &id, "worker-two:2").await;
    assert!(second.claimed, "{}", second.reason);
    let retried = get(&h, &job.name).await;
    assert_eq!(retried.attempt, 2);
    // The new attempt starts with a fresh set of tables.
    assert!(
        retried.table_progress.is_empty(),
        "{:?}",
        retried.table_progress
    );
    let attempts: Vec<(u32, String, i32)> = retried
        .attempts
        .iter()
        .map(|a| (a.attempt, a.worker.clone(), a.outcome))
        .collect();
    assert_eq!(
        attempts,
        vec![
            (
                1,
                "worker-one:1".into(),
                pb::AttemptOutcome::LeaseExpired as i32
            ),
            (2, "worker-two:2".into(), pb::AttemptOutcome::Running as i32),
        ]
    );
    let expired = &retried.attempts[0];
    assert!(expired.end_time.is_some());
    assert_eq!(
        expired.error.as_ref().map(|e| e.code.as_str()),
        Some("SystemErrorLeaseExpired")
    );

    heartbeat(
        &h,
        &id,
        &second.lease_token,
        vec![table("public.a", Running, 1, 2, 3)],
    )
    .await;
    h.workers()
        .complete_task(pb::CompleteTaskRequest {
            job_id: id.clone(),
            lease_token: second.lease_token.clone(),
            result: Some(pb::complete_task_request::Result::Backup(backup_result())),
            progress: None,
            tables: vec![table("public.a", Done, 2, 2, 9)],
        })
        .await
        .expect("complete");
    let done = get(&h, &job.name).await;
    assert_eq!(shape(&done), vec![("public.a".into(), Done as i32, 2, 9)]);
    let outcomes: Vec<i32> = done.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            pb::AttemptOutcome::LeaseExpired as i32,
            pb::AttemptOutcome::Completed as i32
        ]
    );

    // The job list stays a plain job query: no attempts, no tables.
    let listed = h
        .jobs()
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .expect("list")
        .into_inner();
    let row = listed
        .jobs
        .iter()
        .find(|j| j.name == job.name)
        .expect("listed");
    assert!(row.attempts.is_empty() && row.table_progress.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn a_worker_taking_over_an_expired_lease_fences_the_previous_attempt() {
    // No reaper pass: the second worker's claim itself takes the job over.
    let h = Harness::start_with(|c| c.reaper_interval = std::time::Duration::from_secs(3600)).await;
    h.fixture().await;
    let instance = h.protect("app").await;
    let job = backup_now(&h, &instance).await;
    let id = job_id(&job);
    h.publisher.wait_for(&id, 1).await;
    let first = claim(&h, &id, "worker-one:1").await;
    assert!(first.claimed, "{}", first.reason);

    // Claims are refused while the 2 s lease lives; the first one after it
    // expired takes the job over as attempt 2.
    let second = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let attempt = claim(&h, &id, "worker-two:2").await;
            if attempt.claimed {
                return attempt;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the lease expires and worker-two takes over");
    assert_eq!(second.task.as_ref().map(|t| t.attempt), Some(2));

    let taken = get(&h, &job.name).await;
    let attempts: Vec<(u32, &str, i32)> = taken
        .attempts
        .iter()
        .map(|a| (a.attempt, a.worker.as_str(), a.outcome))
        .collect();
    assert_eq!(
        attempts,
        vec![
            (1, "worker-one:1", pb::AttemptOutcome::Fenced as i32),
            (2, "worker-two:2", pb::AttemptOutcome::Running as i32),
        ]
    );
    let fenced = taken.attempts[0].error.as_ref().expect("why it ended");
    assert!(
        fenced.message.contains("worker-two:2 took the job over"),
        "{}",
        fenced.message
    );

    // The fenced worker's late heartbeat is refused and stores nothing.
    let late = h
        .workers()
        .heartbeat(pb::HeartbeatRequest {
            job_id: id.clone(),
            lease_token: first.lease_token.clone(),
            progress: None,
            tables: vec![table("public.a", pb::TableState::Running, 1, 1, 1)],
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    assert!(get(&h, &job.name).await.table_progress.is_empty());
    h.stop().await;
}
