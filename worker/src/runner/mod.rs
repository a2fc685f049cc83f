//! The task runner: turns queue deliveries into engine runs.
//!
//! For each delivery: decode the envelope (garbage is dead-lettered), claim the
//! job over gRPC, ack the message once the claim is recorded (the lease, not
//! the broker, now guards liveness), heartbeat while the engine runs, then
//! complete or fail the job. A heartbeat refused for a stale lease token means
//! another worker took over: this one stops and never completes.

mod client;
mod execute;
mod heartbeat;
mod lifecycle;
mod restore_files;
mod tables;

use std::sync::Arc;
use std::time::Duration;

use pgvault_proto::v1::TaskEnvelope;
use pgvault_queue::{Delivery, TaskConsumer};
use prost::Message;
use tokio_util::sync::CancellationToken;

pub use client::CoordinatorClient;

use pgvault_engine::EngineOptions;

/// How a worker process runs.
#[derive(Clone)]
pub struct WorkerOptions {
    /// gRPC endpoint of a coordinator, e.g. `http://127.0.0.1:50051`.
    pub coordinator_endpoint: String,
    /// Bearer token the worker authenticates with.
    pub token: String,
    /// Stable identity shown in job attempts, e.g. `host:pid`.
    pub worker_id: String,
    /// Tasks run at once (each with its own consumer, prefetch 1).
    pub concurrency: usize,
    /// Engine tuning.
    pub engine: EngineOptions,
}

impl std::fmt::Debug for WorkerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerOptions")
            .field("coordinator_endpoint", &self.coordinator_endpoint)
            .field("token", &"<redacted>")
            .field("worker_id", &self.worker_id)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

/// `hostname:pid`, the default worker identity.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "worker".to_string());
    format!("{host}:{}", std::process::id())
}

/// Runs until `shutdown` is cancelled, then lets running tasks finish.
/// `consumers` yields one consumer per concurrent task slot.
pub async fn run(
    options: WorkerOptions,
    mut consumers: impl FnMut() -> Box<dyn TaskConsumer>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client = CoordinatorClient::connect_lazy(&options.coordinator_endpoint, &options.token)?;
    let options = Arc::new(options);
    let mut slots = tokio::task::JoinSet::new();
    for slot in 0..options.concurrency.max(1) {
        let consumer = consumers();
        let client = client.clone();
        let options = options.clone();
        let shutdown = shutdown.clone();
        slots.spawn(async move { serve_slot(slot, consumer, client, options, shutdown).await });
    }
    tracing::info!(worker = %options.worker_id, slots = options.concurrency.max(1), "worker started");
    while let Some(result) = slots.join_next().await {
        if let Err(e) = result {
            tracing::error!(error = %e, "worker slot ended abnormally");
        }
    }
    tracing::info!(worker = %options.worker_id, "worker stopped");
    Ok(())
}

async fn serve_slot(
    slot: usize,
    mut consumer: Box<dyn TaskConsumer>,
    client: CoordinatorClient,
    options: Arc<WorkerOptions>,
    shutdown: CancellationToken,
) {
    loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => return,
            d = consumer.next() => d,
        };
        match delivery {
            Ok(delivery) => handle_delivery(delivery, &client, &options, &shutdown).await,
            Err(e) => {
                tracing::error!(slot, error = %e, "task queue closed; slot stops");
                return;
            }
        }
    }
}

async fn handle_delivery(
    delivery: Delivery,
    client: &CoordinatorClient,
    options: &WorkerOptions,
    shutdown: &CancellationToken,
) {
    let envelope = match TaskEnvelope::decode(delivery.payload.as_slice()) {
        Ok(e) if uuid::Uuid::parse_str(&e.job_id).is_ok() => e,
        Ok(_) | Err(_) => {
            tracing::warn!(
                bytes = delivery.payload.len(),
                "unparseable task message; dead-lettering it"
            );
            if let Err(e) = delivery.reject().await {
                tracing::warn!(error = %e, "could not dead-letter message");
            }
            return;
        }
    };
    let job_id = envelope.job_id.clone();
    let claim = match client.claim(&job_id, &options.worker_id).await {
        Ok(claim) => claim,
        Err(status) if status.code() == tonic::Code::NotFound => {
            // No such job: retrying can never help; park it for inspection.
            tracing::warn!(job_id = %job_id, error = %status.message(), "task names an unknown job; dead-lettering it");
            if let Err(e) = delivery.reject().await {
                tracing::warn!(error = %e, "could not dead-letter message");
            }
            return;
        }
        Err(status) => {
            // Coordinator unreachable or failing: give the message back and pause.
            tracing::warn!(job_id = %job_id, error = %status.message(), "claim failed; requeueing task");
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Err(e) = delivery.requeue().await {
                tracing::warn!(error = %e, "could not requeue message");
            }
            return;
        }
    };
    if let Err(e) = delivery.ack().await {
        tracing::warn!(job_id = %job_id, error = %e, "could not ack task message (claim is recorded)");
    }
    if !claim.claimed {
        tracing::info!(job_id = %job_id, reason = %claim.reason, "task not claimed; dropping duplicate delivery");
        return;
    }
    execute::run_claimed(claim, client, options, shutdown).await;
}
