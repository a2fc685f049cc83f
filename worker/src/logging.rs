//! The process logging of every pgvault command that runs tasks (`worker`,
//! `up`, `agent run`, `pgvault-agent`) and of the coordinator: `tracing` to
//! stderr as text or JSON, filtered by `RUST_LOG`, else the configured
//! filter, else `info`, with the runner's [`LogTailLayer`] so a failed
//! task's last lines travel with its failure into the job's details.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::runner::LogTailLayer;

/// Installs the process's logging; `format` is `text` or `json`, `filter`
/// an `EnvFilter` directive (`RUST_LOG` wins when set and valid).
pub fn init(filter: Option<&str>, format: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| filter.and_then(|f| EnvFilter::try_new(f).ok()))
        .unwrap_or_else(|| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(LogTailLayer);
    let result = if format == "json" {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
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
