//! The public gRPC API: one tonic service per resource, all sharing one
//! [`ApiContext`]. Handlers authenticate first, convert and validate the
//! request, call the store, and convert the answer back.
//!
//! # Layout
//! - `convert`: domain ⇄ proto conversions.
//! - `access`: tokens and roles (`AccessService`).
//! - `vaults`, `policies`, `servers`, `secrets`, `instances`, `backup_now`,
//!   `recovery_points`, `restores`, `jobs`: the services (`dead_letters`:
//!   the dead-letter calls of `JobService`).
//! - `restore_selection`, `output_file`: checking a restore's selection
//!   against the recovery point, and the name of a restore's SQL file.
//! - `job_details`: a job's attempts and per-table progress (`GetJob`,
//!   `WatchJob`, and the tables workers report).
//! - `configure`: configure rows and re-validation (kept rows, readiness).
//! - `resolve`: loading what a job needs across aggregates (shared with the
//!   worker API).

pub mod access;
pub mod backup_now;
pub mod configure;
pub mod convert;
pub mod dead_letters;
pub mod instances;
pub mod job_details;
pub mod jobs;
pub mod output_file;
pub mod policies;
pub mod protection;
pub mod recovery_points;
pub mod resolve;
pub mod restore_selection;
pub mod restores;
pub mod secrets;
pub mod servers;
pub mod vaults;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tonic::Request;

use crate::access::{Permission, Role, Rpc};
use crate::auth::{Authenticator, Caller};
use crate::error::{CoordinatorError, Result};
use crate::secrets::Cipher;
use crate::store::{Store, roles};

/// State shared by every service of one coordinator.
#[derive(Debug)]
pub struct ApiContext {
    pub store: Store,
    pub auth: Authenticator,
    pub cipher: Cipher,
    /// Where `env://` and `file://` secret references may point.
    pub external_secrets: crate::secret_ref::ExternalSecrets,
    /// Databases never offered nor protected, besides template0/template1.
    pub maintenance_databases: Vec<String>,
    /// Wakes the outbox dispatcher after a job (and its outbox row) commit.
    pub dispatch_wake: Arc<Notify>,
    pub lease_ttl: Duration,
    /// Attempt limit, backoff and the grace before failed attempts' objects are collected.
    pub retry: crate::reaper::RetryPolicy,
    /// The coordinator's notion of now (schedules, retention).
    pub clock: Arc<dyn crate::clock::Clock>,
}

impl ApiContext {
    /// Authenticates the caller of `request`.
    pub async fn caller<T>(&self, request: &Request<T>) -> Result<Caller> {
        self.auth.authenticate(request.metadata()).await
    }

    /// Authenticates the caller of `request` and checks that its global role,
    /// or its role on `vault` (the vault the call names), grants what `rpc`
    /// needs. Every handler calls this first.
    pub async fn authorize<T>(
        &self,
        request: &Request<T>,
        rpc: Rpc,
        vault: Option<&str>,
    ) -> Result<Caller> {
        let caller = self.caller(request).await?;
        let permission = rpc.permission();
        if self.permits(&caller, permission, vault).await? {
            return Ok(caller);
        }
        tracing::info!(token = %caller.token_id, rpc = ?rpc, vault = vault.unwrap_or(""), "permission denied");
        let on = vault
            .map(|v| format!(" on vault \"{v}\""))
            .unwrap_or_default();
        Err(CoordinatorError::PermissionDenied(format!(
            "token \"{}\" may not call {rpc:?}{on}: it needs the {permission:?} permission, which its roles do not grant; an Owner can run: pgvault role assign tokens/{} <role>{}",
            caller.token_name,
            caller.token_id,
            vault.map(|v| format!(" --vault {v}")).unwrap_or_default()
        )))
    }
}

impl ApiContext {
    /// Whether `caller`'s global role, or its role on `vault`, grants
    /// `permission` (e.g. whether a configure caller may grant secret access).
    pub async fn permits(
        &self,
        caller: &Caller,
        permission: Permission,
        vault: Option<&str>,
    ) -> Result<bool> {
        if caller.global_role.is_some_and(|r| r.grants(permission)) {
            return Ok(true);
        }
        let Some(vault) = vault else {
            return Ok(false);
        };
        let role = roles::on_vault(self.store.pool(), caller.token_id, vault).await?;
        Ok(role
            .and_then(|r| r.parse::<Role>().ok())
            .is_some_and(|r| r.grants(permission)))
    }
}

/// `next_page_token` for a page: empty when no more rows exist.
pub fn next_token<T>(page: &[T], more: bool, token: impl Fn(&T) -> String) -> String {
    match (more, page.last()) {
        (true, Some(last)) => token(last),
        _ => String::new(),
    }
}
