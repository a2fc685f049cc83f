//! pgvault's agent: a small process next to PostgreSQL servers that no
//! worker can reach (private networks). It dials **out** to the coordinator
//! and keeps one stream open (`AgentService.Connect`); nothing ever
//! connects to it. The coordinator offers it the tasks and probes of the
//! servers bound to it; it claims, runs and reports tasks with the worker's
//! runner and engine, unchanged, over unary `WorkerService` calls on the
//! same HTTP/2 channel, and answers probes with `pgvault-probe`. Objects go
//! from the agent straight to the datastore (it needs the datastore's
//! credentials in its own environment, as workers do).
//!
//! What is new here is the connection, and nothing else: the engine knows
//! nothing of gRPC, and the runner knows only a
//! `pgvault_queue::TaskConsumer` fed by offers.
//!
//! # Layout
//! - [`options`]: the flags of `pgvault-agent` and `pgvault agent run`, the
//!   `[agent]` settings, the checked options.
//! - [`identity`]: what `hello` says (instance id, host, pg_dump major).
//! - [`connection`]: the stream: hello, welcome, status, offers, reconnect;
//!   [`backoff`]: the waits between attempts.
//! - [`offers`]: task offers as the runner's task queue, and what runs now.
//! - [`probes`]: claim a probe, ask the server, answer.
//! - [`environment`]: the `PGVAULT_*` variables `pgvault-agent` refuses or
//!   ignores.
//! - [`error`]: why the agent cannot start.

pub mod backoff;
pub mod connection;
pub mod environment;
pub mod error;
pub mod identity;
pub mod offers;
pub mod options;
pub mod probes;

use std::sync::Arc;

use pgvault_worker::runner::{
    EngineExecutor, GrpcLink, WorkerOptions, authenticated_channel, run_with,
};
use tokio_util::sync::CancellationToken;

pub use error::AgentError;
pub use options::{AgentArgs, AgentOptions, AgentSettings, TOKEN_VARIABLE};

use connection::Connection;
use identity::Identity;
use offers::Offers;
use probes::Probes;

/// Runs the agent until `shutdown`: then it takes no more offers, lets the
/// runner release its running tasks as a worker does (they are retried on
/// another instance while attempts remain), and closes its stream.
pub async fn run(options: AgentOptions, shutdown: CancellationToken) -> Result<(), AgentError> {
    let channel = authenticated_channel(
        &options.coordinator,
        &options.token,
        options.ca_cert.as_deref(),
    )?;
    let identity = Identity::discover(&options);
    tracing::info!(
        agent = %options.name,
        instance_id = %identity.instance_id(),
        coordinator = %options.coordinator,
        concurrency = options.concurrency,
        pg_tool_majors = ?identity.hello.pg_tool_majors,
        "agent starting"
    );
    let offers = Offers::default();
    let probes = Probes::new(channel.clone(), identity.instance_id().to_string());
    let close = CancellationToken::new();
    let connection = Connection::new(
        channel.clone(),
        identity.hello.clone(),
        offers.clone(),
        probes,
    );
    let connection = tokio::spawn(connection.run(shutdown.clone(), close.clone()));
    let closing = {
        let (offers, shutdown) = (offers.clone(), shutdown.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            tracing::info!("shutting down: no more offers; running tasks are released");
            offers.close();
        })
    };
    let runner = WorkerOptions {
        coordinator_endpoint: options.coordinator.clone(),
        token: options.token.clone(),
        ca_cert: options.ca_cert.clone(),
        worker_id: identity.worker_id(),
        concurrency: options.concurrency,
        engine: options.engine.clone(),
    };
    let link = offers.tracking(Arc::new(
        GrpcLink::new(channel)
            .with_tool_majors(identity.hello.pg_tool_majors.clone())
            .with_connections(options.engine.connections),
    ));
    let executor = Arc::new(EngineExecutor {
        options: options.engine.clone(),
    });
    run_with(runner, link, executor, || offers.consumer(), shutdown).await;
    close.cancel();
    if let Err(e) = connection.await {
        tracing::error!(error = %e, "the connection task ended abnormally");
    }
    closing.abort();
    tracing::info!(agent = %options.name, "agent stopped");
    Ok(())
}
