//! The web console inside the coordinator process
//! (`coordinator.console_listen`, see `pgvault-console`). The console
//! calls the very gRPC routes this coordinator serves, in memory, behind
//! the same access gate ([`AccessLayer`]): it is a client of the public
//! API with each user's own token, not a second way into the store. Over
//! TLS when the gRPC listener is, with the same certificate.

use pgvault_console::{ApiChannel, Console, ConsoleHandle, ConsoleOptions, TlsPem};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tower_layer::Layer;

use crate::access::AccessLayer;
use crate::config::TlsFiles;
use crate::error::{CoordinatorError, Result};
use crate::store::Store;

/// Starts the console on `options.listen`, serving until `cancel`.
pub async fn start(
    mut options: ConsoleOptions,
    tls: Option<&TlsFiles>,
    routes: Routes,
    store: Store,
    cancel: CancellationToken,
) -> Result<ConsoleHandle> {
    if let Some(files) = tls {
        let read = |key: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| {
                CoordinatorError::invalid(
                    format!("coordinator.{key}"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })
        };
        options.tls = Some(TlsPem {
            cert: read("tls_cert", &files.cert)?,
            key: read("tls_key", &files.key)?,
        });
    }
    let api = ApiChannel::new(AccessLayer::new(store).layer(routes));
    Console::start(options, api, cancel)
        .await
        .map_err(|e| match e {
            pgvault_console::ConsoleError::Invalid(message) => {
                CoordinatorError::invalid("tls", message)
            }
            other => CoordinatorError::Unavailable(other.to_string()),
        })
}
