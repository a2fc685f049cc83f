//! RabbitMQ implementation of the task queue (lapin).
//!
//! Tasks go to one durable quorum queue with publisher confirms and
//! persistent messages. Consumers use manual acks and prefetch 1. Messages
//! that are rejected, or redelivered more than [`DELIVERY_LIMIT`] times, are
//! dead-lettered to `<queue>.dead`, which an [`AmqpDeadLetterSource`] drains
//! (reading why each died from RabbitMQ's `x-death` headers). All sides
//! reconnect after a broker restart; the coordinator's outbox re-publishes
//! anything unconfirmed.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;

use crate::{
    Acker, BatchOutcome, DeadLetter, DeadLetterReason, DeadLetterSource, Delivery, OutgoingTask,
    QueueError, TaskConsumer, TaskPublisher,
};

/// Deliveries of one message before RabbitMQ dead-letters it.
pub const DELIVERY_LIMIT: i64 = 20;

/// Dead letters a drain holds unacked at once.
const DEAD_LETTER_PREFETCH: u16 = 16;

/// Connection settings for one task queue on one broker.
#[derive(Clone)]
pub struct AmqpQueue {
    url: String,
    queue: String,
}

impl std::fmt::Debug for AmqpQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpQueue")
            .field("url", &redact_url(&self.url))
            .field("queue", &self.queue)
            .finish()
    }
}

impl AmqpQueue {
    /// Checks that the broker is reachable and declares the queues.
    pub async fn connect(url: &str, queue: &str) -> Result<AmqpQueue, QueueError> {
        let this = AmqpQueue {
            url: url.to_string(),
            queue: queue.to_string(),
        };
        let (connection, _channel) = this.open_channel("declare").await?;
        let _ = connection.close(200, "declared").await;
        Ok(this)
    }

    /// The URL without its password, safe to print.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// A publisher with its own connection (opened lazily, reopened after errors).
    pub fn publisher(&self) -> AmqpPublisher {
        AmqpPublisher {
            queue: self.clone(),
            state: Mutex::new(None),
            inspector: Mutex::new(None),
        }
    }

    /// A consumer with its own connection and prefetch 1.
    pub fn consumer(&self, tag: &str) -> AmqpConsumer {
        AmqpConsumer {
            queue: self.clone(),
            source: self.queue.clone(),
            prefetch: 1,
            tag: tag.to_string(),
            state: None,
        }
    }

    /// Drains `<queue>.dead` with its own connection, reconnecting like
    /// [`AmqpQueue::consumer`].
    pub fn dead_letter_source(&self, tag: &str) -> AmqpDeadLetterSource {
        AmqpDeadLetterSource(AmqpConsumer {
            queue: self.clone(),
            source: self.dead_letter_queue(),
            prefetch: DEAD_LETTER_PREFETCH,
            tag: tag.to_string(),
            state: None,
        })
    }

    /// Messages waiting in the dead-letter queue.
    pub async fn dead_letter_count(&self) -> Result<u32, QueueError> {
        let (connection, channel) = self.open_channel("count").await?;
        let options = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let queue = channel
            .queue_declare(&self.dead_letter_queue(), options, FieldTable::default())
            .await?;
        let _ = connection.close(200, "done").await;
        Ok(queue.message_count())
    }

    /// Messages ready in the task queue (not yet delivered to a consumer).
    pub async fn message_count(&self) -> Result<u32, QueueError> {
        let (connection, channel) = self.open_channel("count").await?;
        let options = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let queue = channel
            .queue_declare(&self.queue, options, FieldTable::default())
            .await?;
        let _ = connection.close(200, "done").await;
        Ok(queue.message_count())
    }

    /// Consumers of the task queue now: one per task slot of every
    /// connected worker (the dead-letter drain consumes the other queue).
    pub async fn consumer_count(&self) -> Result<u32, QueueError> {
        let (connection, channel) = self.open_channel("count").await?;
        let counted = self.consumers_on(&channel).await;
        let _ = connection.close(200, "done").await;
        counted
    }

    /// Consumers of the task queue, asked on an open channel.
    async fn consumers_on(&self, channel: &Channel) -> Result<u32, QueueError> {
        let options = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let queue = channel
            .queue_declare(&self.queue, options, FieldTable::default())
            .await?;
        Ok(queue.consumer_count())
    }

    fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.queue)
    }

    /// A connection named `pgvault <purpose>` (the broker lists it under
    /// that name) with one channel, the queues declared on it.
    async fn open_channel(&self, purpose: &str) -> Result<(Connection, Channel), QueueError> {
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("pgvault {purpose}").into())
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        let connection = Connection::connect(&self.url, properties)
            .await
            .map_err(|e| QueueError::Connect {
                url: self.redacted_url(),
                reason: e.to_string(),
            })?;
        let channel = connection.create_channel().await?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(&self.dead_letter_queue(), durable, FieldTable::default())
            .await?;
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(self.dead_letter_queue().into()),
        );
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
        channel.queue_declare(&self.queue, durable, args).await?;
        Ok((connection, channel))
    }
}

/// Publishes persistent messages and waits for the broker's confirm.
pub struct AmqpPublisher {
    queue: AmqpQueue,
    state: Mutex<Option<(Connection, Channel)>>,
    /// A second connection, kept open for asking the broker about the queue
    /// (every metrics scrape does), so asking neither opens a connection
    /// each time nor waits behind a publish.
    inspector: Mutex<Option<(Connection, Channel)>>,
}

impl AmqpPublisher {
    /// The confirm-mode channel, (re)opened when there is none or its
    /// connection dropped.
    async fn channel<'a>(
        &self,
        state: &'a mut Option<(Connection, Channel)>,
    ) -> Result<&'a Channel, QueueError> {
        if state.as_ref().is_none_or(|(c, _)| !c.status().connected()) {
            let (connection, channel) = self.queue.open_channel("publish").await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            *state = Some((connection, channel));
        }
        state.as_ref().map(|(_, c)| c).ok_or(QueueError::Closed)
    }
}

fn properties(message_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(message_id.into())
        .with_content_type("application/x-protobuf".into())
}

/// String headers as an AMQP field table (values as long strings).
fn header_table(headers: &HashMap<String, String>) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in headers {
        table.insert(
            key.as_str().into(),
            AMQPValue::LongString(value.as_str().into()),
        );
    }
    table
}

/// The string-valued headers of a received message; others are skipped.
fn string_headers(headers: Option<&FieldTable>) -> HashMap<String, String> {
    headers
        .map(|table| {
            table
                .inner()
                .iter()
                .filter_map(|(key, value)| Some((key.to_string(), value_text(value)?)))
                .collect()
        })
        .unwrap_or_default()
}

#[async_trait]
impl TaskPublisher for AmqpPublisher {
    async fn publish(&self, message_id: &str, payload: Vec<u8>) -> Result<(), QueueError> {
        let mut state = self.state.lock().await;
        let channel = self.channel(&mut state).await?;
        let result = async {
            let confirm = channel
                .basic_publish(
                    "",
                    &self.queue.queue,
                    BasicPublishOptions::default(),
                    &payload,
                    properties(message_id),
                )
                .await?
                .await?;
            Ok::<_, lapin::Error>(confirm)
        }
        .await;
        match result {
            Ok(Confirmation::Nack(_)) => Err(QueueError::Nacked {
                message_id: message_id.to_string(),
            }),
            Ok(_) => Ok(()),
            Err(e) => {
                // Drop the broken connection; the next publish reconnects.
                *state = None;
                Err(e.into())
            }
        }
    }

    /// Sends every message first, then awaits the confirms, so the broker
    /// confirms (and syncs) them together instead of one round trip each.
    async fn publish_many(&self, tasks: &[OutgoingTask]) -> BatchOutcome {
        let mut outcome = BatchOutcome {
            confirmed: vec![false; tasks.len()],
            error: None,
        };
        let mut state = self.state.lock().await;
        let channel = match self.channel(&mut state).await {
            Ok(channel) => channel,
            Err(error) => {
                outcome.error = Some(error);
                return outcome;
            }
        };
        let mut broken = false;
        let mut pending = Vec::with_capacity(tasks.len());
        for (i, task) in tasks.iter().enumerate() {
            let sent = channel
                .basic_publish(
                    "",
                    &self.queue.queue,
                    BasicPublishOptions::default(),
                    &task.payload,
                    properties(&task.message_id).with_headers(header_table(&task.headers)),
                )
                .await;
            match sent {
                Ok(confirm) => pending.push((i, confirm)),
                Err(e) => {
                    broken = true;
                    outcome.error = Some(e.into());
                    break;
                }
            }
        }
        for (i, confirm) in pending {
            match confirm.await {
                Ok(Confirmation::Nack(_)) => {
                    outcome.error.get_or_insert(QueueError::Nacked {
                        message_id: tasks[i].message_id.clone(),
                    });
                }
                Ok(_) => outcome.confirmed[i] = true,
                Err(e) => {
                    broken = true;
                    outcome.error.get_or_insert(e.into());
                }
            }
        }
        if broken {
            // Drop the broken connection; the next publish reconnects.
            *state = None;
        }
        outcome
    }

    /// Asked on a connection of its own, never the publishing one, kept
    /// open between asks and reopened after an error.
    async fn consumer_count(&self) -> Result<Option<u32>, QueueError> {
        let mut inspector = self.inspector.lock().await;
        let open = |(connection, channel): &(Connection, Channel)| {
            connection.status().connected() && channel.status().connected()
        };
        if !inspector.as_ref().is_some_and(open) {
            // Dropping a lapin connection closes it.
            *inspector = None;
            *inspector = Some(self.queue.open_channel("inspect").await?);
        }
        let (_, channel) = inspector.as_ref().ok_or(QueueError::Closed)?;
        let counted = self.queue.consumers_on(channel).await;
        if counted.is_err() {
            *inspector = None;
        }
        counted.map(Some)
    }
}

/// Consumes with manual acks and prefetch 1, reconnecting with backoff.
pub struct AmqpConsumer {
    queue: AmqpQueue,
    /// The queue consumed: the task queue, or its dead-letter queue.
    source: String,
    prefetch: u16,
    tag: String,
    state: Option<(Connection, lapin::Consumer)>,
}

impl AmqpConsumer {
    async fn open(&self) -> Result<(Connection, lapin::Consumer), QueueError> {
        let purpose = format!("consume {} ({})", self.source, self.tag);
        let (connection, channel) = self.queue.open_channel(&purpose).await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                &self.source,
                &self.tag,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((connection, consumer))
    }
}

#[async_trait]
impl TaskConsumer for AmqpConsumer {
    async fn next(&mut self) -> Result<Delivery, QueueError> {
        let delivery = self.next_delivery().await?;
        let headers = string_headers(delivery.properties.headers().as_ref());
        Ok(Delivery::new(
            delivery.data,
            delivery.redelivered,
            Box::new(LapinAcker(delivery.acker)),
        )
        .with_headers(headers))
    }
}

impl AmqpConsumer {
    /// The next message of `source`, (re)connecting until there is one.
    async fn next_delivery(&mut self) -> Result<lapin::message::Delivery, QueueError> {
        let mut backoff = Duration::from_millis(500);
        loop {
            if self.state.is_none() {
                match self.open().await {
                    Ok(state) => {
                        self.state = Some(state);
                        backoff = Duration::from_millis(500);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "task queue unavailable");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(15));
                        continue;
                    }
                }
            }
            let Some((_, consumer)) = self.state.as_mut() else {
                continue;
            };
            match consumer.next().await {
                Some(Ok(delivery)) => return Ok(delivery),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "task queue connection lost; reconnecting");
                    self.state = None;
                }
                None => {
                    tracing::warn!("task queue consumer closed by broker; reconnecting");
                    self.state = None;
                }
            }
        }
    }
}

/// Drains the dead-letter queue `<queue>.dead` (see [`AmqpQueue::dead_letter_source`]).
pub struct AmqpDeadLetterSource(AmqpConsumer);

#[async_trait]
impl DeadLetterSource for AmqpDeadLetterSource {
    async fn next(&mut self) -> Result<DeadLetter, QueueError> {
        let delivery = self.0.next_delivery().await?;
        let death = Death::read(delivery.properties.headers().as_ref());
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string());
        Ok(DeadLetter {
            delivery: Delivery::new(
                delivery.data,
                delivery.redelivered,
                Box::new(LapinAcker(delivery.acker)),
            ),
            message_id,
            queue: death.queue.unwrap_or_else(|| self.0.queue.queue.clone()),
            reason: death.reason,
            delivery_count: death.delivery_count,
        })
    }
}

/// What RabbitMQ's dead-lettering headers say about a message.
#[derive(Debug, PartialEq)]
struct Death {
    reason: DeadLetterReason,
    queue: Option<String>,
    delivery_count: Option<u32>,
}

impl Death {
    /// Reads `x-first-death-reason` / `x-first-death-queue`, falling back to
    /// the first `x-death` entry, and the quorum queue's `x-delivery-count`
    /// (redeliveries before death; the first delivery is not counted) where
    /// the broker keeps it.
    fn read(headers: Option<&FieldTable>) -> Death {
        let Some(headers) = headers.map(FieldTable::inner) else {
            return Death {
                reason: DeadLetterReason::Unknown,
                queue: None,
                delivery_count: None,
            };
        };
        let first_death = headers
            .get("x-death")
            .and_then(AMQPValue::as_array)
            .and_then(|deaths| deaths.as_slice().first())
            .and_then(AMQPValue::as_field_table)
            .map(FieldTable::inner);
        let text = |key: &str, fallback: &str| {
            headers
                .get(key)
                .or_else(|| first_death.and_then(|d| d.get(fallback)))
                .and_then(value_text)
        };
        let reason = text("x-first-death-reason", "reason")
            .map(|r| DeadLetterReason::from_broker(&r))
            .unwrap_or(DeadLetterReason::Unknown);
        // RabbitMQ 3.10 drops the count when dead-lettering; over the limit
        // means exactly one delivery more than the limit this queue declares.
        let delivery_count = headers
            .get("x-delivery-count")
            .and_then(value_integer)
            .and_then(|n| u32::try_from(n).ok())
            .map(|redeliveries| redeliveries.saturating_add(1))
            .or_else(|| {
                (reason == DeadLetterReason::DeliveryLimit)
                    .then(|| u32::try_from(DELIVERY_LIMIT + 1).unwrap_or(u32::MAX))
            });
        Death {
            reason,
            queue: text("x-first-death-queue", "queue"),
            delivery_count,
        }
    }
}

fn value_text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

fn value_integer(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongLongInt(n) => Some(*n),
        _ => None,
    }
}

struct LapinAcker(lapin::acker::Acker);

#[async_trait]
impl Acker for LapinAcker {
    async fn ack(&self) -> Result<(), QueueError> {
        Ok(self.0.ack(BasicAckOptions::default()).await?)
    }

    async fn reject(&self) -> Result<(), QueueError> {
        Ok(self.0.reject(BasicRejectOptions { requeue: false }).await?)
    }

    async fn requeue(&self) -> Result<(), QueueError> {
        Ok(self
            .0
            .nack(BasicNackOptions {
                requeue: true,
                multiple: false,
            })
            .await?)
    }
}

/// `amqp://user:secret@host/vhost` → `amqp://user@host/vhost`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparseable AMQP URL>".to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{user}@{host}")
        }
        None => authority.to_string(),
    };
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_drops_the_password_only() {
        assert_eq!(
            redact_url("amqp://guest:hunter2@127.0.0.1:5672/%2f"),
            "amqp://guest@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("amqp://127.0.0.1:5672"), "amqp://127.0.0.1:5672");
        assert_eq!(redact_url("not a url"), "<unparseable AMQP URL>");
    }

    fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
        let mut table = FieldTable::default();
        for (key, value) in entries {
            table.insert((*key).into(), value.clone());
        }
        table
    }

    #[test]
    fn string_headers_survive_the_field_table_and_others_are_skipped() {
        let headers = HashMap::from([(
            "traceparent".to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string(),
        )]);
        let mut table = header_table(&headers);
        table.insert("x-count".into(), AMQPValue::LongLongInt(3));
        assert_eq!(string_headers(Some(&table)), headers);
        assert!(string_headers(None).is_empty());
    }

    #[test]
    fn death_headers_give_reason_queue_and_delivery_count() {
        let limit = table(&[
            (
                "x-first-death-reason",
                AMQPValue::LongString("delivery_limit".into()),
            ),
            (
                "x-first-death-queue",
                AMQPValue::LongString("pgvault.tasks".into()),
            ),
            ("x-delivery-count", AMQPValue::LongLongInt(20)),
        ]);
        assert_eq!(
            Death::read(Some(&limit)),
            Death {
                reason: DeadLetterReason::DeliveryLimit,
                queue: Some("pgvault.tasks".into()),
                delivery_count: Some(21),
            }
        );
        // RabbitMQ 3.10: no x-delivery-count on dead letters; the limit says it.
        let limit_only = table(&[(
            "x-first-death-reason",
            AMQPValue::LongString("delivery_limit".into()),
        )]);
        assert_eq!(
            Death::read(Some(&limit_only)).delivery_count,
            Some(DELIVERY_LIMIT as u32 + 1)
        );
        // Older brokers: only the x-death array.
        let entry = table(&[
            ("reason", AMQPValue::LongString("rejected".into())),
            ("queue", AMQPValue::LongString("pgvault.tasks".into())),
            ("count", AMQPValue::LongLongInt(1)),
        ]);
        let rejected = table(&[(
            "x-death",
            AMQPValue::FieldArray(vec![AMQPValue::FieldTable(entry)].into()),
        )]);
        assert_eq!(
            Death::read(Some(&rejected)),
            Death {
                reason: DeadLetterReason::Rejected,
                queue: Some("pgvault.tasks".into()),
                delivery_count: None,
            }
        );
        assert_eq!(Death::read(None).reason, DeadLetterReason::Unknown);
    }

    #[tokio::test]
    async fn unreachable_broker_is_a_one_line_error_naming_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("amqp://guest:hunter2@127.0.0.1:{port}/%2f");
        let err = AmqpQueue::connect(&url, "tasks")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "cannot connect to message broker amqp://guest@127.0.0.1:{port}/%2f"
            )),
            "{err}"
        );
        assert!(!err.contains("hunter2"));
        assert!(!err.contains('\n'));
    }
}
