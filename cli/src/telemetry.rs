//! Logging for the server commands: `tracing` to stderr as text or JSON,
//! filtered by `log.filter` (or `RUST_LOG` when set), with the runner's
//! log-tail layer so a failed task's last lines (of `pgvault worker`, `up`
//! or `agent run`) travel with its failure into the job's details.

use std::io::IsTerminal;

use pgvault_worker::runner::LogTailLayer;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogSettings;

pub fn init(settings: &LogSettings) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(&settings.filter).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(LogTailLayer);
    let result = if settings.format == "json" {
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
