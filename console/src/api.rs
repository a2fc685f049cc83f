//! The console's only way into pgvault: the coordinator's public gRPC API.
//!
//! An [`ApiChannel`] is any gRPC transport to the coordinator's services —
//! in the coordinator process, the very router the gRPC listener serves,
//! access gate included, called in memory (no loopback port, no TLS hop,
//! and it works whatever address the gRPC listener is bound to). An [`Api`]
//! is that channel with one user's bearer token attached to every call, so
//! the gate authorises the console's calls exactly as it does the CLI's.
//! [`Api::permissions`] asks `TestPermissions` which actions to offer.

use std::collections::BTreeSet;

use pgvault_proto::v1 as pb;
use pgvault_proto::v1::access_service_client::AccessServiceClient;
use pgvault_proto::v1::backup_instance_service_client::BackupInstanceServiceClient;
use pgvault_proto::v1::job_service_client::JobServiceClient;
use pgvault_proto::v1::policy_service_client::PolicyServiceClient;
use pgvault_proto::v1::recovery_point_service_client::RecoveryPointServiceClient;
use pgvault_proto::v1::restore_service_client::RestoreServiceClient;
use pgvault_proto::v1::secret_service_client::SecretServiceClient;
use pgvault_proto::v1::server_service_client::ServerServiceClient;
use pgvault_proto::v1::vault_service_client::VaultServiceClient;
use tonic::body::BoxBody;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_service::Service;

use crate::error::ConsoleError;
use crate::session::Token;

/// Errors of the transport under the gRPC calls.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The transport's error as a concrete type: with `BoxError` itself, the
/// `Into<BoxError>` bounds of tonic's clients defeat the compiler's proof
/// that handler futures are `Send`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(BoxError);

type Transport =
    BoxCloneSyncService<http::Request<BoxBody>, http::Response<BoxBody>, TransportError>;

/// A gRPC transport to the coordinator's public API.
#[derive(Clone)]
pub struct ApiChannel(Transport);

impl ApiChannel {
    /// Any tower service speaking gRPC over HTTP/2 requests: the
    /// coordinator's in-process router, or a `tonic::transport::Channel`.
    pub fn new<S>(service: S) -> ApiChannel
    where
        S: Service<http::Request<BoxBody>, Response = http::Response<BoxBody>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        ApiChannel(BoxCloneSyncService::new(
            service.map_err(|e| TransportError(e.into())),
        ))
    }
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Authed = InterceptedService<Transport, Bearer>;

/// The API as one user: every call carries their token.
#[derive(Clone)]
pub struct Api {
    transport: Transport,
    bearer: Bearer,
}

impl Api {
    pub fn new(channel: &ApiChannel, token: &Token) -> Api {
        Api {
            transport: channel.0.clone(),
            bearer: Bearer(token.metadata()),
        }
    }

    fn authed(&self) -> Authed {
        InterceptedService::new(self.transport.clone(), self.bearer.clone())
    }

    pub fn access(&self) -> AccessServiceClient<Authed> {
        AccessServiceClient::new(self.authed())
    }
    pub fn vaults(&self) -> VaultServiceClient<Authed> {
        VaultServiceClient::new(self.authed())
    }
    pub fn policies(&self) -> PolicyServiceClient<Authed> {
        PolicyServiceClient::new(self.authed())
    }
    pub fn servers(&self) -> ServerServiceClient<Authed> {
        ServerServiceClient::new(self.authed())
    }
    pub fn secrets(&self) -> SecretServiceClient<Authed> {
        SecretServiceClient::new(self.authed())
    }
    pub fn instances(&self) -> BackupInstanceServiceClient<Authed> {
        BackupInstanceServiceClient::new(self.authed())
    }
    pub fn points(&self) -> RecoveryPointServiceClient<Authed> {
        RecoveryPointServiceClient::new(self.authed())
    }
    pub fn restores(&self) -> RestoreServiceClient<Authed> {
        RestoreServiceClient::new(self.authed())
    }
    pub fn jobs(&self) -> JobServiceClient<Authed> {
        JobServiceClient::new(self.authed())
    }

    /// Which of `rpcs` the token may call on `resource` (`""`: globally).
    /// A token that may not even read there holds none of them.
    pub async fn permissions(
        &self,
        resource: &str,
        rpcs: &[&str],
    ) -> Result<Allowed, ConsoleError> {
        let asked = pb::TestPermissionsRequest {
            resource: resource.to_string(),
            permissions: rpcs.iter().map(|r| r.to_string()).collect(),
        };
        match self.access().test_permissions(asked).await {
            Ok(answer) => Ok(Allowed(
                answer.into_inner().permissions.into_iter().collect(),
            )),
            Err(status) if status.code() == tonic::Code::PermissionDenied => Ok(Allowed::default()),
            Err(status) => Err(status.into()),
        }
    }

    /// Every page of a list call, up to `limit` items.
    pub async fn all_pages<T, F, Fut>(
        &self,
        limit: usize,
        mut page: F,
    ) -> Result<Vec<T>, ConsoleError>
    where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = Result<(Vec<T>, String), tonic::Status>>,
    {
        let mut items = Vec::new();
        let mut token = String::new();
        loop {
            let (mut batch, next) = page(token).await?;
            items.append(&mut batch);
            if next.is_empty() || items.len() >= limit {
                items.truncate(limit);
                return Ok(items);
            }
            token = next;
        }
    }
}

/// RPCs the signed-in token may call somewhere (from `TestPermissions`).
#[derive(Debug, Clone, Default)]
pub struct Allowed(BTreeSet<String>);

impl Allowed {
    pub fn may(&self, rpc: &str) -> bool {
        self.0.contains(rpc)
    }
}
