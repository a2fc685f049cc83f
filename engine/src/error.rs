//! Job errors of the engine: a stable [`ErrorCode`] from the catalogue in
//! `pgvault_errors` (what a console shows, with its recommended action), a
//! message naming server and database but never a secret, and whether
//! retrying may help (the code's default unless the engine knows better).
//! PostgreSQL errors are classified by the catalogue's `classify_sqlstate`;
//! object-store errors are mapped here.

use std::fmt;

pub use pgvault_errors::ErrorCode;
use pgvault_errors::JobFailure;

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
    /// An error retryable as the catalogue says for `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        EngineError {
            code,
            message: message.into(),
            retryable: code.retryable(),
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
        let Some(db) = error.as_db_error() else {
            // No SQLSTATE: the connection failed or was lost.
            return EngineError::new(
                ErrorCode::UserErrorServerConnectionClosed,
                format!("connection to {target} failed or was closed: {detail}"),
            );
        };
        let code = pgvault_errors::classify_sqlstate(db.code().code(), db.message());
        EngineError::new(code, format!("{target}: {detail}"))
    }

    /// The code and message as a job reports them (the action comes with
    /// the code).
    pub fn failure(&self) -> JobFailure {
        JobFailure::new(self.code, self.message.clone())
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
/// The message holds the error's causes with URLs redacted (a URL's query
/// may carry a credential).
pub(crate) fn store_error(
    error: &object_store::Error,
    action: &str,
    path: &str,
    write: bool,
) -> EngineError {
    use std::io::ErrorKind as K;
    let text = pgvault_datastore::redact::error_text(error);
    if write
        && has_io_cause(error, |k| {
            matches!(k, K::StorageFull | K::QuotaExceeded | K::FileTooLarge)
        })
    {
        return EngineError::new(
            ErrorCode::DatastoreFull,
            format!("the datastore is full: cannot {action} {path}: {text}"),
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
            format!("cannot reach the datastore to {action} {path}: {text}"),
        );
    }
    let code = if write {
        ErrorCode::DatastoreWriteFailed
    } else {
        ErrorCode::DatastoreUnavailable
    };
    EngineError::new(
        code,
        format!("cannot {action} {path} in the datastore: {text}"),
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
