//! `VaultService`: create (checking and creating the datastores), get, list,
//! delete while the vault is empty (soft-deleted points count until they
//! are purged) and not locked, change the soft-delete window, and lock it
//! for good (`data_protection::lock`; unlocking is always refused). New
//! vaults are encrypted unless asked otherwise (`vault.encryption`), with
//! version 1 of their key made in the creating transaction; `RotateVaultKey`
//! adds a version (`crate::encryption`).

use std::sync::Arc;

use pgvault_datastore::Datastore;
use pgvault_proto::v1 as pb;
use pgvault_proto::v1::vault_service_server::VaultService;
use tonic::{Request, Response, Status};

use crate::access::{self, vault_scope};
use crate::api::{ApiContext, next_token};
use crate::data_protection::{lock, soft_delete};
use crate::encryption;
use crate::error::{CoordinatorError, Result};
use crate::model::{Encryption, Vault};
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
        let soft_delete_days =
            soft_delete::window_days("vault.soft_delete_days", input.soft_delete_days)?;
        let encryption = encryption_choice(&input.encryption)?;
        let vault = Vault {
            id: req.vault_id,
            region: input.region.trim().to_string(),
            standard_datastore: standard,
            archive_datastore: archive,
            description: input.description,
            create_time: chrono::Utc::now(),
            soft_delete_days,
            lock_time: None,
            encryption,
            key_version: 0,
        };
        let mut tx = self.ctx.store.begin().await?;
        vaults::insert(&mut *tx, &vault).await?;
        if encryption != Encryption::None {
            encryption::create_vault_key(&mut tx, &self.ctx.cipher, &vault.id).await?;
        }
        let created = vaults::get(&mut *tx, &vault.id).await?;
        tx.commit().await?;
        tracing::info!(vault = %created.id, encryption = %created.encryption, "vault created");
        Ok(created.into())
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let id = names::parse_vault("name", name)?;
        let mut tx = self.ctx.store.begin().await?;
        vaults::lock(&mut *tx, &id).await?;
        let vault = vaults::get(&mut *tx, &id).await?;
        lock::ensure_unlocked(&vault, "the vault cannot be deleted")?;
        // Rows kept after a failed validation protect nothing: they go with the vault.
        instances::delete_kept_in_vault(&mut *tx, &id).await?;
        let instances = instances::count_in_vault(&mut *tx, &id).await?;
        let points = recovery_points::count_in_vault(&mut *tx, &id).await?;
        if instances > 0 || points > 0 {
            return Err(CoordinatorError::precondition(format!(
                "vault \"{id}\" still holds {instances} backup instance(s) and {points} recovery point(s); \
                 stop protecting them before deleting the vault (soft-deleted points count until \
                 the sweeper purges them: pgvault recovery-point list --deleted shows when; points \
                 kept only as copies count until their copies expire: recovery-point list --copies-only)"
            )));
        }
        vaults::delete(&mut *tx, &id).await?;
        tx.commit().await?;
        tracing::info!(vault = %id, "vault deleted");
        Ok(())
    }

    async fn update(&self, req: pb::UpdateVaultRequest) -> Result<pb::Vault> {
        let id = names::parse_vault("name", &req.name)?;
        if req.soft_delete_days == 0 {
            return Err(CoordinatorError::invalid(
                "soft_delete_days",
                "must be at least 1 day: soft delete cannot be turned off",
            ));
        }
        let days = soft_delete::window_days("soft_delete_days", req.soft_delete_days)?;
        let mut tx = self.ctx.store.begin().await?;
        vaults::lock(&mut *tx, &id).await?;
        let vault = vaults::get(&mut *tx, &id).await?;
        lock::check_window_change(&vault, days)?;
        vaults::set_soft_delete_days(&mut *tx, &id, days).await?;
        let vault = vaults::get(&mut *tx, &id).await?;
        tx.commit().await?;
        tracing::info!(vault = %id, days, "soft-delete window changed");
        Ok(vault.into())
    }

    async fn lock_vault(&self, req: pb::LockVaultRequest) -> Result<pb::Vault> {
        let id = names::parse_vault("name", &req.name)?;
        if !req.confirm {
            return Err(CoordinatorError::invalid(
                "confirm",
                format!(
                    "locking vault \"{id}\" cannot be undone, not even by an Owner; confirm it (pgvault vault lock {id} --confirm)"
                ),
            ));
        }
        let mut tx = self.ctx.store.begin().await?;
        vaults::lock(&mut *tx, &id).await?;
        let vault = vaults::get(&mut *tx, &id).await?;
        if vault.is_locked() {
            return Err(lock::refusal(&vault, "it is already locked"));
        }
        vaults::set_locked(&mut *tx, &id, self.ctx.clock.now()).await?;
        let vault = vaults::get(&mut *tx, &id).await?;
        tx.commit().await?;
        tracing::info!(vault = %id, "vault locked");
        Ok(vault.into())
    }

    async fn rotate_key(
        &self,
        req: pb::RotateVaultKeyRequest,
    ) -> Result<pb::RotateVaultKeyResponse> {
        let id = names::parse_vault("name", &req.name)?;
        let mut tx = self.ctx.store.begin().await?;
        let (version, rewrapped) = encryption::rotate(&mut tx, &self.ctx.cipher, &id).await?;
        let vault = vaults::get(&mut *tx, &id).await?;
        tx.commit().await?;
        tracing::info!(vault = %id, version, rewrapped, "vault key rotated");
        Ok(pb::RotateVaultKeyResponse {
            vault: Some(vault.into()),
            points_rewrapped: rewrapped,
        })
    }

    /// Every key version, unwrapped. Neither the response nor the keys are
    /// logged or put in spans; only the fact of the export is.
    async fn export_key(
        &self,
        req: pb::ExportVaultKeyRequest,
    ) -> Result<pb::ExportVaultKeyResponse> {
        let id = names::parse_vault("name", &req.name)?;
        let mut conn = self.ctx.store.pool().acquire().await?;
        let versions = encryption::export_keys(&mut conn, &self.ctx.cipher, &id).await?;
        tracing::info!(vault = %id, versions = versions.len(), "vault key exported");
        Ok(pb::ExportVaultKeyResponse {
            vault_id: id,
            algorithm: encryption::AES_256_GCM.to_string(),
            versions: versions
                .iter()
                .map(|(version, key)| pb::VaultKeyVersion {
                    version: *version,
                    key: key.expose().to_vec(),
                })
                .collect(),
        })
    }

    async fn unlock_vault(&self, req: pb::UnlockVaultRequest) -> Result<pb::Vault> {
        let id = names::parse_vault("name", &req.name)?;
        let vault = vaults::get(self.ctx.store.pool(), &id).await?;
        if !vault.is_locked() {
            return Err(CoordinatorError::precondition(format!(
                "vault \"{id}\" is not locked"
            )));
        }
        Err(lock::refusal(
            &vault,
            "a lock cannot be removed, not even by an Owner",
        ))
    }
}

/// The encryption a create request asks for: empty means the default,
/// AES-256-GCM.
fn encryption_choice(text: &str) -> Result<Encryption> {
    match text.trim() {
        "" => Ok(Encryption::Aes256Gcm),
        other => Encryption::parse(&other.to_ascii_lowercase()).ok_or_else(|| {
            CoordinatorError::invalid(
                "vault.encryption",
                format!("\"{other}\" is not an encryption: use aes-256-gcm (the default) or none"),
            )
        }),
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

    async fn update_vault(
        &self,
        request: Request<pb::UpdateVaultRequest>,
    ) -> Result<Response<pb::Vault>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().name).as_deref())?;
        Ok(Response::new(self.update(request.into_inner()).await?))
    }

    async fn lock_vault(
        &self,
        request: Request<pb::LockVaultRequest>,
    ) -> Result<Response<pb::Vault>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().name).as_deref())?;
        Ok(Response::new(self.lock_vault(request.into_inner()).await?))
    }

    async fn unlock_vault(
        &self,
        request: Request<pb::UnlockVaultRequest>,
    ) -> Result<Response<pb::Vault>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().name).as_deref())?;
        Ok(Response::new(
            self.unlock_vault(request.into_inner()).await?,
        ))
    }

    async fn rotate_vault_key(
        &self,
        request: Request<pb::RotateVaultKeyRequest>,
    ) -> Result<Response<pb::RotateVaultKeyResponse>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().name).as_deref())?;
        Ok(Response::new(self.rotate_key(request.into_inner()).await?))
    }

    async fn export_vault_key(
        &self,
        request: Request<pb::ExportVaultKeyRequest>,
    ) -> Result<Response<pb::ExportVaultKeyResponse>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().name).as_deref())?;
        Ok(Response::new(self.export_key(request.into_inner()).await?))
    }
}
