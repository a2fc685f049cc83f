//! The HTTP/2 channel from a worker or an agent to its coordinator: the
//! endpoint, TLS for `https://` endpoints (verified against the system's
//! roots, or only against a private CA's PEM certificate given with
//! `--ca-cert` / `worker.ca_cert`), a lazy connection that reconnects on its
//! own, and the bearer token attached to every call. Workers make their
//! unary `WorkerService` calls on it ([`GrpcLink`](super::GrpcLink)); an
//! agent also keeps its `AgentService.Connect` stream on the same channel.

use std::path::Path;
use std::time::Duration;

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

/// How long to wait for the TCP, TLS and HTTP/2 handshakes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Keeps idle connections (an agent's quiet stream) alive through NATs
/// and firewalls, and notices a dead peer.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// Why a channel could not be set up (before any connection is tried).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("invalid coordinator endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("cannot read the CA certificate {path}: {reason}; pass a readable PEM file")]
    CaCert { path: String, reason: String },
    #[error("cannot set up TLS to {endpoint:?}: {reason}")]
    Tls { endpoint: String, reason: String },
    #[error(
        "a CA certificate was given but the coordinator endpoint {endpoint:?} is not https://; \
         use an https:// endpoint or drop the CA certificate"
    )]
    CaWithoutTls { endpoint: String },
    #[error("the token contains characters not allowed in an HTTP header")]
    Token,
}

/// Adds `authorization: Bearer <token>` to every call. `Debug` never
/// shows the token.
#[derive(Clone)]
pub struct BearerToken(AsciiMetadataValue);

impl BearerToken {
    pub fn new(token: &str) -> Result<BearerToken, ChannelError> {
        let mut header: AsciiMetadataValue =
            MetadataValue::try_from(format!("Bearer {}", token.trim()))
                .map_err(|_| ChannelError::Token)?;
        header.set_sensitive(true);
        Ok(BearerToken(header))
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A channel whose calls carry the bearer token.
pub type AuthChannel = InterceptedService<Channel, BearerToken>;

/// A channel to `endpoint` that connects on first use (so a worker or an
/// agent can start before its coordinator) and reconnects after a failure.
/// `https://` endpoints are verified against `ca_cert` when given, else
/// against the system's roots.
pub fn coordinator_channel(
    endpoint: &str,
    ca_cert: Option<&Path>,
) -> Result<Channel, ChannelError> {
    // `host:port` without a scheme means plain HTTP/2, as for the CLI.
    let uri = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    let mut builder = Endpoint::from_shared(uri.clone()).map_err(|e| ChannelError::Endpoint {
        endpoint: endpoint.to_string(),
        reason: e.to_string(),
    })?;
    let tls = uri.starts_with("https://");
    if tls {
        pgvault_proto::tls::install_crypto_provider();
        let config = match ca_cert {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| ChannelError::CaCert {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
            }
            None => ClientTlsConfig::new().with_native_roots(),
        };
        builder = builder.tls_config(config).map_err(|e| ChannelError::Tls {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
        })?;
    } else if ca_cert.is_some() {
        return Err(ChannelError::CaWithoutTls {
            endpoint: endpoint.to_string(),
        });
    }
    Ok(builder
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_keepalive(Some(KEEPALIVE))
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// [`coordinator_channel`] with `token` on every call.
pub fn authenticated_channel(
    endpoint: &str,
    token: &str,
    ca_cert: Option<&Path>,
) -> Result<AuthChannel, ChannelError> {
    let auth = BearerToken::new(token)?;
    Ok(InterceptedService::new(
        coordinator_channel(endpoint, ca_cert)?,
        auth,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoints_and_ca_certificates_are_checked_before_connecting() {
        assert!(coordinator_channel("http://127.0.0.1:1", None).is_ok());
        assert!(coordinator_channel("127.0.0.1:1", None).is_ok());
        assert!(matches!(
            coordinator_channel("http://bad host", None),
            Err(ChannelError::Endpoint { .. })
        ));
        let missing = Path::new("/nonexistent/ca.pem");
        let error = coordinator_channel("https://vault.example:50051", Some(missing)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot read the CA certificate /nonexistent/ca.pem: No such file or directory (os error 2); pass a readable PEM file"
        );
        let dir = std::env::temp_dir().join(format!("pgvault-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        assert!(matches!(
            coordinator_channel("http://127.0.0.1:1", Some(&ca)),
            Err(ChannelError::CaWithoutTls { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let token = BearerToken::new("s3cr3t-token").unwrap();
        assert_eq!(format!("{token:?}"), "BearerToken(<redacted>)");
        assert!(matches!(
            BearerToken::new("bad\ntoken"),
            Err(ChannelError::Token)
        ));
    }
}
