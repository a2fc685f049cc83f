//! Where a completed job's time went: the split a worker sends with
//! `CompleteTask` is kept with the completing attempt and returned by
//! `GetJob`; a split with a non-finite number is refused and the job stays
//! in progress.

use crate::common;

use common::{Harness, backup_now, claim, get, job_id};
use pgvault_proto::v1 as pb;
use tonic::Code;

fn split(wall: f64) -> pb::StageSplit {
    let time = |name: &str, seconds: f64| pb::StageTime {
        name: name.into(),
        seconds,
    };
    pb::StageSplit {
        wall_seconds: wall,
        raw_bytes: 2_000_000_000,
        stored_bytes: 500_000_000,
        connections: 4,
        phases: vec![
            time("connect", 0.5),
            time("data", 9.0),
            time("final flush", 0.5),
        ],
        connection_stages: vec![
            time("copy_out_wait", 20.0),
            time("compress", 8.0),
            time("upload_wait", 8.0),
        ],
        cpu: vec![time("compress_hash", 7.5)],
        side_tasks: vec![time("schema_dump", 1.5)],
    }
}

fn complete(id: &str, token: &str, split: pb::StageSplit) -> pb::CompleteTaskRequest {
    pb::CompleteTaskRequest {
        job_id: id.into(),
        lease_token: token.into(),
        result: Some(pb::complete_task_request::Result::Backup(
            pb::BackupResult {
                snapshot_time: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
                stored_bytes: 500_000_000,
                raw_bytes: 2_000_000_000,
                chunk_count: 60,
                manifest_sha256: "ab".repeat(32),
                server_version: "15.8".into(),
                stage_split: Some(split),
            },
        )),
        progress: None,
        tables: Vec::new(),
    }
}

#[tokio::test]
async fn a_completed_backup_shows_the_split_its_worker_reported() {
    let h = Harness::start().await;
    h.fixture().await;
    let instance = h.protect("app").await;
    let job = backup_now(&h, &instance).await;
    let id = job_id(&job);
    h.publisher.wait_for(&id, 1).await;
    let claimed = claim(&h, &id, "host-a:1").await;
    assert!(claimed.claimed, "{}", claimed.reason);
    assert!(
        get(&h, &job.name).await.stage_split.is_none(),
        "nothing before completion"
    );

    let err = h
        .workers()
        .complete_task(complete(&id, &claimed.lease_token, split(f64::INFINITY)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("stage_split.wall_seconds"), "{err}");
    let running = get(&h, &job.name).await;
    assert_eq!(running.state, pb::JobState::InProgress as i32);

    h.workers()
        .complete_task(complete(&id, &claimed.lease_token, split(10.0)))
        .await
        .expect("complete");
    let done = get(&h, &job.name).await;
    assert_eq!(done.state, pb::JobState::Completed as i32);
    assert_eq!(done.stage_split, Some(split(10.0)));
}
