//! Configuring protection row by row, and re-validating an instance.
//!
//! A row first passes the *placement* checks, which decide whether it can be
//! kept at all: a well-formed server, database and secret reference; the
//! server exists and is in the vault's region; the database may be protected
//! and no vault protects it yet; a stored secret exists (and an external one
//! is allowed by the coordinator). A row failing these is refused and not
//! kept. A row passing them is kept as an instance in state
//! `PROTECTION_VALIDATING` while the *readiness* checks run, in order: the
//! vault may read the secret (granted inline with "assign missing
//! permissions" when the caller may grant); the secret holds a usable
//! connection string; the connection works; the user has every privilege a
//! consistent dump needs; some worker (or the server's agent) has a
//! `pg_dump` at least the server's major, when any has reported
//! ([`crate::readiness::tool_versions`]). The server is asked directly or
//! through its agent ([`crate::server_probe`]), with the same outcome
//! (the checks themselves: [`crate::api::configure_readiness`]). Passing
//! rows become `PROTECTION_CONFIGURED`; failing ones stay
//! `PROTECTION_VALIDATION_FAILED` with their last error: never scheduled, not counted as protecting the database, and re-validated
//! with `RevalidateBackupInstance` (or by configuring the same database in
//! the same vault again, which reuses the kept row).

use pgvault_errors::ErrorCode;
use pgvault_proto::v1 as pb;
use uuid::Uuid;

use crate::access::Caller;
pub use crate::api::configure_readiness::ensure_grant;
use crate::api::configure_readiness::readiness_checks;
use crate::api::{ApiContext, instance_lookup};
use crate::error::{CoordinatorError, Result};
use crate::model::{BackupInstance, JobError, Policy, ProtectionState, Server, Vault};
use crate::names;
use crate::readiness::grant_script::GrantScript;
use crate::secret_ref::SecretRef;
use crate::store::instances::{self, Inserted};
use crate::store::{policies, secrets, servers, vaults};
use crate::validation::{self, unprotectable_reason};

/// Why a row is not protected, and the fix when one can be generated.
pub struct Refused {
    pub error: JobError,
    pub script: Option<Box<GrantScript>>,
}

impl From<JobError> for Refused {
    fn from(error: JobError) -> Self {
        Refused {
            error,
            script: None,
        }
    }
}

pub(crate) fn row_error(code: ErrorCode, message: String) -> Refused {
    JobError::new(code, message).into()
}

/// What a row protects, once its placement checks passed.
pub(crate) struct Placement {
    pub(crate) server: Server,
    pub(crate) database: String,
    pub(crate) secret: SecretRef,
}

/// The outcome of one row, as the API reports it.
pub fn result(
    row: u32,
    database: &str,
    instance: Option<BackupInstance>,
    refused: Option<Refused>,
) -> pb::ConfigureBackupResult {
    let (readiness, error, script) = match refused {
        None => (pb::Readiness::Success, None, None),
        Some(Refused { error, script }) => (pb::Readiness::FailedValidation, Some(error), script),
    };
    pb::ConfigureBackupResult {
        row,
        database: database.to_string(),
        readiness: readiness as i32,
        backup_instance: instance.map(Into::into),
        error: error.map(Into::into),
        grant_script: script.map(|s| {
            let GrantScript {
                sql,
                psql,
                powershell,
            } = *s;
            pb::GrantScript {
                sql,
                psql,
                powershell,
            }
        }),
    }
}

/// `ConfigureBackup`: one result per row, in order.
pub async fn configure(
    ctx: &ApiContext,
    caller: &Caller,
    req: pb::ConfigureBackupRequest,
) -> Result<Vec<pb::ConfigureBackupResult>> {
    let vault_id = names::parse_vault("parent", &req.parent)?;
    let (policy_vault, policy_id) = names::parse_policy("policy", &req.policy)?;
    if policy_vault != vault_id {
        return Err(CoordinatorError::invalid(
            "policy",
            format!(
                "policy \"{}\" belongs to another vault than \"{}\"",
                req.policy, req.parent
            ),
        ));
    }
    if req.rows.is_empty() && req.all_databases_of.is_empty() {
        return Err(CoordinatorError::invalid(
            "rows",
            "at least one database row is required (or all_databases_of)",
        ));
    }
    if req.role_passwords && req.all_databases_of.is_empty() {
        return Err(CoordinatorError::invalid(
            "role_passwords",
            "the roles' passwords travel with a server's globals, captured only for a server protected whole: set all_databases_of (pgvault backup configure --server S --all-databases --role-passwords)",
        ));
    }
    let vault = vaults::get(ctx.store.pool(), &vault_id).await?;
    let policy = policies::get(ctx.store.pool(), &vault_id, &policy_id).await?;
    let how = Protect {
        caller: Some(caller),
        vault: &vault,
        policy: &policy,
        assign: req.assign_missing_permissions,
        since: ctx.clock.now(),
    };
    if !req.all_databases_of.is_empty() {
        return crate::whole_server::configure(ctx, &how, &req).await;
    }
    let mut results = Vec::with_capacity(req.rows.len());
    for (i, row) in req.rows.iter().enumerate() {
        let row_number = u32::try_from(i).unwrap_or(u32::MAX);
        let secret_text = if row.secret.is_empty() {
            req.default_secret.as_str()
        } else {
            row.secret.as_str()
        };
        let field = if row.secret.is_empty() {
            "default_secret".to_string()
        } else {
            format!("rows[{i}].secret")
        };
        let (instance, refused) = match parse_row(&field, row, secret_text) {
            Ok((server_id, secret)) => {
                configure_database(ctx, &how, &server_id, &row.database, secret).await?
            }
            Err(refused) => (None, Some(refused)),
        };
        results.push(result(row_number, &row.database, instance, refused));
    }
    Ok(results)
}

/// How rows are protected: by whom (none for the scheduler's auto-include),
/// in which vault, with which policy, whether missing secret grants are
/// assigned, and the instant a protected instance's schedule counts from.
pub struct Protect<'a> {
    pub caller: Option<&'a Caller>,
    pub vault: &'a Vault,
    pub policy: &'a Policy,
    pub assign: bool,
    pub since: chrono::DateTime<chrono::Utc>,
}

/// One database through the whole row pipeline: placement checks, the kept
/// row (reused or inserted), readiness checks. The instance is `None` when
/// the row was refused before it was kept.
pub async fn configure_database(
    ctx: &ApiContext,
    how: &Protect<'_>,
    server_id: &str,
    database: &str,
    secret: SecretRef,
) -> Result<(Option<BackupInstance>, Option<Refused>)> {
    let placement = match placement(ctx, how.vault, server_id, database, secret, None).await? {
        Ok(p) => p,
        Err(refused) => return Ok((None, Some(refused))),
    };
    let kept = instances::find_kept(
        ctx.store.pool(),
        &how.vault.id,
        &placement.server.id,
        &placement.database,
    )
    .await?;
    let instance = match kept {
        Some(kept) => {
            instances::reconfigure(ctx.store.pool(), kept.id, &how.policy.id, &placement.secret)
                .await?
        }
        None => insert_validating(ctx, how.policy, &placement).await?,
    };
    let (instance, refused) = validate_kept(ctx, how, instance, &placement).await?;
    match &refused {
        None => {
            tracing::info!(instance = %instance.id, server = %instance.server_id, database = %instance.database, "backup configured")
        }
        Some(r) => {
            tracing::info!(instance = %instance.id, server = %instance.server_id, database = %instance.database, code = %r.error.code, "configure row failed validation; kept for re-validation")
        }
    }
    Ok((Some(instance), refused))
}

/// Server id and secret reference of a row, or the input error.
fn parse_row(
    secret_field: &str,
    row: &pb::ConfigureBackupRow,
    secret_text: &str,
) -> std::result::Result<(String, SecretRef), Refused> {
    let invalid = |e: CoordinatorError| row_error(ErrorCode::UserErrorInvalidInput, e.to_string());
    let server_id = names::parse_server("server", &row.server).map_err(invalid)?;
    let secret = SecretRef::parse(secret_field, secret_text).map_err(invalid)?;
    validation::database_name("database", &row.database).map_err(invalid)?;
    Ok((server_id, secret))
}

async fn insert_validating(
    ctx: &ApiContext,
    policy: &Policy,
    placement: &Placement,
) -> Result<BackupInstance> {
    let instance = BackupInstance {
        id: Uuid::new_v4(),
        vault_id: policy.vault_id.clone(),
        server_id: placement.server.id.clone(),
        database: placement.database.clone(),
        // Named on insert (`crate::short_names`).
        short_name: String::new(),
        policy_id: policy.id.clone(),
        secret: placement.secret.clone(),
        protection_state: ProtectionState::Validating,
        last_error: None,
        create_time: chrono::Utc::now(),
    };
    match instances::insert(ctx.store.pool(), &instance).await? {
        Inserted::Created(created) => Ok(*created),
        Inserted::AlreadyProtected => Err(CoordinatorError::internal(
            "a validating row hit the protected-database index",
        )),
    }
}

/// The placement checks; `exclude` is the instance being re-validated.
async fn placement(
    ctx: &ApiContext,
    vault: &Vault,
    server_id: &str,
    database: &str,
    secret: SecretRef,
    exclude: Option<Uuid>,
) -> Result<std::result::Result<Placement, Refused>> {
    let pool = ctx.store.pool();
    let Some(server) = servers::find(pool, server_id).await? else {
        return Ok(Err(row_error(
            ErrorCode::UserErrorServerNotFound,
            format!("server \"{server_id}\" not found"),
        )));
    };
    if !vault.region.is_empty() && !server.region.is_empty() && vault.region != server.region {
        return Ok(Err(row_error(
            ErrorCode::UserErrorRegionMismatch,
            format!(
                "server \"{server_id}\" is in region \"{}\" but vault \"{}\" is in region \"{}\"",
                server.region, vault.id, vault.region
            ),
        )));
    }
    if let Some(reason) = unprotectable_reason(database, &ctx.maintenance_databases) {
        return Ok(Err(row_error(
            ErrorCode::UserErrorDatabaseNotProtectable,
            reason,
        )));
    }
    if let Some(existing) = instances::find_by_database(pool, server_id, database).await?
        && Some(existing.id) != exclude
    {
        return Ok(Err(already_protected(database, server_id, &existing)));
    }
    if let SecretRef::Stored { id, .. } = &secret
        && secrets::find(pool, id).await?.is_none()
    {
        return Ok(Err(row_error(
            ErrorCode::UserErrorSecretNotFound,
            format!("secret \"{id}\" not found"),
        )));
    }
    if let Err(CoordinatorError::SecretUnusable(error)) =
        ctx.external_secrets.check_allowed(&secret)
    {
        return Ok(Err((*error).into()));
    }
    Ok(Ok(Placement {
        server,
        database: database.to_string(),
        secret,
    }))
}

fn already_protected(database: &str, server_id: &str, by: &BackupInstance) -> Refused {
    row_error(
        ErrorCode::UserErrorDatabaseAlreadyProtected,
        format!(
            "database \"{database}\" on server \"{server_id}\" is already protected by {}; a database is protected by at most one vault",
            names::instance_name(&by.vault_id, by.id)
        ),
    )
}

/// Runs the readiness checks on a kept (VALIDATING) row and records the
/// outcome: protected, or VALIDATION_FAILED with the error.
async fn validate_kept(
    ctx: &ApiContext,
    how: &Protect<'_>,
    instance: BackupInstance,
    placement: &Placement,
) -> Result<(BackupInstance, Option<Refused>)> {
    let pool = ctx.store.pool();
    let checks = readiness_checks(ctx, how.caller, &instance.vault_id, placement, how.assign);
    let refused = match checks.await? {
        Ok(()) => match instances::set_protected(pool, instance.id, how.since).await? {
            Inserted::Created(protected) => return Ok((*protected, None)),
            Inserted::AlreadyProtected => {
                // Another vault protected the database while this row validated.
                let by = instances::find_by_database(pool, &instance.server_id, &instance.database)
                    .await?;
                match by {
                    Some(by) => already_protected(&instance.database, &instance.server_id, &by),
                    None => row_error(
                        ErrorCode::UserErrorDatabaseAlreadyProtected,
                        format!(
                            "database \"{}\" was protected by another vault meanwhile",
                            instance.database
                        ),
                    ),
                }
            }
        },
        Err(refused) => refused,
    };
    instances::set_validation_failed(pool, instance.id, &refused.error).await?;
    let kept = instances::get_by_id(pool, instance.id).await?;
    Ok((kept, Some(refused)))
}

/// `RevalidateBackupInstance`: every check again. A kept row that passes is
/// protected; a protected instance is only reported on (a failing check does
/// not stop its protection: its jobs then fail with the same code).
pub async fn revalidate(
    ctx: &ApiContext,
    caller: &Caller,
    req: pb::RevalidateBackupInstanceRequest,
) -> Result<pb::ConfigureBackupResult> {
    let (vault_id, id) = instance_lookup::instance(ctx.store.pool(), "name", &req.name).await?;
    let pool = ctx.store.pool();
    let instance = instances::get(pool, &vault_id, id).await?;
    let vault = vaults::get(pool, &vault_id).await?;
    let protected = instance.protection_state.is_protected();
    if !protected {
        instances::set_validating(pool, instance.id).await?;
    }
    let placement = placement(
        ctx,
        &vault,
        &instance.server_id,
        &instance.database,
        instance.secret.clone(),
        Some(instance.id),
    )
    .await?;
    let placement = match placement {
        Ok(p) => p,
        Err(refused) => {
            if !protected {
                instances::set_validation_failed(pool, instance.id, &refused.error).await?;
            }
            let current = instances::get_by_id(pool, instance.id).await?;
            return Ok(result(
                0,
                &current.database.clone(),
                Some(current),
                Some(refused),
            ));
        }
    };
    if protected {
        let outcome = readiness_checks(
            ctx,
            Some(caller),
            &vault_id,
            &placement,
            req.assign_missing_permissions,
        )
        .await?;
        return Ok(result(
            0,
            &instance.database.clone(),
            Some(instance),
            outcome.err(),
        ));
    }
    let policy = policies::get(pool, &vault_id, &instance.policy_id).await?;
    let how = Protect {
        caller: Some(caller),
        vault: &vault,
        policy: &policy,
        assign: req.assign_missing_permissions,
        since: ctx.clock.now(),
    };
    let (instance, refused) = validate_kept(ctx, &how, instance, &placement).await?;
    tracing::info!(instance = %instance.id, state = %instance.protection_state, "backup instance re-validated");
    Ok(result(
        0,
        &instance.database.clone(),
        Some(instance),
        refused,
    ))
}
