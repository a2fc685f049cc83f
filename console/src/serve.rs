//! Binding the console's listener and serving the router on it, over
//! plain HTTP or TLS (rustls, the coordinator's own certificate), HTTP/1.1
//! and HTTP/2, until cancelled.
//!
//! `pgvault up` asks for 127.0.0.1:8080 but must not fail when another
//! program holds that port: with [`PortFallback::NextFree`] the next ten
//! ports are tried, then any free port, and the URL printed is the one
//! bound. A configured address ([`PortFallback::Fail`]) is bound exactly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

use crate::error::ConsoleError;

/// Ports tried after the asked one before any free port is taken.
const NEXT_PORTS: u16 = 10;
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections (live job streams) get to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// What to do when the asked port is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortFallback {
    /// Fail, naming the address (a configured `coordinator.console_listen`).
    Fail,
    /// Try the next ports, then any free one (`pgvault up`'s default).
    NextFree,
}

/// Binds `addr`, or with [`PortFallback::NextFree`] the first free port
/// after it (then any free port).
pub async fn bind(addr: SocketAddr, fallback: PortFallback) -> Result<TcpListener, ConsoleError> {
    let first = TcpListener::bind(addr).await;
    let error = match first {
        Ok(listener) => return Ok(listener),
        Err(e) => e,
    };
    if fallback == PortFallback::NextFree && error.kind() == std::io::ErrorKind::AddrInUse {
        let candidates = (1..=NEXT_PORTS)
            .filter_map(|n| addr.port().checked_add(n))
            .chain([0]);
        for port in candidates {
            if let Ok(listener) = TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
                tracing::info!(asked = %addr, port, "web console port taken: using another");
                return Ok(listener);
            }
        }
    }
    Err(ConsoleError::Unavailable(format!(
        "the web console cannot listen on {addr}: {error}; choose another coordinator.console_listen \
         (or \"off\")"
    )))
}

/// The address to put in a URL: a wildcard bind is reached on loopback.
pub fn browsable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// A TLS acceptor for a PEM certificate chain and private key.
pub fn tls_acceptor(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsAcceptor, ConsoleError> {
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        ConsoleError::Invalid(format!(
            "the web console cannot use the TLS {what}: {e}; check coordinator.tls_cert and tls_key (PEM)"
        ))
    };
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("certificate", &e))?;
    if certs.is_empty() {
        return Err(invalid("certificate", &"no CERTIFICATE block found"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid("key", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("settings", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid("certificate and key", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` on `listener` until `cancel`; then stops accepting and
/// gives open connections [`DRAIN_TIMEOUT`] to finish (a live job stream
/// never does: it is cut).
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    cancel: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(error = %error, "web console cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        let tls = tls.clone();
        let watcher = graceful.watcher();
        connections.spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let served = match tls {
                None => {
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(error)) => {
                                tracing::debug!(peer = %peer, error = %error, "web console TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
            };
            if let Err(error) = served {
                tracing::debug!(peer = %peer, error = %error, "web console connection ended");
            }
        });
        // Forget finished connections as we go.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        connections.abort_all();
    }
    while connections.join_next().await.is_some() {}
    tracing::info!("web console stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_port_moves_on_only_when_allowed() {
        let holder = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let taken = holder.local_addr().expect("addr");
        let error = bind(taken, PortFallback::Fail).await.unwrap_err();
        assert!(error.to_string().contains(&taken.to_string()), "{error}");
        assert!(error.to_string().contains("console_listen"), "{error}");
        let moved = bind(taken, PortFallback::NextFree)
            .await
            .expect("a free port");
        let port = moved.local_addr().expect("addr").port();
        assert_ne!(port, taken.port());
    }

    #[test]
    fn wildcard_binds_are_browsed_on_loopback() {
        assert_eq!(
            browsable("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            browsable("[::]:8080".parse().unwrap()),
            "[::1]:8080".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            browsable("10.1.2.3:80".parse().unwrap()),
            "10.1.2.3:80".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn tls_needs_a_certificate_and_its_key() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let pem = cert.cert.pem();
        let key = cert.key_pair.serialize_pem();
        assert!(tls_acceptor(pem.as_bytes(), key.as_bytes()).is_ok());
        let error = tls_acceptor(b"", key.as_bytes())
            .err()
            .expect("no certificate");
        assert!(
            error.to_string().contains("coordinator.tls_cert"),
            "{error}"
        );
        assert!(tls_acceptor(pem.as_bytes(), b"garbage").is_err());
    }
}
