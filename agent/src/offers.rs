//! Task offers from the coordinator's stream, as the task queue the
//! worker's runner consumes unchanged ([`Offers::consumer`], one per slot),
//! and the agent's view of what it runs now ([`Offers::running`], sent in
//! every `AgentStatus`).
//!
//! An offer is taken only while a slot is free to run it: the coordinator
//! offers again (to this or another instance of the group) until the job is
//! claimed, so an offer this instance cannot start at once is declined, not
//! queued behind a long backup. A job already queued or running here is not
//! taken twice. Settling a delivery does nothing: the claim, not the offer,
//! is the unit of ownership, and an offer the runner gives back is simply
//! offered again by the coordinator.
//!
//! A job counts as running from its successful claim ([`Offers::tracking`]
//! wraps the runner's link to see it) until its slot asks for the next
//! task, which the runner does only once the task is reported or released.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pgvault_proto::v1::{
    ClaimTaskResponse, CompleteTaskRequest, FailTaskRequest, HeartbeatRequest, HeartbeatResponse,
    TaskEnvelope,
};
use pgvault_queue::{Acker, Delivery, QueueError, TaskConsumer};
use pgvault_worker::runner::{CoordinatorLink, LinkError};
use prost::Message;
use tokio::sync::{Notify, watch};

/// What became of an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intake {
    /// A free slot will take it.
    Queued,
    /// Every slot is busy: declined, the coordinator offers it again.
    Busy,
    /// The job is queued or running here already.
    Duplicate,
    /// The agent is shutting down.
    Closed,
}

/// The offers of one agent process. Cheap to clone.
#[derive(Clone)]
pub struct Offers {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Wakes a slot waiting for an offer.
    arrived: Notify,
    /// Bumped whenever the running jobs change (a status is due).
    changed: watch::Sender<()>,
}

#[derive(Default)]
struct State {
    /// Offers taken, not yet handed to a slot.
    queue: VecDeque<TaskEnvelope>,
    /// Jobs queued or handed to a slot that has not asked for more since.
    in_flight: HashSet<String>,
    /// Jobs claimed and not finished.
    running: BTreeSet<String>,
    /// Slots waiting for an offer now.
    idle: usize,
    /// Shutting down: no more offers.
    closed: bool,
}

impl Default for Offers {
    fn default() -> Self {
        Offers {
            inner: Arc::new(Inner {
                state: Mutex::default(),
                arrived: Notify::new(),
                changed: watch::Sender::new(()),
            }),
        }
    }
}

impl Offers {
    /// Takes `envelope` when a slot is free for it.
    pub fn offer(&self, envelope: TaskEnvelope) -> Intake {
        let intake = self.inner.with(|s| {
            if s.closed {
                Intake::Closed
            } else if s.in_flight.contains(&envelope.job_id) {
                Intake::Duplicate
            } else if s.queue.len() >= s.idle {
                Intake::Busy
            } else {
                s.in_flight.insert(envelope.job_id.clone());
                s.queue.push_back(envelope);
                Intake::Queued
            }
        });
        if intake == Intake::Queued {
            self.inner.arrived.notify_one();
        }
        intake
    }

    /// Stops taking offers (shutdown) and forgets the ones no slot took.
    pub fn close(&self) {
        self.inner.with(|s| {
            s.closed = true;
            for envelope in std::mem::take(&mut s.queue) {
                s.in_flight.remove(&envelope.job_id);
            }
        });
    }

    /// Job ids claimed and running now, sorted.
    pub fn running(&self) -> Vec<String> {
        self.inner.with(|s| s.running.iter().cloned().collect())
    }

    /// Changes whenever [`Offers::running`] does.
    pub fn changes(&self) -> watch::Receiver<()> {
        self.inner.changed.subscribe()
    }

    /// A task queue for one runner slot.
    pub fn consumer(&self) -> Box<dyn TaskConsumer> {
        Box::new(OfferConsumer {
            inner: self.inner.clone(),
            current: None,
        })
    }

    /// `link`, watched for successful claims (a job starts running).
    pub fn tracking(&self, link: Arc<dyn CoordinatorLink>) -> Arc<dyn CoordinatorLink> {
        Arc::new(TrackingLink {
            link,
            inner: self.inner.clone(),
        })
    }
}

impl Inner {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state)
    }

    fn started(&self, job_id: &str) {
        let started =
            self.with(|s| s.in_flight.contains(job_id) && s.running.insert(job_id.to_string()));
        if started {
            self.changed.send_replace(());
        }
    }

    fn finished(&self, job_id: &str) {
        let was_running = self.with(|s| {
            s.in_flight.remove(job_id);
            s.running.remove(job_id)
        });
        if was_running {
            self.changed.send_replace(());
        }
    }
}

/// One slot's queue.
struct OfferConsumer {
    inner: Arc<Inner>,
    /// The job last handed to this slot: finished when the slot asks again.
    current: Option<String>,
}

/// Counts a slot as free while it waits, also when its wait is dropped.
struct Waiting<'a>(&'a Inner);

impl<'a> Waiting<'a> {
    fn enter(inner: &'a Inner) -> Self {
        inner.with(|s| s.idle += 1);
        Waiting(inner)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.with(|s| s.idle -= 1);
    }
}

#[async_trait]
impl TaskConsumer for OfferConsumer {
    async fn next(&mut self) -> Result<Delivery, QueueError> {
        if let Some(job_id) = self.current.take() {
            self.inner.finished(&job_id);
        }
        let _waiting = Waiting::enter(&self.inner);
        loop {
            let arrived = self.inner.arrived.notified();
            if let Some(envelope) = self.inner.with(|s| s.queue.pop_front()) {
                self.current = Some(envelope.job_id.clone());
                return Ok(Delivery::new(
                    envelope.encode_to_vec(),
                    false,
                    Box::new(Unsettled),
                ));
            }
            arrived.await;
        }
    }
}

/// Offers are not held by anyone: settling one is a no-op.
struct Unsettled;

#[async_trait]
impl Acker for Unsettled {
    async fn ack(&self) -> Result<(), QueueError> {
        Ok(())
    }

    async fn reject(&self) -> Result<(), QueueError> {
        Ok(())
    }

    async fn requeue(&self) -> Result<(), QueueError> {
        tracing::debug!("offer given back; the coordinator offers it again");
        Ok(())
    }
}

/// The runner's link, noting successful claims.
struct TrackingLink {
    link: Arc<dyn CoordinatorLink>,
    inner: Arc<Inner>,
}

#[async_trait]
impl CoordinatorLink for TrackingLink {
    async fn claim(&self, job_id: &str, worker_id: &str) -> Result<ClaimTaskResponse, LinkError> {
        let response = self.link.claim(job_id, worker_id).await;
        if matches!(&response, Ok(r) if r.claimed) {
            self.inner.started(job_id);
        }
        response
    }

    async fn heartbeat(&self, request: HeartbeatRequest) -> Result<HeartbeatResponse, LinkError> {
        self.link.heartbeat(request).await
    }

    async fn complete(&self, request: CompleteTaskRequest) -> Result<(), LinkError> {
        self.link.complete(request).await
    }

    async fn fail(&self, request: FailTaskRequest) -> Result<(), LinkError> {
        self.link.fail(request).await
    }
}

#[cfg(test)]
#[path = "offers_tests.rs"]
mod tests;
