//! Garbage in, with real processes (issue 6, failure test 7): bytes that are
//! no task and a task for a job that does not exist are dead-lettered to
//! `<queue>.dead`, drained by the coordinator and listed by
//! `pgvault job dead-letters` with why; a task delivered more often than the
//! delivery limit is dead-lettered too and its job fails instead of waiting
//! forever; the worker keeps serving (a real backup completes afterwards),
//! and malformed gRPC requests get INVALID_ARGUMENT naming the field; nothing
//! panics.

use std::time::{Duration, Instant};

use pgvault_e2e::pgvault::PgvaultCluster;
use pgvault_e2e::scenario::{JOB_TIMEOUT, Scenario, assert_manifest_objects_complete};
use pgvault_proto::v1::*;
use pgvault_queue::amqp::AmqpQueue;
use pgvault_queue::{TaskConsumer, TaskPublisher};
use prost::Message;
use serde_json::Value;

/// The queue `pgvault coordinator` and `pgvault worker` use by default.
const TASK_QUEUE: &str = "pgvault.tasks";

/// `pgvault --output json job dead-letters`, parsed.
fn dead_letters(cluster: &PgvaultCluster) -> Vec<Value> {
    let output = cluster
        .cli(&["--output", "json", "job", "dead-letters"], None)
        .expect("run pgvault job dead-letters");
    assert!(
        output.status.success(),
        "pgvault job dead-letters failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let page: Value = serde_json::from_slice(&output.stdout).expect("JSON output");
    page["dead_letters"]
        .as_array()
        .expect("dead_letters array")
        .clone()
}

/// Polls `job dead-letters` until one with each of `message_ids` is listed.
async fn wait_dead_letters(s: &Scenario, message_ids: &[&str]) -> Vec<Value> {
    let deadline = Instant::now() + JOB_TIMEOUT;
    loop {
        let listed = dead_letters(&s.cluster);
        if message_ids
            .iter()
            .all(|id| listed.iter().any(|d| d["message_id"] == *id))
        {
            return listed;
        }
        assert!(
            Instant::now() < deadline,
            "dead letters {message_ids:?} not all listed: {listed:?}\n{}",
            s.cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls until the coordinator has drained (and acked) the dead-letter queue.
async fn wait_dead_queue_empty(s: &Scenario, queue: &AmqpQueue) {
    let deadline = Instant::now() + JOB_TIMEOUT;
    loop {
        let waiting = queue.dead_letter_count().await.expect("count dead letters");
        if waiting == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} message(s) left in the dead-letter queue\n{}",
            s.cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn listed<'a>(dead: &'a [Value], message_id: &str) -> &'a Value {
    dead.iter()
        .find(|d| d["message_id"] == message_id)
        .unwrap_or_else(|| panic!("{message_id} not in {dead:?}"))
}

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
        chunk_invite: false,
    };
    publisher
        .publish("unknown-job", unknown.encode_to_vec())
        .await
        .expect("publish a task for an unknown job");
    // The coordinator drains both into its state database, with why.
    let dead = wait_dead_letters(&s, &["garbage-bytes", "unknown-job"]).await;
    assert_eq!(dead.len(), 2, "exactly the two bad messages: {dead:?}");
    let garbage = listed(&dead, "garbage-bytes");
    assert_eq!(garbage["reason"], "rejected", "{garbage}");
    assert_eq!(garbage["queue"], TASK_QUEUE, "{garbage}");
    assert_eq!(garbage["job"], "", "{garbage}");
    assert_eq!(
        garbage["preview"], "\\xff\\x00 this is not a protobuf \\xfe",
        "{garbage}"
    );
    let ghost = listed(&dead, "unknown-job");
    assert_eq!(ghost["reason"], "rejected", "{ghost}");
    assert_eq!(ghost["job"], format!("jobs/{}", unknown.job_id), "{ghost}");
    assert_eq!(ghost["job_state"], "JOB_STATE_UNSPECIFIED", "{ghost}");
    assert_eq!(ghost["preview"], "", "{ghost}");
    wait_dead_queue_empty(&s, &queue).await;
    let table = s
        .cluster
        .cli(&["job", "dead-letters"], None)
        .expect("run pgvault job dead-letters");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("REASON") && table.contains("rejected") && table.contains("no such job"),
        "{table}"
    );
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
async fn a_task_over_the_delivery_limit_is_dead_lettered_and_its_job_fails() {
    // No worker: the test is the only consumer, and gives the task back
    // until RabbitMQ's delivery limit dead-letters it.
    let mut s = Scenario::start(&["limit"], 1, 0, None)
        .await
        .expect("start servers");
    let queue = AmqpQueue::connect(&s.broker.url(), TASK_QUEUE)
        .await
        .expect("connect to RabbitMQ");
    let instance = s.instances[0].1.clone();
    let job = s.backup_now(&instance).await.expect("backup now");
    let job_id = job.name.trim_start_matches("jobs/").to_string();
    let message_id = format!("{job_id}:1");
    let mut consumer = queue.consumer("delivery-limit-test");
    let mut deliveries = 0;
    let dead = {
        let ids = [message_id.as_str()];
        let listed = wait_dead_letters(&s, &ids);
        tokio::pin!(listed);
        loop {
            tokio::select! {
                delivery = consumer.next() => {
                    let delivery = delivery.expect("the task is delivered");
                    deliveries += 1;
                    assert!(deliveries <= 100, "never dead-lettered after {deliveries} deliveries");
                    delivery.requeue().await.expect("requeue");
                }
                dead = &mut listed => break dead,
            }
        }
    };
    let letter = listed(&dead, &message_id);
    assert_eq!(letter["reason"], "delivery_limit", "{letter}");
    assert_eq!(letter["job"], job.name, "{letter}");
    assert_eq!(letter["attempt"], 1, "{letter}");
    assert_eq!(letter["job_state"], "QUEUED", "{letter}");
    assert_eq!(letter["job_failed"], true, "{letter}");
    assert_eq!(
        letter["delivery_count"], deliveries,
        "every delivery is counted: {letter}"
    );
    let failed = s.get_job(&job.name).await.expect("get job");
    assert_eq!(failed.state, JobState::Failed as i32, "{failed:?}");
    let error = failed.error.expect("error");
    assert_eq!(error.code, "TaskDeadLettered", "{error:?}");
    assert!(
        error.recommended_action.contains("pgvault job retry"),
        "{error:?}"
    );
    wait_dead_queue_empty(&s, &queue).await;
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
                workers: 0,
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
