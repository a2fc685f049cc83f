//! The lease holder's calls after a claim: `Heartbeat` (extend the lease,
//! store progress), `CompleteTask` (record the recovery point, or a
//! restore's output and what it left out, and complete the job in one
//! transaction; a restore that left objects out completes with warnings)
//! and `FailTask` (re-queue a retryable failure while attempts remain,
//! else fail). Every call checks the lease token, so a
//! worker whose lease was taken over is fenced off. Each call also stores
//! the tables that changed and closes the attempt's history row; completion
//! and failure free the attempt's connection slots ([`crate::budget`]).

use std::str::FromStr;

use pgvault_errors::ErrorCode;
use pgvault_proto::v1 as pb;
use sqlx::PgConnection;

use crate::api::convert::from_timestamp;
use crate::api::{ApiContext, job_details};
use crate::error::{CoordinatorError, Result};
use crate::model::{
    AttemptOutcome, BackupTrigger, FileOutput, Job, JobError, JobSpec, JobState, Progress,
    RecoveryPoint, RestoreTarget, RuleKind, StageSplit, Tier,
};
use crate::store::{
    attempts, connection_slots, garbage, instances, jobs, outbox, policies, recovery_points,
    restore_targets,
};
use crate::{backoff, tagging};

fn taken_over() -> CoordinatorError {
    CoordinatorError::precondition(
        "lease was taken over by another attempt; stop working on this job",
    )
}

pub async fn heartbeat(
    ctx: &ApiContext,
    req: pb::HeartbeatRequest,
) -> Result<pb::HeartbeatResponse> {
    let job_id = super::job_id(&req.job_id)?;
    let token = super::lease_token(&req.lease_token)?;
    let progress = req.progress.map(Progress::from);
    let tables = job_details::tables_from_pb(req.tables)?;
    let ttl = ctx.lease_ttl.as_secs_f64();
    // The lease check locks the job row: the tables land under the
    // attempt that holds the lease, never a newer one.
    let mut tx = ctx.store.begin().await?;
    let beat = jobs::heartbeat(&mut *tx, job_id, token, ttl, progress.as_ref()).await?;
    if beat.is_some() {
        job_details::store_tables(&mut *tx, job_id, None, &tables).await?;
    }
    tx.commit().await?;
    match beat {
        Some(state) => Ok(pb::HeartbeatResponse {
            cancel_requested: state == JobState::Cancelling,
        }),
        None => {
            let job = jobs::get(ctx.store.pool(), job_id).await?;
            let running = matches!(job.state, JobState::InProgress | JobState::Cancelling);
            if job.lease_token == Some(token) && running {
                // The token still holds, but its lease ran out first.
                ctx.metrics.fenced_heartbeat();
                Err(CoordinatorError::precondition(format!(
                    "lease of attempt {} expired before this heartbeat; stop working on this job: it will be retried",
                    job.attempt
                )))
            } else if job.lease_token == Some(token) {
                Err(CoordinatorError::precondition(format!(
                    "job is already {}; stop working on it",
                    job.state
                )))
            } else {
                ctx.metrics.fenced_heartbeat();
                Err(taken_over())
            }
        }
    }
}

/// Locks the job and checks `token` holds its lease. `Ok(None)`: the job is
/// already in `done_state` under this token (a retried call).
async fn lock_leased(
    conn: &mut PgConnection,
    req_job: &str,
    req_token: &str,
    done: &[JobState],
) -> Result<Option<Job>> {
    let job_id = super::job_id(req_job)?;
    let token = super::lease_token(req_token)?;
    let job = jobs::lock(&mut *conn, job_id).await?;
    if job.lease_token != Some(token) {
        return Err(taken_over());
    }
    if done.contains(&job.state) {
        return Ok(None);
    }
    if job.state != JobState::InProgress && job.state != JobState::Cancelling {
        return Err(CoordinatorError::precondition(format!(
            "job is {}; it cannot be finished now",
            job.state
        )));
    }
    Ok(Some(job))
}

pub async fn complete(ctx: &ApiContext, req: pb::CompleteTaskRequest) -> Result<()> {
    let split = reported_split(&req)?;
    let mut tx = ctx.store.begin().await?;
    let Some(job) = lock_leased(
        &mut tx,
        &req.job_id,
        &req.lease_token,
        &[JobState::Completed, JobState::CompletedWithWarnings],
    )
    .await?
    else {
        return Ok(());
    };
    super::call_span::record_job(&tracing::Span::current(), &job);
    let progress = req
        .progress
        .map(Progress::from)
        .unwrap_or_else(|| job.progress.clone());
    let point_id = if let JobSpec::Backup {
        instance_id,
        trigger,
        ..
    } = &job.spec
    {
        let result = match req.result.clone() {
            Some(pb::complete_task_request::Result::Backup(result)) => result,
            _ => {
                return Err(CoordinatorError::invalid(
                    "backup",
                    "a backup job completes with a backup result",
                ));
            }
        };
        Some(record_point(&mut tx, &job, *instance_id, *trigger, result).await?)
    } else {
        None
    };
    let mut released =
        crate::lifecycle::complete::on_complete(&mut tx, &job, ctx.clock.now()).await?;
    if let (Some(point_id), JobSpec::Backup { instance_id, .. }) = (point_id, &job.spec) {
        let instance = instances::get_by_id(&mut *tx, *instance_id).await?;
        let policy = policies::get(&mut *tx, &instance.vault_id, &instance.policy_id).await?;
        released |= crate::copies::queue::after_backup(&mut tx, &policy, *instance_id, point_id)
            .await?
            .is_some();
        released |= crate::drill::queue::after_backup(&mut tx, &policy, *instance_id, point_id)
            .await?
            .is_some();
    }
    crate::verify::outcome::record(&mut tx, &job, ctx.clock.now(), None).await?;
    let drilled = match &req.result {
        Some(pb::complete_task_request::Result::Drill(result)) => Some(result),
        _ => None,
    };
    crate::drill::outcome::record(&mut tx, &job, ctx.clock.now(), Ok(drilled)).await?;
    jobs::complete(&mut *tx, job.id, &progress, point_id).await?;
    connection_slots::release_job(&mut *tx, job.id).await?;
    let tables = job_details::tables_from_pb(req.tables.clone())?;
    job_details::store_tables(&mut *tx, job.id, Some(job.attempt), &tables).await?;
    attempts::end(&mut *tx, job.id, AttemptOutcome::Completed, None).await?;
    if let Some(split) = &split {
        attempts::set_stage_split(&mut *tx, job.id, job.attempt, split).await?;
    }
    let mut warned = false;
    if let (JobSpec::Restore(restore), Some(pb::complete_task_request::Result::Restore(result))) =
        (&job.spec, &req.result)
    {
        warned = record_restore(&mut tx, &job, &restore.target, result).await?;
    }
    tx.commit().await?;
    if released {
        ctx.dispatch_wake.notify_one();
    }
    tracing::info!(job_id = %job.id, attempt = job.attempt, operation = %job.operation(), warned, "job completed");
    Ok(())
}

/// Where the completed attempt's time went, if the worker said.
fn reported_split(req: &pb::CompleteTaskRequest) -> Result<Option<StageSplit>> {
    let split = match &req.result {
        Some(pb::complete_task_request::Result::Backup(r)) => r.stage_split.clone(),
        Some(pb::complete_task_request::Result::Restore(r)) => r.stage_split.clone(),
        _ => None,
    };
    split.map(StageSplit::try_from).transpose()
}

/// Longest list of warnings kept on a job; the rest are counted.
const MAX_WARNINGS: usize = 200;

/// Records a restore's result on its restore target; a restore that left
/// objects out completes with warnings. Returns whether it did.
async fn record_restore(
    conn: &mut PgConnection,
    job: &Job,
    target: &RestoreTarget,
    result: &pb::RestoreResult,
) -> Result<bool> {
    let output = (matches!(target, RestoreTarget::Files { .. })
        && !result.output_sha256.is_empty())
    .then(|| FileOutput {
        size: result.output_size,
        sha256: result.output_sha256.clone(),
    });
    let mut warnings: Vec<String> = result
        .skipped_objects
        .iter()
        .take(MAX_WARNINGS)
        .map(|s| {
            let line: String = s.chars().filter(|c| !c.is_control()).take(500).collect();
            format!("left out: {line}")
        })
        .collect();
    if result.skipped_objects.len() > MAX_WARNINGS {
        warnings.push(format!(
            "left out: {} more objects",
            result.skipped_objects.len() - MAX_WARNINGS
        ));
    }
    restore_targets::record_result(&mut *conn, job.id, output.as_ref(), &warnings).await?;
    if warnings.is_empty() {
        return Ok(false);
    }
    jobs::mark_completed_with_warnings(&mut *conn, job.id).await?;
    Ok(true)
}

/// Inserts the recovery point a backup attempt produced; returns its id.
async fn record_point(
    conn: &mut PgConnection,
    job: &Job,
    instance_id: uuid::Uuid,
    trigger: BackupTrigger,
    result: pb::BackupResult,
) -> Result<uuid::Uuid> {
    let snapshot = result
        .snapshot_time
        .as_ref()
        .ok_or_else(|| CoordinatorError::invalid("backup.snapshot_time", "is required"))?;
    let snapshot_time = from_timestamp("backup.snapshot_time", snapshot)?;
    let sha = result.manifest_sha256.trim().to_ascii_lowercase();
    if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(CoordinatorError::invalid(
            "backup.manifest_sha256",
            "must be 64 hexadecimal characters",
        ));
    }
    let target = attempts::target(&mut *conn, job.id, job.attempt).await?;
    let Some((point_id, target)) = target.and_then(|t| Some((t.point_id?, t))) else {
        return Err(CoordinatorError::internal(format!(
            "job {} attempt {} has no recorded recovery point to write",
            job.id, job.attempt
        )));
    };
    // Serialises completions of one instance, so two points cannot both be
    // "the first" of a period.
    let instance = instances::lock_by_id(&mut *conn, instance_id).await?;
    let policy = policies::get(&mut *conn, &instance.vault_id, &instance.policy_id).await?;
    let wanted = if let BackupTrigger::OnDemand { rule } = trigger {
        rule
    } else {
        let previous =
            recovery_points::latest_scheduled_before(&mut *conn, instance.id, snapshot_time)
                .await?;
        let zone = chrono_tz::Tz::from_str(&policy.schedule.time_zone).unwrap_or(chrono_tz::UTC);
        let kinds: Vec<RuleKind> = policy.retention_rules.iter().map(|r| r.kind).collect();
        tagging::tag(&kinds, zone, snapshot_time, previous)
    };
    // The rule may have been removed since the job was queued: fall back to DEFAULT.
    let rule = policy
        .rule(wanted)
        .or_else(|| policy.rule(RuleKind::Default))
        .ok_or_else(|| {
            CoordinatorError::internal(format!("policy \"{}\" has no DEFAULT rule", policy.id))
        })?;
    let kept = tagging::keeping(rule, snapshot_time).ok_or_else(|| {
        CoordinatorError::internal(format!("cannot compute the expiry of rule {}", rule.kind))
    })?;
    let point = RecoveryPoint {
        id: point_id,
        vault_id: instance.vault_id.clone(),
        backup_instance_id: instance.id,
        job_id: job.id,
        database: instance.database.clone(),
        snapshot_time,
        tier: Tier::Standard,
        datastore_url: target.datastore_url,
        prefix: target.prefix,
        stored_bytes: result.stored_bytes,
        raw_bytes: result.raw_bytes,
        chunk_count: result.chunk_count,
        manifest_sha256: sha,
        server_version: result.server_version.chars().take(200).collect(),
        retention_tag: kept.tag,
        expire_time: kept.expire_time,
        archive_duration: kept.archive_duration,
        create_time: chrono::Utc::now(),
        soft_delete: None,
        last_verify: None,
        last_drill: None,
        copies_only: false,
    };
    recovery_points::insert(&mut *conn, &point).await?;
    Ok(point_id)
}

/// Longest error message stored; workers' messages are one line.
const MAX_MESSAGE: usize = 2000;
/// Most log lines kept with a failed attempt (the last ones), and the
/// longest line.
const MAX_LOG_LINES: usize = 50;
const MAX_LOG_LINE: usize = 500;

/// The last [`MAX_LOG_LINES`] lines, each cut to [`MAX_LOG_LINE`]
/// characters, control characters dropped (tabs become spaces).
fn log_tail(lines: Vec<String>) -> Vec<String> {
    let skip = lines.len().saturating_sub(MAX_LOG_LINES);
    lines
        .into_iter()
        .skip(skip)
        .map(|line| {
            line.chars()
                .map(|c| if c == '\t' { ' ' } else { c })
                .filter(|c| !c.is_control())
                .take(MAX_LOG_LINE)
                .collect()
        })
        .collect()
}

pub async fn fail(ctx: &ApiContext, req: pb::FailTaskRequest) -> Result<()> {
    let mut tx = ctx.store.begin().await?;
    let done = [JobState::Failed, JobState::Cancelled];
    let Some(job) = lock_leased(&mut tx, &req.job_id, &req.lease_token, &done).await? else {
        return Ok(());
    };
    super::call_span::record_job(&tracing::Span::current(), &job);
    let given = req.error.unwrap_or_default();
    let error = JobError {
        code: if given.code.trim().is_empty() {
            ErrorCode::SystemErrorUnknown.as_str().into()
        } else {
            given.code.trim().into()
        },
        message: given.message.chars().take(MAX_MESSAGE).collect(),
        recommended_action: given.recommended_action.chars().take(MAX_MESSAGE).collect(),
    };
    // Whatever happens next, what this attempt wrote is never referenced.
    garbage::record_attempt(&mut *tx, job.id, job.attempt, ctx.retry.garbage_grace).await?;
    let tables = job_details::tables_from_pb(req.tables)?;
    job_details::store_tables(&mut *tx, job.id, Some(job.attempt), &tables).await?;
    let outcome = if error.code == ErrorCode::Cancelled {
        AttemptOutcome::Cancelled
    } else {
        AttemptOutcome::Failed
    };
    attempts::end(&mut *tx, job.id, outcome, Some(&error)).await?;
    connection_slots::release_job(&mut *tx, job.id).await?;
    attempts::set_log_tail(&mut *tx, job.id, job.attempt, &log_tail(req.log_tail)).await?;
    let used = job.attempt.saturating_sub(job.attempts_before_retry);
    if error.code == ErrorCode::Cancelled {
        jobs::finish_failed(&mut *tx, job.id, JobState::Cancelled, &error).await?;
        tx.commit().await?;
        tracing::info!(job_id = %job.id, "job cancelled");
    } else if req.retryable && used < ctx.retry.max_attempts {
        let next = jobs::requeue(&mut *tx, job.id, &error).await?;
        let delay = backoff::retry_delay(ctx.retry.backoff, used);
        outbox::insert_delayed(&mut *tx, job.id, next, delay).await?;
        tx.commit().await?;
        ctx.dispatch_wake.notify_one();
        tracing::warn!(job_id = %job.id, attempt = job.attempt, code = %error.code, delay_s = delay.as_secs_f64(), "attempt failed; job re-queued");
    } else {
        jobs::finish_failed(&mut *tx, job.id, JobState::Failed, &error).await?;
        crate::verify::outcome::record(&mut tx, &job, ctx.clock.now(), Some(&error.code)).await?;
        crate::drill::outcome::record(&mut tx, &job, ctx.clock.now(), Err(&error.code)).await?;
        tx.commit().await?;
        tracing::warn!(job_id = %job.id, attempt = job.attempt, code = %error.code, "job failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_tail_keeps_the_last_lines_cut_and_printable() {
        let lines: Vec<String> = (0..60).map(|i| format!("line {i}")).collect();
        let kept = log_tail(lines);
        assert_eq!(kept.len(), MAX_LOG_LINES);
        assert_eq!(kept[0], "line 10");
        assert_eq!(kept[49], "line 59");
        let long = log_tail(vec![format!("a\tb\u{1b}[31m{}", "x".repeat(900))]);
        assert_eq!(long[0].chars().count(), MAX_LOG_LINE);
        assert!(long[0].starts_with("a b[31m"), "{}", long[0]);
    }
}
