//! Conversions between domain types (`crate::model`) and the generated proto
//! types, in both directions. Incoming enums are checked here; anything that
//! needs more context is validated by the service that receives it.
//!
//! Enums convert with explicit matches, never through proto value names:
//! the domain's SQL text (`crate::model`) and the contract's names
//! (`JOB_STATE_QUEUED`) change independently.

use chrono::{DateTime, Utc};
use pgvault_proto::v1 as pb;
use pgvault_telemetry::TraceContext;
use prost_types::Timestamp;

use crate::error::{CoordinatorError, Result};
use crate::model::{
    BackupInstance, BackupTrigger, Job, JobError, JobSpec, JobState, Operation, Policy, Progress,
    ProtectionState, RecoveryPoint, RestoreKind, RestoreSpec, RestoreTarget, RuleKind, SecretMeta,
    Server, Tier, Vault,
};
use crate::names;
use crate::retention::RetentionRule;

pub fn timestamp(time: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn opt_timestamp(time: Option<DateTime<Utc>>) -> Option<Timestamp> {
    time.map(timestamp)
}

/// A timestamp from a request; `field` names it in the error.
pub fn from_timestamp(field: &str, ts: &Timestamp) -> Result<DateTime<Utc>> {
    u32::try_from(ts.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(ts.seconds, nanos))
        .ok_or_else(|| CoordinatorError::invalid(field, "is not a valid timestamp"))
}

impl From<Vault> for pb::Vault {
    fn from(v: Vault) -> Self {
        pb::Vault {
            name: names::vault_name(&v.id),
            region: v.region,
            standard_datastore: v.standard_datastore,
            archive_datastore: v.archive_datastore,
            description: v.description,
            create_time: Some(timestamp(v.create_time)),
            soft_delete_days: v.soft_delete_days,
            lock_time: v.lock_time.map(timestamp),
            encryption: v.encryption.as_str().to_string(),
            key_version: v.key_version,
        }
    }
}

pub fn rule_kind_to_pb(kind: RuleKind) -> pb::RetentionRuleKind {
    match kind {
        RuleKind::Default => pb::RetentionRuleKind::Default,
        RuleKind::Weekly => pb::RetentionRuleKind::Weekly,
        RuleKind::Monthly => pb::RetentionRuleKind::Monthly,
        RuleKind::Yearly => pb::RetentionRuleKind::Yearly,
    }
}

/// A rule kind from a request; `None` for UNSPECIFIED.
pub fn rule_kind_from_pb(field: &str, value: i32) -> Result<Option<RuleKind>> {
    match pb::RetentionRuleKind::try_from(value) {
        Ok(pb::RetentionRuleKind::Unspecified) => Ok(None),
        Ok(pb::RetentionRuleKind::Default) => Ok(Some(RuleKind::Default)),
        Ok(pb::RetentionRuleKind::Weekly) => Ok(Some(RuleKind::Weekly)),
        Ok(pb::RetentionRuleKind::Monthly) => Ok(Some(RuleKind::Monthly)),
        Ok(pb::RetentionRuleKind::Yearly) => Ok(Some(RuleKind::Yearly)),
        Err(_) => Err(CoordinatorError::invalid(
            field,
            format!("unknown retention rule kind {value}"),
        )),
    }
}

impl From<RetentionRule> for pb::RetentionRule {
    fn from(r: RetentionRule) -> Self {
        pb::RetentionRule {
            kind: rule_kind_to_pb(r.kind) as i32,
            standard_duration: r.standard_duration,
            archive_duration: r.archive_duration,
        }
    }
}

impl From<Policy> for pb::Policy {
    fn from(p: Policy) -> Self {
        pb::Policy {
            name: names::policy_name(&p.vault_id, &p.id),
            schedule: Some(pb::Schedule {
                weekdays: p.schedule.weekdays.iter().map(|d| i32::from(*d)).collect(),
                time_of_day: p.schedule.time_of_day,
                time_zone: p.schedule.time_zone,
            }),
            retention_rules: p
                .retention_rules
                .into_iter()
                .map(pb::RetentionRule::from)
                .collect(),
            create_time: Some(timestamp(p.create_time)),
            // Needs the clock: set by the policy service.
            next_run_time: None,
            keep_min: p.keep_min,
            copy_datastore: p
                .copy
                .as_ref()
                .map(|c| c.datastore_url.clone())
                .unwrap_or_default(),
            copy_retention: p.copy.map(|c| c.retention).unwrap_or_default(),
            verify_schedule: p.verify_schedule.map(|s| pb::Schedule {
                weekdays: s.weekdays.iter().map(|d| i32::from(*d)).collect(),
                time_of_day: s.time_of_day,
                time_zone: s.time_zone,
            }),
            drill_server: p
                .drill
                .as_ref()
                .map(|d| d.server_id.clone())
                .unwrap_or_default(),
            drill_secret: p
                .drill
                .as_ref()
                .map(|d| d.secret.api_name())
                .unwrap_or_default(),
            drill_every: p.drill.as_ref().map_or(0, |d| d.every),
            drill_schedule: p.drill.and_then(|d| d.schedule).map(|s| pb::Schedule {
                weekdays: s.weekdays.iter().map(|d| i32::from(*d)).collect(),
                time_of_day: s.time_of_day,
                time_zone: s.time_zone,
            }),
        }
    }
}

impl From<Server> for pb::Server {
    fn from(s: Server) -> Self {
        pb::Server {
            name: names::server_name(&s.id),
            host: s.host,
            port: u32::from(s.port),
            region: s.region,
            agent: s.agent,
            create_time: Some(timestamp(s.create_time)),
            whole_server_protection: None,
            max_connections: s.max_connections,
            // Needs the slots table: set by the server service.
            connections_in_use: 0,
        }
    }
}

impl From<SecretMeta> for pb::Secret {
    fn from(s: SecretMeta) -> Self {
        pb::Secret {
            name: names::secret_name(&s.id),
            latest_version: s.latest_version,
            create_time: Some(timestamp(s.create_time)),
            update_time: Some(timestamp(s.update_time)),
            granted_vaults: Vec::new(),
        }
    }
}

impl From<BackupInstance> for pb::BackupInstance {
    fn from(i: BackupInstance) -> Self {
        let state = match i.protection_state {
            ProtectionState::Configured => pb::ProtectionState::Configured,
            ProtectionState::Stopped => pb::ProtectionState::Stopped,
            ProtectionState::Validating => pb::ProtectionState::Validating,
            ProtectionState::ValidationFailed => pb::ProtectionState::ValidationFailed,
        };
        pb::BackupInstance {
            name: names::instance_name(&i.vault_id, i.id),
            server: names::server_name(&i.server_id),
            database: i.database,
            policy: names::policy_name(&i.vault_id, &i.policy_id),
            secret: i.secret.api_name(),
            protection_state: state as i32,
            create_time: Some(timestamp(i.create_time)),
            last_error: i.last_error.map(Into::into),
            short_name: i.short_name,
        }
    }
}

impl From<RecoveryPoint> for pb::RecoveryPoint {
    fn from(p: RecoveryPoint) -> Self {
        let tier = match p.tier {
            Tier::Standard => pb::DatastoreTier::Standard,
            Tier::Archive => pb::DatastoreTier::Archive,
        };
        pb::RecoveryPoint {
            name: names::recovery_point_name(&p.vault_id, p.backup_instance_id, p.id),
            job: names::job_name(p.job_id),
            snapshot_time: Some(timestamp(p.snapshot_time)),
            tier: tier as i32,
            // Nothing is left at a copies-only point's own location.
            location: if p.copies_only {
                String::new()
            } else {
                p.location()
            },
            stored_bytes: p.stored_bytes,
            raw_bytes: p.raw_bytes,
            chunk_count: p.chunk_count,
            manifest_sha256: p.manifest_sha256,
            server_version: p.server_version,
            retention_tag: rule_kind_to_pb(p.retention_tag) as i32,
            expire_time: Some(timestamp(p.expire_time)),
            create_time: Some(timestamp(p.create_time)),
            database: p.database,
            delete_time: p.soft_delete.as_ref().map(|d| timestamp(d.time)),
            deleted_by: p
                .soft_delete
                .as_ref()
                .map(|d| d.by.clone())
                .unwrap_or_default(),
            purge_time: p.soft_delete.as_ref().map(|d| timestamp(d.purge_after)),
            last_verified_at: p.last_verify.as_ref().map(|v| timestamp(v.time)),
            last_verify_result: match &p.last_verify {
                None => String::new(),
                Some(v) if v.error_code.is_none() => "ok".to_string(),
                Some(_) => "failed".to_string(),
            },
            last_verify_error_code: p
                .last_verify
                .as_ref()
                .and_then(|v| v.error_code.clone())
                .unwrap_or_default(),
            last_verify_job: p
                .last_verify
                .as_ref()
                .and_then(|v| v.job_id)
                .map(names::job_name)
                .unwrap_or_default(),
            last_drilled_at: p.last_drill.as_ref().map(|d| timestamp(d.time)),
            last_drill_result: match &p.last_drill {
                None => String::new(),
                Some(d) if d.error_code.is_none() => "ok".to_string(),
                Some(_) => "failed".to_string(),
            },
            last_drill_error_code: p
                .last_drill
                .as_ref()
                .and_then(|d| d.error_code.clone())
                .unwrap_or_default(),
            last_drill_job: p
                .last_drill
                .as_ref()
                .and_then(|d| d.job_id)
                .map(names::job_name)
                .unwrap_or_default(),
            last_drill_server: p
                .last_drill
                .as_ref()
                .map(|d| d.server_id.clone())
                .unwrap_or_default(),
            last_drill_tables: p.last_drill.as_ref().map_or(0, |d| d.tables),
            last_drill_rows: p.last_drill.as_ref().map_or(0, |d| d.rows),
            last_drill_checksums: p.last_drill.as_ref().is_some_and(|d| d.checksums),
            // Read from their own table: `api::recovery_points` adds them.
            copies: Vec::new(),
            copies_only: p.copies_only,
        }
    }
}

impl From<crate::store::copies::PointCopy> for pb::RecoveryPointCopy {
    fn from(c: crate::store::copies::PointCopy) -> Self {
        pb::RecoveryPointCopy {
            location: crate::model::join_url(&c.datastore_url, &c.prefix),
            datastore: c.datastore_url,
            state: c.state,
            copy_time: Some(timestamp(c.copied_at)),
            expire_time: Some(timestamp(c.expires_at)),
            job: names::job_name(c.job_id),
        }
    }
}

pub fn operation_to_pb(op: Operation) -> pb::Operation {
    match op {
        Operation::ScheduledBackup => pb::Operation::ScheduledBackup,
        Operation::OnDemandBackup => pb::Operation::OnDemandBackup,
        Operation::Restore => pb::Operation::Restore,
        Operation::TierMove => pb::Operation::TierMove,
        Operation::Rehydrate => pb::Operation::Rehydrate,
        Operation::Delete => pb::Operation::Delete,
        Operation::Copy => pb::Operation::Copy,
        Operation::Verify => pb::Operation::Verify,
        Operation::Drill => pb::Operation::Drill,
    }
}

/// An operation filter; `None` for UNSPECIFIED.
pub fn operation_from_pb(field: &str, value: i32) -> Result<Option<Operation>> {
    let op = pb::Operation::try_from(value)
        .map_err(|_| CoordinatorError::invalid(field, format!("unknown operation {value}")))?;
    Ok(match op {
        pb::Operation::Unspecified => None,
        pb::Operation::ScheduledBackup => Some(Operation::ScheduledBackup),
        pb::Operation::OnDemandBackup => Some(Operation::OnDemandBackup),
        pb::Operation::Restore => Some(Operation::Restore),
        pb::Operation::TierMove => Some(Operation::TierMove),
        pb::Operation::Rehydrate => Some(Operation::Rehydrate),
        pb::Operation::Delete => Some(Operation::Delete),
        pb::Operation::Copy => Some(Operation::Copy),
        pb::Operation::Verify => Some(Operation::Verify),
        pb::Operation::Drill => Some(Operation::Drill),
    })
}

pub fn state_to_pb(state: JobState) -> pb::JobState {
    match state {
        JobState::Queued => pb::JobState::Queued,
        JobState::InProgress => pb::JobState::InProgress,
        JobState::Completed => pb::JobState::Completed,
        JobState::CompletedWithWarnings => pb::JobState::CompletedWithWarnings,
        JobState::Failed => pb::JobState::Failed,
        JobState::Cancelling => pb::JobState::Cancelling,
        JobState::Cancelled => pb::JobState::Cancelled,
    }
}

/// A state filter; `None` for UNSPECIFIED.
pub fn state_from_pb(field: &str, value: i32) -> Result<Option<JobState>> {
    let state = pb::JobState::try_from(value)
        .map_err(|_| CoordinatorError::invalid(field, format!("unknown state {value}")))?;
    Ok(match state {
        pb::JobState::Unspecified => None,
        pb::JobState::Queued => Some(JobState::Queued),
        pb::JobState::InProgress => Some(JobState::InProgress),
        pb::JobState::Completed => Some(JobState::Completed),
        pb::JobState::CompletedWithWarnings => Some(JobState::CompletedWithWarnings),
        pb::JobState::Failed => Some(JobState::Failed),
        pb::JobState::Cancelling => Some(JobState::Cancelling),
        pb::JobState::Cancelled => Some(JobState::Cancelled),
    })
}

impl From<Progress> for pb::Progress {
    fn from(p: Progress) -> Self {
        pb::Progress {
            bytes_done: p.bytes_done,
            rows_done: p.rows_done,
            chunks_done: p.chunks_done,
            chunks_total: p.chunks_total,
            phase: p.phase,
        }
    }
}

impl From<pb::Progress> for Progress {
    fn from(p: pb::Progress) -> Self {
        Progress {
            bytes_done: p.bytes_done,
            rows_done: p.rows_done,
            chunks_done: p.chunks_done,
            chunks_total: p.chunks_total,
            phase: p.phase.chars().take(200).collect(),
        }
    }
}

impl From<JobError> for pb::JobError {
    fn from(e: JobError) -> Self {
        pb::JobError {
            code: e.code,
            message: e.message,
            recommended_action: e.recommended_action,
        }
    }
}

impl From<Job> for pb::Job {
    fn from(j: Job) -> Self {
        let instance = j.spec.instance_id();
        let recovery_point = match (instance, j.spec.point_id()) {
            (Some(instance), Some(point)) => {
                names::recovery_point_name(&j.vault_id, instance, point)
            }
            _ => String::new(),
        };
        let mut out = pb::Job {
            name: names::job_name(j.id),
            operation: operation_to_pb(j.operation()) as i32,
            state: state_to_pb(j.state) as i32,
            vault: names::vault_name(&j.vault_id),
            backup_instance: instance
                .map(|i| names::instance_name(&j.vault_id, i))
                .unwrap_or_default(),
            recovery_point,
            create_time: Some(timestamp(j.create_time)),
            start_time: opt_timestamp(j.start_time),
            end_time: opt_timestamp(j.end_time),
            progress: Some(j.progress.into()),
            error: j.error.map(pb::JobError::from),
            attempt: j.attempt,
            worker: j.lease_owner.unwrap_or_default(),
            update_time: Some(timestamp(j.update_time)),
            agent: j
                .agent_id
                .as_deref()
                .map(names::agent_name)
                .unwrap_or_default(),
            backup_instance_short_name: j.instance_short_name.unwrap_or_default(),
            requested_by: j.requested_by.unwrap_or_default(),
            trace_id: j
                .trace_context
                .as_ref()
                .map(TraceContext::trace_id)
                .unwrap_or_default(),
            ..pb::Job::default()
        };
        match j.spec {
            JobSpec::Backup {
                trigger: BackupTrigger::OnDemand { rule },
                ..
            } => out.retention_rule = rule_kind_to_pb(rule) as i32,
            JobSpec::Restore(restore) => add_restore(&mut out, *restore),
            _ => {}
        }
        out
    }
}

/// Adds where a restore writes, its selection and its result to `job`.
fn add_restore(job: &mut pb::Job, restore: RestoreSpec) {
    job.restore_kind = match restore.target.kind() {
        RestoreKind::Database => pb::RestoreKind::Database,
        RestoreKind::Files => pb::RestoreKind::Files,
    } as i32;
    match restore.target {
        RestoreTarget::Database {
            server_id,
            database,
            ..
        } => {
            job.target_server = names::server_name(&server_id);
            job.target_database = database;
        }
        RestoreTarget::Files { url, file, output } => {
            job.target_url = url;
            job.target_file = file;
            if let Some(output) = output {
                job.output_size = output.size;
                job.output_sha256 = output.sha256;
            }
        }
    }
    job.schemas = restore.schemas;
    job.tables = restore.tables;
    job.warnings = restore.warnings;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_and_state_round_trips_through_the_wire() {
        for &op in Operation::ALL {
            let wire = operation_to_pb(op) as i32;
            assert_eq!(operation_from_pb("operation", wire).unwrap(), Some(op));
        }
        for &state in JobState::ALL {
            let wire = state_to_pb(state) as i32;
            assert_eq!(state_from_pb("state", wire).unwrap(), Some(state));
        }
    }

    #[test]
    fn sql_text_is_not_the_proto_name() {
        // Stored rows hold the domain's text; the contract's names carry
        // their type's prefix and may change without touching them.
        assert_eq!(JobState::Queued.as_str(), "QUEUED");
        assert_eq!(
            state_to_pb(JobState::Queued).as_str_name(),
            "JOB_STATE_QUEUED"
        );
        assert_eq!(Operation::ScheduledBackup.as_str(), "SCHEDULED_BACKUP");
        assert_eq!(
            operation_to_pb(Operation::ScheduledBackup).as_str_name(),
            "OPERATION_SCHEDULED_BACKUP"
        );
    }

    #[test]
    fn the_reserved_validate_number_is_refused() {
        assert!(operation_from_pb("operation", 4).is_err());
        assert_eq!(operation_from_pb("operation", 0).unwrap(), None);
    }
}
