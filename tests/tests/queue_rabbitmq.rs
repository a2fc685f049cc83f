//! The RabbitMQ task queue against a real broker: confirmed publishes reach a
//! consumer, rejects are dead-lettered and drained with their reason,
//! durable messages (dead letters too) survive a broker restart with every
//! side reconnecting by itself, and a pipelined batch is confirmed whole and
//! delivered in order.

use std::time::Duration;

use pgvault_e2e::rabbitmq::RabbitMq;
use pgvault_queue::amqp::AmqpQueue;
use pgvault_queue::{
    DeadLetterReason, DeadLetterSource, OutgoingTask, TaskConsumer, TaskPublisher,
};

async fn next(consumer: &mut dyn TaskConsumer) -> pgvault_queue::Delivery {
    tokio::time::timeout(Duration::from_secs(60), consumer.next())
        .await
        .expect("a delivery within 60 s")
        .expect("queue open")
}

async fn next_dead(source: &mut dyn DeadLetterSource) -> pgvault_queue::DeadLetter {
    tokio::time::timeout(Duration::from_secs(60), source.next())
        .await
        .expect("a dead letter within 60 s")
        .expect("queue open")
}

#[tokio::test(flavor = "multi_thread")]
async fn rabbitmq_queue_delivers_dead_letters_and_survives_broker_restart() {
    let mut broker = tokio::task::spawn_blocking(RabbitMq::start)
        .await
        .unwrap()
        .expect("start RabbitMQ");
    let queue = AmqpQueue::connect(&broker.url(), "pgvault.test")
        .await
        .expect("connect");
    let publisher = queue.publisher();
    let mut consumer = queue.consumer("test");

    publisher.publish("m1", b"first".to_vec()).await.unwrap();
    let d = next(&mut consumer).await;
    assert_eq!(d.payload, b"first");
    d.ack().await.unwrap();

    publisher.publish("m2", b"poison".to_vec()).await.unwrap();
    next(&mut consumer).await.reject().await.unwrap();
    let mut dead = 0;
    for _ in 0..50 {
        dead = queue.dead_letter_count().await.unwrap();
        if dead == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead, 1, "rejected message must be dead-lettered");
    let mut source = queue.dead_letter_source("test-dead");
    let letter = next_dead(&mut source).await;
    assert_eq!(letter.payload(), b"poison");
    assert_eq!(letter.message_id.as_deref(), Some("m2"));
    assert_eq!(letter.reason, DeadLetterReason::Rejected);
    assert_eq!(letter.queue, "pgvault.test");
    // Left unsettled: the restart below gives it back to the dead-letter queue.
    drop(letter);

    // A confirmed message survives a broker restart; both sides reconnect.
    publisher.publish("m3", b"durable".to_vec()).await.unwrap();
    drop(consumer);
    broker = tokio::task::spawn_blocking(move || {
        broker.restart().expect("restart RabbitMQ");
        broker
    })
    .await
    .unwrap();
    let mut consumer = queue.consumer("test-2");
    let d = next(&mut consumer).await;
    assert_eq!(d.payload, b"durable");
    d.ack().await.unwrap();
    let mut published = false;
    for _ in 0..20 {
        if publisher
            .publish("m4", b"after restart".to_vec())
            .await
            .is_ok()
        {
            published = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(published, "publisher must reconnect after a broker restart");
    assert_eq!(next(&mut consumer).await.payload, b"after restart");

    // The drain reconnects too, and gets the unsettled dead letter again.
    let letter = next_dead(&mut source).await;
    assert_eq!(letter.payload(), b"poison");
    assert_eq!(letter.reason, DeadLetterReason::Rejected);
    letter.ack().await.unwrap();
    let mut dead = 1;
    for _ in 0..50 {
        dead = queue.dead_letter_count().await.unwrap();
        if dead == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead, 0, "an acked dead letter leaves the dead-letter queue");
    drop(broker);
}

#[tokio::test(flavor = "multi_thread")]
async fn rabbitmq_publish_many_confirms_a_whole_batch_and_delivers_it_in_order() {
    let broker = tokio::task::spawn_blocking(RabbitMq::start)
        .await
        .unwrap()
        .expect("start RabbitMQ");
    let queue = AmqpQueue::connect(&broker.url(), "pgvault.batch")
        .await
        .expect("connect");
    let publisher = queue.publisher();
    let tasks: Vec<OutgoingTask> = (0..300)
        .map(|i| OutgoingTask {
            message_id: format!("m{i}"),
            payload: format!("task {i}").into_bytes(),
            headers: Default::default(),
        })
        .collect();
    let outcome = publisher.publish_many(&tasks).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.confirmed, vec![true; tasks.len()]);
    let mut ready = 0;
    for _ in 0..50 {
        ready = queue.message_count().await.unwrap();
        if ready == 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, 300, "every confirmed message must be in the queue");

    let mut consumer = queue.consumer("batch");
    for i in 0..300 {
        let d = next(&mut consumer).await;
        assert_eq!(d.payload, format!("task {i}").into_bytes());
        d.ack().await.unwrap();
    }
    drop(broker);
}
