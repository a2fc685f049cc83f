//! The process logging of every pgvault command that runs tasks (`worker`,
//! `up`, `agent run`, `pgvault-agent`) and of the coordinator: `tracing` to
//! stderr as text or JSON lines ([`JsonLines`]: span fields such as
//! `job_id`, `attempt`, `instance_id`, `trace_id` at the top level of every
//! line), filtered by `RUST_LOG`, else the configured filter, else `info`,
//! with the runner's [`LogTailLayer`] so a failed task's last lines travel
//! with its failure into the job's details, and the process's trace
//! pipeline ([`Tracing`]) when given.

use std::io::IsTerminal;

use pgvault_telemetry::{JsonLines, Tracing};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::runner::LogTailLayer;

/// Installs the process's logging; `format` is `text` or `json`, `filter`
/// an `EnvFilter` directive (`RUST_LOG` wins when set and valid); spans are
/// recorded into `tracing` when given.
pub fn init(filter: Option<&str>, format: &str, tracing: Option<&Tracing>) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| filter.and_then(|f| EnvFilter::try_new(f).ok()))
        .unwrap_or_else(|| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(LogTailLayer)
        .with(tracing.map(Tracing::layer));
    let result = if format == "json" {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(JsonLines)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        // Colours only for people at a terminal, never in log files.
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
    if let Err(e) = result {
        eprintln!("warning: logging already initialised: {e}");
    }
}
