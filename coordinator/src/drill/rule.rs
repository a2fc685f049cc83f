//! A policy's restore drill: the drill server (it must exist), the secret
//! scratch databases are made with (checked like a restore's: it exists and
//! is granted to the vault), and when the instances' newest points are
//! drilled: after every Nth completed backup of an instance, at the slots of
//! a weekly schedule, or both. All empty: no drills.

use crate::api::ApiContext;
use crate::error::{CoordinatorError, Result};
use crate::model::{DrillRule, Schedule};
use crate::names;
use crate::secret_ref::SecretRef;

/// The drill rule of a policy request, checked.
pub async fn validate(
    ctx: &ApiContext,
    vault_id: &str,
    server: &str,
    secret: &str,
    every: u32,
    schedule: Option<Schedule>,
) -> Result<Option<DrillRule>> {
    let (server, secret) = (server.trim(), secret.trim());
    if server.is_empty() && secret.is_empty() && every == 0 && schedule.is_none() {
        return Ok(None);
    }
    if server.is_empty() {
        return Err(CoordinatorError::invalid(
            "policy.drill_server",
            "a drill needs its server: pass --drill-server NAME (a server registered with pgvault server register)",
        ));
    }
    if secret.is_empty() {
        return Err(CoordinatorError::invalid(
            "policy.drill_secret",
            "a drill needs the secret to connect to its server with: pass --drill-secret NAME",
        ));
    }
    if every == 0 && schedule.is_none() {
        return Err(CoordinatorError::invalid(
            "policy.drill_every",
            "say when to drill: --drill-every N drills the newest point after every Nth completed backup of an instance, --drill weekly:sun@04:00 drills every instance's newest point at each slot (or pass both)",
        ));
    }
    let server_id = known_server(ctx, "policy.drill_server", server).await?;
    let secret = secret_ref("policy.drill_secret", secret)?;
    crate::api::restores::check_secret(ctx, vault_id, &secret).await?;
    Ok(Some(DrillRule {
        server_id,
        secret,
        every,
        schedule,
    }))
}

/// The id of server `name` (`NAME` or `servers/NAME`); an unknown server is
/// an invalid argument naming it and how to list the known ones.
pub async fn known_server(ctx: &ApiContext, field: &str, name: &str) -> Result<String> {
    let id = if name.contains('/') {
        names::parse_server(field, name)?
    } else {
        names::parse_server(field, &names::server_name(name))?
    };
    match crate::store::servers::get(ctx.store.pool(), &id).await {
        Ok(server) => Ok(server.id),
        Err(CoordinatorError::NotFound { .. }) => Err(CoordinatorError::invalid(
            field,
            format!(
                "unknown drill server \"{id}\": name a server registered with pgvault server register (see pgvault server list)"
            ),
        )),
        Err(e) => Err(e),
    }
}

/// A drill's secret: `NAME` (a stored secret) or any secret reference.
pub fn secret_ref(field: &str, text: &str) -> Result<SecretRef> {
    if text.contains('/') || text.contains(':') {
        SecretRef::parse(field, text)
    } else {
        SecretRef::parse(field, &names::secret_name(text))
    }
}
