//! The process logging of every pgvault command that runs tasks (`worker`,
//! `up`, `agent run`, `pgvault-agent`) and of the coordinator: `tracing` to
//! stderr as text or JSON lines ([`JsonLines`]: span fields such as
//! `job_id`, `attempt`, `instance_id`, `trace_id` at the top level of every
//! line), with the runner's [`LogTailLayer`] so a failed task's last lines
//! travel with its failure into the job's details, and the process's trace
//! pipeline ([`Tracing`]) when given.
//!
//! The log filter (`RUST_LOG`, else the configured `log.filter`, else
//! `info`) is a per-layer filter of the log and its tail only: the trace
//! pipeline keeps its own rule ([`Tracing::layer`]), so `log.filter=warn`
//! quietens the log without dropping a job's spans from its trace.

use std::io::IsTerminal;

use pgvault_telemetry::{JsonLines, Tracing};
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::runner::LogTailLayer;

/// Installs the process's logging; `format` is `text` or `json`, `filter`
/// an `EnvFilter` directive (`RUST_LOG` wins when set and valid); spans are
/// recorded into `tracing` when given, whatever the log filter.
pub fn init(filter: Option<&str>, format: &str, tracing: Option<&Tracing>) {
    let directives = directives(std::env::var("RUST_LOG").ok().as_deref(), filter);
    // Colours only for people at a terminal, never in log files.
    let ansi = std::io::stderr().is_terminal();
    let result = subscriber(&directives, format, ansi, std::io::stderr, tracing).try_init();
    if let Err(e) = result {
        eprintln!("warning: logging already initialised: {e}");
    }
}

/// The log's filter directives: `env` (`RUST_LOG`) when valid, else
/// `configured` when valid, else `info`.
fn directives(env: Option<&str>, configured: Option<&str>) -> String {
    [env, configured]
        .into_iter()
        .flatten()
        .find(|d| EnvFilter::try_new(d).is_ok())
        .unwrap_or("info")
        .to_string()
}

/// The subscriber: the log (to `writer`) and its tail filtered by
/// `directives`, the trace pipeline by its own rule.
fn subscriber<W>(
    directives: &str,
    format: &str,
    ansi: bool,
    writer: W,
    tracing: Option<&Tracing>,
) -> impl Subscriber + Send + Sync + for<'a> tracing_subscriber::registry::LookupSpan<'a>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let log_filter = || EnvFilter::new(directives);
    let log: Box<dyn Layer<Registry> + Send + Sync> = if format == "json" {
        tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .with_writer(writer)
            .with_filter(log_filter())
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(writer)
            .with_filter(log_filter())
            .boxed()
    };
    tracing_subscriber::registry()
        .with(log)
        // The tail keeps what the log shows and nothing more.
        .with(LogTailLayer.with_filter(log_filter()))
        .with(tracing.map(Tracing::layer))
}

#[cfg(test)]
mod tests {
    use pgvault_telemetry::capture::Captured;
    use pgvault_telemetry::{ServiceName, TraceContext};

    use super::*;

    #[tokio::test]
    async fn a_warn_log_filter_quietens_the_log_but_keeps_spans_in_the_trace() {
        let tracing = Tracing::start(ServiceName::Worker, None).expect("starts");
        let lines = Captured::default();
        let writer = lines.clone();
        let subscriber = subscriber(
            "warn",
            "json",
            false,
            move || writer.clone(),
            Some(&tracing),
        );
        pgvault_telemetry::capture::keep_interest_shared();
        let traced = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("restore");
            let _entered = span.enter();
            tracing::info!("an info line the log leaves out");
            tracing::warn!("a warning the log shows");
            TraceContext::of_span(&span)
        });
        assert!(
            traced.is_some(),
            "an info span is recorded into the trace under log.filter=warn"
        );
        let text = lines.text();
        assert!(text.contains("a warning the log shows"), "{text}");
        assert!(!text.contains("an info line"), "{text}");
        tracing.shutdown().await;
    }

    #[test]
    fn the_log_filter_is_rust_log_else_the_configured_one_else_info() {
        assert_eq!(directives(Some("debug"), Some("warn")), "debug");
        assert_eq!(directives(None, Some("warn")), "warn");
        assert_eq!(directives(Some("=[bad"), Some("warn")), "warn");
        assert_eq!(directives(None, None), "info");
    }
}
