//! In-process queue for the all-in-one `pgvault up`: an unbounded MPMC channel.
//!
//! Messages live in memory only ([`TaskPublisher::is_durable`] is false); the
//! coordinator's outbox and reaper re-publish queued work after a restart.
//! Rejected messages wait in an in-memory dead-letter queue until a
//! [`DeadLetterSource`] takes them (there is no delivery limit here).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::{
    Acker, DeadLetter, DeadLetterReason, DeadLetterSource, Delivery, QueueError, TaskConsumer,
    TaskPublisher,
};

/// The name dead letters of the in-process queue report as their queue.
pub const QUEUE_NAME: &str = "in-process";

/// A message the in-process queue holds.
#[derive(Clone)]
struct Message {
    message_id: String,
    payload: Vec<u8>,
    redelivered: bool,
}

/// Rejected messages not yet taken by a [`DeadLetterSource`].
#[derive(Default)]
struct DeadLetters {
    waiting: Mutex<VecDeque<Message>>,
    /// Wakes a waiting source when a message arrives.
    arrived: Notify,
}

impl DeadLetters {
    fn push(&self, message: Message, front: bool) {
        if let Ok(mut waiting) = self.waiting.lock() {
            if front {
                waiting.push_front(message);
            } else {
                waiting.push_back(message);
            }
        }
        self.arrived.notify_one();
    }

    fn pop(&self) -> Option<Message> {
        self.waiting.lock().ok()?.pop_front()
    }
}

/// The queue: clone it freely; publishers and consumers share one channel.
#[derive(Clone)]
pub struct InProcessQueue {
    sender: async_channel::Sender<Message>,
    receiver: async_channel::Receiver<Message>,
    /// Rejected messages (the dead-letter queue).
    dead: Arc<DeadLetters>,
    /// Consumers handed out by [`InProcessQueue::consumer`] and not dropped.
    consumers: Arc<AtomicU32>,
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
            consumers: Arc::default(),
        }
    }

    /// A publisher handle.
    pub fn publisher(&self) -> Arc<dyn TaskPublisher> {
        Arc::new(self.clone())
    }

    /// A consumer handle; several may run at once. Counted as a consumer
    /// ([`TaskPublisher::consumer_count`]) until dropped.
    pub fn consumer(&self) -> Box<dyn TaskConsumer> {
        self.consumers.fetch_add(1, Ordering::Relaxed);
        Box::new(MemoryConsumer(self.clone()))
    }

    /// A source draining the dead-letter queue; several may run at once.
    pub fn dead_letter_source(&self) -> Box<dyn DeadLetterSource> {
        Box::new(self.clone())
    }

    /// Payloads that consumers rejected and no dead-letter source took yet.
    pub fn dead_letters(&self) -> Vec<Vec<u8>> {
        self.dead
            .waiting
            .lock()
            .map(|d| d.iter().map(|m| m.payload.clone()).collect())
            .unwrap_or_default()
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
    async fn publish(&self, message_id: &str, payload: Vec<u8>) -> Result<(), QueueError> {
        self.sender
            .send(Message {
                message_id: message_id.to_string(),
                payload,
                redelivered: false,
            })
            .await
            .map_err(|_| QueueError::Closed)
    }

    fn is_durable(&self) -> bool {
        false
    }

    async fn consumer_count(&self) -> Result<Option<u32>, QueueError> {
        Ok(Some(self.consumers.load(Ordering::Relaxed)))
    }
}

/// A counted consumer of the in-process queue.
struct MemoryConsumer(InProcessQueue);

impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        self.0.consumers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl TaskConsumer for MemoryConsumer {
    async fn next(&mut self) -> Result<Delivery, QueueError> {
        TaskConsumer::next(&mut self.0).await
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
        self.queue.dead.push(self.message.clone(), false);
        Ok(())
    }

    async fn requeue(&self) -> Result<(), QueueError> {
        let message = Message {
            redelivered: true,
            ..self.message.clone()
        };
        self.queue
            .sender
            .send(message)
            .await
            .map_err(|_| QueueError::Closed)
    }
}

#[async_trait]
impl DeadLetterSource for InProcessQueue {
    async fn next(&mut self) -> Result<DeadLetter, QueueError> {
        loop {
            // A notification sent between `pop` and `notified` is kept as a
            // permit, so no arrival is missed.
            if let Some(message) = self.dead.pop() {
                let acker = DeadLetterAcker {
                    dead: self.dead.clone(),
                    message: message.clone(),
                };
                return Ok(DeadLetter {
                    delivery: Delivery::new(message.payload, true, Box::new(acker)),
                    message_id: (!message.message_id.is_empty()).then_some(message.message_id),
                    queue: QUEUE_NAME.to_string(),
                    reason: DeadLetterReason::Rejected,
                    delivery_count: None,
                });
            }
            self.dead.arrived.notified().await;
        }
    }
}

/// Settles a message taken from the in-process dead-letter queue.
struct DeadLetterAcker {
    dead: Arc<DeadLetters>,
    message: Message,
}

#[async_trait]
impl Acker for DeadLetterAcker {
    async fn ack(&self) -> Result<(), QueueError> {
        Ok(())
    }

    async fn reject(&self) -> Result<(), QueueError> {
        Ok(())
    }

    async fn requeue(&self) -> Result<(), QueueError> {
        self.dead.push(self.message.clone(), true);
        Ok(())
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
    async fn the_publisher_counts_the_consumers_alive() {
        let queue = InProcessQueue::new();
        let publisher = queue.publisher();
        assert_eq!(publisher.consumer_count().await.unwrap(), Some(0));
        let a = queue.consumer();
        let b = queue.consumer();
        assert_eq!(publisher.consumer_count().await.unwrap(), Some(2));
        drop(a);
        assert_eq!(publisher.consumer_count().await.unwrap(), Some(1));
        drop(b);
        assert_eq!(publisher.consumer_count().await.unwrap(), Some(0));
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

    #[tokio::test]
    async fn dead_letter_source_takes_rejected_messages_with_their_id() {
        let queue = InProcessQueue::new();
        let mut source = queue.dead_letter_source();
        let waiting = tokio::spawn(async move {
            let letter = source.next().await.unwrap();
            (source, letter)
        });
        queue
            .publisher()
            .publish("job:1", b"bad".to_vec())
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
        let (mut source, letter) = waiting.await.unwrap();
        assert_eq!(letter.payload(), b"bad");
        assert_eq!(letter.message_id.as_deref(), Some("job:1"));
        assert_eq!(letter.reason, DeadLetterReason::Rejected);
        assert_eq!(letter.queue, QUEUE_NAME);
        assert!(queue.dead_letters().is_empty());
        // Requeued (not recorded): it comes back; acked: it is gone.
        letter.requeue().await.unwrap();
        assert_eq!(queue.dead_letters(), vec![b"bad".to_vec()]);
        source.next().await.unwrap().ack().await.unwrap();
        assert!(queue.dead_letters().is_empty());
    }
}
