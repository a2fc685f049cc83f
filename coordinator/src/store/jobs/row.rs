//! A `jobs` row and the job it is: the common columns, and the operation's
//! spec from its CHECK-constrained columns plus, for restores, the
//! `restore_targets` row joined to it. A row that does not fit its
//! operation's shape (the CHECKs make that impossible) is an internal error
//! naming the job and what is wrong, never a half-filled job.

use chrono::{DateTime, Utc};
use pgvault_telemetry::TraceContext;
use uuid::Uuid;

use crate::error::{CoordinatorError, Result};
use crate::model::{
    BackupTrigger, DeleteScope, DrillSpec, Job, JobError, JobSpec, JobState, Operation, Progress,
    RestoreSpec, RestoreTarget, Route, RuleKind,
};
use crate::store::restore_targets::{JOIN, JOINED_COLUMNS, JoinedTarget, TargetFacts};
use crate::store::{parse_enum, to_u32, to_u64};

#[derive(sqlx::FromRow)]
pub(super) struct JobRow {
    id: Uuid,
    operation: String,
    state: String,
    vault_id: String,
    backup_instance_id: Option<Uuid>,
    recovery_point_id: Option<Uuid>,
    produced_point_id: Option<Uuid>,
    retention_rule: Option<String>,
    lifecycle_stage: Option<String>,
    rehydrate_days: Option<i32>,
    waits_for_job_id: Option<Uuid>,
    agent_id: Option<String>,
    trace_context: Option<String>,
    requested_by: Option<String>,
    attempt: i32,
    attempts_before_retry: i32,
    lease_owner: Option<String>,
    lease_token: Option<Uuid>,
    lease_expires_at: Option<DateTime<Utc>>,
    bytes_done: i64,
    rows_done: i64,
    chunks_done: i32,
    chunks_total: i32,
    phase: String,
    error_code: Option<String>,
    error_message: Option<String>,
    error_action: Option<String>,
    create_time: DateTime<Utc>,
    start_time: Option<DateTime<Utc>>,
    end_time: Option<DateTime<Utc>>,
    update_time: DateTime<Utc>,
    instance_short_name: Option<String>,
    #[sqlx(flatten)]
    target: JoinedTarget,
}

/// The `jobs` columns of `JobRow`, from `jobs j`.
const JOB_COLUMNS: &str = "j.id, j.operation, j.state, j.vault_id, j.backup_instance_id, j.recovery_point_id, \
     j.produced_point_id, j.retention_rule, j.lifecycle_stage, j.rehydrate_days, j.waits_for_job_id, j.agent_id, j.trace_context, j.requested_by, j.attempt, \
     j.attempts_before_retry, j.lease_owner, j.lease_token, j.lease_expires_at, j.bytes_done, j.rows_done, \
     j.chunks_done, j.chunks_total, j.phase, j.error_code, j.error_message, j.error_action, j.create_time, \
     j.start_time, j.end_time, j.update_time";

/// The short name of the job's instance, shown with the job.
const INSTANCE_JOIN: &str = "LEFT JOIN backup_instances bi ON bi.id = j.backup_instance_id";
const INSTANCE_COLUMNS: &str = "bi.short_name AS instance_short_name";

/// `SELECT` of job rows from `jobs j` with their restore targets and
/// instance names; the caller adds `WHERE`, `ORDER BY`, `LIMIT`,
/// `FOR UPDATE OF j`.
pub(super) fn select() -> String {
    format!(
        "SELECT {JOB_COLUMNS}, {INSTANCE_COLUMNS}, {JOINED_COLUMNS} FROM jobs j {INSTANCE_JOIN} {JOIN}"
    )
}

/// Job rows changed by `update` (an `UPDATE jobs ... ` without
/// `RETURNING`), with their restore targets.
pub(super) fn updated(update: &str) -> String {
    format!(
        "WITH j AS ({update} RETURNING *) SELECT {JOB_COLUMNS}, {INSTANCE_COLUMNS}, {JOINED_COLUMNS} \
         FROM j {INSTANCE_JOIN} {JOIN}"
    )
}

impl TryFrom<JobRow> for Job {
    type Error = CoordinatorError;
    fn try_from(mut r: JobRow) -> Result<Job> {
        let target = std::mem::take(&mut r.target).facts(r.id)?;
        to_job(r, target)
    }
}

/// One row into a job (`target`: its restore target, for restores).
fn to_job(r: JobRow, target: Option<TargetFacts>) -> Result<Job> {
    let id = r.id;
    let operation = parse_enum(&r.operation, "jobs.operation", Operation::parse)?;
    let broken = |what: &str| {
        CoordinatorError::internal(format!(
            "job {id} ({operation}) {what}; the state database does not fit this coordinator"
        ))
    };
    let instance_id = r
        .backup_instance_id
        .ok_or_else(|| broken("has no backup instance"))?;
    let point = || {
        r.recovery_point_id
            .ok_or_else(|| broken("has no recovery point"))
    };
    let spec = match operation {
        Operation::ScheduledBackup | Operation::OnDemandBackup => JobSpec::Backup {
            instance_id,
            trigger: match (operation, &r.retention_rule) {
                (Operation::OnDemandBackup, Some(rule)) => BackupTrigger::OnDemand {
                    rule: parse_enum(rule, "jobs.retention_rule", RuleKind::parse)?,
                },
                (Operation::OnDemandBackup, None) => return Err(broken("has no retention rule")),
                _ => BackupTrigger::Scheduled,
            },
            produced_point_id: r.produced_point_id,
        },
        Operation::Restore => {
            let target = target.ok_or_else(|| broken("has no restore target"))?;
            JobSpec::Restore(Box::new(RestoreSpec {
                instance_id,
                point_id: point()?,
                target: target.target,
                schemas: target.schemas,
                tables: target.tables,
                warnings: target.warnings,
                copy_datastore: target.copy_datastore,
            }))
        }
        Operation::TierMove => JobSpec::TierMove {
            instance_id,
            point_id: point()?,
        },
        Operation::Rehydrate => JobSpec::Rehydrate {
            instance_id,
            point_id: point()?,
            days: r
                .rehydrate_days
                .map(|d| to_u32(d, "jobs.rehydrate_days"))
                .transpose()?
                .ok_or_else(|| broken("has no rehydrate days"))?,
        },
        Operation::Copy => JobSpec::Copy {
            instance_id,
            point_id: point()?,
            datastore_url: r
                .lifecycle_stage
                .as_deref()
                .and_then(|s| s.strip_prefix(crate::model::stage::COPY))
                .filter(|url| !url.is_empty())
                .ok_or_else(|| broken("has no copy datastore in its lifecycle stage"))?
                .to_string(),
        },
        Operation::Verify => JobSpec::Verify {
            instance_id,
            point_id: point()?,
        },
        Operation::Drill => match target.map(|t| t.target) {
            Some(RestoreTarget::Database {
                server_id, secret, ..
            }) => JobSpec::Drill(Box::new(DrillSpec {
                instance_id,
                point_id: point()?,
                server_id,
                secret,
            })),
            _ => return Err(broken("has no drill server in its target")),
        },
        Operation::Delete => JobSpec::Delete {
            instance_id,
            point_id: point()?,
            scope: r
                .lifecycle_stage
                .as_deref()
                .and_then(DeleteScope::from_stage)
                .ok_or_else(|| broken("has no lifecycle stage a delete carries out"))?,
        },
    };
    Ok(Job {
        id,
        state: parse_enum(&r.state, "jobs.state", JobState::parse)?,
        vault_id: r.vault_id,
        spec,
        attempt: to_u32(r.attempt, "jobs.attempt")?,
        attempts_before_retry: to_u32(r.attempts_before_retry, "jobs.attempts_before_retry")?,
        lease_owner: r.lease_owner,
        lease_token: r.lease_token,
        lease_expires_at: r.lease_expires_at,
        progress: Progress {
            bytes_done: to_u64(r.bytes_done, "jobs.bytes_done")?,
            rows_done: to_u64(r.rows_done, "jobs.rows_done")?,
            chunks_done: to_u32(r.chunks_done, "jobs.chunks_done")?,
            chunks_total: to_u32(r.chunks_total, "jobs.chunks_total")?,
            phase: r.phase,
        },
        error: r.error_code.map(|code| JobError {
            code,
            message: r.error_message.unwrap_or_default(),
            recommended_action: r.error_action.unwrap_or_default(),
        }),
        waits_for_job_id: r.waits_for_job_id,
        agent_id: r.agent_id,
        // An unreadable value (written by no pgvault) only loses the trace.
        trace_context: r.trace_context.as_deref().and_then(TraceContext::parse),
        requested_by: r.requested_by,
        create_time: r.create_time,
        start_time: r.start_time,
        end_time: r.end_time,
        update_time: r.update_time,
        instance_short_name: r.instance_short_name,
    })
}

/// The columns of a new job's spec, as `jobs::insert` writes them.
pub(super) struct SpecColumns {
    pub operation: &'static str,
    pub instance_id: Option<Uuid>,
    pub recovery_point_id: Option<Uuid>,
    pub retention_rule: Option<&'static str>,
    pub lifecycle_stage: Option<String>,
    pub rehydrate_days: Option<i32>,
    /// Whose server's agent runs the job (both `None`: the workers).
    pub route_instance: Option<Uuid>,
    pub route_server: Option<String>,
}

impl SpecColumns {
    pub fn of(spec: &JobSpec) -> SpecColumns {
        let (recovery_point_id, retention_rule, rehydrate_days) = match spec {
            JobSpec::Backup { trigger, .. } => (
                None,
                match trigger {
                    BackupTrigger::OnDemand { rule } => Some(rule.as_str()),
                    BackupTrigger::Scheduled => None,
                },
                None,
            ),
            JobSpec::Restore(restore) => (Some(restore.point_id), None, None),
            JobSpec::TierMove { point_id, .. }
            | JobSpec::Delete { point_id, .. }
            | JobSpec::Copy { point_id, .. } => (Some(*point_id), None, None),
            JobSpec::Verify { point_id, .. } => (Some(*point_id), None, None),
            JobSpec::Drill(drill) => (Some(drill.point_id), None, None),
            JobSpec::Rehydrate { point_id, days, .. } => (
                Some(*point_id),
                None,
                Some(i32::try_from(*days).unwrap_or(i32::MAX)),
            ),
        };
        let (route_instance, route_server) = match spec.route() {
            Route::InstanceServer(instance) => (Some(instance), None),
            Route::Server(server) => (None, Some(server)),
            Route::Workers => (None, None),
        };
        SpecColumns {
            operation: spec.operation().as_str(),
            route_instance,
            route_server,
            instance_id: spec.instance_id(),
            recovery_point_id,
            retention_rule,
            lifecycle_stage: spec.lifecycle_stage(),
            rehydrate_days,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(operation: &str) -> JobRow {
        JobRow {
            id: Uuid::nil(),
            operation: operation.into(),
            state: "QUEUED".into(),
            vault_id: "v".into(),
            backup_instance_id: Some(Uuid::nil()),
            recovery_point_id: None,
            produced_point_id: None,
            retention_rule: None,
            lifecycle_stage: None,
            rehydrate_days: None,
            waits_for_job_id: None,
            agent_id: None,
            trace_context: None,
            requested_by: None,
            attempt: 1,
            attempts_before_retry: 0,
            lease_owner: None,
            lease_token: None,
            lease_expires_at: None,
            bytes_done: 0,
            rows_done: 0,
            chunks_done: 0,
            chunks_total: 0,
            phase: String::new(),
            error_code: None,
            error_message: None,
            error_action: None,
            create_time: Utc::now(),
            start_time: None,
            end_time: None,
            update_time: Utc::now(),
            instance_short_name: Some("pg1-shop".into()),
            target: JoinedTarget::default(),
        }
    }

    #[test]
    fn a_row_that_misses_a_fact_of_its_operation_is_an_internal_error_naming_the_job() {
        let error = to_job(row("ON_DEMAND_BACKUP"), None).unwrap_err();
        assert!(matches!(error, CoordinatorError::Internal(_)));
        let text = error.to_string();
        assert!(
            text.contains(&Uuid::nil().to_string()) && text.contains("has no retention rule"),
            "{text}"
        );
        let error = to_job(row("DELETE"), None).unwrap_err().to_string();
        assert!(error.contains("has no recovery point"), "{error}");
        let error = to_job(row("RESTORE"), None).unwrap_err().to_string();
        assert!(error.contains("has no restore target"), "{error}");
    }

    #[test]
    fn a_scheduled_backup_reads_as_its_spec() {
        let job = to_job(row("SCHEDULED_BACKUP"), None).unwrap();
        assert_eq!(
            job.spec,
            JobSpec::Backup {
                instance_id: Uuid::nil(),
                trigger: BackupTrigger::Scheduled,
                produced_point_id: None,
            }
        );
    }

    #[test]
    fn spec_columns_hold_each_operation_s_facts() {
        let point_id = Uuid::new_v4();
        let rehydrate = SpecColumns::of(&JobSpec::Rehydrate {
            instance_id: Uuid::nil(),
            point_id,
            days: 12,
        });
        assert_eq!(rehydrate.operation, "REHYDRATE");
        assert_eq!(rehydrate.recovery_point_id, Some(point_id));
        assert_eq!(rehydrate.lifecycle_stage.as_deref(), Some("REHYDRATE"));
        assert_eq!(rehydrate.rehydrate_days, Some(12));
        let on_demand = SpecColumns::of(&JobSpec::Backup {
            instance_id: Uuid::nil(),
            trigger: BackupTrigger::OnDemand {
                rule: RuleKind::Weekly,
            },
            produced_point_id: None,
        });
        assert_eq!(on_demand.retention_rule, Some("WEEKLY"));
        assert_eq!(on_demand.recovery_point_id, None);
    }
}
