//! Dead letters through the API, with the in-process queue `pgvault up`
//! uses: messages a worker rejects are drained into the state database,
//! listed newest first with what they were (task or not, job state), recorded
//! once however often they are redelivered, and deleted one at a time; a
//! queued job whose only task message died fails with `TaskDeadLettered`
//! instead of waiting forever.

use crate::common;

use std::time::Duration;

use common::{Harness, backup_now, job_id};
use pgvault_proto::v1 as pb;
use pgvault_queue::TaskPublisher;
use pgvault_queue::memory::InProcessQueue;
use prost::Message;
use tonic::Code;

const GARBAGE: &[u8] = b"\xff\x00 this is not a protobuf \xfe";
const UNKNOWN_JOB: &str = "6f1c1d52-6bd0-4a4e-9d0f-0c1b6a7e9f00";

/// Publishes `payload` to the queue and rejects it as a worker would.
async fn dead_letter(queue: &InProcessQueue, message_id: &str, payload: Vec<u8>) {
    queue
        .publish(message_id, payload)
        .await
        .expect("publish to the in-process queue");
    let mut consumer = queue.consumer();
    consumer
        .next()
        .await
        .expect("the message is delivered")
        .reject()
        .await
        .expect("reject");
}

fn envelope(job_id: &str, attempt: u32) -> Vec<u8> {
    pb::TaskEnvelope {
        job_id: job_id.into(),
        attempt,
        trace_context: Default::default(),
        chunk_invite: false,
    }
    .encode_to_vec()
}

async fn list(h: &Harness) -> Vec<pb::DeadLetter> {
    h.jobs()
        .list_dead_letters(pb::ListDeadLettersRequest::default())
        .await
        .expect("list dead letters")
        .into_inner()
        .dead_letters
}

/// Polls until a dead letter with `message_id` is listed (the drain records
/// messages in order, so every earlier one is recorded by then too).
async fn wait_listed(h: &Harness, message_id: &str) -> Vec<pb::DeadLetter> {
    for _ in 0..200 {
        let listed = list(h).await;
        if listed.iter().any(|d| d.message_id == message_id) {
            return listed;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "dead letter {message_id} never listed; listed: {:?}",
        list(h).await
    );
}

/// Polls until the dispatcher committed the deletion of every outbox row
/// (it publishes first, then deletes in the same transaction).
async fn wait_outbox_empty(h: &Harness) {
    let db = h.cluster.connect("postgres").await.expect("connect");
    for _ in 0..200 {
        let row = db
            .query_one("SELECT count(*) FROM outbox", &[])
            .await
            .expect("count outbox rows");
        if row.get::<_, i64>(0) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("outbox rows were never deleted");
}

fn by_id<'a>(listed: &'a [pb::DeadLetter], message_id: &str) -> &'a pb::DeadLetter {
    listed
        .iter()
        .find(|d| d.message_id == message_id)
        .unwrap_or_else(|| panic!("{message_id} listed: {listed:?}"))
}

#[tokio::test]
async fn rejected_messages_are_listed_once_with_their_job_and_can_be_deleted() {
    let queue = InProcessQueue::new();
    let h = Harness::start_draining(queue.dead_letter_source()).await;
    h.fixture().await;
    let instance = h.protect("app").await;
    let job = backup_now(&h, &instance).await;
    let id = job_id(&job);
    h.publisher.wait_for(&id, 1).await;
    wait_outbox_empty(&h).await;

    dead_letter(&queue, "garbage-bytes", GARBAGE.to_vec()).await;
    dead_letter(&queue, "unknown-job", envelope(UNKNOWN_JOB, 1)).await;
    dead_letter(&queue, &format!("{id}:1"), envelope(&id, 1)).await;
    let listed = wait_listed(&h, &format!("{id}:1")).await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(queue.dead_letters().is_empty(), "the dead queue is drained");

    let garbage = by_id(&listed, "garbage-bytes");
    assert_eq!(garbage.reason, "rejected");
    assert_eq!(garbage.queue, "in-process");
    assert_eq!(garbage.job, "");
    assert_eq!(garbage.payload_size, GARBAGE.len() as u64);
    assert_eq!(garbage.preview, "\\xff\\x00 this is not a protobuf \\xfe");
    let unknown = by_id(&listed, "unknown-job");
    assert_eq!(unknown.job, format!("jobs/{UNKNOWN_JOB}"));
    assert_eq!(unknown.attempt, 1);
    assert_eq!(unknown.job_state, pb::JobState::Unspecified as i32);
    assert!(!unknown.job_failed);
    assert_eq!(
        unknown.preview, "",
        "tasks are kept as job and attempt only"
    );
    let stranded = by_id(&listed, &format!("{id}:1"));
    assert_eq!(stranded.job, job.name);
    assert_eq!(stranded.job_state, pb::JobState::Queued as i32);
    assert!(stranded.job_failed, "{stranded:?}");

    // The job whose only task message died does not hang: it failed, with
    // the code, message and fix; retrying it works.
    let failed = h
        .jobs()
        .get_job(pb::GetJobRequest {
            name: job.name.clone(),
        })
        .await
        .expect("get job")
        .into_inner();
    assert_eq!(failed.state, pb::JobState::Failed as i32);
    let error = failed.error.expect("error");
    assert_eq!(error.code, "TaskDeadLettered");
    assert!(error.message.contains("dead-lettered"), "{error:?}");
    assert!(
        error
            .message
            .contains(&format!("pgvault job retry {}", job.name)),
        "{error:?}"
    );
    assert!(
        error.recommended_action.contains("pgvault job retry"),
        "{error:?}"
    );
    let retried = h
        .jobs()
        .retry_job(pb::RetryJobRequest {
            name: job.name.clone(),
        })
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(retried.state, pb::JobState::Queued as i32);

    // A redelivered dead letter is recorded once; a stale attempt's task
    // leaves the re-queued job alone.
    dead_letter(&queue, "garbage-bytes", GARBAGE.to_vec()).await;
    dead_letter(&queue, &format!("{id}:1-again"), envelope(&id, 1)).await;
    let listed = wait_listed(&h, &format!("{id}:1-again")).await;
    assert_eq!(listed.len(), 4, "{listed:?}");
    let stale = by_id(&listed, &format!("{id}:1-again"));
    assert_eq!(stale.job_state, pb::JobState::Queued as i32);
    assert!(!stale.job_failed, "attempt 2 is queued, not attempt 1");

    // Newest first, paged.
    let first = h
        .jobs()
        .list_dead_letters(pb::ListDeadLettersRequest {
            page_size: 3,
            page_token: String::new(),
        })
        .await
        .expect("first page")
        .into_inner();
    assert_eq!(first.dead_letters.len(), 3);
    assert_eq!(first.dead_letters[0].message_id, format!("{id}:1-again"));
    let second = h
        .jobs()
        .list_dead_letters(pb::ListDeadLettersRequest {
            page_size: 3,
            page_token: first.next_page_token.clone(),
        })
        .await
        .expect("second page")
        .into_inner();
    assert_eq!(second.dead_letters.len(), 1);
    assert_eq!(second.dead_letters[0].message_id, "garbage-bytes");
    assert!(second.next_page_token.is_empty());

    // Deleted after inspection: gone from the list; deleting again is NOT_FOUND.
    let name = by_id(&listed, "garbage-bytes").name.clone();
    h.jobs()
        .delete_dead_letter(pb::DeleteDeadLetterRequest { name: name.clone() })
        .await
        .expect("delete");
    assert_eq!(list(&h).await.len(), 3);
    let status = h
        .jobs()
        .delete_dead_letter(pb::DeleteDeadLetterRequest { name })
        .await
        .expect_err("already deleted");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = h
        .jobs()
        .delete_dead_letter(pb::DeleteDeadLetterRequest {
            name: "jobs/x".into(),
        })
        .await
        .expect_err("not a dead letter name");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("name: "), "{status:?}");
    h.stop().await;
}
