//! The readiness checks of a configure row, after its placement checks
//! passed ([`crate::api::configure`]): the vault may read the secret
//! (granted on the way when asked and allowed: [`ensure_grant`]), the
//! secret holds a usable connection string, the connection works, the user
//! has every privilege a consistent dump needs (else a grant script), and
//! something that runs the server's backups has a `pg_dump` at least the
//! server's major, when any has reported.

use pgvault_errors::ErrorCode;

use crate::access::{Caller, Permission};
use crate::api::configure::{Placement, Refused, row_error};
use crate::api::{ApiContext, resolve};
use crate::error::{CoordinatorError, Result};
use crate::model::{JobError, Server};
use crate::readiness::grant_script;
use crate::readiness::tool_versions::{self, Runners};
use crate::secret_ref::SecretRef;
use crate::server_probe::{ProbeTarget, Readiness, Unanswered};
use crate::store::{agent_instances, secret_grants};

/// Secret access, secret value, connection, privileges, in that order.
pub(crate) async fn readiness_checks(
    ctx: &ApiContext,
    caller: Option<&Caller>,
    vault_id: &str,
    placement: &Placement,
    assign: bool,
) -> Result<std::result::Result<(), Refused>> {
    let pool = ctx.store.pool();
    if let Err(refused) = ensure_grant(ctx, caller, vault_id, &placement.secret, assign).await? {
        return Ok(Err(refused));
    }
    let mut conn = pool.acquire().await?;
    let credentials = match resolve::reference_credentials(
        &mut conn,
        &ctx.cipher,
        &ctx.external_secrets,
        Some(vault_id),
        &placement.secret,
    )
    .await
    {
        Ok(c) => c,
        Err(CoordinatorError::SecretUnusable(error)) => return Ok(Err((*error).into())),
        Err(e) => return Err(e),
    };
    drop(conn);
    let target = ProbeTarget {
        server: &placement.server,
        database: &placement.database,
        secret: &placement.secret,
        credentials: &credentials,
        vault: Some(vault_id),
    };
    let probe = ctx.probes.for_server(&placement.server);
    let Readiness {
        missing,
        server_version_num,
    } = match probe.readiness(&target).await? {
        Ok(answer) => answer,
        Err(Unanswered::Connect(error) | Unanswered::Agent(error)) => return Ok(Err(error.into())),
        Err(Unanswered::Query(message)) => return Err(CoordinatorError::Unavailable(message)),
    };
    if !missing.is_empty() {
        return Ok(Err(Refused {
            error: JobError::new(
                ErrorCode::UserErrorMissingDBPermissions,
                format!(
                    "{}; the grant script of this result (SQL, or its psql or PowerShell wrapper) grants it all",
                    missing.summary()
                ),
            ),
            script: Some(Box::new(grant_script::generate(&missing))),
        }));
    }
    if let Some(error) = tools_too_old(ctx, &placement.server, server_version_num).await? {
        return Ok(Err(error.into()));
    }
    Ok(Ok(()))
}

/// The vault's access to a stored secret: granted already, or granted now
/// when `assign` is set and the caller may grant it.
pub async fn ensure_grant(
    ctx: &ApiContext,
    caller: Option<&Caller>,
    vault_id: &str,
    secret: &SecretRef,
    assign: bool,
) -> Result<std::result::Result<(), Refused>> {
    let pool = ctx.store.pool();
    if let SecretRef::Stored { id, .. } = secret
        && !secret_grants::is_granted(pool, vault_id, id).await?
    {
        let Some(caller) = caller.filter(|_| assign) else {
            return Ok(Err(resolve::not_granted(vault_id, id).into()));
        };
        if !caller
            .permits(&ctx.store, Permission::Grant, Some(vault_id))
            .await?
        {
            return Ok(Err(row_error(
                ErrorCode::UserCannotAssignRoles,
                format!(
                    "vault \"{vault_id}\" has no access to secret \"{id}\", and token \"{}\" may not grant it (only an Owner of the vault may); an Owner grants it with: {}",
                    caller.token_name(),
                    resolve::grant_command(vault_id, id)
                ),
            )));
        }
        secret_grants::grant(pool, vault_id, id).await?;
        tracing::info!(secret = %id, vault = %vault_id, token = %caller.token_id(), "secret access granted while configuring");
    }
    Ok(Ok(()))
}

/// Whether what would run the server's backups (workers, or its agent's
/// instances) reported a `pg_dump` older than the server. Nothing reported
/// yet: readiness cannot confirm, and does not fail.
async fn tools_too_old(
    ctx: &ApiContext,
    server: &Server,
    server_version_num: u32,
) -> Result<Option<JobError>> {
    let (newest, runners) = if server.agent.is_empty() {
        (ctx.worker_tools.newest(), Runners::Workers)
    } else {
        let instances =
            agent_instances::recent(ctx.store.pool(), std::slice::from_ref(&server.agent)).await?;
        let newest = instances
            .iter()
            .filter(|i| i.live && i.supported)
            .flat_map(|i| i.pg_tool_majors.iter().copied())
            .max();
        (newest, Runners::Agent(&server.agent))
    };
    if newest.is_none() {
        tracing::info!(server = %server.id, server_version_num, "readiness cannot confirm the client tools: nothing that runs this server's backups has reported its pg_dump versions yet");
    }
    Ok(tool_versions::check(server_version_num, newest, runners))
}
