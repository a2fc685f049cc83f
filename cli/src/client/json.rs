//! `--output json`: explicit conversions of the proto messages to JSON with
//! the proto's snake_case field names (prost types are not serde). Enums are
//! their short names (`"COMPLETED"`, see [`super::enum_names`]), timestamps
//! RFC 3339 strings, unset timestamps and messages `null`. Integers stay JSON
//! numbers. A job's per-table progress keeps the keys it had before the
//! contract named it `table_progress`: `sub_tasks` and `sub_tasks_delta`.

use pgvault_proto::v1::{
    AttemptOutcome, BackupInstance, ConfigureBackupResponse, DatastoreTier, DeadLetter,
    FanoutThroughput, Job, JobAttempt, JobError, JobState, Operation, Policy, ProtectionState,
    Readiness, RecoveryPoint, RestoreKind, RetentionRuleKind, Secret, Server, StageSplit,
    StageTime, TableProgress, TableState, Vault, Weekday,
};
use prost_types::Timestamp;
use serde_json::{Value, json};

use super::enum_names::short_name;
use super::output::to_utc;

fn timestamp(ts: Option<&Timestamp>) -> Value {
    match to_utc(ts) {
        Some(utc) => Value::String(utc.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        None => Value::Null,
    }
}

/// An enum by its short name, or its number when this client does not know it.
macro_rules! enum_name {
    ($ty:ty, $value:expr) => {
        match <$ty>::try_from($value) {
            Ok(known) => Value::String(short_name(known)),
            Err(_) => Value::from($value),
        }
    };
}

pub fn vault(v: &Vault) -> Value {
    json!({
        "name": v.name,
        "region": v.region,
        "standard_datastore": v.standard_datastore,
        "archive_datastore": v.archive_datastore,
        "description": v.description,
        "create_time": timestamp(v.create_time.as_ref()),
        "soft_delete_days": v.soft_delete_days,
        "lock_time": timestamp(v.lock_time.as_ref()),
        "encryption": v.encryption,
        "key_version": v.key_version,
    })
}

pub fn policy(p: &Policy) -> Value {
    let schedule_json = |s: &pgvault_proto::v1::Schedule| {
        json!({
            "weekdays": s.weekdays.iter().map(|d| enum_name!(Weekday, *d)).collect::<Vec<_>>(),
            "time_of_day": s.time_of_day,
            "time_zone": s.time_zone,
        })
    };
    let schedule = p.schedule.as_ref().map(schedule_json);
    let verify_schedule = p.verify_schedule.as_ref().map(schedule_json);
    let rules: Vec<Value> = p
        .retention_rules
        .iter()
        .map(|r| {
            json!({
                "kind": enum_name!(RetentionRuleKind, r.kind),
                "standard_duration": r.standard_duration,
                "archive_duration": r.archive_duration,
            })
        })
        .collect();
    json!({
        "name": p.name,
        "schedule": schedule,
        "retention_rules": rules,
        "keep_min": p.keep_min,
        "copy_datastore": p.copy_datastore,
        "copy_retention": p.copy_retention,
        "verify_schedule": verify_schedule,
        "drill_server": p.drill_server,
        "drill_secret": p.drill_secret,
        "drill_every": p.drill_every,
        "drill_schedule": p.drill_schedule.as_ref().map(schedule_json),
        "create_time": timestamp(p.create_time.as_ref()),
    })
}

pub fn server(s: &Server) -> Value {
    json!({
        "name": s.name,
        "host": s.host,
        "port": s.port,
        "region": s.region,
        "agent": s.agent,
        "max_connections": s.max_connections,
        "connections_in_use": s.connections_in_use,
        "create_time": timestamp(s.create_time.as_ref()),
        "whole_server_protection": s.whole_server_protection.as_ref().map(|w| json!({
            "vault": w.vault,
            "policy": w.policy,
            "last_slot": timestamp(w.last_slot.as_ref()),
            "included": w.included,
            "refused": w.refused,
            "missing": w.missing,
            "error": w.error,
            "role_passwords": w.role_passwords,
        })),
    })
}

pub fn secret(s: &Secret) -> Value {
    json!({
        "name": s.name,
        "latest_version": s.latest_version,
        "create_time": timestamp(s.create_time.as_ref()),
        "update_time": timestamp(s.update_time.as_ref()),
        "granted_vaults": s.granted_vaults,
    })
}

pub fn instance(i: &BackupInstance) -> Value {
    json!({
        "name": i.name,
        "short_name": i.short_name,
        "server": i.server,
        "database": i.database,
        "policy": i.policy,
        "secret": i.secret,
        "protection_state": enum_name!(ProtectionState, i.protection_state),
        "create_time": timestamp(i.create_time.as_ref()),
        "last_error": i.last_error.as_ref().map(job_error),
    })
}

pub fn recovery_point(p: &RecoveryPoint) -> Value {
    json!({
        "name": p.name,
        "job": p.job,
        "snapshot_time": timestamp(p.snapshot_time.as_ref()),
        "tier": enum_name!(DatastoreTier, p.tier),
        "location": p.location,
        "stored_bytes": p.stored_bytes,
        "raw_bytes": p.raw_bytes,
        "chunk_count": p.chunk_count,
        "manifest_sha256": p.manifest_sha256,
        "server_version": p.server_version,
        "retention_tag": enum_name!(RetentionRuleKind, p.retention_tag),
        "expire_time": timestamp(p.expire_time.as_ref()),
        "create_time": timestamp(p.create_time.as_ref()),
        "database": p.database,
        "delete_time": timestamp(p.delete_time.as_ref()),
        "deleted_by": p.deleted_by,
        "purge_time": timestamp(p.purge_time.as_ref()),
        "copies_only": p.copies_only,
        "copies": p.copies.iter().map(|c| json!({
            "datastore": c.datastore,
            "location": c.location,
            "state": c.state,
            "copy_time": timestamp(c.copy_time.as_ref()),
            "expire_time": timestamp(c.expire_time.as_ref()),
            "job": c.job,
        })).collect::<Vec<_>>(),
        "last_verified_at": timestamp(p.last_verified_at.as_ref()),
        "last_verify_result": p.last_verify_result,
        "last_verify_error_code": p.last_verify_error_code,
        "last_verify_job": p.last_verify_job,
        "last_drilled_at": timestamp(p.last_drilled_at.as_ref()),
        "last_drill_result": p.last_drill_result,
        "last_drill_error_code": p.last_drill_error_code,
        "last_drill_job": p.last_drill_job,
        "last_drill_server": p.last_drill_server,
        "last_drill_tables": p.last_drill_tables,
        "last_drill_rows": p.last_drill_rows,
        "last_drill_checksums": p.last_drill_checksums,
    })
}

pub fn job_error(e: &JobError) -> Value {
    json!({
        "code": e.code,
        "message": e.message,
        "recommended_action": e.recommended_action,
    })
}

pub fn job(j: &Job) -> Value {
    let progress = j.progress.as_ref().map(|p| {
        json!({
            "bytes_done": p.bytes_done,
            "rows_done": p.rows_done,
            "chunks_done": p.chunks_done,
            "chunks_total": p.chunks_total,
            "phase": p.phase,
        })
    });
    let chunks: Vec<Value> = j
        .chunks
        .iter()
        .map(|c| {
            json!({
                "table": c.table,
                "chunk": c.chunk,
                "worker_id": c.worker_id,
                "state": c.state,
            })
        })
        .collect();
    let auto_include = j.auto_include.as_ref().map(|a| {
        json!({
            "server": a.server,
            "slot_time": timestamp(a.slot_time.as_ref()),
        })
    });
    json!({
        "name": j.name,
        "operation": enum_name!(Operation, j.operation),
        "state": enum_name!(JobState, j.state),
        "vault": j.vault,
        "backup_instance": j.backup_instance,
        "backup_instance_short_name": j.backup_instance_short_name,
        "recovery_point": j.recovery_point,
        "create_time": timestamp(j.create_time.as_ref()),
        "start_time": timestamp(j.start_time.as_ref()),
        "end_time": timestamp(j.end_time.as_ref()),
        "progress": progress,
        "error": j.error.as_ref().map(job_error),
        "attempt": j.attempt,
        "worker": j.worker,
        "target_server": j.target_server,
        "target_database": j.target_database,
        "retention_rule": enum_name!(RetentionRuleKind, j.retention_rule),
        "update_time": timestamp(j.update_time.as_ref()),
        "restore_kind": enum_name!(RestoreKind, j.restore_kind),
        "target_url": j.target_url,
        "target_file": j.target_file,
        "schemas": j.schemas,
        "tables": j.tables,
        "output_size": j.output_size,
        "output_sha256": j.output_sha256,
        "warnings": j.warnings,
        "agent": j.agent,
        "queued_reason": j.queued_reason,
        "attempts": j.attempts.iter().map(attempt).collect::<Vec<_>>(),
        "sub_tasks": j.table_progress.iter().map(table).collect::<Vec<_>>(),
        "sub_tasks_delta": j.table_progress_delta,
        "stage_split": j.stage_split.as_ref().map(stage_split),
        "trace_id": j.trace_id,
        "requested_by": j.requested_by,
        "auto_include": auto_include,
        "workers": j.workers,
        "chunks": chunks,
        "throughput": j.throughput.as_ref().map(throughput),
    })
}

/// A fanned-out backup's combined throughput and each worker's.
pub fn throughput(t: &FanoutThroughput) -> Value {
    json!({
        "bytes_done": t.bytes_done,
        "bytes_per_second": t.bytes_per_second,
        "chunks_done": t.chunks_done,
        "chunks_total": t.chunks_total,
        "workers": t.workers.iter().map(|w| json!({
            "worker_id": w.worker_id,
            "bytes_done": w.bytes_done,
            "bytes_per_second": w.bytes_per_second,
            "chunks_done": w.chunks_done,
        })).collect::<Vec<_>>(),
    })
}

pub fn stage_split(s: &StageSplit) -> Value {
    let times = |t: &[StageTime]| {
        t.iter()
            .map(|t| json!({"name": t.name, "seconds": t.seconds}))
            .collect::<Vec<_>>()
    };
    json!({
        "wall_seconds": s.wall_seconds,
        "raw_bytes": s.raw_bytes,
        "stored_bytes": s.stored_bytes,
        "connections": s.connections,
        "phases": times(&s.phases),
        "connection_stages": times(&s.connection_stages),
        "cpu": times(&s.cpu),
        "side_tasks": times(&s.side_tasks),
    })
}

pub fn attempt(a: &JobAttempt) -> Value {
    json!({
        "attempt": a.attempt,
        "worker": a.worker,
        "start_time": timestamp(a.start_time.as_ref()),
        "end_time": timestamp(a.end_time.as_ref()),
        "outcome": enum_name!(AttemptOutcome, a.outcome),
        "error": a.error.as_ref().map(job_error),
        "agent": a.agent,
        "log_tail": a.log_tail,
    })
}

pub fn table(t: &TableProgress) -> Value {
    json!({
        "name": t.name,
        "state": enum_name!(TableState, t.state),
        "chunks_done": t.chunks_done,
        "chunks_total": t.chunks_total,
        "rows": t.rows,
        "raw_bytes": t.raw_bytes,
        "stored_bytes": t.stored_bytes,
        "start_time": timestamp(t.start_time.as_ref()),
        "end_time": timestamp(t.end_time.as_ref()),
    })
}

pub fn dead_letter(d: &DeadLetter) -> Value {
    json!({
        "name": d.name,
        "receive_time": timestamp(d.receive_time.as_ref()),
        "queue": d.queue,
        "reason": d.reason,
        "delivery_count": d.delivery_count,
        "message_id": d.message_id,
        "payload_size": d.payload_size,
        "payload_sha256": d.payload_sha256,
        "job": d.job,
        "attempt": d.attempt,
        "preview": d.preview,
        "job_state": enum_name!(JobState, d.job_state),
        "job_failed": d.job_failed,
    })
}

pub fn configure_response(response: &ConfigureBackupResponse) -> Value {
    let results: Vec<Value> = response
        .results
        .iter()
        .map(|r| {
            json!({
                "row": r.row,
                "database": r.database,
                "readiness": enum_name!(Readiness, r.readiness),
                "backup_instance": r.backup_instance.as_ref().map(instance),
                "error": r.error.as_ref().map(job_error),
                "grant_script": r.grant_script.as_ref().map(|g| json!({
                    "sql": g.sql,
                    "psql": g.psql,
                    "powershell": g.powershell,
                })),
            })
        })
        .collect();
    json!({ "results": results })
}

/// A list response: `{"<field>": [...], "next_page_token": "..."}`.
pub fn page(field: &str, items: Vec<Value>, next_page_token: &str) -> Value {
    let mut object = serde_json::Map::new();
    object.insert(field.to_owned(), Value::Array(items));
    object.insert(
        "next_page_token".to_owned(),
        Value::String(next_page_token.to_owned()),
    );
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use pgvault_proto::v1::Progress;

    use super::*;

    #[test]
    fn vault_has_proto_field_names_and_rfc3339_time() {
        let value = vault(&Vault {
            name: "vaults/prod".into(),
            region: "eu".into(),
            standard_datastore: "file:///srv/backups".into(),
            archive_datastore: String::new(),
            description: "production".into(),
            create_time: Some(Timestamp {
                seconds: 1_750_000_000,
                nanos: 0,
            }),
            encryption: "aes-256-gcm".into(),
            key_version: 1,
            ..Vault::default()
        });
        assert_eq!(
            value,
            json!({
                "name": "vaults/prod",
                "region": "eu",
                "standard_datastore": "file:///srv/backups",
                "archive_datastore": "",
                "description": "production",
                "create_time": "2025-06-15T15:06:40Z",
                "soft_delete_days": 0,
                "lock_time": null,
                "encryption": "aes-256-gcm",
                "key_version": 1,
            })
        );
    }

    #[test]
    fn job_enums_are_names_and_unset_messages_null() {
        let value = job(&Job {
            name: "jobs/j1".into(),
            operation: Operation::OnDemandBackup as i32,
            state: JobState::Failed as i32,
            vault: "vaults/prod".into(),
            backup_instance: "vaults/prod/backupInstances/abc".into(),
            progress: Some(Progress {
                bytes_done: 10,
                rows_done: 2,
                chunks_done: 1,
                chunks_total: 4,
                phase: "dumping".into(),
            }),
            error: Some(JobError {
                code: pgvault_errors::ErrorCode::UserErrorDBUserAuthFailed.to_string(),
                message: "password authentication failed".into(),
                recommended_action: "update the secret".into(),
            }),
            attempt: 2,
            retention_rule: 99,
            agent: "agents/dc1".into(),
            queued_reason: "waiting for agent dc1, never connected".into(),
            attempts: vec![JobAttempt {
                attempt: 1,
                agent: "agents/dc1".into(),
                log_tail: vec!["line one".into(), "line two".into()],
                ..JobAttempt::default()
            }],
            ..Job::default()
        });
        assert_eq!(value["operation"], "ON_DEMAND_BACKUP");
        assert_eq!(value["state"], "FAILED");
        assert_eq!(value["retention_rule"], 99);
        assert_eq!(value["start_time"], Value::Null);
        assert_eq!(value["progress"]["chunks_total"], 4);
        assert_eq!(value["error"]["code"], "UserErrorDBUserAuthFailed");
        assert_eq!(value["error"]["recommended_action"], "update the secret");
        assert_eq!(value["attempt"], 2);
        assert_eq!(value["agent"], "agents/dc1");
        assert_eq!(
            value["queued_reason"],
            "waiting for agent dc1, never connected"
        );
        assert_eq!(value["attempts"][0]["agent"], "agents/dc1");
        assert_eq!(
            value["attempts"][0]["log_tail"],
            json!(["line one", "line two"])
        );
        assert_eq!(value["stage_split"], Value::Null);
        assert_eq!(value["throughput"], Value::Null);
        assert_eq!(value["auto_include"], Value::Null);
        let keys: Vec<&String> = value.as_object().expect("object").keys().collect();
        assert_eq!(keys.len(), 38, "every Job field is present: {keys:?}");
    }

    #[test]
    fn page_wraps_items_with_token() {
        let value = page("vaults", vec![json!({"name": "vaults/a"})], "next");
        assert_eq!(
            value,
            json!({"vaults": [{"name": "vaults/a"}], "next_page_token": "next"})
        );
    }
}
