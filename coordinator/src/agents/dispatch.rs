//! The agent dispatcher: offers work to the agent streams connected to
//! this coordinator. Due outbox rows of queued jobs routed to those agents
//! are locked (`SKIP LOCKED`, so coordinators holding streams of the same
//! agent share them), offered as a `TaskEnvelope` down the least busy
//! instance's stream, and made due again [`TASK_REPEAT`] later instead of
//! deleted: `ClaimTask` deletes them. An offer lost with a dropped stream
//! is therefore made again (to any instance, through any coordinator), and
//! a duplicate is harmless (a claim that does not take is dropped by the
//! runner). Unclaimed probes are offered the same way, again after
//! [`PROBE_REPEAT`]. Woken when a stream connects or a probe is written,
//! and by a short poll for work written elsewhere.

use std::sync::Arc;
use std::time::Duration;

use pgvault_proto::v1 as pb;

use super::AgentHub;
use crate::error::Result;
use crate::store::{outbox, probes};

/// An offered task not claimed by then is offered again.
pub const TASK_REPEAT: Duration = Duration::from_secs(10);
/// An offered probe not claimed by then is offered again.
pub const PROBE_REPEAT: Duration = Duration::from_secs(5);
/// How often work written by other coordinators is looked for.
const POLL: Duration = Duration::from_millis(500);
const BATCH: i64 = 100;

/// Runs until the hub's cancellation fires.
pub(super) async fn run(hub: Arc<AgentHub>) {
    loop {
        if !hub.registry.is_empty() {
            let agents = hub.registry.agents();
            if let Err(error) = offer_tasks(&hub, &agents).await {
                tracing::warn!(error = %error, "agent dispatcher cannot offer tasks; retrying");
            }
            if let Err(error) = offer_probes(&hub, &agents).await {
                tracing::warn!(error = %error, "agent dispatcher cannot offer probes; retrying");
            }
        }
        tokio::select! {
            _ = hub.cancel.cancelled() => return,
            _ = hub.registry.woken() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Offers one locked batch of due tasks; rows offered wait [`TASK_REPEAT`].
async fn offer_tasks(hub: &AgentHub, agents: &[String]) -> Result<()> {
    let mut tx = hub.store.begin().await?;
    let rows = outbox::lock_agent_batch(&mut *tx, agents, BATCH).await?;
    let mut offered = Vec::with_capacity(rows.len());
    for row in &rows {
        let envelope = pb::TaskEnvelope {
            job_id: row.job_id.to_string(),
            attempt: row.attempt,
            trace_context: row
                .trace_context
                .as_ref()
                .map(|c| c.to_carrier())
                .unwrap_or_default(),
            chunk_invite: false,
        };
        if hub.registry.offer_task(&row.agent_id, envelope) {
            offered.push(row.id);
            tracing::debug!(job_id = %row.job_id, attempt = row.attempt, agent = %row.agent_id, "task offered");
        }
    }
    outbox::postpone(&mut *tx, &offered, TASK_REPEAT).await?;
    tx.commit().await?;
    Ok(())
}

/// Offers one locked batch of unclaimed probes; those offered wait
/// [`PROBE_REPEAT`].
async fn offer_probes(hub: &AgentHub, agents: &[String]) -> Result<()> {
    let mut tx = hub.store.begin().await?;
    let due = probes::lock_due(&mut *tx, agents, BATCH).await?;
    let offered: Vec<uuid::Uuid> = due
        .into_iter()
        .filter(|(id, agent)| hub.registry.offer_probe(agent, *id))
        .map(|(id, _)| id)
        .collect();
    probes::postpone(&mut *tx, &offered, PROBE_REPEAT).await?;
    tx.commit().await?;
    Ok(())
}
