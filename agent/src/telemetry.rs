//! Logging for `pgvault-agent`: `tracing` to stderr as text or JSON,
//! filtered by `RUST_LOG` (default `info`), with the runner's
//! [`LogTailLayer`] so a failed task's last lines travel with its failure
//! to the coordinator. (`pgvault agent run` logs through the CLI's own
//! set-up, which installs the same layer.)

use std::io::IsTerminal;

use pgvault_worker::runner::LogTailLayer;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the process's logging; `format` is `text` or `json`.
pub fn init(format: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
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
