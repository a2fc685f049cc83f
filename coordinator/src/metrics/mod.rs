//! Prometheus metrics of a coordinator, served on `GET /metrics` (OpenMetrics
//! text) when `CoordinatorConfig::metrics` is set. One registry per
//! coordinator, no global state, so several coordinators in one process
//! (tests) never mix their numbers.
//!
//! Where the numbers come from, and what that means with several
//! coordinators on one state database:
//! - **state gauges** ([`state`]) are read from the state database at scrape
//!   time: queued and running jobs and the oldest one's age, the outbox
//!   backlog, dead letters, live agent instances, each instance's last
//!   successful backup. Every coordinator reports the same values: alert on
//!   one (`max by (…)`), never `sum` them.
//! - **the queue gauge** ([`queue`]): the worker slots consuming the task
//!   queue, read from the broker at scrape time; the same on every
//!   coordinator too.
//! - **job counters and histograms** ([`feed`]) are fed from the jobs and
//!   attempts that ended (and the scheduled jobs created) in the state
//!   database, by the one coordinator holding the feed's advisory lock.
//!   Each event is counted once in the cluster, by whichever coordinator led
//!   then: `sum` them across coordinators. `pgvault_metrics_feed_leader`
//!   says which coordinator that is.
//! - **process counters** (`pgvault_fenced_heartbeats_total`,
//!   `pgvault_metrics_state_errors_total`) count what this process saw:
//!   `sum` them.
//!
//! Labels carry names only (vault, instance id, server, database, agent,
//! operation, state, outcome, error code): never a connection string,
//! secret or token.
//!
//! # Layout
//! - [`families`]: the metric families and their labels, registered once.
//! - [`state`]: the scrape-time gauges; [`queue`]: the broker's consumers;
//!   [`feed`]: the leader's feed of ended
//!   jobs, attempts and scheduled jobs (with its watermark, [`feed::Cursor`]).
//! - [`serve`]: the HTTP listener.

pub mod families;
pub mod feed;
pub mod queue;
pub mod serve;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use pgvault_queue::TaskPublisher;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

use crate::store::Store;

pub use self::families::Families;
pub use self::serve::{MetricsHandle, MetricsOptions};

/// How long the scrape-time queries may take together before the scrape
/// answers without the state gauges (and counts the error).
const STATE_TIMEOUT: Duration = Duration::from_secs(5);

/// A coordinator's metrics: cheap to clone, shared by the API (fenced
/// heartbeats), the feed and the HTTP handler.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    /// The registered families' names, without the `pgvault_` prefix.
    names: Vec<&'static str>,
    families: Families,
    /// The workers' task queue, asked for its consumers at scrape time.
    queue: Option<Arc<dyn TaskPublisher>>,
    /// One scrape at a time: a scrape clears and refills the state gauges.
    render: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Metrics without a task queue to ask (no `worker_slots_connected`).
    pub fn new() -> Self {
        Self::build(None)
    }

    /// Metrics whose scrapes also ask `queue` how many worker slots
    /// consume it.
    pub fn with_queue(queue: Arc<dyn TaskPublisher>) -> Self {
        Self::build(Some(queue))
    }

    fn build(queue: Option<Arc<dyn TaskPublisher>>) -> Self {
        let families = Families::default();
        let mut registry = Registry::with_prefix("pgvault");
        let names = families.register(&mut registry);
        Metrics {
            inner: Arc::new(Inner {
                registry,
                names,
                families,
                queue,
                render: tokio::sync::Mutex::new(()),
            }),
        }
    }

    pub fn families(&self) -> &Families {
        &self.inner.families
    }

    /// Every registered family's full name (`pgvault_…`, before the
    /// `_total` a counter's samples add), so a check can tell that each one
    /// is exported and documented.
    pub fn family_names(&self) -> Vec<String> {
        self.inner
            .names
            .iter()
            .map(|n| format!("pgvault_{n}"))
            .collect()
    }

    /// A heartbeat refused because another attempt took the lease over.
    pub fn fenced_heartbeat(&self) {
        self.inner.families.fenced_heartbeats.inc();
    }

    /// Reads the state gauges from `store`, then encodes every family as
    /// OpenMetrics text. A state read that fails or times out leaves the
    /// state gauges out (and counts the error); the rest is still served.
    pub async fn render(&self, store: &Store) -> String {
        let _one = self.inner.render.lock().await;
        let families = &self.inner.families;
        match tokio::time::timeout(STATE_TIMEOUT, state::refresh(store, families)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                families.clear_state();
                families.state_errors.inc();
                tracing::warn!(error = %error, "metrics: cannot read the state database");
            }
            Err(_) => {
                families.clear_state();
                families.state_errors.inc();
                tracing::warn!(
                    timeout_s = STATE_TIMEOUT.as_secs(),
                    "metrics: state database queries timed out"
                );
            }
        }
        if let Some(queue) = &self.inner.queue {
            queue::refresh(queue.as_ref(), families).await;
        }
        self.encode()
    }

    /// Every family as OpenMetrics text, as it stands (no state read).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(error) = encode(&mut text, &self.inner.registry) {
            tracing::warn!(error = %error, "metrics: cannot encode");
        }
        text
    }
}
