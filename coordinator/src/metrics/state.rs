//! The gauges read from the state database at scrape time. Every query is
//! bounded (see `store::metrics`), and all run on one pooled connection
//! after another; the caller gives them a timeout together.

use crate::error::Result;
use crate::metrics::families::{AgentLabels, Families, InstanceLabels, JobLabels, ServerLabels};
use crate::store::{Store, connection_slots, metrics as queries};

/// Clears the state gauges and fills them from the state database.
pub async fn refresh(store: &Store, families: &Families) -> Result<()> {
    let pool = store.pool();
    let active = queries::active_jobs(pool).await?;
    let backlog = queries::outbox_backlog(pool).await?;
    let dead_letters = queries::dead_letters(pool).await?;
    let agents = queries::agent_instances_live(pool).await?;
    let successes = queries::last_successes(pool).await?;
    // At most one row per server with a running job.
    let slots = connection_slots::in_use_by_server(pool).await?;

    families.clear_state();
    for row in active {
        let labels = JobLabels {
            operation: row.operation,
            state: row.state,
        };
        families.jobs_active.get_or_create(&labels).set(row.count);
        families
            .jobs_oldest_age
            .get_or_create(&labels)
            .set(row.oldest_age_seconds.max(0.0));
    }
    families.outbox_backlog.set(backlog.0);
    families.outbox_oldest_age.set(backlog.1);
    families.dead_letters.set(dead_letters);
    for (agent, live) in agents {
        families
            .agent_instances
            .get_or_create(&AgentLabels { agent })
            .set(live);
    }
    for success in successes {
        let labels = InstanceLabels {
            vault: success.vault,
            backup_instance: success.instance.to_string(),
            server: success.server,
            database: success.database,
        };
        let seconds = success.time.timestamp_millis() as f64 / 1000.0;
        families.last_success.get_or_create(&labels).set(seconds);
    }
    for (server, in_use) in slots {
        families
            .server_connections
            .get_or_create(&ServerLabels { server })
            .set(i64::from(in_use));
    }
    Ok(())
}
