//! Every metric family the coordinator exports, its labels, buckets and
//! help text, registered once under the `pgvault_` prefix. The README's
//! "Metrics" section lists the same names; `tests/metrics.rs` checks the
//! shipped alert rules name only these.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

/// A gauge holding seconds, timestamps or counts as `f64`.
pub type FloatGauge = Gauge<f64, AtomicU64>;
type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// `SCHEDULED_BACKUP`, `ON_DEMAND_BACKUP`, `RESTORE`, `TIER_MOVE`, …
    pub operation: String,
    /// The job's state (final states for the feed's counters).
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub operation: String,
    /// `COMPLETED`, `FAILED`, `LEASE_EXPIRED`, `FENCED`, `CANCELLED`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub operation: String,
    /// A code of the catalogue (`pgvault errors`); codes this build does not
    /// know are counted as `other`, so a worker cannot grow the label set.
    pub code: String,
    /// `user`, `system`, `integrity`, `cancelled` (`other` for unknown codes).
    pub category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentLabels {
    pub agent: String,
}

/// No labels: a family that is either one unlabelled series or none.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NoLabels {}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    pub vault: String,
    /// The instance's id (`vaults/{vault}/backupInstances/{id}`). Not
    /// `instance`: Prometheus gives every scraped series an `instance`
    /// label (the target) and would rename ours to `exported_instance`.
    pub backup_instance: String,
    pub server: String,
    pub database: String,
}

/// The families; each field is the metric named in its registration.
#[derive(Clone)]
pub struct Families {
    // The leader's feed (counted once in the cluster).
    pub jobs_finished: Family<JobLabels, Counter>,
    pub job_duration: HistogramFamily<JobLabels>,
    pub job_bytes: HistogramFamily<OperationLabels>,
    pub attempts_ended: Family<AttemptLabels, Counter>,
    pub job_errors: Family<ErrorLabels, Counter>,
    pub scheduler_lag: Histogram,
    pub feed_leader: Gauge,
    // Read from the state database at scrape time (same on every coordinator).
    pub jobs_active: Family<JobLabels, Gauge>,
    pub jobs_oldest_age: Family<JobLabels, FloatGauge>,
    pub outbox_backlog: Gauge,
    pub outbox_oldest_age: FloatGauge,
    pub dead_letters: Gauge,
    pub agent_instances: Family<AgentLabels, Gauge>,
    pub last_success: Family<InstanceLabels, FloatGauge>,
    pub server_connections: Family<ServerLabels, Gauge>,
    // Read from the task queue's broker at scrape time (absent when it
    // cannot be asked).
    pub worker_slots: Family<NoLabels, Gauge>,
    // This process.
    pub fenced_heartbeats: Counter,
    pub state_errors: Counter,
}

fn duration_histogram() -> Histogram {
    // 1 s … 18 h, ×4.
    Histogram::new(exponential_buckets(1.0, 4.0, 9))
}

fn bytes_histogram() -> Histogram {
    // 1 MiB … 1 TiB, ×4.
    Histogram::new(exponential_buckets(1_048_576.0, 4.0, 11))
}

impl Default for Families {
    fn default() -> Self {
        Families {
            jobs_finished: Family::default(),
            job_duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            job_bytes: Family::new_with_constructor(bytes_histogram as fn() -> Histogram),
            attempts_ended: Family::default(),
            job_errors: Family::default(),
            scheduler_lag: Histogram::new([1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0]),
            feed_leader: Gauge::default(),
            jobs_active: Family::default(),
            jobs_oldest_age: Family::default(),
            outbox_backlog: Gauge::default(),
            outbox_oldest_age: FloatGauge::default(),
            dead_letters: Gauge::default(),
            agent_instances: Family::default(),
            last_success: Family::default(),
            server_connections: Family::default(),
            worker_slots: Family::default(),
            fenced_heartbeats: Counter::default(),
            state_errors: Counter::default(),
        }
    }
}

/// Registers families and remembers their names.
struct Registrar<'a> {
    registry: &'a mut Registry,
    names: Vec<&'static str>,
}

impl Registrar<'_> {
    fn register(&mut self, name: &'static str, help: &str, metric: impl Metric) {
        self.names.push(name);
        self.registry.register(name, help, metric);
    }
}

impl Families {
    /// Registers every family in `registry`; returns their names (without
    /// the registry's `pgvault_` prefix), in registration order.
    pub(super) fn register(&self, registry: &mut Registry) -> Vec<&'static str> {
        let mut r = Registrar {
            registry,
            names: Vec::new(),
        };
        r.register(
            "jobs_finished",
            "Jobs that reached a final state, by operation and state (counted by the feed leader)",
            self.jobs_finished.clone(),
        );
        r.register(
            "job_duration_seconds",
            "Seconds from a job's first claim to its end, by operation and final state",
            self.job_duration.clone(),
        );
        r.register(
            "job_bytes",
            "Bytes a completed job moved, by operation",
            self.job_bytes.clone(),
        );
        r.register(
            "job_attempts_ended",
            "Attempts that ended, by operation and outcome (LEASE_EXPIRED: lease expiries; FENCED: taken over)",
            self.attempts_ended.clone(),
        );
        r.register(
            "job_errors",
            "Errors attempts ended with (retried or final), by operation, error code and category",
            self.job_errors.clone(),
        );
        r.register(
            "scheduler_lag_seconds",
            "Seconds from a schedule slot to its backup job being queued",
            self.scheduler_lag.clone(),
        );
        r.register(
            "metrics_feed_leader",
            "1 on the coordinator that feeds the job counters and histograms, else 0",
            self.feed_leader.clone(),
        );
        r.register(
            "jobs_active",
            "Jobs queued, in progress or being cancelled, by operation and state (state database)",
            self.jobs_active.clone(),
        );
        r.register(
            "jobs_oldest_age_seconds",
            "Age of the oldest job in each active state, by operation (state database)",
            self.jobs_oldest_age.clone(),
        );
        r.register(
            "outbox_backlog",
            "Outbox rows due but not yet published or offered (state database)",
            self.outbox_backlog.clone(),
        );
        r.register(
            "outbox_oldest_age_seconds",
            "Seconds the oldest due outbox row has waited (state database)",
            self.outbox_oldest_age.clone(),
        );
        r.register(
            "dead_letters",
            "Dead letters recorded from the task queue (state database)",
            self.dead_letters.clone(),
        );
        r.register(
            "agent_instances_connected",
            "Live instances of each agent (state database)",
            self.agent_instances.clone(),
        );
        r.register(
            "instance_last_success_timestamp_seconds",
            "Unix time of each backup instance's newest recovery point (state database)",
            self.last_success.clone(),
        );
        r.register(
            "server_connections_in_use",
            "Connection slots of each server's budget held by running jobs (state database)",
            self.server_connections.clone(),
        );
        r.register(
            "worker_slots_connected",
            "Task slots of the connected workers: consumers of the workers' task queue (worker.concurrency per worker), read from the broker; absent when it cannot be asked",
            self.worker_slots.clone(),
        );
        r.register(
            "fenced_heartbeats",
            "Heartbeats this coordinator refused because another attempt holds the lease",
            self.fenced_heartbeats.clone(),
        );
        r.register(
            "metrics_state_errors",
            "Scrapes of this coordinator whose state database reads failed or timed out",
            self.state_errors.clone(),
        );
        r.names
    }

    /// Forgets the state gauges (before a refill, or when it failed), so
    /// deleted instances and agents and drained states disappear.
    pub fn clear_state(&self) {
        self.jobs_active.clear();
        self.jobs_oldest_age.clear();
        self.outbox_backlog.set(0);
        self.outbox_oldest_age.set(0.0);
        self.dead_letters.set(0);
        self.agent_instances.clear();
        self.last_success.clear();
        self.server_connections.clear();
    }
}
