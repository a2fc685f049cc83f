//! The connection to the coordinator: one tonic `Channel` with an interceptor
//! that attaches `authorization: Bearer <token>` to every call, the typed
//! service clients built on it, and the translation of transport failures and
//! gRPC statuses into one-line [`ClientError`]s.

use std::path::Path;
use std::time::Duration;

use pgvault_proto::v1::access_service_client::AccessServiceClient;
use pgvault_proto::v1::agent_service_client::AgentServiceClient;
use pgvault_proto::v1::backup_instance_service_client::BackupInstanceServiceClient;
use pgvault_proto::v1::job_service_client::JobServiceClient;
use pgvault_proto::v1::notification_service_client::NotificationServiceClient;
use pgvault_proto::v1::policy_service_client::PolicyServiceClient;
use pgvault_proto::v1::recovery_point_service_client::RecoveryPointServiceClient;
use pgvault_proto::v1::restore_service_client::RestoreServiceClient;
use pgvault_proto::v1::secret_service_client::SecretServiceClient;
use pgvault_proto::v1::server_service_client::ServerServiceClient;
use pgvault_proto::v1::vault_service_client::VaultServiceClient;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

use super::output::OutputFormat;

/// How long to wait for the TCP/HTTP2 connection before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Failures the user sees as one line.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach pgvault at {endpoint}: {reason}; is \"pgvault up\" running?")]
    Unreachable { endpoint: String, reason: String },
    #[error(
        "cannot reach pgvault at {endpoint}: the TLS handshake failed ({reason}); pass the \
         certificate of the CA that signed the coordinator's certificate with --ca-cert FILE \
         or PGVAULT_CA_CERT"
    )]
    Untrusted { endpoint: String, reason: String },
    #[error("cannot read the CA certificate {path}: {reason}")]
    CaCert { path: String, reason: String },
    #[error(
        "no API token: pass --token or set PGVAULT_TOKEN, or run this command in the directory \
         where \"pgvault up\" runs (it writes ./.pgvault/admin.token)"
    )]
    NoToken,
    #[error("the API token contains characters that cannot be sent in a header")]
    InvalidToken,
    /// A status the server sent; its message is written for humans.
    #[error("{message}")]
    Api { code: Code, message: String },
}

/// Attaches the bearer token to every request.
#[derive(Clone)]
pub struct BearerAuth {
    /// "Bearer <token>", marked sensitive so it never shows in debug output.
    header: AsciiMetadataValue,
}

impl BearerAuth {
    pub fn new(token: &str) -> Result<Self, ClientError> {
        let mut header: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| ClientError::InvalidToken)?;
        header.set_sensitive(true);
        Ok(Self { header })
    }
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerAuth(<redacted>)")
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.header.clone());
        Ok(request)
    }
}

/// The authenticated channel every service client shares.
pub type AuthChannel = InterceptedService<Channel, BearerAuth>;

/// A connected API plus the user's output choice: what every verb receives.
pub struct Api {
    channel: AuthChannel,
    /// As the user gave it, for error messages.
    endpoint: String,
    pub output: OutputFormat,
}

impl Api {
    /// A client for `endpoint`; the connection is made on the first call and
    /// a failure there reads as [`ClientError::Unreachable`].
    #[cfg(test)]
    pub fn new(endpoint: &str, token: &str, output: OutputFormat) -> Result<Self, ClientError> {
        Self::with_ca_cert(endpoint, token, output, None)
    }

    /// Like [`Api::new`]; `https://` endpoints are verified against
    /// `ca_cert` (a PEM file) when given, else against the system's roots.
    pub fn with_ca_cert(
        endpoint: &str,
        token: &str,
        output: OutputFormat,
        ca_cert: Option<&Path>,
    ) -> Result<Self, ClientError> {
        let auth = BearerAuth::new(token)?;
        let normalized = normalize_endpoint(endpoint);
        let mut builder =
            Endpoint::from_shared(normalized.clone()).map_err(|e| ClientError::Unreachable {
                endpoint: endpoint.to_owned(),
                reason: error_chain(&e),
            })?;
        if normalized.starts_with("https://") {
            pgvault_proto::tls::install_crypto_provider();
            let tls = match ca_cert {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|e| ClientError::CaCert {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
                }
                None => ClientTlsConfig::new().with_native_roots(),
            };
            builder = builder
                .tls_config(tls)
                .map_err(|e| ClientError::Unreachable {
                    endpoint: endpoint.to_owned(),
                    reason: error_chain(&e),
                })?;
        }
        let channel = builder.connect_timeout(CONNECT_TIMEOUT).connect_lazy();
        Ok(Self {
            channel: InterceptedService::new(channel, auth),
            endpoint: endpoint.to_owned(),
            output,
        })
    }

    /// Turns a failed call into the line the user sees.
    pub fn fail(&self, status: Status) -> anyhow::Error {
        status_error(&self.endpoint, status).into()
    }

    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }

    pub fn access(&self) -> AccessServiceClient<AuthChannel> {
        AccessServiceClient::new(self.channel.clone())
    }
    pub fn agents(&self) -> AgentServiceClient<AuthChannel> {
        AgentServiceClient::new(self.channel.clone())
    }
    pub fn vaults(&self) -> VaultServiceClient<AuthChannel> {
        VaultServiceClient::new(self.channel.clone())
    }
    pub fn policies(&self) -> PolicyServiceClient<AuthChannel> {
        PolicyServiceClient::new(self.channel.clone())
    }
    pub fn servers(&self) -> ServerServiceClient<AuthChannel> {
        ServerServiceClient::new(self.channel.clone())
    }
    pub fn secrets(&self) -> SecretServiceClient<AuthChannel> {
        SecretServiceClient::new(self.channel.clone())
    }
    pub fn instances(&self) -> BackupInstanceServiceClient<AuthChannel> {
        BackupInstanceServiceClient::new(self.channel.clone())
    }
    pub fn recovery_points(&self) -> RecoveryPointServiceClient<AuthChannel> {
        RecoveryPointServiceClient::new(self.channel.clone())
    }
    pub fn restores(&self) -> RestoreServiceClient<AuthChannel> {
        RestoreServiceClient::new(self.channel.clone())
    }
    pub fn jobs(&self) -> JobServiceClient<AuthChannel> {
        JobServiceClient::new(self.channel.clone())
    }
    pub fn notifications(&self) -> NotificationServiceClient<AuthChannel> {
        NotificationServiceClient::new(self.channel.clone())
    }
}

/// Unwraps a unary call's reply, turning a failed call into the user's line.
pub trait Reply<T> {
    fn reply(self, api: &Api) -> anyhow::Result<T>;
}

impl<T> Reply<T> for Result<tonic::Response<T>, Status> {
    fn reply(self, api: &Api) -> anyhow::Result<T> {
        self.map(tonic::Response::into_inner)
            .map_err(|status| api.fail(status))
    }
}

/// `host:port` without a scheme means plain HTTP/2.
fn normalize_endpoint(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    }
}

/// A status as the user sees it: the server's message (written for humans),
/// or the unreachable line when the transport failed mid-way.
pub fn status_error(endpoint: &str, status: Status) -> ClientError {
    // Transport failures carry their cause as the status' source; statuses
    // the server sent do not.
    if let Some(source) = std::error::Error::source(&status) {
        let reason = error_chain(source);
        if reason.contains("certificate") || reason.contains("UnknownIssuer") {
            return ClientError::Untrusted {
                endpoint: endpoint.to_owned(),
                reason,
            };
        }
        return ClientError::Unreachable {
            endpoint: endpoint.to_owned(),
            reason,
        };
    }
    let message = if status.message().is_empty() {
        format!("request failed: {}", code_phrase(status.code()))
    } else {
        status.message().to_owned()
    };
    let message = match status.code() {
        Code::Unauthenticated => {
            format!("{message} (check --token, PGVAULT_TOKEN or ./.pgvault/admin.token)")
        }
        _ => message,
    };
    ClientError::Api {
        code: status.code(),
        message,
    }
}

/// Lowercase words for a gRPC code, for statuses that arrive without a message.
fn code_phrase(code: Code) -> String {
    code.description().to_lowercase()
}

/// Every distinct message in an error's source chain, joined with ": ".
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_is_attached_and_redacted() {
        let mut auth = BearerAuth::new("s3cr3t").expect("valid token");
        let request = auth
            .call(Request::new(()))
            .expect("interceptor never fails");
        let header = request.metadata().get("authorization").expect("header set");
        assert_eq!(header.to_str().expect("ascii"), "Bearer s3cr3t");
        assert!(!format!("{auth:?}").contains("s3cr3t"));
        assert!(!format!("{header:?}").contains("s3cr3t"));
    }

    #[test]
    fn token_with_newline_is_refused() {
        assert!(matches!(
            BearerAuth::new("abc\ndef"),
            Err(ClientError::InvalidToken)
        ));
    }

    #[test]
    fn status_message_is_shown_without_debug_noise() {
        let error = status_error("http://x", Status::not_found("vault \"prod\" not found"));
        assert_eq!(error.to_string(), "vault \"prod\" not found");
    }

    #[test]
    fn transport_failure_reads_as_unreachable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let error = status_error("http://127.0.0.1:1", Status::from_error(Box::new(io)));
        assert_eq!(
            error.to_string(),
            "cannot reach pgvault at http://127.0.0.1:1: connection refused; is \"pgvault up\" running?"
        );
        let from_server = status_error(
            "http://x",
            Status::unavailable("coordinator is shutting down"),
        );
        assert_eq!(from_server.to_string(), "coordinator is shutting down");
    }

    #[test]
    fn unauthenticated_status_says_where_tokens_come_from() {
        let error = status_error("http://x", Status::unauthenticated("invalid token"));
        assert!(error.to_string().starts_with("invalid token ("));
    }

    #[test]
    fn endpoint_without_scheme_gets_http() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:50051"),
            "http://127.0.0.1:50051"
        );
        assert_eq!(
            normalize_endpoint("https://vault.example:443"),
            "https://vault.example:443"
        );
    }

    #[tokio::test]
    async fn closed_port_is_reported_as_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let endpoint = format!("127.0.0.1:{port}");
        let api = Api::new(&endpoint, "t", OutputFormat::Table).expect("valid endpoint");
        let request = pgvault_proto::v1::ListVaultsRequest::default();
        let error = api.vaults().list_vaults(request).await.reply(&api);
        let text = format!("{:#}", error.expect_err("nothing listens"));
        assert!(
            text.starts_with(&format!("cannot reach pgvault at {endpoint}: ")),
            "{text}"
        );
        assert!(text.ends_with("is \"pgvault up\" running?"), "{text}");
    }
}
