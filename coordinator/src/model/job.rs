//! Jobs as the coordinator reasons about them: what every job has (state,
//! attempts, lease, progress, error, times) and, in [`JobSpec`], exactly what
//! its operation needs — no field of one operation is an `Option` on all of
//! them, so code that runs a job never discovers a missing fact at run time.
//!
//! How a spec is stored (CHECK-constrained columns of `jobs`, the
//! `restore_targets` row of a restore) is `store::jobs`'s business; a stored
//! job that does not fit its operation's shape is read as an internal error.

use chrono::{DateTime, Utc};
use pgvault_telemetry::TraceContext;
use uuid::Uuid;

use super::RuleKind;
use crate::secret_ref::SecretRef;

text_enum!(
    /// What a job does: the operation of its [`JobSpec`], stored beside it
    /// (`jobs.operation`) so listings filter on an index.
    Operation {
        ScheduledBackup => "SCHEDULED_BACKUP",
        OnDemandBackup => "ON_DEMAND_BACKUP",
        Restore => "RESTORE",
        TierMove => "TIER_MOVE",
        Rehydrate => "REHYDRATE",
        Delete => "DELETE",
        Copy => "COPY",
        Verify => "VERIFY",
        Drill => "DRILL",
    }
);

impl Operation {
    pub fn is_backup(self) -> bool {
        matches!(self, Operation::ScheduledBackup | Operation::OnDemandBackup)
    }
}

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

/// A tracked operation: what every job has, and its operation's spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: Uuid,
    pub state: JobState,
    pub vault_id: String,
    pub spec: JobSpec,
    pub attempt: u32,
    /// Attempts made before the last manual retry (the limit counts from there).
    pub attempts_before_retry: u32,
    pub lease_owner: Option<String>,
    pub lease_token: Option<Uuid>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub progress: Progress,
    pub error: Option<JobError>,
    /// A job held back until this one completes (a restore of an archive
    /// point waits for its rehydrate): no task is published until then.
    pub waits_for_job_id: Option<Uuid>,
    /// The agent whose instances run the job's tasks (`None`: the workers),
    /// fixed when the job is created from its [`JobSpec::route`].
    pub agent_id: Option<String>,
    /// The W3C trace context of the span that created the job (`None` for
    /// jobs created before traces were recorded).
    pub trace_context: Option<TraceContext>,
    /// Who asked for the job, where recorded (a purge records the token
    /// that soft-deleted the point).
    pub requested_by: Option<String>,
    pub create_time: DateTime<Utc>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub update_time: DateTime<Utc>,
    /// The short name of the job's instance, as read with the job (shown
    /// beside its name; never used to find the instance).
    pub instance_short_name: Option<String>,
}

impl Job {
    pub fn operation(&self) -> Operation {
        self.spec.operation()
    }
}

/// What a job does, with exactly the facts its operation needs.
///
/// Room for the fan-out issue's chunk sub-tasks: those are leased pieces of
/// one backup or restore, not jobs of their own. They go in a child table
/// keyed by (job, chunk) with its own lease columns, read beside `Backup`
/// and `Restore` jobs; a `Chunk` variant belongs here only if a chunk ever
/// becomes a job users list and retry on its own.
#[derive(Debug, Clone, PartialEq)]
pub enum JobSpec {
    /// A backup of one instance; each attempt writes a fresh recovery point.
    Backup {
        instance_id: Uuid,
        trigger: BackupTrigger,
        /// The recovery point it produced, once completed.
        produced_point_id: Option<Uuid>,
    },
    /// A restore of one recovery point, as a database or as a SQL file.
    Restore(Box<RestoreSpec>),
    /// Copies a standard point to the archive datastore at its standard
    /// expiry (stage [`stage::STANDARD_EXPIRY`]).
    TierMove { instance_id: Uuid, point_id: Uuid },
    /// Copies an archive point back to the standard datastore for restores,
    /// kept there `days` (stage [`stage::REHYDRATE`]).
    Rehydrate {
        instance_id: Uuid,
        point_id: Uuid,
        days: u32,
    },
    /// Copies a completed point to its policy's copy datastore
    /// `datastore_url` (same prefix, verified); the point stays (stage
    /// [`stage::COPY`] + the datastore).
    Copy {
        instance_id: Uuid,
        point_id: Uuid,
        datastore_url: String,
    },
    /// Deletes copies of a point that reached the end of a period.
    Delete {
        instance_id: Uuid,
        point_id: Uuid,
        scope: DeleteScope,
    },
    /// Reads every object of a point and checks it against the manifest;
    /// writes nothing. Its result is recorded on the point.
    Verify { instance_id: Uuid, point_id: Uuid },
    /// Restores a point into a scratch database on a drill server, checks
    /// every table against the manifest and drops the scratch database. Its
    /// result is recorded on the point.
    Drill(Box<DrillSpec>),
}

/// A restore drill: the point, the drill server and the secret to connect
/// with; its scratch database is [`drill_database`] of the job's id.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillSpec {
    pub instance_id: Uuid,
    pub point_id: Uuid,
    pub server_id: String,
    pub secret: SecretRef,
}

/// Every drill's scratch database starts with this (the engine refuses
/// any other name).
pub const DRILL_DATABASE_PREFIX: &str = "pgvault_drill_";

/// The scratch database of drill job `job`.
pub fn drill_database(job: Uuid) -> String {
    let simple = job.simple().to_string();
    format!("{DRILL_DATABASE_PREFIX}{}", &simple[..8])
}

impl JobSpec {
    pub fn operation(&self) -> Operation {
        match self {
            JobSpec::Backup {
                trigger: BackupTrigger::Scheduled,
                ..
            } => Operation::ScheduledBackup,
            JobSpec::Backup {
                trigger: BackupTrigger::OnDemand { .. },
                ..
            } => Operation::OnDemandBackup,
            JobSpec::Restore(_) => Operation::Restore,
            JobSpec::TierMove { .. } => Operation::TierMove,
            JobSpec::Rehydrate { .. } => Operation::Rehydrate,
            JobSpec::Delete { .. } => Operation::Delete,
            JobSpec::Copy { .. } => Operation::Copy,
            JobSpec::Verify { .. } => Operation::Verify,
            JobSpec::Drill(_) => Operation::Drill,
        }
    }

    /// The backup instance the job is about (every operation so far has one).
    pub fn instance_id(&self) -> Option<Uuid> {
        Some(match self {
            JobSpec::Backup { instance_id, .. }
            | JobSpec::TierMove { instance_id, .. }
            | JobSpec::Rehydrate { instance_id, .. }
            | JobSpec::Copy { instance_id, .. }
            | JobSpec::Delete { instance_id, .. }
            | JobSpec::Verify { instance_id, .. } => *instance_id,
            JobSpec::Restore(restore) => restore.instance_id,
            JobSpec::Drill(drill) => drill.instance_id,
        })
    }

    /// The recovery point the job shows: the one a backup produced (once
    /// completed), the one any other job reads, moves, copies or deletes.
    pub fn point_id(&self) -> Option<Uuid> {
        match self {
            JobSpec::Backup {
                produced_point_id, ..
            } => *produced_point_id,
            JobSpec::Restore(restore) => Some(restore.point_id),
            JobSpec::TierMove { point_id, .. }
            | JobSpec::Rehydrate { point_id, .. }
            | JobSpec::Copy { point_id, .. }
            | JobSpec::Delete { point_id, .. }
            | JobSpec::Verify { point_id, .. } => Some(*point_id),
            JobSpec::Drill(drill) => Some(drill.point_id),
        }
    }

    /// The lifecycle stage of the point a lifecycle job carries out (the
    /// text of `lifecycle_runs.stage`); `None` for backups and restores.
    pub fn lifecycle_stage(&self) -> Option<String> {
        match self {
            JobSpec::TierMove { .. } => Some(stage::STANDARD_EXPIRY.to_string()),
            JobSpec::Rehydrate { .. } => Some(stage::REHYDRATE.to_string()),
            JobSpec::Delete { scope, .. } => Some(scope.stage()),
            JobSpec::Copy { datastore_url, .. } => Some(format!("{}{datastore_url}", stage::COPY)),
            JobSpec::Backup { .. }
            | JobSpec::Restore(_)
            | JobSpec::Verify { .. }
            | JobSpec::Drill(_) => None,
        }
    }

    /// Whose server decides where the job's tasks run: the agent of that
    /// server, if it has one, runs them; otherwise the workers do.
    pub fn route(&self) -> Route {
        match self {
            JobSpec::Backup { instance_id, .. } => Route::InstanceServer(*instance_id),
            JobSpec::Restore(restore) => match &restore.target {
                RestoreTarget::Database { server_id, .. } => Route::Server(server_id.clone()),
                // The datastore may be as private as the server it came from.
                RestoreTarget::Files { .. } => Route::InstanceServer(restore.instance_id),
            },
            // A verify reads the point where a restore as files would:
            // through the agent of the instance's server, if it has one.
            JobSpec::Verify { instance_id, .. } => Route::InstanceServer(*instance_id),
            // A drill writes its scratch database as a restore would.
            JobSpec::Drill(drill) => Route::Server(drill.server_id.clone()),
            // Lifecycle jobs touch datastores only.
            JobSpec::TierMove { .. }
            | JobSpec::Rehydrate { .. }
            | JobSpec::Delete { .. }
            | JobSpec::Copy { .. } => Route::Workers,
        }
    }
}

/// Where a job's tasks run, as decided by its spec: through the agent of a
/// server (when the server has one), or on the workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The server of this backup instance.
    InstanceServer(Uuid),
    /// This server (a restore's target).
    Server(String),
    /// Always the workers.
    Workers,
}

/// Why a backup runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupTrigger {
    /// A slot of the instance's policy; tagged on completion from the
    /// history of successful backups.
    Scheduled,
    /// `BackupNow`: kept by the rule the caller chose.
    OnDemand { rule: RuleKind },
}

/// Lifecycle stages of a recovery point, as stored in
/// `lifecycle_runs.stage` and `jobs.lifecycle_stage`.
pub mod stage {
    /// A standard point at its expiry (tier move or delete).
    pub const STANDARD_EXPIRY: &str = "STANDARD_EXPIRY";
    /// An archive point at its expiry (delete).
    pub const ARCHIVE_EXPIRY: &str = "ARCHIVE_EXPIRY";
    /// Prefix of a rehydrated copy at the end of its period; the copy's
    /// prefix follows the slash.
    pub const REHYDRATED_EXPIRY: &str = "REHYDRATED_EXPIRY/";
    /// A rehydrate of an archive point.
    pub const REHYDRATE: &str = "REHYDRATE";
    /// Prefix of a copy to a second datastore; the datastore URL follows.
    pub const COPY: &str = "COPY/";
    /// Prefix of a copy at the end of its own retention; the copy's
    /// datastore URL follows.
    pub const COPY_EXPIRY: &str = "COPY_EXPIRY/";
}

/// Which copies of its point a DELETE job removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteScope {
    /// Every copy: the standard point reached its expiry.
    StandardExpiry,
    /// Every copy: the archive point reached its expiry.
    ArchiveExpiry,
    /// Only the rehydrated copy at `prefix` (its period ended); the archive
    /// point stays.
    RehydratedCopy { prefix: String },
    /// Only the copy in `datastore_url` (its own retention ended); the point
    /// and its other copies stay.
    Copy { datastore_url: String },
}

impl DeleteScope {
    /// The lifecycle stage it carries out.
    pub fn stage(&self) -> String {
        match self {
            DeleteScope::StandardExpiry => stage::STANDARD_EXPIRY.to_string(),
            DeleteScope::ArchiveExpiry => stage::ARCHIVE_EXPIRY.to_string(),
            DeleteScope::RehydratedCopy { prefix } => {
                format!("{}{prefix}", stage::REHYDRATED_EXPIRY)
            }
            DeleteScope::Copy { datastore_url } => {
                format!("{}{datastore_url}", stage::COPY_EXPIRY)
            }
        }
    }

    /// The scope of a delete carrying out `stage`; `None` when a delete
    /// cannot carry it out.
    pub fn from_stage(text: &str) -> Option<Self> {
        match text {
            stage::STANDARD_EXPIRY => Some(DeleteScope::StandardExpiry),
            stage::ARCHIVE_EXPIRY => Some(DeleteScope::ArchiveExpiry),
            other => {
                if let Some(url) = other.strip_prefix(stage::COPY_EXPIRY) {
                    return (!url.is_empty()).then(|| DeleteScope::Copy {
                        datastore_url: url.to_string(),
                    });
                }
                other
                    .strip_prefix(stage::REHYDRATED_EXPIRY)
                    .filter(|prefix| !prefix.is_empty())
                    .map(|prefix| DeleteScope::RehydratedCopy {
                        prefix: prefix.to_string(),
                    })
            }
        }
    }
}

text_enum!(
    /// What a restore job writes: a new database or a plain SQL file.
    RestoreKind { Database => "DATABASE", Files => "FILES" }
);

/// A restore: the point it reads, what it writes, which part, and what it
/// left out.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreSpec {
    pub instance_id: Uuid,
    /// The recovery point restored.
    pub point_id: Uuid,
    pub target: RestoreTarget,
    /// Read the point's copy in this datastore instead of its own location
    /// (`None`: the point itself).
    pub copy_datastore: Option<String>,
    /// Selective restore; both empty means everything.
    pub schemas: Vec<String>,
    pub tables: Vec<String>,
    /// What the restore left out, once completed; non-empty makes the job
    /// COMPLETED_WITH_WARNINGS.
    pub warnings: Vec<String>,
}

/// Where a restore writes.
#[derive(Debug, Clone, PartialEq)]
pub enum RestoreTarget {
    /// A new database on a server, connecting with `secret`.
    Database {
        server_id: String,
        database: String,
        secret: SecretRef,
    },
    /// One SQL file `file` in the datastore directory `url` (URLs never
    /// hold credentials), with its size and SHA-256 once written.
    Files {
        url: String,
        file: String,
        output: Option<FileOutput>,
    },
}

impl RestoreTarget {
    pub fn kind(&self) -> RestoreKind {
        match self {
            RestoreTarget::Database { .. } => RestoreKind::Database,
            RestoreTarget::Files { .. } => RestoreKind::Files,
        }
    }
}

/// The file a restore as files wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct FileOutput {
    pub size: u64,
    pub sha256: String,
}

/// Where one attempt writes, recorded when it is claimed: the fresh point
/// of a backup attempt, the destination of a tier move or rehydrate. What a
/// failed or fenced attempt wrote is collected from here.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptTarget {
    /// Backups: the id of the recovery point the attempt writes.
    pub point_id: Option<Uuid>,
    /// Datastore root URL and the directory under it.
    pub datastore_url: String,
    pub prefix: String,
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
    /// The agent whose instance ran it (`None`: a worker).
    pub agent: Option<String>,
    pub start_time: DateTime<Utc>,
    /// `None` while the attempt runs.
    pub end_time: Option<DateTime<Utc>>,
    pub outcome: AttemptOutcome,
    /// Why it failed, expired or was cancelled.
    pub error: Option<JobError>,
    /// A failed attempt's last log lines, as its runner sent them.
    pub log_tail: Vec<String>,
}

text_enum!(
    /// Where one table of a job is.
    TableState { Queued => "QUEUED", Running => "RUNNING", Done => "DONE", Failed => "FAILED" }
);

/// Progress of one table of a backup or restore, as the worker reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableProgress {
    /// Schema-qualified name, the key within the job's attempt.
    pub name: String,
    pub state: TableState,
    pub chunks_done: u32,
    pub chunks_total: u32,
    pub rows: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    /// On the worker's clock.
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;
