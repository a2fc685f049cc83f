//! The OpenTelemetry pipeline of one process: a tracer provider named after
//! the process's role, exporting over OTLP/gRPC only when an endpoint is
//! configured (batched, off the request path: an unreachable collector
//! drops spans, it never slows or fails a job), and the `tracing` layer
//! that turns spans into OpenTelemetry spans. Without an endpoint spans
//! still get ids (trace ids in logs and job details) and are then dropped.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;

/// How long one export may take before its batch is dropped.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `service.name` of each process role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceName {
    /// `pgvault coordinator`, and `pgvault up` (coordinator and worker in
    /// one process: its spans are the coordinator's).
    Coordinator,
    /// `pgvault worker`.
    Worker,
    /// `pgvault agent run` and `pgvault-agent`.
    Agent,
}

impl ServiceName {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceName::Coordinator => "pgvault-coordinator",
            ServiceName::Worker => "pgvault-worker",
            ServiceName::Agent => "pgvault-agent",
        }
    }
}

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(
        "telemetry.otlp_endpoint must be an http:// or https:// URL such as http://127.0.0.1:4317 (got {0:?})"
    )]
    Endpoint(String),
    #[error("cannot set up the OTLP exporter for {endpoint}: {message}")]
    Exporter { endpoint: String, message: String },
}

/// A process's tracer provider. Call [`Tracing::shutdown`] before the
/// process exits so spans still in the batch are exported.
#[derive(Debug, Clone)]
pub struct Tracing {
    provider: SdkTracerProvider,
    service: ServiceName,
}

impl Tracing {
    /// Starts the provider; with `otlp_endpoint` (e.g.
    /// `http://collector:4317`) spans are exported there. Must run inside a
    /// Tokio runtime when an endpoint is given (the gRPC channel lives there).
    pub fn start(
        service: ServiceName,
        otlp_endpoint: Option<&str>,
    ) -> Result<Tracing, TelemetryError> {
        let resource = Resource::builder()
            .with_service_name(service.as_str())
            .build();
        let mut builder = SdkTracerProvider::builder().with_resource(resource);
        if let Some(endpoint) = otlp_endpoint.map(str::trim).filter(|e| !e.is_empty()) {
            builder = builder.with_batch_exporter(exporter(endpoint)?);
        }
        Ok(Tracing {
            provider: builder.build(),
            service,
        })
    }

    /// The `tracing` layer recording spans into this provider, with its own
    /// per-layer filter (the log's filter never reaches it, so a quiet log
    /// keeps every span of a job's trace): spans and events at INFO and
    /// above (events become events of their span), pgvault's own only: the
    /// gRPC stack's spans (including the exporter's own calls) are left out.
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let tracer: SdkTracer = self.provider.tracer(self.service.as_str());
        let quiet = Targets::new()
            .with_default(LevelFilter::INFO)
            .with_target("h2", LevelFilter::OFF)
            .with_target("hyper", LevelFilter::OFF)
            .with_target("hyper_util", LevelFilter::OFF)
            .with_target("tonic", LevelFilter::OFF)
            .with_target("tower", LevelFilter::OFF)
            .with_target("opentelemetry", LevelFilter::OFF)
            .with_target("opentelemetry_sdk", LevelFilter::OFF)
            .with_target("opentelemetry_otlp", LevelFilter::OFF);
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(quiet)
    }

    /// Exports what is still batched and stops; waits at most for one
    /// export timeout. Failures are logged, never returned: losing spans
    /// must not change how a process exits.
    pub async fn shutdown(self) {
        let provider = self.provider;
        // The exporter blocks its own thread; keep the runtime free to
        // drive the gRPC channel meanwhile.
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not export the last trace spans: {e}"),
            Err(e) => eprintln!("warning: could not export the last trace spans: {e}"),
        }
    }
}

fn exporter(endpoint: &str) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    let tls = if endpoint.starts_with("https://") {
        Some(tonic::transport::ClientTlsConfig::new().with_native_roots())
    } else if endpoint.starts_with("http://") {
        None
    } else {
        return Err(TelemetryError::Endpoint(endpoint.to_string()));
    };
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT);
    if let Some(tls) = tls {
        builder = builder.with_tls_config(tls);
    }
    builder.build().map_err(|e| TelemetryError::Exporter {
        endpoint: endpoint.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_that_is_no_url_is_refused_naming_the_key() {
        let err = Tracing::start(ServiceName::Worker, Some("collector:4317")).unwrap_err();
        assert!(err.to_string().contains("telemetry.otlp_endpoint"), "{err}");
    }

    #[tokio::test]
    async fn without_an_endpoint_spans_get_ids_and_shutdown_is_quick() {
        use tracing_subscriber::layer::SubscriberExt;
        let tracing = Tracing::start(ServiceName::Coordinator, None).expect("starts");
        let subscriber = tracing_subscriber::registry().with(tracing.layer());
        crate::capture::keep_interest_shared();
        let context = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("job");
            crate::TraceContext::of_span(&span)
        });
        assert!(context.is_some(), "a traced span has a context");
        tracing.shutdown().await;
    }

    #[tokio::test]
    async fn the_trace_keeps_info_spans_and_leaves_debug_and_grpc_stack_spans_out() {
        use tracing_subscriber::layer::SubscriberExt;
        let tracing = Tracing::start(ServiceName::Worker, None).expect("starts");
        let subscriber = tracing_subscriber::registry().with(tracing.layer());
        crate::capture::keep_interest_shared();
        tracing::subscriber::with_default(subscriber, || {
            let traced = |span: &tracing::Span| crate::TraceContext::of_span(span).is_some();
            assert!(traced(&tracing::info_span!("load")));
            assert!(traced(&tracing::error_span!("task")));
            assert!(!traced(&tracing::debug_span!("detail")));
            assert!(!traced(&tracing::info_span!(target: "h2", "frame")));
        });
        tracing.shutdown().await;
    }
}
