//! Domain types of the coordinator: what the store reads and writes and the
//! services reason about. They are separate from the generated proto types;
//! `api::convert` turns one into the other at the edge.
//!
//! Jobs and their specs are in [`job`]; agents and their instances in
//! [`agent`]; where a finished job's time went in `stage_split`.
//!
//! Enumerations are stored in SQL as their own stable text (`IN_PROGRESS`),
//! never as proto names: `api::convert` maps them to proto values with
//! explicit matches, so renaming a proto value never touches stored rows.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::retention::RetentionRule;
use crate::secret_ref::SecretRef;

/// Defines an enum with a stable text form used in SQL (changing a text
/// needs a migration that rewrites the rows holding it).
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

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

mod agent;
mod job;
mod stage_split;

pub use agent::*;
pub use job::*;
pub use stage_split::{StageSplit, StageTime};

text_enum!(
    /// Which retention rule a recovery point is kept by.
    RuleKind { Default => "DEFAULT", Weekly => "WEEKLY", Monthly => "MONTHLY", Yearly => "YEARLY" }
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
    /// How a vault's recovery points are sealed: `None` for vaults created
    /// with `--encryption none` and for every vault created before
    /// encryption existed.
    Encryption { None => "none", Aes256Gcm => "aes-256-gcm" }
);

text_enum!(
    /// Which datastore of the vault holds a recovery point.
    Tier { Standard => "STANDARD", Archive => "ARCHIVE" }
);

#[derive(Debug, Clone, PartialEq)]
pub struct Vault {
    pub id: String,
    pub region: String,
    pub standard_datastore: String,
    pub archive_datastore: String,
    pub description: String,
    pub create_time: DateTime<Utc>,
    /// Days a soft-deleted point stays recoverable before it is purged (≥ 1).
    pub soft_delete_days: u32,
    /// When the vault was locked (immutable for good); `None`: not locked.
    pub lock_time: Option<DateTime<Utc>>,
    /// How its recovery points are sealed (see `crate::encryption`).
    pub encryption: Encryption,
    /// The current version of its key (0: none, an unencrypted vault).
    pub key_version: u32,
}

impl Vault {
    pub fn is_locked(&self) -> bool {
        self.lock_time.is_some()
    }
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
    /// Expiry never removes the instance's newest `keep_min` live points (≥ 1).
    pub keep_min: u32,
    /// The second datastore every completed point is copied to (3-2-1).
    pub copy: Option<CopyRule>,
    /// When every point of the policy's instances is verified (`None`:
    /// never on a schedule).
    pub verify_schedule: Option<Schedule>,
    /// Restore drills of the instances' newest points (`None`: none).
    pub drill: Option<DrillRule>,
    pub create_time: DateTime<Utc>,
}

/// Where and how often a policy drills its instances' newest points.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillRule {
    /// The drill server's id.
    pub server_id: String,
    /// What scratch databases are made with.
    pub secret: crate::secret_ref::SecretRef,
    /// After every Nth completed backup of an instance (0: not after backups).
    pub every: u32,
    /// At each slot of this weekly schedule (`None`: not on a schedule); a
    /// rule has `every` ≥ 1, a schedule or both.
    pub schedule: Option<Schedule>,
}

/// Where a policy copies its points and how long copies are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRule {
    /// Object-store URL of the copy datastore root (never credentials).
    pub datastore_url: String,
    /// ISO 8601 period after the snapshot (validated: 7 days – 10 years).
    pub retention: String,
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
    /// Connections all workers and agents may hold to it at once
    /// ([`crate::budget`]).
    pub max_connections: u32,
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
    /// The readable name people type, unique in the vault
    /// (`crate::short_names`); given by the store when the row is inserted.
    pub short_name: String,
    pub policy_id: String,
    /// The credential each job re-reads (see `crate::secret_ref`).
    pub secret: SecretRef,
    pub protection_state: ProtectionState,
    /// Why the last validation failed (`ValidationFailed` instances).
    pub last_error: Option<JobError>,
    pub create_time: DateTime<Utc>,
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
    /// Set while the point is soft-deleted (hidden, purged after the window).
    pub soft_delete: Option<SoftDelete>,
    /// How the point's last verify job ended (`None`: never verified).
    pub last_verify: Option<LastVerify>,
    /// How the point's last restore drill ended (`None`: never drilled).
    pub last_drill: Option<LastDrill>,
    /// The point's own objects expired, but a copy in another datastore
    /// lives on by its own retention: it restores only from that copy.
    pub copies_only: bool,
}

/// The end of a point's last restore drill.
#[derive(Debug, Clone, PartialEq)]
pub struct LastDrill {
    pub time: DateTime<Utc>,
    /// `None`: the drill passed; else the failure's error code.
    pub error_code: Option<String>,
    pub job_id: Option<Uuid>,
    /// The drill server's id.
    pub server_id: String,
    /// What a passed drill checked (0 for a failed one).
    pub tables: u64,
    pub rows: u64,
    /// Whether row checksums were compared (false: row counts only).
    pub checksums: bool,
}

/// The end of a point's last verify job.
#[derive(Debug, Clone, PartialEq)]
pub struct LastVerify {
    pub time: DateTime<Utc>,
    /// `None`: the point is sound; else the failure's error code.
    pub error_code: Option<String>,
    pub job_id: Option<Uuid>,
}

/// Who soft-deleted a point, when, and when the sweeper purges it.
#[derive(Debug, Clone, PartialEq)]
pub struct SoftDelete {
    pub time: DateTime<Utc>,
    /// The name of the token that deleted it.
    pub by: String,
    pub purge_after: DateTime<Utc>,
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
