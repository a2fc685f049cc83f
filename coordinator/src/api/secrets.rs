//! `SecretService`: put a connection string or a notification signing key
//! (each validated as what it is, sealed, versioned),
//! list secret names with the vaults granted each, and grant or revoke a
//! vault's access. No call ever returns or logs a value.

use std::sync::Arc;

use pgvault_proto::v1 as pb;
use pgvault_proto::v1::secret_service_server::SecretService;
use tonic::{Request, Response, Status};

use crate::access::{self, vault_scope};
use crate::api::{ApiContext, next_token};
use crate::error::{CoordinatorError, Result};
use crate::names;
use crate::secrets::{Redacted, parse_connection_string, secret_aad};
use crate::store::{paging, secret_grants, secrets, vaults};

pub struct SecretApi {
    ctx: Arc<ApiContext>,
}

impl SecretApi {
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        SecretApi { ctx }
    }

    async fn put(&self, id: String, value: Redacted<String>, kind: Kind) -> Result<pb::Secret> {
        names::validate_short_id("secret_id", &id)?;
        match kind {
            Kind::ConnectionString => {
                parse_connection_string("value", value.expose())?;
            }
            Kind::SigningKey => check_signing_key(value.expose())?,
        }
        let mut tx = self.ctx.store.begin().await?;
        let meta = secrets::next_version(&mut *tx, &id).await?;
        let sealed = self
            .ctx
            .cipher
            .seal(value.expose().trim(), &secret_aad(&id, meta.latest_version))?;
        secrets::insert_version(&mut *tx, &id, meta.latest_version, &sealed).await?;
        tx.commit().await?;
        tracing::info!(secret = %id, version = meta.latest_version, "secret stored");
        self.with_grants(vec![meta.into()]).await.map(first)
    }

    /// Fills `granted_vaults` of each secret.
    async fn with_grants(&self, mut page: Vec<pb::Secret>) -> Result<Vec<pb::Secret>> {
        let ids: Vec<String> = page
            .iter()
            .map(|s| s.name.trim_start_matches("secrets/").to_string())
            .collect();
        let mut grants = secret_grants::vaults_of(self.ctx.store.pool(), &ids).await?;
        for (secret, id) in page.iter_mut().zip(&ids) {
            secret.granted_vaults = grants
                .remove(id)
                .unwrap_or_default()
                .iter()
                .map(|v| names::vault_name(v))
                .collect();
        }
        Ok(page)
    }

    /// Grants (`grant`) or revokes a vault's access to a secret.
    async fn set_access(&self, secret: &str, vault: &str, grant: bool) -> Result<pb::Secret> {
        let secret_id = names::parse_secret("secret", secret)?;
        let vault_id = names::parse_vault("vault", vault)?;
        let pool = self.ctx.store.pool();
        vaults::get(pool, &vault_id).await?;
        let meta = secrets::find(pool, &secret_id)
            .await?
            .ok_or_else(|| CoordinatorError::not_found("secret", &secret_id))?;
        if grant {
            secret_grants::grant(pool, &vault_id, &secret_id).await?;
            tracing::info!(secret = %secret_id, vault = %vault_id, "secret access granted");
        } else if secret_grants::revoke(pool, &vault_id, &secret_id).await? {
            tracing::info!(secret = %secret_id, vault = %vault_id, "secret access revoked");
        } else {
            return Err(CoordinatorError::precondition(format!(
                "vault \"{vault_id}\" has no access to secret \"{secret_id}\" to revoke"
            )));
        }
        self.with_grants(vec![meta.into()]).await.map(first)
    }
}

/// What a stored value is, so it is checked as that.
enum Kind {
    ConnectionString,
    /// A notification signing key (`crate::notifications::signature`).
    SigningKey,
}

/// A signing key long enough to resist guessing.
fn check_signing_key(value: &str) -> Result<()> {
    if value.trim().chars().count() < 16 {
        return Err(CoordinatorError::invalid(
            "value",
            "a signing key needs at least 16 characters; generate one with openssl rand -hex 32",
        ));
    }
    Ok(())
}

fn first(mut secrets: Vec<pb::Secret>) -> pb::Secret {
    secrets.swap_remove(0)
}

#[tonic::async_trait]
impl SecretService for SecretApi {
    async fn put_secret(
        &self,
        request: Request<pb::PutSecretRequest>,
    ) -> Result<Response<pb::Secret>, Status> {
        let req = request.into_inner();
        Ok(Response::new(
            self.put(req.secret_id, Redacted(req.value), Kind::ConnectionString)
                .await?,
        ))
    }

    async fn put_signing_key(
        &self,
        request: Request<pb::PutSigningKeyRequest>,
    ) -> Result<Response<pb::Secret>, Status> {
        let req = request.into_inner();
        Ok(Response::new(
            self.put(req.secret_id, Redacted(req.value), Kind::SigningKey)
                .await?,
        ))
    }

    async fn list_secrets(
        &self,
        request: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ListSecretsResponse>, Status> {
        let req = request.into_inner();
        let size = paging::page_size(req.page_size);
        let after = paging::after_id(&req.page_token)?;
        let rows = secrets::list(self.ctx.store.pool(), after.as_deref(), size + 1).await?;
        let (page, more) = paging::split_page(rows, size);
        let next_page_token = next_token(&page, more, |s| paging::id_token(&s.id));
        let secrets = self
            .with_grants(page.into_iter().map(Into::into).collect())
            .await?;
        Ok(Response::new(pb::ListSecretsResponse {
            secrets,
            next_page_token,
        }))
    }

    async fn grant_secret_access(
        &self,
        request: Request<pb::GrantSecretAccessRequest>,
    ) -> Result<Response<pb::Secret>, Status> {
        let vault = vault_scope(&request.get_ref().vault);
        access::in_vault(&request, vault.as_deref())?;
        let req = request.into_inner();
        Ok(Response::new(
            self.set_access(&req.secret, &req.vault, true).await?,
        ))
    }

    async fn revoke_secret_access(
        &self,
        request: Request<pb::RevokeSecretAccessRequest>,
    ) -> Result<Response<pb::Secret>, Status> {
        let vault = vault_scope(&request.get_ref().vault);
        access::in_vault(&request, vault.as_deref())?;
        let req = request.into_inner();
        Ok(Response::new(
            self.set_access(&req.secret, &req.vault, false).await?,
        ))
    }
}
