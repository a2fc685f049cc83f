//! Dead letters: messages the task queue gave up on, and the trait the
//! coordinator drains them through.
//!
//! A message is dead-lettered when a consumer rejects it (undecodable, or a
//! task for a job that does not exist) or when the broker delivered it more
//! often than its delivery limit. Both queue implementations keep such
//! messages in a dead-letter queue; a [`DeadLetterSource`] takes them out one
//! at a time, with why they died, so they can be recorded and then acked.

use std::fmt;

use async_trait::async_trait;

use crate::{Delivery, QueueError};

/// Why a message was dead-lettered, as the broker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// A consumer rejected it without requeueing.
    Rejected,
    /// It was delivered more often than the queue's delivery limit.
    DeliveryLimit,
    /// Its time to live ran out.
    Expired,
    /// The queue was over its length limit.
    MaxLength,
    /// The broker gave no reason (or one this version does not know).
    Unknown,
}

impl DeadLetterReason {
    /// The stable name stored and shown: `rejected`, `delivery_limit`, ….
    pub fn as_str(&self) -> &'static str {
        match self {
            DeadLetterReason::Rejected => "rejected",
            DeadLetterReason::DeliveryLimit => "delivery_limit",
            DeadLetterReason::Expired => "expired",
            DeadLetterReason::MaxLength => "maxlen",
            DeadLetterReason::Unknown => "unknown",
        }
    }

    /// Reads RabbitMQ's `x-first-death-reason` / `x-death[].reason` value.
    pub fn from_broker(reason: &str) -> Self {
        match reason {
            "rejected" => DeadLetterReason::Rejected,
            "delivery_limit" => DeadLetterReason::DeliveryLimit,
            "expired" => DeadLetterReason::Expired,
            "maxlen" => DeadLetterReason::MaxLength,
            _ => DeadLetterReason::Unknown,
        }
    }
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message taken from the dead-letter queue. Ack it once it is recorded;
/// dropping it unsettled (or requeueing it) leaves it for the next drain.
pub struct DeadLetter {
    /// The message as the dead-letter queue delivered it.
    pub delivery: Delivery,
    /// The publisher's message id, when it set one.
    pub message_id: Option<String>,
    /// The queue the message died in (the task queue).
    pub queue: String,
    /// Why it died.
    pub reason: DeadLetterReason,
    /// How often the task queue delivered it before it died, when known.
    pub delivery_count: Option<u32>,
}

impl DeadLetter {
    pub fn payload(&self) -> &[u8] {
        &self.delivery.payload
    }

    /// Recorded: remove it from the dead-letter queue.
    pub async fn ack(self) -> Result<(), QueueError> {
        self.delivery.ack().await
    }

    /// Not recorded: leave it for another attempt.
    pub async fn requeue(self) -> Result<(), QueueError> {
        self.delivery.requeue().await
    }
}

impl fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetter")
            .field("bytes", &self.delivery.payload.len())
            .field("message_id", &self.message_id)
            .field("queue", &self.queue)
            .field("reason", &self.reason)
            .field("delivery_count", &self.delivery_count)
            .finish()
    }
}

/// Takes messages out of a dead-letter queue.
#[async_trait]
pub trait DeadLetterSource: Send {
    /// Waits for the next dead letter. Reconnects to the broker on its own;
    /// an error means the queue is closed for good.
    async fn next(&mut self) -> Result<DeadLetter, QueueError>;
}
