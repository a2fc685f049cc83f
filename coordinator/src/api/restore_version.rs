//! The cross-version rule of a restore into a database, checked before its
//! job is queued: a recovery point restores into a server of the same or a
//! newer PostgreSQL major, never an older one
//! ([`pgvault_manifest::check_restorable`], the rule the engine applies
//! too). The target server is asked its version as the restore's secret's
//! user, directly or through its agent. When it cannot be asked now (the
//! secret's value unusable, the server unreachable) the restore is queued
//! as before: its job then fails with the code that says why, or the
//! engine refuses the older target before touching it.

use pgvault_errors::ErrorCode;

use crate::api::{ApiContext, resolve};
use crate::error::{CoordinatorError, Result};
use crate::model::{RecoveryPoint, Server};
use crate::secret_ref::SecretRef;
use crate::server_probe::ProbeTarget;

/// Refuses (FAILED_PRECONDITION, `UserErrorRestoreTargetTooOld: …`) a
/// restore of `point` into `server` when the server's major is older.
pub async fn check(
    ctx: &ApiContext,
    vault_id: &str,
    point: &RecoveryPoint,
    server: &Server,
    secret: &SecretRef,
) -> Result<()> {
    let Some(target_version) = target_version(ctx, vault_id, server, secret).await? else {
        return Ok(());
    };
    pgvault_manifest::check_restorable(&point.server_version, target_version / 10_000).map_err(
        |refused| {
            CoordinatorError::precondition(format!(
                "{}: {refused} (target server \"{}\")",
                ErrorCode::UserErrorRestoreTargetTooOld,
                server.id
            ))
        },
    )
}

/// The target's `server_version_num`; `None` when it cannot be asked now.
async fn target_version(
    ctx: &ApiContext,
    vault_id: &str,
    server: &Server,
    secret: &SecretRef,
) -> Result<Option<u32>> {
    let mut conn = ctx.store.pool().acquire().await?;
    let credentials = match resolve::reference_credentials(
        &mut conn,
        &ctx.cipher,
        &ctx.external_secrets,
        Some(vault_id),
        secret,
    )
    .await
    {
        Ok(c) => c,
        Err(CoordinatorError::SecretUnusable(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    drop(conn);
    let database = credentials
        .database
        .clone()
        .unwrap_or_else(|| "postgres".to_string());
    let target = ProbeTarget {
        server,
        database: &database,
        secret,
        credentials: &credentials,
        vault: Some(vault_id),
    };
    match ctx
        .probes
        .for_server(server)
        .server_version(&target)
        .await?
    {
        Ok(version) => Ok(Some(version)),
        Err(unanswered) => {
            tracing::info!(server = %server.id, ?unanswered, "restore target's version unknown before queueing; the engine checks it");
            Ok(None)
        }
    }
}
