//! The catalogue: one entry per error code pgvault produces, with what it
//! means (summary: lowercase, no trailing period), the one recommended
//! action (a sentence ending with a period), whether a failure with it is
//! worth retrying by default, and its category. What is particular to one
//! failure (which server, which command to run with which names) belongs in
//! the failure's message, never in a second action text.
//!
//! Adding a code: add an entry here and a row to the README's "Error codes"
//! table (`cargo test -p pgvault-errors` prints the expected table).
//! Never rename a code: jobs store them as text.

use crate::code::{Category, Entry};

macro_rules! catalogue {
    ($(
        $code:ident {
            category: $category:ident,
            retryable: $retryable:literal,
            summary: $summary:literal,
            action: $action:literal $(,)?
        }
    )*) => {
        /// A stable error code of a failed job or a refused configure row.
        /// The variant name is the code's text ([`ErrorCode::as_str`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $(
                #[doc = $summary]
                $code,
            )*
        }

        impl ErrorCode {
            /// Every code, in catalogue order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$code,)*];

            pub(crate) const fn entry(self) -> Entry {
                match self {
                    $(
                        ErrorCode::$code => Entry {
                            name: stringify!($code),
                            category: Category::$category,
                            retryable: $retryable,
                            summary: $summary,
                            action: $action,
                        },
                    )*
                }
            }
        }
    };
}

catalogue! {
    // Connecting to and reading or writing the protected databases.
    UserErrorDBUserAuthFailed {
        category: User,
        retryable: false,
        summary: "the database server refused the user name or password, or pg_hba.conf admits no such connection",
        action: "Check the user name and password in the secret (put a new version with pgvault secret put after rotating a password) and that pg_hba.conf admits this user from the coordinator's and workers' addresses.",
    }
    UserErrorDBNotFound {
        category: User,
        retryable: false,
        summary: "the database does not exist on the server",
        action: "Check the database name (create the database if it should exist), or stop protection if the database was dropped.",
    }
    UserErrorServerConnectionClosed {
        category: User,
        retryable: true,
        summary: "the server could not be reached, was not accepting connections, or closed the connection (including a failed TLS handshake)",
        action: "Check that the server is running and reachable from pgvault (host, port, firewall rules) and its TLS settings (sslmode, root certificate); jobs are retried.",
    }
    UserErrorServerConnectionFailed {
        category: User,
        retryable: true,
        summary: "the server refused the connection for a reason pgvault does not classify; the message quotes the server",
        action: "Fix what the server's message (and its log) names, then try again.",
    }
    UserErrorInvalidConnectionSettings {
        category: User,
        retryable: false,
        summary: "the connection settings cannot be used: an unknown sslmode, an unreadable root certificate file, or no host or user",
        action: "Correct the connection settings (sslmode, root certificate file on the worker) and put a new version of the secret.",
    }
    UserErrorMissingDBPermissions {
        category: User,
        retryable: false,
        summary: "the database user lacks a privilege the backup or restore needs (the message names it)",
        action: "Grant the user what the message names, as the database owner or a superuser (for backups: the grant script configuring generates, or pg_read_all_data), then re-validate with pgvault backup revalidate.",
    }
    UserErrorRowLevelSecurity {
        category: User,
        retryable: false,
        summary: "a row-level security policy would hide rows from the backup user",
        action: "Grant the backup user BYPASSRLS (or make it the table owner) so no row is hidden by a policy.",
    }
    UserErrorLockTimeout {
        category: User,
        retryable: true,
        summary: "a conflicting lock was held longer than the lock timeout",
        action: "A long-running transaction or DDL holds a conflicting lock; retry later or raise the lock timeout.",
    }
    UserErrorServerVersionUnsupported {
        category: User,
        retryable: false,
        summary: "the worker's PostgreSQL client tools are older than the server",
        action: "Install the PostgreSQL client tools of the server's major version or newer on the workers (e.g. postgresql-client-17), or list their bin directory in worker.pg_bin_dirs.",
    }
    UserErrorRestoreTargetTooOld {
        category: User,
        retryable: false,
        summary: "the restore's target server runs an older PostgreSQL major than the recovery point's source",
        action: "Restore into a server running the recovery point's PostgreSQL major or a newer one.",
    }
    UserErrorTablespaceLocationMissing {
        category: User,
        retryable: false,
        summary: "a whole-server restore cannot create a tablespace of the recovery point: its directory does not exist (or is not usable) on the target server's machine",
        action: "Create the directory the message names on the target server's machine, empty and owned by the operating-system user PostgreSQL runs as, then restore again; or restore with --no-tablespaces (objects go to the default tablespace either way).",
    }
    UserErrorDatabaseNameAlreadyInUse {
        category: User,
        retryable: false,
        summary: "the restore's target database already exists",
        action: "Choose a database name that does not exist on the target server, or drop the existing database.",
    }
    UserErrorSelectionInvalid {
        category: User,
        retryable: false,
        summary: "a schema or table named for a selective restore is not in the recovery point",
        action: "Check the schema and table names (schema.table) against the recovery point's contents.",
    }
    UserErrorDestinationNotWritable {
        category: User,
        retryable: false,
        summary: "the destination of a restore to files cannot be created or written",
        action: "Check that the destination exists or can be created and that the worker may write there (permissions, credentials, free space).",
    }

    // Secrets and secret references.
    UserErrorSecretValueInUnsupportedFormat {
        category: User,
        retryable: false,
        summary: "the secret's value is not a connection string pgvault can read, or names no user",
        action: "Put a new version of the secret holding an ADO.NET, libpq key=value or postgresql:// connection string that names a user.",
    }
    UserErrorInvalidSecret {
        category: User,
        retryable: false,
        summary: "the secret reference cannot be used: not allowed on this coordinator, unset or unreadable, not decryptable, or not holding a usable connection string",
        action: "Point the reference at a connection string the coordinator can read: a stored secret (pgvault secret put), or an env:// variable or file:// file present on every coordinator and allowed by coordinator.secret_env_prefix or coordinator.secret_file_dir.",
    }
    UserErrorSecretNotFound {
        category: User,
        retryable: false,
        summary: "the stored secret, or the version the reference pins, does not exist",
        action: "Store the connection string with pgvault secret put, or reference an existing secret (secret://NAME for its latest version).",
    }
    UserErrorMissingPermissionsOnSecretStore {
        category: User,
        retryable: false,
        summary: "the vault has not been granted access to the stored secret",
        action: "Have an Owner of the vault grant it (pgvault secret grant --vault VAULT SECRET, or configure with --assign-missing-permissions), then re-validate the row.",
    }
    UserCannotAssignRoles {
        category: User,
        retryable: false,
        summary: "the vault needs access to the secret, and the caller's token may not grant it",
        action: "Ask an Owner of the vault to run pgvault secret grant --vault VAULT SECRET, then re-validate the row with pgvault backup revalidate.",
    }

    // Configuring protection.
    UserErrorInvalidInput {
        category: User,
        retryable: false,
        summary: "a configure row is malformed: its server name, database name or secret reference",
        action: "Correct the row as the message says and configure it again.",
    }
    UserErrorServerNotFound {
        category: User,
        retryable: false,
        summary: "the row names a server that is not registered",
        action: "Register the server first (pgvault server register), or correct the row's server name.",
    }
    UserErrorRegionMismatch {
        category: User,
        retryable: false,
        summary: "the server is in another region than the vault",
        action: "Protect the database in a vault of the server's region.",
    }
    UserErrorDatabaseNotProtectable {
        category: User,
        retryable: false,
        summary: "the database is a template or provider maintenance database, which cannot be protected",
        action: "Choose a user database.",
    }
    UserErrorDatabaseAlreadyProtected {
        category: User,
        retryable: false,
        summary: "another backup instance already protects the database; a database is protected by at most one vault",
        action: "Use the existing backup instance, or stop protecting the database there first.",
    }

    // Jobs the coordinator ends itself.
    UserErrorTaskUnresolvable {
        category: User,
        retryable: false,
        summary: "the job's task could not be prepared when a worker claimed it (its server, instance or recovery point is gone or unusable)",
        action: "Check the backup instance's server and secret, then start the job again.",
    }
    UserErrorRehydrateFailed {
        category: User,
        retryable: false,
        summary: "the rehydrate job a restore of an archive point waited for failed or was cancelled",
        action: "Read the rehydrate job's error, fix its cause, then start the restore again.",
    }
    UserErrorGlobalsRestoreFailed {
        category: User,
        retryable: false,
        summary: "the restore of the server's globals (roles, tablespaces) that a server restore starts with failed or was cancelled, so this database's restore was not started",
        action: "Read the globals restore job's error (pgvault job show JOB), fix its cause, then run pgvault restore server again.",
    }
    UserErrorCopyFailed {
        category: User,
        retryable: true,
        summary: "copying a recovery point to its policy's copy datastore failed: the target is unreachable, refused the writes, or the copy did not verify against the manifest",
        action: "Check the copy datastore URL in the policy and that workers hold its credentials; the job is retried while attempts remain, after that run pgvault job retry JOB.",
    }
    // Requests the coordinator refuses to protect data.
    UserErrorVaultLocked {
        category: User,
        retryable: false,
        summary: "the vault is locked (immutable): its points cannot be deleted or expire earlier, its retention cannot be shortened, its soft-delete window cannot shrink, and the lock cannot be removed, not even by an Owner",
        action: "Nothing to fix: a locked vault keeps every point until its expiry; protect new data in another vault if you need different rules.",
    }
    UserErrorRecoveryPointDeleted {
        category: User,
        retryable: false,
        summary: "the recovery point is soft-deleted: it is kept until its purge time but cannot be restored",
        action: "Undelete it first (pgvault recovery-point undelete POINT), then restore it.",
    }
    SystemErrorLeaseExpired {
        category: System,
        retryable: true,
        summary: "the worker running the attempt stopped sending heartbeats before its lease expired",
        action: "Check that workers are running and can reach the coordinator; the job is retried while attempts remain, after that run pgvault job retry JOB.",
    }
    SystemErrorWorkerShutdown {
        category: System,
        retryable: true,
        summary: "the worker running the attempt was shut down",
        action: "None while attempts remain: the job is retried on another worker; after that run pgvault job retry JOB.",
    }
    SystemErrorUnknown {
        category: System,
        retryable: false,
        summary: "a worker reported a failure without an error code",
        action: "Read the message and the worker's log, fix the cause, then run pgvault job retry JOB.",
    }
    TaskDeadLettered {
        category: System,
        retryable: false,
        summary: "the queue dead-lettered the job's task message, so no worker claimed it",
        action: "Check that workers are running and can reach the coordinator (see pgvault job dead-letters), then run pgvault job retry JOB.",
    }
    AgentUnavailable {
        category: System,
        retryable: false,
        summary: "no instance of the agent that reaches the server was connected",
        action: "Start pgvault-agent for this agent (check its log and its network path to the coordinator; pgvault agent list shows when it was last seen), then retry the job.",
    }

    // Datastores and recovery points.
    DatastoreUnavailable {
        category: System,
        retryable: true,
        summary: "the datastore could not be opened, reached or read",
        action: "Check the datastore URL, credentials and network access from the worker.",
    }
    DatastoreWriteFailed {
        category: System,
        retryable: true,
        summary: "writing to the datastore failed",
        action: "Check the datastore's free space, quota and write permissions; the job will be retried.",
    }
    DatastoreFull {
        category: System,
        retryable: true,
        summary: "the datastore refused a write for lack of space, quota or file size",
        action: "Free space on the datastore's disk (or raise its quota or file-size limit); the job will be retried.",
    }
    ChecksumMismatch {
        category: Integrity,
        retryable: false,
        summary: "an object of the recovery point does not match the checksum its manifest records",
        action: "The recovery point is corrupted; restore from another recovery point.",
    }
    ManifestInvalid {
        category: Integrity,
        retryable: false,
        summary: "the recovery point's manifest (or its schema archive) is missing, unreadable or inconsistent",
        action: "The recovery point is incomplete or corrupted; restore from another recovery point.",
    }
    ObjectAuthenticationFailed {
        category: Integrity,
        retryable: false,
        summary: "an encrypted object of the recovery point failed authentication: it was altered, truncated, reordered or belongs to another point",
        action: "The recovery point was tampered with or damaged in the datastore; restore from another recovery point and check who can write to the datastore.",
    }
    EncryptionKeyUnavailable {
        category: Integrity,
        retryable: false,
        summary: "the recovery point is encrypted and its data key is not available to the task",
        action: "Run the task through a coordinator that holds the point's key (the same master key and state database it was backed up with); without them, export the point with `pgvault recovery-point export` and the vault's key file (`pgvault vault export-key`), which must hold the key version the point names.",
    }
    VerifyObjectCorrupt {
        category: Integrity,
        retryable: false,
        summary: "a verify found an object of the recovery point whose size, SHA-256, zstd frames or row count differ from its manifest; the message names the object and its table",
        action: "The recovery point is corrupted: restore from another recovery point, and check the datastore's disks or bucket for other damage.",
    }
    VerifyObjectMissing {
        category: Integrity,
        retryable: false,
        summary: "a verify found an object the recovery point's manifest names missing from the datastore; the message names the object and its table",
        action: "The recovery point is incomplete: restore from another recovery point, and find what deleted objects in the datastore.",
    }
    VerifyUnexpectedObject {
        category: Integrity,
        retryable: false,
        summary: "a verify found an object under the recovery point's directory that its manifest does not name",
        action: "Find what wrote into the recovery point's directory (objects are written once by pgvault); the point's manifest names every object and nothing else.",
    }
    VerifyManifestCorrupt {
        category: Integrity,
        retryable: false,
        summary: "a verify found the recovery point's manifest missing, unreadable or different from the SHA-256 recorded when the backup completed",
        action: "The recovery point cannot be trusted: restore from another recovery point.",
    }
    DrillRowCountMismatch {
        category: Integrity,
        retryable: false,
        summary: "a restore drill restored a table with a different number of rows than the recovery point's manifest records; the message names the table",
        action: "The recovery point does not restore what was backed up: restore from another recovery point, and report the table named (with the point's manifest) as a pgvault bug.",
    }
    DrillChecksumMismatch {
        category: Integrity,
        retryable: false,
        summary: "a restore drill read back a table whose rows' checksum differs from the one recorded at backup time; the message names the table",
        action: "The recovery point does not restore what was backed up: restore from another recovery point; check that the drill server runs the same PostgreSQL major and encoding as the source.",
    }

    // The PostgreSQL tools, cancellation, and the rest.
    PgToolFailed {
        category: System,
        retryable: false,
        summary: "pg_dump or pg_restore failed; the message quotes the end of its output",
        action: "Read the pg_dump/pg_restore output in the message; fix the object it names and retry.",
    }
    PgToolNotFound {
        category: System,
        retryable: false,
        summary: "pg_dump or pg_restore could not be found or started on the worker",
        action: "Install the PostgreSQL client tools (pg_dump, pg_restore) on the worker.",
    }
    Cancelled {
        category: Cancelled,
        retryable: false,
        summary: "the job was cancelled, by a user or by the server cancelling its statement",
        action: "None if it was meant; to run the job after all, run pgvault job retry JOB.",
    }
    Internal {
        category: System,
        retryable: true,
        summary: "an unexpected error in pgvault or the server; the message says where",
        action: "Retry the job; if it fails again, report it with the job id.",
    }
}
