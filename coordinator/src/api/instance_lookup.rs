//! The one place a backup instance named in a request becomes its id: the
//! name's instance segment is its UUID or its short name in the vault
//! (`vaults/prod/backupInstances/db1-billing`); a short name is looked up
//! here. Every handler taking an instance or recovery point name calls
//! [`instance`] or [`recovery_point`].

use sqlx::PgPool;
use uuid::Uuid;

use crate::error::{CoordinatorError, Result};
use crate::names::{self, InstanceRef};
use crate::store::instances;

/// The vault and id of the instance `name` (request field `field`) names.
/// An unknown short name is NotFound, naming it and how to list the names.
pub async fn instance(pool: &PgPool, field: &str, name: &str) -> Result<(String, Uuid)> {
    let (vault, instance) = names::parse_instance(field, name)?;
    let id = id_of(pool, &vault, instance).await?;
    Ok((vault, id))
}

/// The vault, instance id and point id of recovery point `name`.
pub async fn recovery_point(
    pool: &PgPool,
    field: &str,
    name: &str,
) -> Result<(String, Uuid, Uuid)> {
    let (vault, instance, point) = names::parse_recovery_point(field, name)?;
    let id = id_of(pool, &vault, instance).await?;
    Ok((vault, id, point))
}

async fn id_of(pool: &PgPool, vault: &str, instance: InstanceRef<'_>) -> Result<Uuid> {
    match instance {
        InstanceRef::Id(id) => Ok(id),
        InstanceRef::ShortName(short) => instances::find_id_by_short_name(pool, vault, short)
            .await?
            .ok_or_else(|| {
                CoordinatorError::not_found_fix(
                    "backup instance",
                    format!("{vault}/{short}"),
                    format!("list the instances of the vault and their names with: pgvault backup list --vault {vault}"),
                )
            }),
    }
}
