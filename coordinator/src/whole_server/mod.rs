//! Whole-server protection: `ConfigureBackup` with `all_databases_of`
//! protects every protectable database of a server
//! ([`crate::api::databases`]) through the ordinary row pipeline
//! ([`crate::api::configure::configure_database`]) and records the server
//! as protected whole by the vault ([`crate::store::server_protections`]);
//! at each slot of the policy the scheduler runs [`auto_include::pass`],
//! which lists the server again and protects the databases created since,
//! validated like any row, with their schedule counting from that slot so
//! they are backed up in it with the others.
//!
//! A database that disappeared from the server keeps its instance and its
//! recovery points (nothing is deleted behind the user's back); its
//! scheduled backups fail with `UserErrorDBNotFound` until its protection
//! is stopped or the database is back, and each pass records it as missing.

pub mod auto_include;
mod configure;

pub use configure::configure;

use pgvault_errors::ErrorCode;

use crate::api::{ApiContext, resolve};
use crate::error::{CoordinatorError, Result};
use crate::model::JobError;
use crate::secret_ref::SecretRef;
use crate::secrets::ConnParams;

/// The connection parameters `secret` holds, as `vault_id` reads them, or
/// why it cannot (not granted, no such secret, unusable value).
async fn credentials(
    ctx: &ApiContext,
    vault_id: &str,
    secret: &SecretRef,
) -> Result<std::result::Result<ConnParams, JobError>> {
    let mut conn = ctx.store.pool().acquire().await?;
    match resolve::reference_credentials(
        &mut conn,
        &ctx.cipher,
        &ctx.external_secrets,
        Some(vault_id),
        secret,
    )
    .await
    {
        Ok(credentials) => Ok(Ok(credentials)),
        Err(CoordinatorError::SecretUnusable(error)) => Ok(Err(*error)),
        Err(e) => Err(e),
    }
}

/// Whether a refused row is the database being protected by another vault
/// (expected on every pass for such databases: not worth recording).
fn protected_elsewhere(error: &JobError) -> bool {
    error.code == ErrorCode::UserErrorDatabaseAlreadyProtected.as_str()
}
