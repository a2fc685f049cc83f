//! The gauge read from the task queue at scrape time:
//! `pgvault_worker_slots_connected`, the consumers of the workers' task
//! queue. Each worker consumes with one consumer per task slot
//! (`worker.concurrency`), so with the default concurrency of 1 it is the
//! number of connected workers; 0 means no worker can take a task (agents
//! take theirs over their own streams and are counted apart). RabbitMQ
//! counts a consumer until its connection closes, so a worker killed
//! without closing leaves it counted until the broker notices (heartbeat
//! timeout). The publisher asks over one connection it keeps open for
//! asking (named `pgvault inspect` at the broker), so scrapes add no
//! connections. When the broker cannot be asked the series is left out
//! rather than reported as 0, and the ask is logged.

use std::time::Duration;

use pgvault_queue::TaskPublisher;

use crate::metrics::families::{Families, NoLabels};

/// How long asking the broker may take before the scrape goes without it.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(3);

/// Sets the gauge from `queue`'s consumer count, or leaves it out.
pub async fn refresh(queue: &dyn TaskPublisher, families: &Families) {
    let counted = tokio::time::timeout(QUEUE_TIMEOUT, queue.consumer_count()).await;
    families.worker_slots.clear();
    match counted {
        Ok(Ok(Some(consumers))) => {
            families
                .worker_slots
                .get_or_create(&NoLabels {})
                .set(i64::from(consumers));
        }
        Ok(Ok(None)) => {}
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "metrics: cannot ask the broker for the task queue's consumers");
        }
        Err(_) => tracing::warn!(
            timeout_s = QUEUE_TIMEOUT.as_secs(),
            "metrics: the broker did not say how many consume the task queue in time"
        ),
    }
}
