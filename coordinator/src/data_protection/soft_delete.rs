//! Soft delete: deleting a recovery point, or every point of an instance
//! (stop protection with delete), marks the points deleted — by whom, when,
//! and until when they stay recoverable (the vault's window, default 14
//! days, at least 1) — instead of removing objects. Marked points vanish
//! from lists and restores, are listed with `--deleted`, can be undeleted
//! until their purge starts, and the lifecycle sweeper purges them (a
//! DELETE job recording who deleted the point) once the window ends. A
//! locked vault refuses every deletion.

use chrono::{DateTime, Duration, Utc};
use futures::FutureExt;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::data_protection::lock;
use crate::error::{CoordinatorError, Result};
use crate::model::{RecoveryPoint, Vault};
use crate::names;
use crate::store::{Store, lifecycle, recovery_points, soft_delete, vaults};

/// The window when a vault does not choose one, in days.
pub const DEFAULT_SOFT_DELETE_DAYS: u32 = 14;
/// The longest window accepted, in days (10 years).
pub const MAX_SOFT_DELETE_DAYS: u32 = 3660;

/// The window asked for in `field` (0: the default), checked.
pub fn window_days(field: &str, requested: u32) -> Result<u32> {
    match requested {
        0 => Ok(DEFAULT_SOFT_DELETE_DAYS),
        n if n <= MAX_SOFT_DELETE_DAYS => Ok(n),
        n => Err(CoordinatorError::invalid(
            field,
            format!(
                "must be between 1 and {MAX_SOFT_DELETE_DAYS} days (default {DEFAULT_SOFT_DELETE_DAYS}), got {n}"
            ),
        )),
    }
}

/// When a point soft-deleted at `now` in `vault` is purged.
pub fn purge_after(vault: &Vault, now: DateTime<Utc>) -> DateTime<Utc> {
    now + Duration::days(i64::from(vault.soft_delete_days))
}

/// Soft-deletes one point on behalf of `by` (a token name).
pub async fn delete_point(
    store: &Store,
    (vault_id, instance_id, point_id): (String, Uuid, Uuid),
    by: String,
    now: DateTime<Utc>,
) -> Result<RecoveryPoint> {
    store
        .in_tx(move |conn| {
            async move {
                let name = names::recovery_point_name(&vault_id, instance_id, point_id);
                let vault = locked_vault(conn, &vault_id).await?;
                let point = recovery_points::get_with_copies_only(&mut *conn, &vault_id, instance_id, point_id).await?;
                lock::ensure_unlocked(&vault, &format!("recovery point {name} cannot be deleted"))?;
                if point.copies_only {
                    return Err(CoordinatorError::precondition(format!(
                        "recovery point {name} is kept only as copies (its own objects expired with its retention); each copy is deleted at its own expiry, shown by pgvault recovery-point get {name}"
                    )));
                }
                if point.soft_delete.is_some() {
                    return Err(CoordinatorError::precondition(format!(
                        "recovery point {name} is already deleted; list such points with pgvault recovery-point list --deleted"
                    )));
                }
                soft_delete::mark(&mut *conn, point_id, &by, now, purge_after(&vault, now)).await?;
                tracing::info!(point = %point_id, by = %by, days = vault.soft_delete_days, "recovery point soft-deleted");
                recovery_points::get(&mut *conn, &vault_id, instance_id, point_id).await
            }
            .boxed()
        })
        .await
}

/// Brings a soft-deleted point back, unless its purge has started.
pub async fn undelete_point(
    store: &Store,
    (vault_id, instance_id, point_id): (String, Uuid, Uuid),
) -> Result<RecoveryPoint> {
    store
        .in_tx(move |conn| {
            async move {
                let name = names::recovery_point_name(&vault_id, instance_id, point_id);
                if !lifecycle::lock_point(&mut *conn, point_id).await? {
                    return Err(CoordinatorError::not_found("recovery point", name));
                }
                let point = recovery_points::get(&mut *conn, &vault_id, instance_id, point_id).await?;
                if point.soft_delete.is_none() {
                    return Err(CoordinatorError::precondition(format!(
                        "recovery point {name} is not deleted"
                    )));
                }
                if let Some((job, _)) = lifecycle::active_removal(&mut *conn, point_id).await? {
                    return Err(CoordinatorError::precondition(format!(
                        "recovery point {name} is being purged by job {}; it can no longer be undeleted",
                        names::job_name(job)
                    )));
                }
                soft_delete::unmark(&mut *conn, point_id).await?;
                tracing::info!(point = %point_id, "recovery point undeleted");
                recovery_points::get(&mut *conn, &vault_id, instance_id, point_id).await
            }
            .boxed()
        })
        .await
}

/// Soft-deletes every live point of the instance (stop protection with
/// delete), inside the caller's transaction. Returns how many.
pub async fn delete_instance_points_in(
    conn: &mut PgConnection,
    vault_id: &str,
    instance_id: Uuid,
    by: &str,
    now: DateTime<Utc>,
) -> Result<u64> {
    let vault = locked_vault(conn, vault_id).await?;
    lock::ensure_unlocked(
        &vault,
        &format!(
            "the recovery points of {} cannot be deleted; stop protection keeping them instead",
            names::instance_name(vault_id, instance_id)
        ),
    )?;
    soft_delete::mark_instance(&mut *conn, instance_id, by, now, purge_after(&vault, now)).await
}

/// The vault, its row locked so a concurrent lock or window change waits.
async fn locked_vault(conn: &mut PgConnection, vault_id: &str) -> Result<Vault> {
    vaults::lock(&mut *conn, vault_id).await?;
    vaults::get(&mut *conn, vault_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_defaults_to_14_days_and_is_bounded() {
        assert_eq!(window_days("soft_delete_days", 0).unwrap(), 14);
        assert_eq!(window_days("soft_delete_days", 1).unwrap(), 1);
        let error = window_days("soft_delete_days", 5000)
            .unwrap_err()
            .to_string();
        assert!(error.contains("between 1 and 3660 days"), "{error}");
    }
}
