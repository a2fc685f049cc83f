//! Agents, the coordinator's side: processes next to servers no worker can
//! reach, which dial out to a coordinator, keep one stream open
//! (`AgentService.Connect`) and are offered on it the tasks and probes of
//! the servers bound to them. They claim and report tasks with the
//! `WorkerService` calls (claims of an agent's jobs are its token's alone:
//! `worker_api::claim`) and answer probes with `ClaimProbe`/`CompleteProbe`.
//!
//! # Layout
//! - `service`: the `AgentService` handlers; `admin`: create, get, list and
//!   delete agents; `probe_api`: claiming and answering probes.
//! - `stream`: one stream from hello (token's agent, protocol version) to
//!   its end (status → last seen and running jobs; disconnect recorded).
//! - `registry`: the streams connected to this coordinator.
//! - `dispatch`: offers due tasks (outbox rows of agents' jobs, kept until
//!   claimed and offered again) and probes down those streams.
//! - `probe`: [`AgentProbe`], the [`crate::server_probe::ServerProbe`] of
//!   servers bound to an agent.
//! - `sweep`: on the leader, jobs whose agent stayed away fail with
//!   `AgentUnavailable`; stale instance rows, outbox rows and probes go.
//!
//! Liveness lives in the state database (`agent_instances`), so every
//! coordinator answers "is the agent there?" the same way; only offers
//! need the stream, and a coordinator offers only down its own.

mod admin;
mod dispatch;
mod probe;
mod probe_api;
mod registry;
mod service;
mod stream;
mod sweep;

use std::sync::Arc;
use std::time::Duration;

use pgvault_proto::v1::agent_service_server::AgentServiceServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use probe::{ANSWER_WAIT, AgentProbe};
pub use registry::Registry;
pub use service::AgentApi;
pub use stream::{SPOKEN, refusal};
pub use sweep::{SweepSettings, sweep_once};

use crate::access::Caller;
use crate::api::ApiContext;
use crate::error::{CoordinatorError, Result};
use crate::model::{Agent, Job, JobState};
use crate::store::{Store, agent_instances, agents};

/// Settings of the agent side.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// How often instances send their status (told to them at hello).
    pub status_interval: Duration,
    /// This coordinator, as instance rows name it.
    pub coordinator: String,
}

/// What the agent side of one coordinator shares.
pub struct AgentHub {
    store: Store,
    registry: Arc<Registry>,
    settings: HubSettings,
    /// Ends every stream (cleanly) and the dispatcher at shutdown.
    cancel: CancellationToken,
}

/// The agent side of a coordinator: its streams, dispatcher and sweeper.
pub struct Agents {
    hub: Arc<AgentHub>,
}

impl Agents {
    pub fn new(store: Store, settings: HubSettings, cancel: CancellationToken) -> Self {
        Agents {
            hub: Arc::new(AgentHub {
                store,
                registry: Arc::new(Registry::default()),
                settings,
                cancel,
            }),
        }
    }

    /// The probe of servers bound to an agent.
    pub fn probe(&self) -> AgentProbe {
        AgentProbe::new(self.hub.store.clone(), self.hub.registry.clone())
    }

    /// The `AgentService` to serve.
    pub fn service(&self, ctx: Arc<ApiContext>) -> AgentServiceServer<AgentApi> {
        AgentServiceServer::new(AgentApi::new(ctx, self.hub.clone()))
    }

    /// Starts the dispatcher and the sweeper; both end with the hub's
    /// cancellation.
    pub fn spawn(&self, sweep: SweepSettings) -> Vec<JoinHandle<()>> {
        vec![
            tokio::spawn(dispatch::run(self.hub.clone())),
            tokio::spawn(sweep::run(
                self.hub.store.clone(),
                sweep,
                self.hub.cancel.clone(),
            )),
        ]
    }
}

/// The agent whose token `caller` holds; `FAILED_PRECONDITION` for any
/// other token (the calls that need it are for agents only).
pub async fn own_agent(store: &Store, caller: &Caller) -> Result<Agent> {
    let agent = if caller.is_agent() {
        agents::find_by_token(store.pool(), caller.token_id()).await?
    } else {
        None
    };
    agent.ok_or_else(|| {
        CoordinatorError::precondition(format!(
            "token \"{}\" is not an agent's token: agents call with the token pgvault agent create printed for them",
            caller.token_name()
        ))
    })
}

/// The agent a claimer's token belongs to (`None`: not an agent's token).
pub async fn claimer_agent(store: &Store, caller: &Caller) -> Result<Option<String>> {
    if !caller.is_agent() {
        return Ok(None);
    }
    Ok(Some(own_agent(store, caller).await?.id))
}

/// Why a queued job has not started: for a job of an agent with no live
/// instance, "waiting for agent dc1, last seen …"; empty otherwise.
pub async fn queued_reason(store: &Store, job: &Job) -> Result<String> {
    let (JobState::Queued, Some(agent)) = (job.state, &job.agent_id) else {
        return Ok(String::new());
    };
    let presence = agent_instances::presence(store.pool(), agent).await?;
    Ok(if presence.live {
        String::new()
    } else {
        presence.waiting_reason()
    })
}
