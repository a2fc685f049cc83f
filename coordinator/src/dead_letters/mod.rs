//! Dead letters: task messages the queue gave up on (a worker rejected them,
//! or the broker delivered them more often than its delivery limit), drained
//! from the dead-letter queue into the state database so that operators can
//! list them through the API instead of reading RabbitMQ.
//!
//! What is kept of a message is decided here, once: a task (an encoded
//! `TaskEnvelope`) is kept as its job id and attempt; anything else as its
//! size, SHA-256 and a 64-byte escaped preview — never the whole payload.
//!
//! # Layout
//! - this module: the domain types and what a payload is reduced to.
//! - `drain`: the background task taking dead letters from the queue,
//!   recording them (and failing a job that would otherwise hang), then acking.

pub mod drain;

use chrono::{DateTime, Utc};
use pgvault_proto::v1::TaskEnvelope;
use prost::Message;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::model::JobState;

/// Bytes of a non-task payload kept as its preview.
pub const PREVIEW_BYTES: usize = 64;

/// A recorded dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub id: Uuid,
    pub receive_time: DateTime<Utc>,
    /// The queue it died in.
    pub queue: String,
    /// Why: `rejected`, `delivery_limit`, `expired`, `maxlen` or `unknown`.
    pub reason: String,
    pub delivery_count: Option<u32>,
    pub message_id: Option<String>,
    pub payload_size: u64,
    pub payload_sha256: String,
    /// The task it carried, when the payload is one.
    pub task: Option<TaskRef>,
    /// Not a task: the escaped first bytes.
    pub preview: String,
    /// The job's state when recorded, when the job existed.
    pub job_state: Option<JobState>,
    /// Whether recording it failed the job.
    pub job_failed: bool,
}

/// The job and attempt a task message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskRef {
    pub job_id: Uuid,
    pub attempt: u32,
}

/// What is kept of a dead-lettered payload.
#[derive(Debug, Clone, PartialEq)]
pub struct PayloadSummary {
    pub size: u64,
    pub sha256: String,
    pub task: Option<TaskRef>,
    /// Empty for tasks.
    pub preview: String,
}

impl PayloadSummary {
    /// Reads a payload the way a worker does: a `TaskEnvelope` whose job id
    /// is a UUID is a task; anything else is kept as a preview only.
    pub fn of(payload: &[u8]) -> PayloadSummary {
        let task = TaskEnvelope::decode(payload).ok().and_then(|envelope| {
            Some(TaskRef {
                job_id: Uuid::parse_str(&envelope.job_id).ok()?,
                attempt: envelope.attempt,
            })
        });
        PayloadSummary {
            size: u64::try_from(payload.len()).unwrap_or(u64::MAX),
            sha256: hex::encode(Sha256::digest(payload)),
            preview: if task.is_some() {
                String::new()
            } else {
                preview(payload)
            },
            task,
        }
    }
}

/// The first [`PREVIEW_BYTES`] bytes: printable ASCII as is, everything else
/// as `\xNN` (or `\n`, `\t`, …), so the text is safe on any terminal.
pub fn preview(payload: &[u8]) -> String {
    let head = &payload[..payload.len().min(PREVIEW_BYTES)];
    let mut text = head.escape_ascii().to_string();
    if payload.len() > PREVIEW_BYTES {
        text.push('…');
    }
    text
}

/// The key under which one dead-lettered message is recorded once: a
/// redelivery of the same message (same id, same bytes) maps to it again.
pub fn dedupe_key(message_id: Option<&str>, payload_sha256: &str) -> String {
    format!("{}/{payload_sha256}", message_id.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_payload_is_kept_as_its_job_and_attempt_only() {
        let job_id = Uuid::new_v4();
        let payload = TaskEnvelope {
            job_id: job_id.to_string(),
            attempt: 3,
            trace_context: Default::default(),
            chunk_invite: false,
        }
        .encode_to_vec();
        let summary = PayloadSummary::of(&payload);
        assert_eq!(summary.task, Some(TaskRef { job_id, attempt: 3 }));
        assert_eq!(summary.preview, "");
        assert_eq!(summary.size, payload.len() as u64);
        assert_eq!(summary.sha256.len(), 64);
    }

    #[test]
    fn other_payloads_are_kept_as_an_escaped_64_byte_preview() {
        let summary = PayloadSummary::of(b"\xff\x00 not a task\n");
        assert_eq!(summary.task, None);
        assert_eq!(summary.preview, "\\xff\\x00 not a task\\n");
        let long = vec![b'a'; 1000];
        let summary = PayloadSummary::of(&long);
        assert_eq!(summary.preview, format!("{}…", "a".repeat(64)));
        // Decodes as an envelope, but its job id is no UUID: not a task.
        let bogus = TaskEnvelope {
            job_id: "not-a-uuid".into(),
            attempt: 1,
            trace_context: Default::default(),
            chunk_invite: false,
        }
        .encode_to_vec();
        assert_eq!(PayloadSummary::of(&bogus).task, None);
    }

    #[test]
    fn the_same_message_has_the_same_dedupe_key() {
        let a = PayloadSummary::of(b"x");
        let b = PayloadSummary::of(b"x");
        assert_eq!(
            dedupe_key(Some("m1"), &a.sha256),
            dedupe_key(Some("m1"), &b.sha256)
        );
        assert_ne!(
            dedupe_key(Some("m1"), &a.sha256),
            dedupe_key(Some("m2"), &a.sha256)
        );
        assert_ne!(
            dedupe_key(None, &a.sha256),
            dedupe_key(Some("m1"), &a.sha256)
        );
    }
}
