//! The coordinator's one error type at its boundary, and the only place it is
//! turned into a `tonic::Status`. Store code maps PostgreSQL errors here by
//! SQLSTATE (unique violation → `AlreadyExists`, …).

use std::fmt;

use tonic::{Code, Status};

/// Errors of the coordinator's API and start-up. Each variant says which gRPC
/// code it is; messages never carry secrets.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// An id that names nothing: `vault "prod" not found`.
    #[error("{kind} \"{id}\" not found")]
    NotFound { kind: &'static str, id: String },
    /// [`CoordinatorError::NotFound`] with the fix: `agent "dc1" not
    /// found; create it with …`.
    #[error("{kind} \"{id}\" not found; {fix}")]
    NotFoundFix {
        kind: &'static str,
        id: String,
        fix: String,
    },
    #[error("{0}")]
    AlreadyExists(String),
    /// Bad input, naming the request field.
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// The request is valid but the system is not in a state that allows it.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(String),
    /// A dependency (state database, broker, source server) is unreachable.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Internal(String),
    /// A secret reference that cannot be used now (not granted, missing,
    /// unreadable): carries the stable code, message and fix users see on
    /// the configure row or the job. Never holds the secret's value.
    #[error("{}: {}; fix: {}", .0.code, .0.message, .0.recommended_action)]
    SecretUnusable(Box<crate::model::JobError>),
    /// A request refused to protect data (a locked vault, a soft-deleted
    /// point): the stable catalogue code, why, and the catalogue's fix.
    #[error("{}: {message}; fix: {}", .code.as_str(), .code.recommended_action())]
    Refused {
        code: pgvault_errors::ErrorCode,
        message: String,
    },
}

pub type Result<T, E = CoordinatorError> = std::result::Result<T, E>;

impl CoordinatorError {
    pub fn not_found(kind: &'static str, id: impl fmt::Display) -> Self {
        CoordinatorError::NotFound {
            kind,
            id: id.to_string(),
        }
    }

    pub fn not_found_fix(
        kind: &'static str,
        id: impl fmt::Display,
        fix: impl Into<String>,
    ) -> Self {
        CoordinatorError::NotFoundFix {
            kind,
            id: id.to_string(),
            fix: fix.into(),
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        CoordinatorError::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn precondition(message: impl Into<String>) -> Self {
        CoordinatorError::FailedPrecondition(message.into())
    }

    pub fn refused(code: pgvault_errors::ErrorCode, message: impl Into<String>) -> Self {
        CoordinatorError::Refused {
            code,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        CoordinatorError::Internal(message.into())
    }

    /// The gRPC code this error is reported with.
    pub fn code(&self) -> Code {
        match self {
            CoordinatorError::NotFound { .. } | CoordinatorError::NotFoundFix { .. } => {
                Code::NotFound
            }
            CoordinatorError::AlreadyExists(_) => Code::AlreadyExists,
            CoordinatorError::InvalidArgument { .. } => Code::InvalidArgument,
            CoordinatorError::FailedPrecondition(_) => Code::FailedPrecondition,
            CoordinatorError::PermissionDenied(_) => Code::PermissionDenied,
            CoordinatorError::Unauthenticated(_) => Code::Unauthenticated,
            CoordinatorError::Unavailable(_) => Code::Unavailable,
            CoordinatorError::Timeout(_) => Code::DeadlineExceeded,
            CoordinatorError::Internal(_) => Code::Internal,
            CoordinatorError::SecretUnusable(_) | CoordinatorError::Refused { .. } => {
                Code::FailedPrecondition
            }
        }
    }
}

impl From<CoordinatorError> for Status {
    fn from(error: CoordinatorError) -> Status {
        if matches!(error, CoordinatorError::Internal(_)) {
            tracing::error!(error = %error, "internal error");
        }
        Status::new(error.code(), error.to_string())
    }
}

/// SQLSTATE of a unique violation.
const UNIQUE_VIOLATION: &str = "23505";
/// SQLSTATE of a foreign-key violation.
const FOREIGN_KEY_VIOLATION: &str = "23503";
/// SQLSTATEs worth retrying: serialization failure, deadlock.
const SERIALIZATION_FAILURE: &str = "40001";
const DEADLOCK_DETECTED: &str = "40P01";

impl From<sqlx::Error> for CoordinatorError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) => match db.code().as_deref() {
                Some(UNIQUE_VIOLATION) => CoordinatorError::AlreadyExists(format!(
                    "already exists ({})",
                    db.constraint().unwrap_or("unique constraint")
                )),
                Some(FOREIGN_KEY_VIOLATION) => CoordinatorError::FailedPrecondition(format!(
                    "a referenced resource does not exist or is still in use ({})",
                    db.constraint().unwrap_or("foreign key")
                )),
                Some(SERIALIZATION_FAILURE) | Some(DEADLOCK_DETECTED) => {
                    CoordinatorError::Unavailable(format!(
                        "state database conflict, retry: {}",
                        db.message()
                    ))
                }
                _ => CoordinatorError::Internal(format!("state database error: {}", db.message())),
            },
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                CoordinatorError::Unavailable(format!("state database unavailable: {error}"))
            }
            _ => CoordinatorError::Internal(format!("state database error: {error}")),
        }
    }
}

/// True when `error` is a unique violation of `constraint`.
pub fn is_unique_violation(error: &sqlx::Error, constraint: &str) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some(UNIQUE_VIOLATION) && db.constraint() == Some(constraint)
        }
        _ => false,
    }
}

/// True when `error` is any unique violation.
pub fn is_any_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some(UNIQUE_VIOLATION))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_kind_and_id() {
        let status = Status::from(CoordinatorError::not_found("vault", "prod"));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "vault \"prod\" not found");
    }

    #[test]
    fn invalid_argument_names_the_field() {
        let status = Status::from(CoordinatorError::invalid(
            "vault_id",
            "must start with a letter",
        ));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "vault_id: must start with a letter");
    }
}
