//! Offers as the runner's queue: taken only for a free slot, never twice,
//! refused once closed; a claimed job counts as running until its slot asks
//! for more; and an offered task runs through the worker's runner as is.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pgvault_engine::EngineOptions;
use pgvault_proto::v1::{DeleteTask, TaskEnvelope, task};
use pgvault_worker::runner::memory::{MemoryCoordinator, Outcome};
use pgvault_worker::runner::{EngineExecutor, WorkerOptions, run_with};
use prost::Message;
use tokio_util::sync::CancellationToken;

use super::*;

const JOB: &str = "2f9c1d7e-5b1a-4c3e-8d2f-0a1b2c3d4e5f";
const OTHER: &str = "8a7b6c5d-4e3f-4a1b-9c8d-7e6f5a4b3c2d";

fn envelope(job_id: &str) -> TaskEnvelope {
    TaskEnvelope {
        job_id: job_id.into(),
        attempt: 1,
        trace_context: HashMap::new(),
        chunk_invite: false,
    }
}

/// A slot waiting for an offer, and its delivery once one comes.
fn waiting_slot(offers: &Offers) -> tokio::task::JoinHandle<(Box<dyn TaskConsumer>, TaskEnvelope)> {
    let mut consumer = offers.consumer();
    tokio::spawn(async move {
        let delivery = consumer.next().await.expect("delivery");
        let envelope = TaskEnvelope::decode(delivery.payload.as_slice()).expect("an envelope");
        (consumer, envelope)
    })
}

async fn until_idle(offers: &Offers, slots: usize) {
    for _ in 0..100 {
        if offers.inner.with(|s| s.idle) == slots {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("slots never became idle");
}

#[tokio::test]
async fn an_offer_is_taken_only_while_a_slot_is_free() {
    let offers = Offers::default();
    assert_eq!(offers.offer(envelope(JOB)), Intake::Busy);
    let slot = waiting_slot(&offers);
    until_idle(&offers, 1).await;
    assert_eq!(offers.offer(envelope(JOB)), Intake::Queued);
    assert_eq!(offers.offer(envelope(OTHER)), Intake::Busy);
    let (_consumer, delivered) = slot.await.unwrap();
    assert_eq!(delivered, envelope(JOB));
    assert_eq!(offers.inner.with(|s| s.idle), 0);
}

#[tokio::test]
async fn a_job_queued_or_running_here_is_not_taken_twice() {
    let offers = Offers::default();
    let slots = (waiting_slot(&offers), waiting_slot(&offers));
    until_idle(&offers, 2).await;
    assert_eq!(offers.offer(envelope(JOB)), Intake::Queued);
    assert_eq!(offers.offer(envelope(JOB)), Intake::Duplicate);
    assert_eq!(offers.offer(envelope(OTHER)), Intake::Queued);
    let (a, b) = (slots.0.await.unwrap().1, slots.1.await.unwrap().1);
    let mut jobs = vec![a.job_id, b.job_id];
    jobs.sort();
    assert_eq!(jobs, vec![JOB.to_string(), OTHER.to_string()]);
    // Both are in their slots: another offer of either is still a duplicate.
    assert_eq!(offers.offer(envelope(JOB)), Intake::Duplicate);
}

#[tokio::test]
async fn a_closed_queue_refuses_offers_and_forgets_queued_ones() {
    let offers = Offers::default();
    let _slot = waiting_slot(&offers);
    until_idle(&offers, 1).await;
    offers.close();
    assert_eq!(offers.offer(envelope(JOB)), Intake::Closed);
    assert!(
        offers
            .inner
            .with(|s| s.queue.is_empty() && s.in_flight.is_empty())
    );
}

#[tokio::test]
async fn a_claimed_job_runs_until_its_slot_asks_for_more() {
    let coordinator = MemoryCoordinator::new(30);
    coordinator.add_job(JOB, task::Kind::Delete(DeleteTask { locations: vec![] }));
    let offers = Offers::default();
    let link = offers.tracking(coordinator.clone());
    let mut changes = offers.changes();
    changes.borrow_and_update();
    let slot = waiting_slot(&offers);
    until_idle(&offers, 1).await;
    offers.offer(envelope(JOB));
    let (mut consumer, _) = slot.await.unwrap();
    assert!(offers.running().is_empty(), "not claimed yet");
    assert!(link.claim(JOB, "agent").await.unwrap().claimed);
    assert_eq!(offers.running(), vec![JOB.to_string()]);
    assert!(changes.has_changed().unwrap());
    changes.borrow_and_update();
    // A claim that does not take (a duplicate) changes nothing.
    assert!(!link.claim(JOB, "agent").await.unwrap().claimed);
    assert!(!changes.has_changed().unwrap());
    // The slot asks for its next task: the job is over.
    let next = tokio::spawn(async move { consumer.next().await.map(|_| ()) });
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("a change")
        .unwrap();
    assert!(offers.running().is_empty());
    next.abort();
}

#[tokio::test]
async fn an_offered_task_runs_through_the_workers_runner() {
    let coordinator = MemoryCoordinator::new(30);
    coordinator.add_job(JOB, task::Kind::Delete(DeleteTask { locations: vec![] }));
    let offers = Offers::default();
    let options = WorkerOptions {
        coordinator_endpoint: String::new(),
        token: String::new(),
        ca_cert: None,
        worker_id: "agent-test".into(),
        concurrency: 2,
        engine: EngineOptions::default(),
    };
    let shutdown = CancellationToken::new();
    let runner = {
        let (offers, shutdown) = (offers.clone(), shutdown.clone());
        let link = offers.tracking(coordinator.clone());
        tokio::spawn(async move {
            let executor = Arc::new(EngineExecutor {
                options: EngineOptions::default(),
            });
            run_with(options, link, executor, move || offers.consumer(), shutdown).await
        })
    };
    until_idle(&offers, 2).await;
    assert_eq!(offers.offer(envelope(JOB)), Intake::Queued);
    for _ in 0..500 {
        if coordinator.outcome(JOB).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(matches!(
        coordinator.outcome(JOB),
        Some(Outcome::Completed(_))
    ));
    until_idle(&offers, 2).await;
    assert!(offers.running().is_empty());
    shutdown.cancel();
    runner.await.unwrap();
}
