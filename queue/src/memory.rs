//! In-process queue for the all-in-one `pgvault up`: an unbounded MPMC channel.
//!
//! Messages live in memory only ([`TaskPublisher::is_durable`] is false); the
//! coordinator's outbox and reaper re-publish queued work after a restart.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::{Acker, Delivery, QueueError, TaskConsumer, TaskPublisher};

/// A message the in-process queue holds.
#[derive(Clone)]
struct Message {
    payload: Vec<u8>,
    redelivered: bool,
}

/// The queue: clone it freely; publishers and consumers share one channel.
#[derive(Clone)]
pub struct InProcessQueue {
    sender: async_channel::Sender<Message>,
    receiver: async_channel::Receiver<Message>,
    /// Rejected messages, kept for inspection (the dead-letter queue).
    dead: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Default for InProcessQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl InProcessQueue {
    pub fn new() -> Self {
        let (sender, receiver) = async_channel::unbounded();
        InProcessQueue {
            sender,
            receiver,
            dead: Arc::default(),
        }
    }

    /// A publisher handle.
    pub fn publisher(&self) -> Arc<dyn TaskPublisher> {
        Arc::new(self.clone())
    }

    /// A consumer handle; several may run at once.
    pub fn consumer(&self) -> Box<dyn TaskConsumer> {
        Box::new(self.clone())
    }

    /// Payloads that consumers rejected.
    pub fn dead_letters(&self) -> Vec<Vec<u8>> {
        self.dead.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.receiver.len()
    }

    pub fn is_empty(&self) -> bool {
        self.receiver.is_empty()
    }
}

#[async_trait]
impl TaskPublisher for InProcessQueue {
    async fn publish(&self, _message_id: &str, payload: Vec<u8>) -> Result<(), QueueError> {
        self.sender
            .send(Message {
                payload,
                redelivered: false,
            })
            .await
            .map_err(|_| QueueError::Closed)
    }

    fn is_durable(&self) -> bool {
        false
    }
}

#[async_trait]
impl TaskConsumer for InProcessQueue {
    async fn next(&mut self) -> Result<Delivery, QueueError> {
        let message = self.receiver.recv().await.map_err(|_| QueueError::Closed)?;
        let acker = MemoryAcker {
            queue: self.clone(),
            message: message.clone(),
        };
        Ok(Delivery::new(
            message.payload,
            message.redelivered,
            Box::new(acker),
        ))
    }
}

struct MemoryAcker {
    queue: InProcessQueue,
    message: Message,
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(&self) -> Result<(), QueueError> {
        Ok(())
    }

    async fn reject(&self) -> Result<(), QueueError> {
        if let Ok(mut dead) = self.queue.dead.lock() {
            dead.push(self.message.payload.clone());
        }
        Ok(())
    }

    async fn requeue(&self) -> Result<(), QueueError> {
        let message = Message {
            payload: self.message.payload.clone(),
            redelivered: true,
        };
        self.queue
            .sender
            .send(message)
            .await
            .map_err(|_| QueueError::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn published_messages_reach_one_consumer_each() {
        let queue = InProcessQueue::new();
        let publisher = queue.publisher();
        let mut a = queue.consumer();
        let mut b = queue.consumer();
        publisher.publish("1", b"one".to_vec()).await.unwrap();
        publisher.publish("2", b"two".to_vec()).await.unwrap();
        let first = a.next().await.unwrap();
        let second = b.next().await.unwrap();
        let mut got = vec![first.payload.clone(), second.payload.clone()];
        got.sort();
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
        first.ack().await.unwrap();
        second.ack().await.unwrap();
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn requeued_message_comes_back_marked_redelivered() {
        let queue = InProcessQueue::new();
        queue.publisher().publish("1", b"x".to_vec()).await.unwrap();
        let mut consumer = queue.consumer();
        consumer.next().await.unwrap().requeue().await.unwrap();
        let again = consumer.next().await.unwrap();
        assert!(again.redelivered);
        assert_eq!(again.payload, b"x");
    }

    #[tokio::test]
    async fn rejected_message_goes_to_dead_letters() {
        let queue = InProcessQueue::new();
        queue
            .publisher()
            .publish("1", b"garbage".to_vec())
            .await
            .unwrap();
        queue
            .consumer()
            .next()
            .await
            .unwrap()
            .reject()
            .await
            .unwrap();
        assert_eq!(queue.dead_letters(), vec![b"garbage".to_vec()]);
        assert!(queue.is_empty());
    }
}
