//! Job errors of the engine: a stable [`ErrorCode`] (what a console shows and
//! what decides retries), a message naming server and database but never a
//! secret, and whether retrying may help. PostgreSQL errors are mapped here
//! by SQLSTATE, in one place.

use std::fmt;

use tokio_postgres::error::SqlState;

/// Stable error codes reported on failed jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    UserErrorDBUserAuthFailed,
    UserErrorDBNotFound,
    UserErrorServerConnectionClosed,
    UserErrorMissingDBPermissions,
    UserErrorDatabaseNameAlreadyInUse,
    UserErrorLockTimeout,
    UserErrorRowLevelSecurity,
    UserErrorInvalidConnectionSettings,
    UserErrorServerVersionUnsupported,
    UserErrorSelectionInvalid,
    UserErrorDestinationNotWritable,
    DatastoreUnavailable,
    DatastoreWriteFailed,
    DatastoreFull,
    ChecksumMismatch,
    ManifestInvalid,
    PgToolFailed,
    PgToolNotFound,
    Cancelled,
    Internal,
}

impl ErrorCode {
    /// The variant name, as stored on jobs and shown by the CLI.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::UserErrorDBUserAuthFailed => "UserErrorDBUserAuthFailed",
            ErrorCode::UserErrorDBNotFound => "UserErrorDBNotFound",
            ErrorCode::UserErrorServerConnectionClosed => "UserErrorServerConnectionClosed",
            ErrorCode::UserErrorMissingDBPermissions => "UserErrorMissingDBPermissions",
            ErrorCode::UserErrorDatabaseNameAlreadyInUse => "UserErrorDatabaseNameAlreadyInUse",
            ErrorCode::UserErrorLockTimeout => "UserErrorLockTimeout",
            ErrorCode::UserErrorRowLevelSecurity => "UserErrorRowLevelSecurity",
            ErrorCode::UserErrorInvalidConnectionSettings => "UserErrorInvalidConnectionSettings",
            ErrorCode::UserErrorServerVersionUnsupported => "UserErrorServerVersionUnsupported",
            ErrorCode::UserErrorSelectionInvalid => "UserErrorSelectionInvalid",
            ErrorCode::UserErrorDestinationNotWritable => "UserErrorDestinationNotWritable",
            ErrorCode::DatastoreUnavailable => "DatastoreUnavailable",
            ErrorCode::DatastoreWriteFailed => "DatastoreWriteFailed",
            ErrorCode::DatastoreFull => "DatastoreFull",
            ErrorCode::ChecksumMismatch => "ChecksumMismatch",
            ErrorCode::ManifestInvalid => "ManifestInvalid",
            ErrorCode::PgToolFailed => "PgToolFailed",
            ErrorCode::PgToolNotFound => "PgToolNotFound",
            ErrorCode::Cancelled => "Cancelled",
            ErrorCode::Internal => "Internal",
        }
    }

    /// One sentence a console shows next to the error.
    pub fn recommended_action(&self) -> &'static str {
        match self {
            ErrorCode::UserErrorDBUserAuthFailed => {
                "Check the user name and password in the secret and that pg_hba.conf allows this client."
            }
            ErrorCode::UserErrorDBNotFound => {
                "Check the database name, or stop protection if the database was dropped."
            }
            ErrorCode::UserErrorServerConnectionClosed => {
                "Check that the server is running and reachable from the worker; the job will be retried."
            }
            ErrorCode::UserErrorMissingDBPermissions => {
                "Run the generated grant script (or grant pg_read_all_data) for the backup user, then revalidate."
            }
            ErrorCode::UserErrorDatabaseNameAlreadyInUse => {
                "Choose a database name that does not exist on the target server, or drop the existing database."
            }
            ErrorCode::UserErrorLockTimeout => {
                "A long-running transaction or DDL holds a conflicting lock; retry later or raise the lock timeout."
            }
            ErrorCode::UserErrorRowLevelSecurity => {
                "Grant the backup user BYPASSRLS (or make it the table owner) so no row is hidden by a policy."
            }
            ErrorCode::UserErrorInvalidConnectionSettings => {
                "Correct the connection settings (sslmode, root certificate file on the worker) and put a new version of the secret."
            }
            ErrorCode::UserErrorServerVersionUnsupported => {
                "Upgrade the PostgreSQL client tools on the worker to the server's major version or newer."
            }
            ErrorCode::UserErrorSelectionInvalid => {
                "Check the schema and table names (schema.table) against the recovery point's contents."
            }
            ErrorCode::UserErrorDestinationNotWritable => {
                "Check that the destination exists or can be created and that the worker may write there (permissions, credentials, free space)."
            }
            ErrorCode::DatastoreUnavailable => {
                "Check the datastore URL, credentials and network access from the worker."
            }
            ErrorCode::DatastoreWriteFailed => {
                "Check the datastore's free space, quota and write permissions; the job will be retried."
            }
            ErrorCode::DatastoreFull => {
                "Free space on the datastore's disk (or raise its quota or file-size limit); the job will be retried."
            }
            ErrorCode::ChecksumMismatch => {
                "The recovery point is corrupted; restore from another recovery point."
            }
            ErrorCode::ManifestInvalid => {
                "The recovery point is incomplete or corrupted; restore from another recovery point."
            }
            ErrorCode::PgToolFailed => {
                "Read the pg_dump/pg_restore output in the message; fix the object it names and retry."
            }
            ErrorCode::PgToolNotFound => {
                "Install the PostgreSQL client tools (pg_dump, pg_restore) on the worker."
            }
            ErrorCode::Cancelled => "The job was cancelled; start it again when needed.",
            ErrorCode::Internal => "Retry the job; if it fails again, report it with the job id.",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed backup or restore. `Display` is the message; it holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineError {
    pub code: ErrorCode,
    pub message: String,
    pub retryable: bool,
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EngineError {}

impl EngineError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let retryable = matches!(
            code,
            ErrorCode::UserErrorServerConnectionClosed
                | ErrorCode::UserErrorLockTimeout
                | ErrorCode::DatastoreUnavailable
                | ErrorCode::DatastoreWriteFailed
                | ErrorCode::DatastoreFull
                | ErrorCode::Internal
        );
        EngineError {
            code,
            message: message.into(),
            retryable,
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        EngineError::new(ErrorCode::Internal, message)
    }

    pub fn cancelled() -> Self {
        EngineError::new(ErrorCode::Cancelled, "the job was cancelled")
    }

    /// Prefixes the message with what was being done.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// Maps a PostgreSQL error by SQLSTATE; `target` says which server and
    /// database (e.g. `server db.example.com:5432, database "sales"`).
    pub fn from_pg(error: &tokio_postgres::Error, target: &str) -> Self {
        let detail = pg_error_text(error);
        let Some(code) = error.code() else {
            // No SQLSTATE: the connection failed or was lost.
            return EngineError::new(
                ErrorCode::UserErrorServerConnectionClosed,
                format!("connection to {target} failed or was closed: {detail}"),
            );
        };
        let mapped = if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            ErrorCode::UserErrorDBUserAuthFailed
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            ErrorCode::UserErrorDBNotFound
        } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            if detail.contains("row-level security") {
                ErrorCode::UserErrorRowLevelSecurity
            } else {
                ErrorCode::UserErrorMissingDBPermissions
            }
        } else if *code == SqlState::LOCK_NOT_AVAILABLE {
            ErrorCode::UserErrorLockTimeout
        } else if *code == SqlState::DUPLICATE_DATABASE {
            ErrorCode::UserErrorDatabaseNameAlreadyInUse
        } else if *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::TOO_MANY_CONNECTIONS
            || code.code().starts_with("08")
        {
            ErrorCode::UserErrorServerConnectionClosed
        } else if *code == SqlState::QUERY_CANCELED {
            ErrorCode::Cancelled
        } else {
            ErrorCode::Internal
        };
        EngineError::new(mapped, format!("{target}: {detail}"))
    }
}

/// The server's message (with SQLSTATE) or the client-side error text.
fn pg_error_text(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        // Display already appends the cause (e.g. the io error).
        None => error.to_string(),
    }
}

/// Maps object-store errors: reads → unavailable, writes → write failed;
/// but a write refused for lack of room (ENOSPC, EDQUOT, EFBIG anywhere in
/// the error's causes) → datastore full, and any operation that could not
/// reach the datastore (connection refused, reset, timed out) → unavailable.
pub(crate) fn store_error(
    error: &object_store::Error,
    action: &str,
    path: &str,
    write: bool,
) -> EngineError {
    use std::io::ErrorKind as K;
    if write
        && has_io_cause(error, |k| {
            matches!(k, K::StorageFull | K::QuotaExceeded | K::FileTooLarge)
        })
    {
        return EngineError::new(
            ErrorCode::DatastoreFull,
            format!("the datastore is full: cannot {action} {path}: {error}"),
        );
    }
    let unreachable = has_io_cause(error, |k| {
        matches!(
            k,
            K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::NotConnected
                | K::TimedOut
                | K::HostUnreachable
                | K::NetworkUnreachable
        )
    });
    if unreachable {
        return EngineError::new(
            ErrorCode::DatastoreUnavailable,
            format!("cannot reach the datastore to {action} {path}: {error}"),
        );
    }
    let code = if write {
        ErrorCode::DatastoreWriteFailed
    } else {
        ErrorCode::DatastoreUnavailable
    };
    EngineError::new(
        code,
        format!("cannot {action} {path} in the datastore: {error}"),
    )
}

/// Whether an I/O error of a kind `matches` is among `error`'s causes.
fn has_io_cause(
    error: &(dyn std::error::Error + 'static),
    matches: impl Fn(std::io::ErrorKind) -> bool,
) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches(io.kind())
        {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_names_and_actions() {
        assert_eq!(
            ErrorCode::UserErrorDBUserAuthFailed.as_str(),
            "UserErrorDBUserAuthFailed"
        );
        assert!(
            ErrorCode::ChecksumMismatch
                .recommended_action()
                .ends_with('.')
        );
        assert!(EngineError::new(ErrorCode::UserErrorServerConnectionClosed, "x").retryable);
        assert!(!EngineError::new(ErrorCode::ChecksumMismatch, "x").retryable);
        assert_eq!(
            EngineError::internal("boom").context("reading").to_string(),
            "reading: boom"
        );
    }

    #[test]
    fn a_write_refused_for_lack_of_space_is_datastore_full() {
        for errno in [28 /* ENOSPC */, 27 /* EFBIG */] {
            let error = object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(std::io::Error::from_raw_os_error(errno)),
            };
            let mapped = store_error(&error, "upload", "data/1/0.zst", true);
            assert_eq!(mapped.code, ErrorCode::DatastoreFull, "{mapped}");
            assert!(
                mapped.message.starts_with("the datastore is full"),
                "{mapped}"
            );
            let read = store_error(&error, "read", "data/1/0.zst", false);
            assert_eq!(read.code, ErrorCode::DatastoreUnavailable);
        }
        let other = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::from_raw_os_error(13 /* EACCES */)),
        };
        assert_eq!(
            store_error(&other, "upload", "x", true).code,
            ErrorCode::DatastoreWriteFailed
        );
    }

    #[test]
    fn a_datastore_that_cannot_be_reached_is_unavailable_even_for_writes() {
        let error = object_store::Error::Generic {
            store: "MicrosoftAzure",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        };
        let mapped = store_error(&error, "upload", "schema.dump", true);
        assert_eq!(mapped.code, ErrorCode::DatastoreUnavailable, "{mapped}");
        assert!(
            mapped.message.starts_with("cannot reach the datastore"),
            "{mapped}"
        );
    }
}
