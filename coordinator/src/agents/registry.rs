//! The agent streams connected to *this* coordinator: who they are, how
//! busy they are, and the sending half of each stream. The dispatcher
//! offers work through it (to the least busy instance of the agent); a
//! stream's task adds and removes its entry. Streams held by other
//! coordinators are theirs to use: the state database's `agent_instances`
//! says who is live anywhere.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use pgvault_proto::v1 as pb;
use tokio::sync::{Notify, mpsc};
use tonic::Status;
use uuid::Uuid;

/// The sending half of one instance's stream.
pub type Outbound = mpsc::Sender<Result<pb::CoordinatorMessage, Status>>;

/// One connected instance.
struct Entry {
    agent_id: String,
    /// Which of the instance's streams this is (a reconnect replaces it).
    stream: Uuid,
    sender: Outbound,
    /// Tasks it runs at once (from its hello; 0 reads as 1).
    concurrency: usize,
    /// Tasks it said it runs (last status).
    running: usize,
    /// Task offers made since its last status: a rough share of its load
    /// until it reports again.
    offered_since_status: usize,
    /// Tasks (job, attempt) offered to it (made due again elsewhere if its
    /// stream ends).
    offered_jobs: HashSet<(Uuid, u32)>,
}

impl Entry {
    fn load(&self) -> usize {
        self.running + self.offered_since_status
    }

    fn full(&self) -> bool {
        self.load() >= self.concurrency.max(1)
    }
}

/// This coordinator's live agent streams.
#[derive(Default)]
pub struct Registry {
    streams: Mutex<HashMap<Uuid, Entry>>,
    /// Wakes the dispatcher (a stream connected, a probe was written).
    wake: Notify,
}

impl Registry {
    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Entry>> {
        // A panic while holding the lock leaves plain data behind: go on.
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a stream that passed its hello (replacing an older stream of
    /// the same instance: it reconnected before that one's end was seen).
    pub fn add(
        &self,
        instance: Uuid,
        stream: Uuid,
        agent_id: &str,
        concurrency: u32,
        sender: Outbound,
    ) {
        self.streams().insert(
            instance,
            Entry {
                agent_id: agent_id.to_string(),
                stream,
                sender,
                concurrency: usize::try_from(concurrency).unwrap_or(usize::MAX),
                running: 0,
                offered_since_status: 0,
                offered_jobs: HashSet::new(),
            },
        );
        self.wake.notify_one();
    }

    /// Removes a stream that ended, unless a newer stream of the instance
    /// replaced it; returns the tasks offered to it.
    pub fn remove(&self, instance: Uuid, stream: Uuid) -> Vec<(Uuid, u32)> {
        let mut streams = self.streams();
        if streams.get(&instance).is_none_or(|e| e.stream != stream) {
            return Vec::new();
        }
        streams
            .remove(&instance)
            .map(|e| e.offered_jobs.into_iter().collect())
            .unwrap_or_default()
    }

    /// Records a status of the instance's stream `stream`: what it runs now.
    pub fn set_running(&self, instance: Uuid, stream: Uuid, running: &[Uuid]) {
        if let Some(entry) = self
            .streams()
            .get_mut(&instance)
            .filter(|e| e.stream == stream)
        {
            entry.running = running.len();
            entry.offered_since_status = 0;
            entry.offered_jobs.retain(|(job, _)| !running.contains(job));
        }
    }

    /// The agents with a stream here.
    pub fn agents(&self) -> Vec<String> {
        let mut agents: Vec<String> = self
            .streams()
            .values()
            .map(|e| e.agent_id.clone())
            .collect();
        agents.sort();
        agents.dedup();
        agents
    }

    pub fn is_empty(&self) -> bool {
        self.streams().is_empty()
    }

    /// Offers the task to the least busy instance of `agent` here (one
    /// with a free slot first). False when none could take the message.
    pub fn offer_task(&self, agent: &str, envelope: pb::TaskEnvelope) -> bool {
        let task = Uuid::parse_str(&envelope.job_id)
            .ok()
            .map(|job| (job, envelope.attempt));
        let message = pb::CoordinatorMessage {
            kind: Some(pb::coordinator_message::Kind::Task(envelope)),
        };
        let mut streams = self.streams();
        let mut candidates: Vec<(&Uuid, &mut Entry)> = streams
            .iter_mut()
            .filter(|(_, e)| e.agent_id == agent)
            .collect();
        candidates.sort_by_key(|(id, e)| (e.full(), e.load(), **id));
        for (_, entry) in candidates {
            if entry.sender.try_send(Ok(message.clone())).is_ok() {
                entry.offered_since_status += 1;
                if let Some(task) = task {
                    entry.offered_jobs.insert(task);
                }
                return true;
            }
        }
        false
    }

    /// Offers the probe to the least busy instance of `agent` here.
    pub fn offer_probe(&self, agent: &str, probe_id: Uuid) -> bool {
        let message = pb::CoordinatorMessage {
            kind: Some(pb::coordinator_message::Kind::Probe(pb::ProbeOffer {
                probe_id: probe_id.to_string(),
            })),
        };
        let mut streams = self.streams();
        let mut candidates: Vec<(&Uuid, &mut Entry)> = streams
            .iter_mut()
            .filter(|(_, e)| e.agent_id == agent)
            .collect();
        candidates.sort_by_key(|(id, e)| (e.load(), **id));
        candidates
            .into_iter()
            .any(|(_, entry)| entry.sender.try_send(Ok(message.clone())).is_ok())
    }

    /// Asks the dispatcher to look for work now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits for [`Registry::wake`].
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(job: Uuid) -> pb::TaskEnvelope {
        pb::TaskEnvelope {
            job_id: job.to_string(),
            attempt: 1,
            trace_context: Default::default(),
            chunk_invite: false,
        }
    }

    fn task_of(message: Result<pb::CoordinatorMessage, Status>) -> String {
        match message.expect("ok").kind {
            Some(pb::coordinator_message::Kind::Task(t)) => t.job_id,
            other => panic!("not a task: {other:?}"),
        }
    }

    #[test]
    fn a_task_goes_to_the_least_busy_instance_of_its_agent_only() {
        let registry = Registry::default();
        let (busy_tx, mut busy_rx) = mpsc::channel(8);
        let (idle_tx, mut idle_rx) = mpsc::channel(8);
        let (other_tx, mut other_rx) = mpsc::channel(8);
        let (busy, idle, stream) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        registry.add(busy, stream, "dc1", 2, busy_tx);
        registry.add(idle, stream, "dc1", 2, idle_tx);
        registry.add(Uuid::new_v4(), stream, "dc2", 2, other_tx);
        registry.set_running(busy, stream, &[Uuid::new_v4(), Uuid::new_v4()]);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(registry.offer_task("dc1", envelope(a)));
        assert!(registry.offer_task("dc1", envelope(b)));
        assert_eq!(task_of(idle_rx.try_recv().unwrap()), a.to_string());
        assert_eq!(task_of(idle_rx.try_recv().unwrap()), b.to_string());
        assert!(busy_rx.try_recv().is_err(), "the full instance got nothing");
        assert!(other_rx.try_recv().is_err(), "another agent got nothing");
        assert!(!registry.offer_task("dc3", envelope(a)));
        assert_eq!(registry.agents(), vec!["dc1".to_string(), "dc2".into()]);
        // Its stream ends: what it was offered is handed back.
        assert!(
            registry.remove(idle, Uuid::new_v4()).is_empty(),
            "not that stream"
        );
        let mut returned = registry.remove(idle, stream);
        returned.sort();
        let mut offered = vec![(a, 1), (b, 1)];
        offered.sort();
        assert_eq!(returned, offered);
    }

    #[test]
    fn a_reconnected_instance_keeps_its_new_stream_when_the_old_one_ends() {
        let registry = Registry::default();
        let (old_tx, _old_rx) = mpsc::channel(8);
        let (new_tx, mut new_rx) = mpsc::channel(8);
        let (instance, old, new) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        registry.add(instance, old, "dc1", 1, old_tx);
        registry.add(instance, new, "dc1", 1, new_tx);
        registry.remove(instance, old);
        assert!(registry.offer_task("dc1", envelope(Uuid::new_v4())));
        assert!(new_rx.try_recv().is_ok());
    }

    #[test]
    fn a_closed_stream_is_skipped() {
        let registry = Registry::default();
        let (closed_tx, closed_rx) = mpsc::channel(8);
        drop(closed_rx);
        let (open_tx, mut open_rx) = mpsc::channel(8);
        registry.add(Uuid::nil(), Uuid::nil(), "dc1", 1, closed_tx);
        registry.add(Uuid::max(), Uuid::nil(), "dc1", 1, open_tx);
        assert!(registry.offer_probe("dc1", Uuid::nil()));
        assert!(matches!(
            open_rx.try_recv().unwrap().unwrap().kind,
            Some(pb::coordinator_message::Kind::Probe(_))
        ));
    }
}
