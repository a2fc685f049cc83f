//! `BackupNow`: an on-demand backup of one instance, kept by one of its
//! policy's retention rules. The job and its outbox row are written in one
//! transaction; the queued job is returned at once. `workers` (2-64) asks
//! for the backup to be fanned out across that many workers.

use pgvault_proto::v1 as pb;

use crate::api::convert::rule_kind_from_pb;
use crate::api::jobs::enqueue_fanned;
use crate::api::{ApiContext, instance_lookup};
use crate::error::{CoordinatorError, Result};
use crate::model::{BackupTrigger, JobSpec, ProtectionState, RuleKind};
use crate::store::instances;
use crate::store::jobs::NewJob;
use crate::store::policies;

/// Most workers one backup may fan out across.
const MAX_WORKERS: u32 = 64;

pub async fn backup_now(ctx: &ApiContext, req: pb::BackupNowRequest) -> Result<pb::Job> {
    let (vault_id, instance_id) =
        instance_lookup::instance(ctx.store.pool(), "name", &req.name).await?;
    let rule = rule_kind_from_pb("rule", req.rule)?.unwrap_or(RuleKind::Default);
    if req.workers == 1 || req.workers > MAX_WORKERS {
        return Err(CoordinatorError::invalid(
            "workers",
            format!(
                "must be 2-{MAX_WORKERS} to fan the backup out, or 0 to leave it to the size threshold"
            ),
        ));
    }
    let instance = instances::get(ctx.store.pool(), &vault_id, instance_id).await?;
    if !instance.protection_state.is_protected() {
        return Err(CoordinatorError::precondition(format!(
            "{} is not protected (its validation failed); fix the error it shows and re-validate it (pgvault backup revalidate)",
            req.name
        )));
    }
    if instance.protection_state != ProtectionState::Configured {
        return Err(CoordinatorError::precondition(format!(
            "protection of {} is stopped; resume it before backing up",
            req.name
        )));
    }
    let policy = policies::get(ctx.store.pool(), &vault_id, &instance.policy_id).await?;
    if policy.rule(rule).is_none() {
        let available: Vec<&str> = policy
            .retention_rules
            .iter()
            .map(|r| r.kind.as_str())
            .collect();
        return Err(CoordinatorError::invalid(
            "rule",
            format!(
                "policy \"{}\" has no {rule} retention rule; it has: {}",
                policy.id,
                available.join(", ")
            ),
        ));
    }
    let job = enqueue_fanned(
        ctx,
        NewJob {
            vault_id,
            spec: JobSpec::Backup {
                instance_id: instance.id,
                trigger: BackupTrigger::OnDemand { rule },
                produced_point_id: None,
            },
            waits_for_job_id: None,
        },
        req.workers,
    )
    .await?;
    crate::job_span::of("backup.queued", &job).in_scope(|| {
        tracing::info!(rule = %rule, "on-demand backup queued");
    });
    Ok(job.into())
}
