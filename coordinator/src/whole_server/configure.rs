//! `ConfigureBackup` with `all_databases_of`: list the server's
//! protectable databases with the request's secret (as the vault reads it,
//! granting it first when asked and allowed), record the whole-server
//! protection (with `role_passwords` only for an encrypted vault), then
//! protect each database through the row pipeline.

use pgvault_proto::v1 as pb;

use crate::api::ApiContext;
use crate::api::configure::{Protect, configure_database, ensure_grant, result};
use crate::api::databases;
use crate::error::{CoordinatorError, Result};
use crate::model::Encryption;
use crate::names;
use crate::secret_ref::SecretRef;
use crate::server_probe::Unanswered;
use crate::store::server_protections::{self, Recorded, ServerProtection};
use crate::store::{instances, servers};

/// One result per protectable database of the server, in name order.
pub async fn configure(
    ctx: &ApiContext,
    how: &Protect<'_>,
    req: &pb::ConfigureBackupRequest,
) -> Result<Vec<pb::ConfigureBackupResult>> {
    let server_id = names::parse_server("all_databases_of", &req.all_databases_of)?;
    if !req.rows.is_empty() {
        return Err(CoordinatorError::invalid(
            "rows",
            "rows and all_databases_of are exclusive: name databases, or protect every database of the server",
        ));
    }
    if req.default_secret.is_empty() {
        return Err(CoordinatorError::invalid(
            "default_secret",
            "a secret is required to list and protect every database of the server",
        ));
    }
    if req.role_passwords && how.vault.encryption == Encryption::None {
        return Err(CoordinatorError::precondition(format!(
            "role_passwords: vault \"{}\" is not encrypted, and the roles' passwords are captured only into an encrypted vault; protect the server whole with an encrypted vault (pgvault vault create NAME --region R --datastore URL, encrypted by default), or configure it without --role-passwords",
            how.vault.id
        )));
    }
    let secret = SecretRef::parse("default_secret", &req.default_secret)?;
    ctx.external_secrets.check_allowed(&secret)?;
    let server = servers::get(ctx.store.pool(), &server_id).await?;
    let vault_id = how.vault.id.as_str();
    if !how.vault.region.is_empty()
        && !server.region.is_empty()
        && how.vault.region != server.region
    {
        return Err(CoordinatorError::precondition(format!(
            "server \"{server_id}\" is in region \"{}\" but vault \"{vault_id}\" is in region \"{}\"; protect it with a vault of its region",
            server.region, how.vault.region
        )));
    }
    if let Some(other) = server_protections::find(ctx.store.pool(), &server_id).await?
        && other.vault_id != vault_id
    {
        return Err(other_vault(&server_id, &other.vault_id));
    }
    if let Err(refused) = ensure_grant(ctx, how.caller, vault_id, &secret, how.assign).await? {
        return Err(CoordinatorError::precondition(format!(
            "{}: {}",
            refused.error.code, refused.error.message
        )));
    }
    let credentials = match super::credentials(ctx, vault_id, &secret).await? {
        Ok(credentials) => credentials,
        Err(error) => {
            return Err(CoordinatorError::precondition(format!(
                "{}: {}",
                error.code, error.message
            )));
        }
    };
    let listed =
        databases::protectable(ctx, &server, &secret, &credentials, Some(vault_id)).await?;
    let names = match listed {
        Ok(names) => names,
        Err(Unanswered::Connect(error)) => {
            return Err(CoordinatorError::precondition(format!(
                "{}: cannot connect to server \"{server_id}\" to list its databases: {}",
                error.code, error.message
            )));
        }
        Err(Unanswered::Query(message)) => {
            return Err(CoordinatorError::Unavailable(format!(
                "server \"{server_id}\": {message}"
            )));
        }
        Err(Unanswered::Agent(error)) => return Err(CoordinatorError::Unavailable(error.message)),
    };
    let protection = ServerProtection {
        server_id: server_id.clone(),
        vault_id: vault_id.to_string(),
        policy_id: how.policy.id.clone(),
        secret: secret.clone(),
        since: how.since,
        role_passwords: req.role_passwords,
    };
    if let Recorded::OtherVault(other) =
        server_protections::upsert(ctx.store.pool(), &protection).await?
    {
        return Err(other_vault(&server_id, &other));
    }
    tracing::info!(server = %server_id, vault = %vault_id, policy = %how.policy.id, databases = names.len(), "server protected whole; later databases are auto-included at each slot");
    let existing = instances::on_server(ctx.store.pool(), vault_id, &server_id).await?;
    let mut results = Vec::with_capacity(names.len());
    for (i, database) in names.iter().enumerate() {
        let row = u32::try_from(i).unwrap_or(u32::MAX);
        let protected = existing
            .iter()
            .find(|x| &x.database == database && x.protection_state.is_protected());
        if let Some(instance) = protected {
            results.push(result(row, database, Some(instance.clone()), None));
            continue;
        }
        let (instance, refused) =
            configure_database(ctx, how, &server_id, database, secret.clone()).await?;
        results.push(result(row, database, instance, refused));
    }
    Ok(results)
}

fn other_vault(server_id: &str, vault: &str) -> CoordinatorError {
    CoordinatorError::precondition(format!(
        "server \"{server_id}\" is already protected whole by vault \"{vault}\"; a server is protected whole by at most one vault (name databases to protect them in another)"
    ))
}
