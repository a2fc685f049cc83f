//! An in-memory coordinator and task queue for fast tests of anything built
//! on the runner (the worker's own slots, an agent): jobs with lease tokens,
//! fencing, cancel requests, a coordinator that is unreachable for a while,
//! and one ordered log of every call and every settled delivery, so tests can
//! check claim-before-ack, heartbeat deltas and exactly-once reports.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pgvault_proto::v1::{
    ClaimTaskResponse, CompleteTaskRequest, FailTaskRequest, HeartbeatRequest, HeartbeatResponse,
    JobError, TableProgress, Task, TaskEnvelope, complete_task_request, task,
};
use pgvault_queue::{Acker, Delivery, QueueError, TaskConsumer};
use prost::Message;
use tokio::sync::Notify;

use super::link::{CoordinatorLink, LinkError};

/// One entry of the log, in the order things happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Claim {
        job_id: String,
        claimed: bool,
    },
    Heartbeat {
        job_id: String,
        tables: Vec<String>,
    },
    Complete {
        job_id: String,
    },
    Fail {
        job_id: String,
        code: String,
        retryable: bool,
    },
    /// A call refused because the coordinator is "unreachable".
    Unreachable {
        call: &'static str,
    },
    /// A call refused because its lease token is stale.
    Fenced {
        call: &'static str,
    },
    Ack,
    Reject,
    Requeue,
}

/// How a job ended, as reported.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Completed(complete_task_request::Result),
    Failed { error: JobError, retryable: bool },
}

struct Job {
    task: Task,
    lease_token: Option<String>,
    cancel_requested: bool,
    outcome: Option<Outcome>,
    /// Per-table progress as acknowledged, by name.
    tables: BTreeMap<String, TableProgress>,
    /// Log lines the failure report carried.
    log_tail: Vec<String>,
}

#[derive(Default)]
struct State {
    jobs: HashMap<String, Job>,
    log: Vec<Event>,
    /// Calls still to refuse as unreachable.
    unreachable_calls: u32,
    /// Deliveries not taken yet.
    queue: VecDeque<Vec<u8>>,
}

/// The coordinator and its queue, in memory.
pub struct MemoryCoordinator {
    state: Mutex<State>,
    /// Lease length handed out on claim (the runner heartbeats every third).
    lease_ttl_seconds: u32,
    arrived: Notify,
}

impl MemoryCoordinator {
    pub fn new(lease_ttl_seconds: u32) -> Arc<Self> {
        Arc::new(MemoryCoordinator {
            state: Mutex::default(),
            lease_ttl_seconds,
            arrived: Notify::new(),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state)
    }

    /// A queued job running `kind`, published once.
    pub fn add_job(&self, job_id: &str, kind: task::Kind) {
        self.add_task(Task {
            job_id: job_id.to_string(),
            attempt: 1,
            kind: Some(kind),
            instance_id: String::new(),
            trace_context: HashMap::new(),
        });
    }

    /// A queued job whose claim returns `task`, published once (an envelope
    /// without trace context, as an agent's offer).
    pub fn add_task(&self, task: Task) {
        let envelope = TaskEnvelope {
            job_id: task.job_id.clone(),
            attempt: task.attempt,
            trace_context: HashMap::new(),
            chunk_invite: false,
        };
        self.with(|s| {
            s.jobs.insert(
                task.job_id.clone(),
                Job {
                    task,
                    lease_token: None,
                    cancel_requested: false,
                    outcome: None,
                    tables: BTreeMap::new(),
                    log_tail: Vec::new(),
                },
            );
        });
        self.publish(envelope.encode_to_vec());
    }

    /// Puts any payload on the queue (garbage included).
    pub fn publish(&self, payload: Vec<u8>) {
        self.with(|s| s.queue.push_back(payload));
        self.arrived.notify_one();
    }

    /// Another runner takes the job over: the current lease token is stale.
    pub fn fence(&self, job_id: &str) {
        self.with(|s| {
            if let Some(job) = s.jobs.get_mut(job_id) {
                job.lease_token = Some(uuid::Uuid::new_v4().to_string());
            }
        });
    }

    /// A user asks to cancel the job; the next heartbeat says so.
    pub fn request_cancel(&self, job_id: &str) {
        self.with(|s| {
            if let Some(job) = s.jobs.get_mut(job_id) {
                job.cancel_requested = true;
            }
        });
    }

    /// The next `calls` calls fail as if the coordinator were unreachable.
    pub fn unreachable_for(&self, calls: u32) {
        self.with(|s| s.unreachable_calls = calls);
    }

    /// Everything that happened, in order.
    pub fn log(&self) -> Vec<Event> {
        self.with(|s| s.log.clone())
    }

    pub fn outcome(&self, job_id: &str) -> Option<Outcome> {
        self.with(|s| s.jobs.get(job_id).and_then(|j| j.outcome.clone()))
    }

    /// Per-table progress the coordinator holds for the job.
    pub fn tables(&self, job_id: &str) -> BTreeMap<String, TableProgress> {
        self.with(|s| {
            s.jobs
                .get(job_id)
                .map(|j| j.tables.clone())
                .unwrap_or_default()
        })
    }

    /// The log lines the job's failure report carried.
    pub fn log_tail(&self, job_id: &str) -> Vec<String> {
        self.with(|s| {
            s.jobs
                .get(job_id)
                .map(|j| j.log_tail.clone())
                .unwrap_or_default()
        })
    }

    /// A consumer of this coordinator's queue.
    pub fn consumer(self: &Arc<Self>) -> Box<dyn TaskConsumer> {
        Box::new(Consumer(self.clone()))
    }

    /// Refuses the call when the coordinator is "unreachable".
    fn reach(state: &mut State, call: &'static str) -> Result<(), LinkError> {
        if state.unreachable_calls == 0 {
            return Ok(());
        }
        state.unreachable_calls -= 1;
        state.log.push(Event::Unreachable { call });
        Err(LinkError::Unavailable(format!(
            "{call}: connection refused"
        )))
    }

    /// The job, when `token` is its lease.
    fn leased<'a>(
        state: &'a mut State,
        call: &'static str,
        job_id: &str,
        token: &str,
    ) -> Result<&'a mut Job, LinkError> {
        let held = match state.jobs.get(job_id) {
            None => return Err(LinkError::UnknownJob(format!("job {job_id} not found"))),
            Some(job) => job.lease_token.as_deref() == Some(token) && job.outcome.is_none(),
        };
        if !held {
            state.log.push(Event::Fenced { call });
            return Err(LinkError::Fenced(format!(
                "the lease of job {job_id} is held by another runner"
            )));
        }
        state
            .jobs
            .get_mut(job_id)
            .ok_or_else(|| LinkError::UnknownJob(format!("job {job_id} not found")))
    }

    fn record_tables(job: &mut Job, tables: &[TableProgress]) -> Vec<String> {
        for table in tables {
            job.tables.insert(table.name.clone(), table.clone());
        }
        tables.iter().map(|t| t.name.clone()).collect()
    }
}

#[async_trait]
impl CoordinatorLink for MemoryCoordinator {
    async fn claim(&self, job_id: &str, _worker_id: &str) -> Result<ClaimTaskResponse, LinkError> {
        let ttl = self.lease_ttl_seconds;
        self.with(|s| {
            Self::reach(s, "claim")?;
            let job = s
                .jobs
                .get_mut(job_id)
                .ok_or_else(|| LinkError::UnknownJob(format!("job {job_id} not found")))?;
            let response = if job.outcome.is_some() || job.lease_token.is_some() {
                ClaimTaskResponse {
                    claimed: false,
                    reason: "job is finished or leased".into(),
                    ..ClaimTaskResponse::default()
                }
            } else {
                let token = uuid::Uuid::new_v4().to_string();
                job.lease_token = Some(token.clone());
                ClaimTaskResponse {
                    claimed: true,
                    lease_token: token,
                    lease_ttl_seconds: ttl,
                    task: Some(job.task.clone()),
                    reason: String::new(),
                }
            };
            s.log.push(Event::Claim {
                job_id: job_id.to_string(),
                claimed: response.claimed,
            });
            Ok(response)
        })
    }

    async fn heartbeat(&self, request: HeartbeatRequest) -> Result<HeartbeatResponse, LinkError> {
        self.with(|s| {
            Self::reach(s, "heartbeat")?;
            let job = Self::leased(s, "heartbeat", &request.job_id, &request.lease_token)?;
            let tables = Self::record_tables(job, &request.tables);
            let cancel_requested = job.cancel_requested;
            s.log.push(Event::Heartbeat {
                job_id: request.job_id.clone(),
                tables,
            });
            Ok(HeartbeatResponse { cancel_requested })
        })
    }

    async fn complete(&self, request: CompleteTaskRequest) -> Result<(), LinkError> {
        self.with(|s| {
            Self::reach(s, "complete")?;
            let job = Self::leased(s, "complete", &request.job_id, &request.lease_token)?;
            Self::record_tables(job, &request.tables);
            let result = request
                .result
                .ok_or_else(|| LinkError::Refused("result: required".into()))?;
            job.outcome = Some(Outcome::Completed(result));
            s.log.push(Event::Complete {
                job_id: request.job_id.clone(),
            });
            Ok(())
        })
    }

    async fn fail(&self, request: FailTaskRequest) -> Result<(), LinkError> {
        self.with(|s| {
            Self::reach(s, "fail")?;
            let job = Self::leased(s, "fail", &request.job_id, &request.lease_token)?;
            Self::record_tables(job, &request.tables);
            let error = request
                .error
                .ok_or_else(|| LinkError::Refused("error: required".into()))?;
            s.log.push(Event::Fail {
                job_id: request.job_id.clone(),
                code: error.code.clone(),
                retryable: request.retryable,
            });
            if let Some(job) = s.jobs.get_mut(&request.job_id) {
                job.log_tail = request.log_tail;
                job.outcome = Some(Outcome::Failed {
                    error,
                    retryable: request.retryable,
                });
            }
            Ok(())
        })
    }
}

/// Takes deliveries from the in-memory queue; settling one is logged.
struct Consumer(Arc<MemoryCoordinator>);

#[async_trait]
impl TaskConsumer for Consumer {
    async fn next(&mut self) -> Result<Delivery, QueueError> {
        loop {
            let arrived = self.0.arrived.notified();
            if let Some(payload) = self.0.with(|s| s.queue.pop_front()) {
                let acker = Settle {
                    coordinator: self.0.clone(),
                    payload: payload.clone(),
                };
                return Ok(Delivery::new(payload, false, Box::new(acker)));
            }
            arrived.await;
        }
    }
}

struct Settle {
    coordinator: Arc<MemoryCoordinator>,
    payload: Vec<u8>,
}

#[async_trait]
impl Acker for Settle {
    async fn ack(&self) -> Result<(), QueueError> {
        self.coordinator.with(|s| s.log.push(Event::Ack));
        Ok(())
    }

    async fn reject(&self) -> Result<(), QueueError> {
        self.coordinator.with(|s| s.log.push(Event::Reject));
        Ok(())
    }

    async fn requeue(&self) -> Result<(), QueueError> {
        let payload = self.payload.clone();
        self.coordinator.with(|s| {
            s.log.push(Event::Requeue);
            s.queue.push_back(payload);
        });
        self.coordinator.arrived.notify_one();
        Ok(())
    }
}
