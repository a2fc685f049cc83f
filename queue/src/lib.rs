//! The task queue between coordinator and workers.
//!
//! One trait pair, two implementations: [`memory`] (an in-process channel, for
//! `pgvault up`) and [`amqp`] (RabbitMQ via lapin, for clusters). Callers hold
//! `Arc<dyn TaskPublisher>` / `Box<dyn TaskConsumer>` and never know which.
//!
//! Messages consumers reject, or that exceed the delivery limit, go to a
//! dead-letter queue; a [`DeadLetterSource`] drains it (the coordinator
//! records each dead letter, then acks it).
//!
//! Delivery is at-least-once: a task may arrive twice, so consumers make the
//! claim (not the message) the unit of ownership and drop duplicates.

pub mod amqp;
mod dead_letter;
mod delivery;
mod error;
pub mod memory;

use std::collections::HashMap;

use async_trait::async_trait;

pub use dead_letter::{DeadLetter, DeadLetterReason, DeadLetterSource};
pub use delivery::{Acker, Delivery};
pub use error::QueueError;

/// Publishes task messages.
#[async_trait]
pub trait TaskPublisher: Send + Sync {
    /// Publishes one message and returns once it is safe: for RabbitMQ, after
    /// the broker's publisher confirm for a persistent message.
    async fn publish(&self, message_id: &str, payload: Vec<u8>) -> Result<(), QueueError>;

    /// Publishes several messages and returns once each one is safe or has
    /// failed. The default publishes them one at a time and stops at the
    /// first error; RabbitMQ sends them all, then awaits the confirms.
    async fn publish_many(&self, tasks: &[OutgoingTask]) -> BatchOutcome {
        let mut confirmed = vec![false; tasks.len()];
        for (i, task) in tasks.iter().enumerate() {
            if let Err(error) = self.publish(&task.message_id, task.payload.clone()).await {
                return BatchOutcome {
                    confirmed,
                    error: Some(error),
                };
            }
            confirmed[i] = true;
        }
        BatchOutcome {
            confirmed,
            error: None,
        }
    }

    /// Whether a published message survives a restart of this process. The
    /// in-process queue does not; its owner re-publishes queued work on start.
    fn is_durable(&self) -> bool {
        true
    }

    /// The consumers of the task queue now: one per task slot of every
    /// connected worker (RabbitMQ: the queue's consumer count; in process:
    /// the live consumers). `None` where the publisher cannot tell.
    async fn consumer_count(&self) -> Result<Option<u32>, QueueError> {
        Ok(None)
    }
}

/// One message of [`TaskPublisher::publish_many`].
#[derive(Debug, Clone)]
pub struct OutgoingTask {
    pub message_id: String,
    pub payload: Vec<u8>,
    /// Message headers (RabbitMQ: AMQP headers, e.g. the W3C
    /// `traceparent`); the in-process queue carries none.
    pub headers: HashMap<String, String>,
}

/// What [`TaskPublisher::publish_many`] achieved.
#[derive(Debug)]
pub struct BatchOutcome {
    /// One flag per message, in order: the message is safe with the broker.
    pub confirmed: Vec<bool>,
    /// The first failure, when some message was not confirmed.
    pub error: Option<QueueError>,
}

/// Receives task messages, one at a time (prefetch 1).
#[async_trait]
pub trait TaskConsumer: Send {
    /// Waits for the next delivery. Reconnects to the broker on its own; an
    /// error means the queue is closed for good.
    async fn next(&mut self) -> Result<Delivery, QueueError>;
}
