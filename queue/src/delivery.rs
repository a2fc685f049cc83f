//! One received message and how to settle it.

use std::collections::HashMap;

use async_trait::async_trait;

use crate::QueueError;

/// Settles a delivery with the queue it came from.
#[async_trait]
pub trait Acker: Send + Sync {
    /// Done with it: remove from the queue.
    async fn ack(&self) -> Result<(), QueueError>;
    /// Cannot be processed ever (unparseable, poisoned): dead-letter it.
    async fn reject(&self) -> Result<(), QueueError>;
    /// Not now: put it back for another consumer.
    async fn requeue(&self) -> Result<(), QueueError>;
}

/// A message taken from the queue. Dropping it unsettled leaves it with the
/// broker, which redelivers it when this consumer goes away.
pub struct Delivery {
    /// The encoded task envelope.
    pub payload: Vec<u8>,
    /// True when the broker delivered this message before.
    pub redelivered: bool,
    /// The message's string headers (RabbitMQ), e.g. `traceparent`.
    pub headers: HashMap<String, String>,
    acker: Box<dyn Acker>,
}

impl Delivery {
    pub fn new(payload: Vec<u8>, redelivered: bool, acker: Box<dyn Acker>) -> Self {
        Delivery {
            payload,
            redelivered,
            headers: HashMap::new(),
            acker,
        }
    }

    /// The same delivery with these headers.
    pub fn with_headers(mut self, headers: HashMap<String, String>) -> Self {
        self.headers = headers;
        self
    }

    pub async fn ack(self) -> Result<(), QueueError> {
        self.acker.ack().await
    }

    pub async fn reject(self) -> Result<(), QueueError> {
        self.acker.reject().await
    }

    pub async fn requeue(self) -> Result<(), QueueError> {
        self.acker.requeue().await
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("bytes", &self.payload.len())
            .field("redelivered", &self.redelivered)
            .finish()
    }
}
