//! Logging and traces for the server commands, from the `[log]` and
//! `[telemetry]` settings: the shared set-up of task-running processes
//! ([`pgvault_worker::logging`]), so a failed task's last lines (of
//! `pgvault worker`, `up` or `agent run`) travel with its failure into the
//! job's details, and every span is recorded under the command's service
//! name (`up` runs coordinator and worker in one process and reports as
//! `pgvault-coordinator`). Call [`Tracing::shutdown`] before returning so
//! the last spans are exported.

use pgvault_telemetry::{ServiceName, Tracing};

use crate::config::Settings;

/// Installs logging and the trace pipeline; must run inside the runtime.
pub fn init(settings: &Settings, service: ServiceName) -> anyhow::Result<Tracing> {
    let tracing = Tracing::start(service, settings.telemetry.otlp_endpoint()?)?;
    pgvault_worker::logging::init(
        Some(&settings.log.filter),
        &settings.log.format,
        Some(&tracing),
    );
    Ok(tracing)
}
