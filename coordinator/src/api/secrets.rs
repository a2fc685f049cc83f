//! `SecretService`: put a connection string (validated, sealed, versioned)
//! and list secret names. No call ever returns or logs a value.

use std::sync::Arc;

use pgvault_proto::v1 as pb;
use pgvault_proto::v1::secret_service_server::SecretService;
use tonic::{Request, Response, Status};

use crate::access::Rpc;
use crate::api::{ApiContext, next_token};
use crate::error::Result;
use crate::names;
use crate::secrets::{Redacted, parse_connection_string, secret_aad};
use crate::store::{paging, secrets};

pub struct SecretApi {
    ctx: Arc<ApiContext>,
}

impl SecretApi {
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        SecretApi { ctx }
    }

    async fn put(&self, id: String, value: Redacted<String>) -> Result<pb::Secret> {
        names::validate_short_id("secret_id", &id)?;
        parse_connection_string("value", value.expose())?;
        let mut tx = self.ctx.store.begin().await?;
        let meta = secrets::next_version(&mut *tx, &id).await?;
        let sealed = self
            .ctx
            .cipher
            .seal(value.expose().trim(), &secret_aad(&id, meta.latest_version))?;
        secrets::insert_version(&mut *tx, &id, meta.latest_version, &sealed).await?;
        tx.commit().await?;
        tracing::info!(secret = %id, version = meta.latest_version, "secret stored");
        Ok(meta.into())
    }
}

#[tonic::async_trait]
impl SecretService for SecretApi {
    async fn put_secret(
        &self,
        request: Request<pb::PutSecretRequest>,
    ) -> Result<Response<pb::Secret>, Status> {
        self.ctx.authorize(&request, Rpc::PutSecret, None).await?;
        let req = request.into_inner();
        Ok(Response::new(
            self.put(req.secret_id, Redacted(req.value)).await?,
        ))
    }

    async fn list_secrets(
        &self,
        request: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ListSecretsResponse>, Status> {
        self.ctx.authorize(&request, Rpc::ListSecrets, None).await?;
        let req = request.into_inner();
        let size = paging::page_size(req.page_size);
        let after = paging::after_id(&req.page_token)?;
        let rows = secrets::list(self.ctx.store.pool(), after.as_deref(), size + 1).await?;
        let (page, more) = paging::split_page(rows, size);
        let next_page_token = next_token(&page, more, |s| paging::id_token(&s.id));
        Ok(Response::new(pb::ListSecretsResponse {
            secrets: page.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }
}
