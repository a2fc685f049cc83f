//! The task runner: turns task deliveries into engine runs.
//!
//! For each delivery: decode the envelope (garbage is dead-lettered), claim the
//! job from the coordinator, ack the message once the claim is recorded (the
//! lease, not the broker, now guards liveness), heartbeat while the task
//! runs, then complete or fail the job. A heartbeat refused for a stale lease
//! token means another runner took over: this one stops and never completes.
//!
//! # Seams
//! - Deliveries come from a [`TaskConsumer`] (RabbitMQ, in-process, or an
//!   agent's stream).
//! - Calls to the coordinator go through a [`CoordinatorLink`]
//!   ([`GrpcLink`] for workers, [`memory::MemoryCoordinator`] in tests).
//! - Tasks run through a [`TaskExecutor`] ([`EngineExecutor`] for real).
//!
//! # Layout
//! - `execute`, `heartbeat`, `tables`: one claimed task from start to report.
//! - [`log_tail`]: the tracing layer that keeps each task's last log lines
//!   for its failure report.
//! - `executor`, `restore_files`, `lifecycle`: task messages → engine calls;
//!   `stage_split`: the engine's stage times as the contract's split.
//! - `fanout`, `chunk_link`: a backup fanned out across workers (the
//!   leader's dispatch, helping with an invitation's chunks).
//! - `link`, `grpc`, [`memory`]: the coordinator seam and its implementations;
//!   `channel`: the authenticated HTTP/2 channel to a coordinator (TLS with
//!   the system's roots or a private CA).

mod channel;
mod chunk_link;
mod drill;
mod execute;
mod executor;
mod fanout;
mod grpc;
mod heartbeat;
mod lifecycle;
mod link;
pub mod log_tail;
pub mod memory;
mod restore_files;
mod stage_split;
mod tables;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_log_tail;
#[cfg(test)]
mod tests_trace;
mod verify;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pgvault_proto::v1::TaskEnvelope;
use pgvault_queue::{Delivery, TaskConsumer};
use pgvault_telemetry::TraceContext;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use channel::{
    AuthChannel, BearerToken, ChannelError, authenticated_channel, coordinator_channel,
};
pub use chunk_link::ChunkLink;
pub use executor::{EngineExecutor, TaskExecutor, TaskLease};
pub use grpc::GrpcLink;
pub use link::{CoordinatorLink, LinkError};
pub use log_tail::LogTailLayer;
use pgvault_engine::EngineOptions;

/// How a worker process runs.
#[derive(Clone)]
pub struct WorkerOptions {
    /// gRPC endpoint of a coordinator, e.g. `http://127.0.0.1:50051`.
    pub coordinator_endpoint: String,
    /// Bearer token the worker authenticates with.
    pub token: String,
    /// PEM certificate of the private CA that signed the coordinator's
    /// certificate (`https://` endpoints); `None`: the system's roots.
    pub ca_cert: Option<PathBuf>,
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
            .field("ca_cert", &self.ca_cert)
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

/// Runs until `shutdown` is cancelled, then lets running tasks finish:
/// claims over gRPC from `options.coordinator_endpoint`, runs tasks with the
/// engine. `consumers` yields one consumer per concurrent task slot.
pub async fn run(
    options: WorkerOptions,
    consumers: impl FnMut() -> Box<dyn TaskConsumer>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let link = GrpcLink::connect_lazy(
        &options.coordinator_endpoint,
        &options.token,
        options.ca_cert.as_deref(),
    )?
    .with_tool_majors(tool_majors(&options.engine))
    .with_connections(options.engine.connections);
    let executor = EngineExecutor {
        options: options.engine.clone(),
    };
    run_with(
        options,
        Arc::new(link),
        Arc::new(executor),
        consumers,
        shutdown,
    )
    .await;
    Ok(())
}

/// The majors of every client tool set the engine may use, logged once.
pub fn tool_majors(engine: &EngineOptions) -> Vec<u32> {
    let sets =
        pgvault_localpg::find_tool_sets(&engine.pg_bin_dirs, pgvault_localpg::CLIENT_PROGRAMS);
    for set in &sets {
        tracing::info!(major = set.major, dir = %set.dir.display(), "PostgreSQL client tools found");
    }
    if sets.is_empty() {
        tracing::warn!(
            "no PostgreSQL client tools (pg_dump, pg_restore) found: backups and restores will fail; install them or set worker.pg_bin_dirs"
        );
    }
    pgvault_localpg::majors(&sets)
}

/// [`run`] with any coordinator link and executor.
pub async fn run_with(
    options: WorkerOptions,
    link: Arc<dyn CoordinatorLink>,
    executor: Arc<dyn TaskExecutor>,
    mut consumers: impl FnMut() -> Box<dyn TaskConsumer>,
    shutdown: CancellationToken,
) {
    let worker_id = options.worker_id.clone();
    let slot_count = options.concurrency.max(1);
    let mut slots = tokio::task::JoinSet::new();
    for slot in 0..slot_count {
        let consumer = consumers();
        let slot_runner = Slot {
            link: link.clone(),
            executor: executor.clone(),
            worker_id: worker_id.clone(),
            shutdown: shutdown.clone(),
        };
        slots.spawn(async move { slot_runner.serve(slot, consumer).await });
    }
    tracing::info!(worker = %worker_id, slots = slot_count, "worker started");
    while let Some(result) = slots.join_next().await {
        if let Err(e) = result {
            tracing::error!(error = %e, "worker slot ended abnormally");
        }
    }
    tracing::info!(worker = %worker_id, "worker stopped");
}

/// One task slot: takes deliveries from its consumer one at a time.
struct Slot {
    link: Arc<dyn CoordinatorLink>,
    executor: Arc<dyn TaskExecutor>,
    worker_id: String,
    shutdown: CancellationToken,
}

impl Slot {
    async fn serve(&self, slot: usize, mut consumer: Box<dyn TaskConsumer>) {
        loop {
            let delivery = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                d = consumer.next() => d,
            };
            match delivery {
                Ok(delivery) => self.handle(delivery).await,
                Err(e) => {
                    tracing::error!(slot, error = %e, "task queue closed; slot stops");
                    return;
                }
            }
        }
    }

    async fn handle(&self, delivery: Delivery) {
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
        // The job's trace continues here: the dispatch span's context
        // travels in the message's headers (and, for the in-process queue
        // and agents, in the envelope).
        let carried = TraceContext::from_carrier(&delivery.headers)
            .or_else(|| TraceContext::from_carrier(&envelope.trace_context));
        if envelope.chunk_invite {
            // Help with the attempt's chunks: the chunk leases, not the
            // broker, guard them from here on.
            if let Err(e) = delivery.ack().await {
                tracing::warn!(job_id = %job_id, error = %e, "could not ack a chunk invitation");
            }
            match self.link.clone().chunks() {
                Some(chunks) => {
                    fanout::help(
                        chunks,
                        self.executor.as_ref(),
                        &job_id,
                        envelope.attempt,
                        carried,
                        &self.worker_id,
                        &self.shutdown,
                    )
                    .await
                }
                None => {
                    tracing::info!(job_id = %job_id, "chunk invitation ignored: this link carries no chunks")
                }
            }
            return;
        }
        let claim_span = tracing::info_span!(
            parent: None,
            "claim",
            job_id = %job_id,
            attempt = envelope.attempt,
            trace_id = %carried.as_ref().map(TraceContext::trace_id).unwrap_or_default(),
            worker = %self.worker_id,
            claimed = tracing::field::Empty,
        );
        if let Some(context) = &carried {
            context.adopt(&claim_span);
        }
        let claim = match self
            .link
            .claim(&job_id, &self.worker_id)
            .instrument(claim_span.clone())
            .await
        {
            Ok(claim) => claim,
            Err(error @ LinkError::UnknownJob(_)) => {
                // No such job: retrying can never help; park it for inspection.
                tracing::warn!(job_id = %job_id, error = %error, "task names an unknown job; dead-lettering it");
                if let Err(e) = delivery.reject().await {
                    tracing::warn!(error = %e, "could not dead-letter message");
                }
                return;
            }
            Err(error) => {
                // Coordinator unreachable or failing: give the message back and pause.
                tracing::warn!(job_id = %job_id, error = %error, "claim failed; requeueing task");
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Err(e) = delivery.requeue().await {
                    tracing::warn!(error = %e, "could not requeue message");
                }
                return;
            }
        };
        claim_span.record("claimed", claim.claimed);
        if let Err(e) = delivery.ack().await {
            tracing::warn!(job_id = %job_id, error = %e, "could not ack task message (claim is recorded)");
        }
        if !claim.claimed {
            tracing::info!(job_id = %job_id, reason = %claim.reason, "task not claimed; dropping duplicate delivery");
            return;
        }
        // The task's spans are children of the claim when the claim is in
        // the job's trace; else of the job's context the claim returned.
        let parent = carried.and_then(|_| TraceContext::of_span(&claim_span));
        drop(claim_span);
        execute::run_claimed(
            claim,
            parent,
            &self.worker_id,
            &self.link,
            self.executor.as_ref(),
            &self.shutdown,
        )
        .await;
    }
}
