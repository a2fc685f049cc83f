//! Managing an instance's protection: change its policy (future points follow
//! the new policy; existing points keep their tags and expiries unless the
//! caller asks to re-apply retention), stop protection (keep every point
//! forever, keep points per their rules with the newest kept forever, or
//! soft-delete every point, purged after the vault's window), and resume
//! it. In a locked vault the new policy may not shorten retention,
//! re-applied retention only extends expiries, and stop with delete is
//! refused (`data_protection::lock`). Schedules restart from the coordinator's "now" so a past slot
//! of the new or resumed schedule never fires.

use chrono::{DateTime, TimeZone, Utc};
use futures::FutureExt;
use pgvault_proto::v1 as pb;

use crate::api::{ApiContext, instance_lookup};
use crate::data_protection::{lock, soft_delete};
use crate::error::{CoordinatorError, Result};
use crate::model::{BackupInstance, ProtectionState, RuleKind, Tier};
use crate::names;
use crate::store::{instances, policies, recovery_points, vaults};
use crate::tagging;

/// The expiry of points kept forever.
pub fn forever() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(9999, 12, 31, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

pub async fn change_policy(
    ctx: &ApiContext,
    req: pb::ChangePolicyRequest,
) -> Result<pb::BackupInstance> {
    let (vault_id, instance_id) =
        instance_lookup::instance(ctx.store.pool(), "name", &req.name).await?;
    let (policy_vault, policy_id) = names::parse_policy("policy", &req.policy)?;
    if policy_vault != vault_id {
        return Err(CoordinatorError::invalid(
            "policy",
            format!("the policy must belong to the instance's vault \"{vault_id}\""),
        ));
    }
    let now = ctx.clock.now();
    let reapply = req.reapply_retention;
    let instance = ctx
        .store
        .in_tx(move |conn| {
            async move {
                let instance = instances::get(&mut *conn, &vault_id, instance_id).await?;
                let instance = instances::lock_by_id(&mut *conn, instance.id).await?;
                let policy = policies::get(&mut *conn, &vault_id, &policy_id).await?;
                let vault = vaults::get(&mut *conn, &vault_id).await?;
                let old = policies::get(&mut *conn, &vault_id, &instance.policy_id).await?;
                lock::check_policy_change(&vault, &old, &policy)?;
                instances::set_policy(&mut *conn, instance.id, &policy.id, now).await?;
                if reapply {
                    for point in recovery_points::all_of_instance(&mut *conn, instance.id).await? {
                        if point.tier != Tier::Standard {
                            continue;
                        }
                        let Some(rule) = policy
                            .rule(point.retention_tag)
                            .or_else(|| policy.rule(RuleKind::Default))
                        else {
                            continue;
                        };
                        let Some(mut kept) = tagging::keeping(rule, point.snapshot_time) else {
                            continue;
                        };
                        // A locked vault's points never expire earlier.
                        if vault.is_locked() && kept.expire_time < point.expire_time {
                            kept.expire_time = point.expire_time;
                        }
                        recovery_points::set_retention(
                            &mut *conn,
                            point.id,
                            kept.tag,
                            kept.expire_time,
                            &kept.archive_duration,
                        )
                        .await?;
                    }
                }
                instances::get(&mut *conn, &vault_id, instance.id).await
            }
            .boxed()
        })
        .await?;
    tracing::info!(instance = %instance.id, policy = %instance.policy_id, reapply, "policy changed");
    Ok(instance.into())
}

/// Stops protection; `by` (the caller's token name) is recorded on points
/// a stop with delete soft-deletes.
pub async fn stop(
    ctx: &ApiContext,
    req: pb::StopProtectionRequest,
    by: &str,
) -> Result<pb::BackupInstance> {
    let (vault_id, instance_id) =
        instance_lookup::instance(ctx.store.pool(), "name", &req.name).await?;
    let mode = match pb::StopMode::try_from(req.mode) {
        Ok(
            mode @ (pb::StopMode::KeepAllForever
            | pb::StopMode::KeepPerPolicy
            | pb::StopMode::DeleteAllPoints),
        ) => mode,
        _ => {
            return Err(CoordinatorError::invalid(
                "mode",
                "must be KEEP_ALL_FOREVER, KEEP_PER_POLICY or DELETE_ALL_POINTS",
            ));
        }
    };
    let now = ctx.clock.now();
    let instance = set_state(
        ctx,
        vault_id,
        instance_id,
        ProtectionState::Stopped,
        now,
        Some((mode, by.to_string())),
    )
    .await?;
    tracing::info!(instance = %instance.id, mode = mode.as_str_name(), "protection stopped");
    Ok(instance.into())
}

pub async fn resume(
    ctx: &ApiContext,
    req: pb::ResumeProtectionRequest,
) -> Result<pb::BackupInstance> {
    let (vault_id, instance_id) =
        instance_lookup::instance(ctx.store.pool(), "name", &req.name).await?;
    let now = ctx.clock.now();
    let instance = set_state(
        ctx,
        vault_id,
        instance_id,
        ProtectionState::Configured,
        now,
        None,
    )
    .await?;
    tracing::info!(instance = %instance.id, "protection resumed");
    Ok(instance.into())
}

/// Changes the protection state; when stopping, also applies the stop mode
/// to the points (kept forever, or DELETE jobs queued) in the same
/// transaction.
async fn set_state(
    ctx: &ApiContext,
    vault_id: String,
    instance_id: uuid::Uuid,
    state: ProtectionState,
    now: DateTime<Utc>,
    stop_mode: Option<(pb::StopMode, String)>,
) -> Result<BackupInstance> {
    ctx.store
        .in_tx(move |conn| {
            async move {
                let instance = instances::get(&mut *conn, &vault_id, instance_id).await?;
                let instance = instances::lock_by_id(&mut *conn, instance.id).await?;
                if !instance.protection_state.is_protected() {
                    return Err(CoordinatorError::precondition(format!(
                        "{} is not protected (its validation failed); fix the error it shows and re-validate it (pgvault backup revalidate)",
                        names::instance_name(&vault_id, instance.id)
                    )));
                }
                if instance.protection_state == state {
                    return Err(CoordinatorError::precondition(format!(
                        "protection of {} is already {state}",
                        names::instance_name(&vault_id, instance.id)
                    )));
                }
                instances::set_protection(&mut *conn, instance.id, state, now).await?;
                match stop_mode {
                    Some((pb::StopMode::DeleteAllPoints, by)) => {
                        let deleted = soft_delete::delete_instance_points_in(
                            &mut *conn,
                            &vault_id,
                            instance.id,
                            &by,
                            now,
                        )
                        .await?;
                        tracing::info!(instance = %instance.id, points = deleted, by = %by, "every recovery point soft-deleted");
                    }
                    Some((mode, _)) => {
                        let only_newest = mode == pb::StopMode::KeepPerPolicy;
                        recovery_points::keep_until(&mut *conn, instance.id, forever(), only_newest)
                            .await?;
                    }
                    None => {}
                }
                instances::get(&mut *conn, &vault_id, instance.id).await
            }
            .boxed()
        })
        .await
}
