//! `VaultService`: create (checking and creating the datastores), get, list,
//! and delete while the vault is empty.

use std::sync::Arc;

use pgvault_datastore::Datastore;
use pgvault_proto::v1 as pb;
use pgvault_proto::v1::vault_service_server::VaultService;
use tonic::{Request, Response, Status};

use crate::access::{self, vault_scope};
use crate::api::{ApiContext, next_token};
use crate::error::{CoordinatorError, Result};
use crate::model::Vault;
use crate::names;
use crate::store::{instances, paging, recovery_points, vaults};

pub struct VaultApi {
    ctx: Arc<ApiContext>,
}

impl VaultApi {
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        VaultApi { ctx }
    }

    async fn create(&self, req: pb::CreateVaultRequest) -> Result<pb::Vault> {
        names::validate_short_id("vault_id", &req.vault_id)?;
        let input = req
            .vault
            .ok_or_else(|| CoordinatorError::invalid("vault", "is required"))?;
        let standard = input.standard_datastore.trim().to_string();
        if standard.is_empty() {
            return Err(CoordinatorError::invalid(
                "vault.standard_datastore",
                "a datastore URL is required",
            ));
        }
        prepare_datastore("vault.standard_datastore", &standard).await?;
        let archive = input.archive_datastore.trim().to_string();
        if !archive.is_empty() {
            prepare_datastore("vault.archive_datastore", &archive).await?;
        }
        let vault = Vault {
            id: req.vault_id,
            region: input.region.trim().to_string(),
            standard_datastore: standard,
            archive_datastore: archive,
            description: input.description,
            create_time: chrono::Utc::now(),
        };
        let created = vaults::insert(self.ctx.store.pool(), &vault).await?;
        tracing::info!(vault = %created.id, "vault created");
        Ok(created.into())
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let id = names::parse_vault("name", name)?;
        let mut tx = self.ctx.store.begin().await?;
        vaults::lock(&mut *tx, &id).await?;
        // Rows kept after a failed validation protect nothing: they go with the vault.
        instances::delete_kept_in_vault(&mut *tx, &id).await?;
        let instances = instances::count_in_vault(&mut *tx, &id).await?;
        let points = recovery_points::count_in_vault(&mut *tx, &id).await?;
        if instances > 0 || points > 0 {
            return Err(CoordinatorError::precondition(format!(
                "vault \"{id}\" still holds {instances} backup instance(s) and {points} recovery point(s); \
                 stop protecting them before deleting the vault"
            )));
        }
        vaults::delete(&mut *tx, &id).await?;
        tx.commit().await?;
        tracing::info!(vault = %id, "vault deleted");
        Ok(())
    }
}

/// Checks a datastore URL and creates its directory, bucket or container.
async fn prepare_datastore(field: &str, url: &str) -> Result<()> {
    let datastore =
        Datastore::open(url).map_err(|e| CoordinatorError::invalid(field, e.to_string()))?;
    datastore.ensure_exists().await.map_err(|e| {
        CoordinatorError::precondition(format!(
            "{field}: cannot prepare datastore {}: {e}",
            datastore.redacted_url()
        ))
    })
}

#[tonic::async_trait]
impl VaultService for VaultApi {
    async fn create_vault(
        &self,
        request: Request<pb::CreateVaultRequest>,
    ) -> Result<Response<pb::Vault>, Status> {
        Ok(Response::new(self.create(request.into_inner()).await?))
    }

    async fn get_vault(
        &self,
        request: Request<pb::GetVaultRequest>,
    ) -> Result<Response<pb::Vault>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().name).as_deref())?;
        let id = names::parse_vault("name", &request.get_ref().name)?;
        let vault = vaults::get(self.ctx.store.pool(), &id).await?;
        Ok(Response::new(vault.into()))
    }

    async fn list_vaults(
        &self,
        request: Request<pb::ListVaultsRequest>,
    ) -> Result<Response<pb::ListVaultsResponse>, Status> {
        let req = request.into_inner();
        let size = paging::page_size(req.page_size);
        let after = paging::after_id(&req.page_token)?;
        let rows = vaults::list(self.ctx.store.pool(), after.as_deref(), size + 1).await?;
        let (page, more) = paging::split_page(rows, size);
        let next_page_token = next_token(&page, more, |v| paging::id_token(&v.id));
        Ok(Response::new(pb::ListVaultsResponse {
            vaults: page.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn delete_vault(
        &self,
        request: Request<pb::DeleteVaultRequest>,
    ) -> Result<Response<pb::DeleteVaultResponse>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().name).as_deref())?;
        self.delete(&request.get_ref().name).await?;
        Ok(Response::new(pb::DeleteVaultResponse {}))
    }
}
