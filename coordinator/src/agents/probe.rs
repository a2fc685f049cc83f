//! [`AgentProbe`]: asks a server through its agent. With no live instance
//! of the agent it fails at once (`AgentUnavailable`, saying when the agent
//! was last seen). Otherwise it writes a probe row (the secret's
//! reference, never its value), wakes this coordinator's dispatcher (a
//! coordinator holding a stream of the agent offers it), and polls the row
//! until the agent answered or [`ANSWER_WAIT`] passed; then deletes it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pgvault_errors::ErrorCode;
use pgvault_probe::Missing;
use tokio::time::Instant;
use uuid::Uuid;

use super::Registry;
use crate::error::{CoordinatorError, Result};
use crate::model::{JobError, ProbeAnswer, ProbeKind, ProbeRequest};
use crate::server_probe::{ProbeTarget, Probed, ServerProbe, Unanswered};
use crate::store::{Store, agent_instances, probes};

/// How long the API waits for an agent's answer.
pub const ANSWER_WAIT: Duration = Duration::from_secs(60);
/// How often the probe row is read while waiting.
const POLL: Duration = Duration::from_millis(100);
/// How often, while nobody claimed the probe, the agent's presence is
/// checked again (an agent that left fails the probe at once).
const PRESENCE_CHECK: Duration = Duration::from_secs(1);

/// Asks servers bound to an agent, through the agent.
pub struct AgentProbe {
    store: Store,
    registry: Arc<Registry>,
}

impl AgentProbe {
    pub fn new(store: Store, registry: Arc<Registry>) -> Self {
        AgentProbe { store, registry }
    }

    async fn ask(&self, target: &ProbeTarget<'_>, kind: ProbeKind) -> Result<Probed<ProbeAnswer>> {
        let pool = self.store.pool();
        let agent = target.server.agent.as_str();
        let presence = agent_instances::presence(pool, agent).await?;
        if !presence.live {
            return Ok(Err(Unanswered::Agent(presence.unavailable())));
        }
        let id = probes::insert(
            pool,
            &ProbeRequest {
                agent_id: agent.to_string(),
                kind,
                server_id: target.server.id.clone(),
                database: target.database.to_string(),
                secret: target.secret.clone(),
                vault_id: target.vault.map(str::to_string),
            },
        )
        .await?;
        self.registry.wake();
        tracing::debug!(probe = %id, agent, kind = %kind, "probe written");
        let outcome = self.wait(id, agent).await;
        if let Err(error) = probes::delete(pool, id).await {
            tracing::warn!(probe = %id, error = %error, "cannot delete an answered probe; the sweeper will");
        }
        outcome
    }

    async fn wait(&self, id: Uuid, agent: &str) -> Result<Probed<ProbeAnswer>> {
        let pool = self.store.pool();
        let deadline = Instant::now() + ANSWER_WAIT;
        let mut next_check = Instant::now() + PRESENCE_CHECK;
        loop {
            if let Some(answer) = probes::read_answer(pool, id).await? {
                return Ok(Ok(answer));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Err(Unanswered::Agent(JobError::new(
                    ErrorCode::AgentUnavailable,
                    format!(
                        "agent \"{agent}\" did not answer within {} s",
                        ANSWER_WAIT.as_secs()
                    ),
                ))));
            }
            if now >= next_check {
                next_check = now + PRESENCE_CHECK;
                if !probes::is_claimed(pool, id).await? {
                    let presence = agent_instances::presence(pool, agent).await?;
                    if !presence.live {
                        return Ok(Err(Unanswered::Agent(presence.unavailable())));
                    }
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

fn mismatched(kind: ProbeKind) -> CoordinatorError {
    CoordinatorError::internal(format!(
        "the agent answered a {kind} probe with another kind of result"
    ))
}

#[async_trait]
impl ServerProbe for AgentProbe {
    async fn list_databases(&self, target: &ProbeTarget<'_>) -> Result<Probed<Vec<String>>> {
        Ok(match self.ask(target, ProbeKind::ListDatabases).await? {
            Ok(ProbeAnswer::Databases(names)) => Ok(names),
            Ok(ProbeAnswer::Error(error)) => Err(Unanswered::Connect(error)),
            Ok(ProbeAnswer::Readiness { .. }) => return Err(mismatched(ProbeKind::ListDatabases)),
            Err(unanswered) => Err(unanswered),
        })
    }

    async fn readiness(&self, target: &ProbeTarget<'_>) -> Result<Probed<Missing>> {
        Ok(match self.ask(target, ProbeKind::Readiness).await? {
            Ok(ProbeAnswer::Readiness { missing, .. }) => Ok(missing),
            Ok(ProbeAnswer::Error(error)) => Err(Unanswered::Connect(error)),
            Ok(ProbeAnswer::Databases(_)) => return Err(mismatched(ProbeKind::Readiness)),
            Err(unanswered) => Err(unanswered),
        })
    }
}
