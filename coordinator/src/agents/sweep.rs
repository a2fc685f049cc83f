//! The agent sweeper, run by the holder of its [`Leadership`] lock: fails
//! queued jobs whose agent has had no live instance for
//! `coordinator.agent_wait_seconds` (and that waited that long) with
//! `AgentUnavailable`, deleting their outbox rows; deletes outbox rows of
//! agents' jobs that are no longer queued; forgets instances neither live
//! nor seen for 24 hours, and probes their handlers left behind.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::leader::Leadership;
use crate::model::JobState;
use crate::store::{Store, agent_instances, jobs, outbox, probes};

/// Advisory lock key of the agent sweeper ("pgvagnt" in ASCII).
const SWEEPER_LOCK: i64 = 0x0070_6776_6167_6e74;
const BATCH: i64 = 100;
/// Probes older than this were left behind by a handler that stopped.
const PROBE_LEFTOVER: Duration = Duration::from_secs(600);

/// What the sweeper needs.
pub struct SweepSettings {
    pub connect: PgConnectOptions,
    pub interval: Duration,
    /// How long a job waits for an absent agent.
    pub wait: Duration,
}

/// Runs until `cancel` fires.
pub async fn run(store: Store, settings: SweepSettings, cancel: CancellationToken) {
    let mut leadership = Leadership::new(settings.connect.clone(), SWEEPER_LOCK, "agent sweeper");
    loop {
        if leadership.check().await {
            match sweep_once(&store, settings.wait).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(jobs = n, "jobs failed: their agent stayed away"),
                Err(error) => tracing::warn!(error = %error, "agent sweep failed"),
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(settings.interval) => {}
        }
    }
    leadership.release().await;
}

/// One pass; returns how many jobs it failed.
pub async fn sweep_once(store: &Store, wait: Duration) -> Result<usize> {
    let mut tx = store.begin().await?;
    let unserved = jobs::lock_unserved(&mut *tx, wait, BATCH).await?;
    for job in &unserved {
        let Some(agent) = &job.agent_id else {
            continue;
        };
        let presence = agent_instances::presence(&mut *tx, agent).await?;
        let error = presence.job_unavailable(wait);
        jobs::finish_failed(&mut *tx, job.id, JobState::Failed, &error).await?;
        outbox::delete_for_job(&mut *tx, job.id).await?;
        crate::job_span::of("agent.unavailable", job).in_scope(|| {
            tracing::warn!(agent = %agent, "no instance of the job's agent; job failed");
        });
    }
    tx.commit().await?;
    let pool = store.pool();
    let stale_rows = outbox::delete_unqueued_agent_rows(pool).await?;
    let instances = agent_instances::sweep(pool).await?;
    let leftovers = probes::sweep(pool, PROBE_LEFTOVER).await?;
    if stale_rows + instances + leftovers > 0 {
        tracing::debug!(stale_rows, instances, leftovers, "agent rows swept");
    }
    Ok(unserved.len())
}
