//! Domain types of the coordinator: what the store reads and writes and the
//! services reason about. They are separate from the generated proto types;
//! `api::convert` turns one into the other at the edge.
//!
//! Enumerations are stored in SQL under their proto names (`IN_PROGRESS`).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::retention::RetentionRule;
use crate::secret_ref::SecretRef;

/// Defines an enum with a stable text form (its proto name) used in SQL.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// Which retention rule a recovery point is kept by.
    RuleKind { Default => "DEFAULT", Weekly => "WEEKLY", Monthly => "MONTHLY", Yearly => "YEARLY" }
);

text_enum!(
    /// What a job does.
    Operation {
        ScheduledBackup => "SCHEDULED_BACKUP",
        OnDemandBackup => "ON_DEMAND_BACKUP",
        Restore => "RESTORE",
        Validate => "VALIDATE",
        TierMove => "TIER_MOVE",
        Rehydrate => "REHYDRATE",
        Delete => "DELETE",
    }
);

text_enum!(
    /// Where a job is in its life.
    JobState {
        Queued => "QUEUED",
        InProgress => "IN_PROGRESS",
        Completed => "COMPLETED",
        CompletedWithWarnings => "COMPLETED_WITH_WARNINGS",
        Failed => "FAILED",
        Cancelling => "CANCELLING",
        Cancelled => "CANCELLED",
    }
);

text_enum!(
    /// Whether scheduled backups of an instance run. `Validating` and
    /// `ValidationFailed` instances are configure rows not (yet) protected:
    /// never scheduled, and they do not count as protecting their database.
    ProtectionState {
        Configured => "PROTECTION_CONFIGURED",
        Stopped => "PROTECTION_STOPPED",
        Validating => "PROTECTION_VALIDATING",
        ValidationFailed => "PROTECTION_VALIDATION_FAILED",
    }
);

impl ProtectionState {
    /// True for instances that protect their database (configured or stopped).
    pub fn is_protected(self) -> bool {
        !matches!(
            self,
            ProtectionState::Validating | ProtectionState::ValidationFailed
        )
    }
}

text_enum!(
    /// Which datastore of the vault holds a recovery point.
    Tier { Standard => "STANDARD", Archive => "ARCHIVE" }
);

text_enum!(
    /// What a restore job writes: a new database or a plain SQL file.
    RestoreKind { Database => "DATABASE", Files => "FILES" }
);

impl JobState {
    /// True once nothing will change the job any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed
                | JobState::CompletedWithWarnings
                | JobState::Failed
                | JobState::Cancelled
        )
    }
}

impl Operation {
    pub fn is_backup(self) -> bool {
        matches!(self, Operation::ScheduledBackup | Operation::OnDemandBackup)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Vault {
    pub id: String,
    pub region: String,
    pub standard_datastore: String,
    pub archive_datastore: String,
    pub description: String,
    pub create_time: DateTime<Utc>,
}

/// Weekly schedule: ISO weekdays (1 = Monday), a local time and a zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub weekdays: Vec<u8>,
    /// "HH:MM".
    pub time_of_day: String,
    /// IANA zone name ("UTC" when none was given).
    pub time_zone: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub vault_id: String,
    pub id: String,
    pub schedule: Schedule,
    /// Validated; always holds a `Default` rule.
    pub retention_rules: Vec<RetentionRule>,
    pub create_time: DateTime<Utc>,
}

impl Policy {
    pub fn rule(&self, kind: RuleKind) -> Option<&RetentionRule> {
        self.retention_rules.iter().find(|r| r.kind == kind)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub id: String,
    pub host: String,
    pub port: u16,
    pub region: String,
    pub agent: String,
    pub create_time: DateTime<Utc>,
}

/// A secret's metadata; its value is only ever in `secret_versions`, sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretMeta {
    pub id: String,
    pub latest_version: u32,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackupInstance {
    pub id: Uuid,
    pub vault_id: String,
    pub server_id: String,
    pub database: String,
    pub policy_id: String,
    /// The credential each job re-reads (see `crate::secret_ref`).
    pub secret: SecretRef,
    pub protection_state: ProtectionState,
    /// Why the last validation failed (`ValidationFailed` instances).
    pub last_error: Option<JobError>,
    pub create_time: DateTime<Utc>,
}

/// Progress as reported by the worker's heartbeats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub bytes_done: u64,
    pub rows_done: u64,
    pub chunks_done: u32,
    pub chunks_total: u32,
    pub phase: String,
}

/// Why a job failed (or why a configure row was refused).
#[derive(Debug, Clone, PartialEq)]
pub struct JobError {
    pub code: String,
    pub message: String,
    pub recommended_action: String,
}

impl JobError {
    /// A catalogue code with this failure's message; the action is the
    /// code's. (Codes read back or reported by workers stay text as given.)
    pub fn new(code: pgvault_errors::ErrorCode, message: impl Into<String>) -> Self {
        JobError {
            code: code.as_str().to_string(),
            message: message.into(),
            recommended_action: code.recommended_action().to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: Uuid,
    pub operation: Operation,
    pub state: JobState,
    pub vault_id: String,
    pub backup_instance_id: Option<Uuid>,
    /// Backups: the point produced; restores: the source point.
    pub recovery_point_id: Option<Uuid>,
    pub retention_rule: Option<RuleKind>,
    pub target_server_id: Option<String>,
    pub target_database: Option<String>,
    pub target_secret_id: Option<String>,
    /// Restores: the target secret reference when it is not the latest
    /// version of `target_secret_id` (`secret://x/3`, `env://…`, `file://…`).
    pub target_secret_ref: Option<String>,
    pub attempt: u32,
    /// Attempts made before the last manual retry (the limit counts from there).
    pub attempts_before_retry: u32,
    pub lease_owner: Option<String>,
    pub lease_token: Option<Uuid>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Backups: where the current attempt writes.
    pub attempt_point_id: Option<Uuid>,
    pub attempt_datastore: Option<String>,
    pub attempt_prefix: Option<String>,
    pub progress: Progress,
    pub error: Option<JobError>,
    pub create_time: DateTime<Utc>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub update_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecoveryPoint {
    pub id: Uuid,
    pub vault_id: String,
    pub backup_instance_id: Uuid,
    pub job_id: Uuid,
    pub database: String,
    pub snapshot_time: DateTime<Utc>,
    pub tier: Tier,
    pub datastore_url: String,
    pub prefix: String,
    pub stored_bytes: u64,
    pub raw_bytes: u64,
    pub chunk_count: u32,
    pub manifest_sha256: String,
    pub server_version: String,
    pub retention_tag: RuleKind,
    pub expire_time: DateTime<Utc>,
    /// Archive period of its rule after `expire_time` (ISO 8601); empty:
    /// deleted at `expire_time`. Fixed when tagged.
    pub archive_duration: String,
    pub create_time: DateTime<Utc>,
}

impl RecoveryPoint {
    /// Object-store URL of the point's directory: the prefix joined onto the
    /// datastore URL's path, query string kept at the end.
    pub fn location(&self) -> String {
        join_url(&self.datastore_url, &self.prefix)
    }
}

/// Appends `/prefix` to the path part of `url` (before any `?query`).
pub fn join_url(url: &str, prefix: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let joined = format!(
        "{}/{}",
        base.trim_end_matches('/'),
        prefix.trim_start_matches('/')
    );
    match query {
        Some(q) => format!("{joined}?{q}"),
        None => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_text() {
        for state in [JobState::Queued, JobState::InProgress, JobState::Failed] {
            assert_eq!(JobState::parse(state.as_str()), Some(state));
        }
        assert_eq!(RuleKind::parse("YEARLY"), Some(RuleKind::Yearly));
        assert_eq!(RuleKind::parse("yearly"), None);
    }

    #[test]
    fn location_keeps_query_last() {
        assert_eq!(join_url("file:///var/b/", "v/i/p"), "file:///var/b/v/i/p");
        assert_eq!(
            join_url("az://c/root?emulator=true", "v/i/p"),
            "az://c/root/v/i/p?emulator=true"
        );
    }
}

/// What a restore job writes and which part of the recovery point it
/// restores (stored beside the job row, one per restore job).
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreTarget {
    pub kind: RestoreKind,
    /// Files: destination datastore URL (URLs never hold credentials) and the
    /// file name under it.
    pub target_url: Option<String>,
    pub target_file: Option<String>,
    /// Selective restore; both empty means everything.
    pub schemas: Vec<String>,
    pub tables: Vec<String>,
    /// Files, once completed: the file's size and SHA-256.
    pub output_size: Option<u64>,
    pub output_sha256: Option<String>,
    /// What the restore left out; non-empty makes the job COMPLETED_WITH_WARNINGS.
    pub warnings: Vec<String>,
}

text_enum!(
    /// How one attempt of a job ended (`Running` while it runs).
    AttemptOutcome {
        Running => "RUNNING",
        Completed => "COMPLETED",
        Failed => "FAILED",
        LeaseExpired => "LEASE_EXPIRED",
        Fenced => "FENCED",
        Cancelled => "CANCELLED",
    }
);

/// One attempt of a job: which worker claimed it, when, how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct JobAttempt {
    pub attempt: u32,
    pub worker: String,
    pub start_time: DateTime<Utc>,
    /// `None` while the attempt runs.
    pub end_time: Option<DateTime<Utc>>,
    pub outcome: AttemptOutcome,
    /// Why it failed, expired or was cancelled.
    pub error: Option<JobError>,
}

text_enum!(
    /// Where one table (sub-task) of a job is.
    SubTaskState { Queued => "QUEUED", Running => "RUNNING", Done => "DONE", Failed => "FAILED" }
);

/// Progress of one table of a backup or restore, as the worker reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableProgress {
    /// Schema-qualified name, the key within the job's attempt.
    pub name: String,
    pub state: SubTaskState,
    pub chunks_done: u32,
    pub chunks_total: u32,
    pub rows: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    /// On the worker's clock.
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
}
