//! The metrics listener: `GET /metrics` answers with every family as
//! OpenMetrics text (which Prometheus scrapes as it does its own text
//! format), on plain HTTP, until the coordinator stops. `pgvault up` asks
//! for its default port and moves on to a free one when it is taken; a
//! configured `telemetry.metrics_listen` is bound exactly.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use pgvault_console::PortFallback;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{CoordinatorError, Result};
use crate::metrics::Metrics;
use crate::store::Store;

/// Ports tried after the asked one before any free port is taken.
const NEXT_PORTS: u16 = 10;
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Where metrics are served (`telemetry.metrics_listen`).
#[derive(Debug, Clone, Copy)]
pub struct MetricsOptions {
    pub listen: SocketAddr,
    /// What to do when `listen`'s port is taken.
    pub fallback: PortFallback,
}

/// The running listener.
pub struct MetricsHandle {
    url: String,
    task: JoinHandle<()>,
}

impl MetricsHandle {
    /// `http://host:port/metrics`, as bound.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Waits for the listener to stop (after the coordinator's cancel).
    pub async fn stopped(self) {
        if let Err(error) = self.task.await {
            tracing::warn!(error = %error, "metrics listener ended abnormally");
        }
    }
}

/// Binds and serves until `cancel`.
pub async fn start(
    options: MetricsOptions,
    metrics: Metrics,
    store: Store,
    cancel: CancellationToken,
) -> Result<MetricsHandle> {
    let listener = bind(options).await?;
    let local = listener.local_addr().map_err(|e| {
        CoordinatorError::internal(format!("cannot read the metrics listen address: {e}"))
    })?;
    let url = format!(
        "http://{}/metrics",
        pgvault_console::serve::browsable(local)
    );
    let router = Router::new()
        .route("/metrics", get(scrape))
        .with_state((metrics, store));
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::warn!(error = %error, "metrics listener failed");
        }
    });
    tracing::info!(url = %url, "metrics served");
    Ok(MetricsHandle { url, task })
}

async fn scrape(State((metrics, store)): State<(Metrics, Store)>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        metrics.render(&store).await,
    )
}

async fn bind(options: MetricsOptions) -> Result<TcpListener> {
    let addr = options.listen;
    let error = match TcpListener::bind(addr).await {
        Ok(listener) => return Ok(listener),
        Err(e) => e,
    };
    if options.fallback == PortFallback::NextFree && error.kind() == std::io::ErrorKind::AddrInUse {
        let candidates = (1..=NEXT_PORTS)
            .filter_map(|n| addr.port().checked_add(n))
            .chain([0]);
        for port in candidates {
            if let Ok(listener) = TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
                tracing::info!(asked = %addr, port, "metrics port taken: using another");
                return Ok(listener);
            }
        }
    }
    Err(CoordinatorError::Unavailable(format!(
        "metrics cannot listen on {addr}: {error}; choose another telemetry.metrics_listen (or \"off\")"
    )))
}
