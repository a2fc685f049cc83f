//! Garbage in, with real processes (issue 6, failure test 7): bytes that are
//! no task and a task for a job that does not exist land in the dead-letter
//! queue `<queue>.dead`, the worker keeps serving (a real backup completes
//! afterwards), and malformed gRPC requests get INVALID_ARGUMENT naming the
//! field; nothing panics.

use std::time::{Duration, Instant};

use pgvault_e2e::scenario::{JOB_TIMEOUT, Scenario, assert_manifest_objects_complete};
use pgvault_proto::v1::*;
use pgvault_queue::TaskPublisher;
use pgvault_queue::amqp::AmqpQueue;
use prost::Message;

/// The queue `pgvault coordinator` and `pgvault worker` use by default.
const TASK_QUEUE: &str = "pgvault.tasks";

fn assert_invalid(result: Result<impl std::fmt::Debug, tonic::Status>, field: &str) {
    let status = result.expect_err("a malformed request is refused");
    assert_eq!(
        status.code(),
        tonic::Code::InvalidArgument,
        "{field}: {status:?}"
    );
    assert!(
        status.message().contains(field),
        "the message names {field}: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_tasks_are_dead_lettered_and_the_worker_keeps_serving() {
    let mut s = Scenario::start(&["garbage"], 1, 1, None)
        .await
        .expect("start servers");
    let queue = AmqpQueue::connect(&s.broker.url(), TASK_QUEUE)
        .await
        .expect("connect to RabbitMQ");
    let publisher = queue.publisher();
    publisher
        .publish(
            "garbage-bytes",
            b"\xff\x00 this is not a protobuf \xfe".to_vec(),
        )
        .await
        .expect("publish garbage");
    let unknown = TaskEnvelope {
        job_id: "6f1c1d52-6bd0-4a4e-9d0f-0c1b6a7e9f00".into(),
        attempt: 1,
        trace_context: Default::default(),
    };
    publisher
        .publish("unknown-job", unknown.encode_to_vec())
        .await
        .expect("publish a task for an unknown job");
    let deadline = Instant::now() + JOB_TIMEOUT;
    loop {
        let dead = queue.dead_letter_count().await.expect("count dead letters");
        if dead >= 2 {
            assert_eq!(dead, 2, "exactly the two bad messages are dead-lettered");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{dead} message(s) dead-lettered\n{}",
            s.cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let worker_log = s.cluster.workers[0].log_text();
    assert!(
        worker_log.contains("unparseable task message") && worker_log.contains("unknown job"),
        "the worker says why it dead-lettered each message:\n{worker_log}"
    );

    // The worker still serves: a real backup completes.
    let instance = s.instances[0].1.clone();
    let job = s.backup_now(&instance).await.expect("backup now");
    s.wait_completed(&job.name).await.expect("backup completes");
    let points = s.points(&instance).await.expect("list points");
    assert_eq!(points.len(), 1, "{points:?}");
    assert_manifest_objects_complete(&points[0])
        .await
        .expect("manifest objects complete");
    s.cluster.workers[0]
        .ensure_running()
        .expect("the worker is still running");
    s.cluster
        .coordinator
        .ensure_running()
        .expect("the coordinator is still running");
    assert!(
        !s.cluster.logs().contains("panicked"),
        "nothing panicked:\n{}",
        s.cluster.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_are_invalid_arguments_naming_the_field() {
    let mut s = Scenario::start(&["malformed"], 1, 0, None)
        .await
        .expect("start servers");
    let api = &mut s.api;
    assert_invalid(
        api.jobs
            .get_job(GetJobRequest {
                name: String::new(),
            })
            .await,
        "name",
    );
    assert_invalid(
        api.jobs
            .get_job(GetJobRequest {
                name: "jobs/not-a-uuid".into(),
            })
            .await,
        "name",
    );
    assert_invalid(
        api.jobs
            .cancel_job(CancelJobRequest {
                name: "vaults/f".into(),
            })
            .await,
        "name",
    );
    assert_invalid(
        api.jobs
            .list_jobs(ListJobsRequest {
                page_token: "\u{0}garbage".into(),
                ..Default::default()
            })
            .await,
        "page_token",
    );
    assert_invalid(
        api.instances
            .backup_now(BackupNowRequest {
                name: "vaults/f/backupInstances/".into(),
                rule: 0,
            })
            .await,
        "name",
    );
    assert_invalid(
        api.vaults
            .create_vault(CreateVaultRequest {
                vault_id: String::new(),
                vault: Some(Vault::default()),
            })
            .await,
        "vault_id",
    );
    assert_invalid(
        api.recovery_points
            .list_recovery_points(ListRecoveryPointsRequest {
                parent: "vaults/f/backupInstances/not a uuid".into(),
                ..Default::default()
            })
            .await,
        "parent",
    );
    // An absurd page size is capped (AIP-158), not an error: the call works.
    let page = api
        .jobs
        .list_jobs(ListJobsRequest {
            page_size: u32::MAX,
            all: true,
            ..Default::default()
        })
        .await
        .expect("a huge page size is capped")
        .into_inner();
    assert!(page.jobs.len() <= 1000, "{}", page.jobs.len());
    s.cluster
        .coordinator
        .ensure_running()
        .expect("the coordinator is still running");
    assert!(
        !s.cluster.logs().contains("panicked"),
        "{}",
        s.cluster.logs()
    );
}
