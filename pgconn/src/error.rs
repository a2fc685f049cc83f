//! Errors of parsing and of connecting. Neither ever holds a value from the
//! connection string: parse errors name a key and a byte position, connect
//! errors carry the server's message (PostgreSQL never repeats passwords).

use std::fmt;

use pgvault_errors::ErrorCode;

/// The three forms of connection string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `Server=…;Database=…;User Id=…;Password=…`
    AdoNet,
    /// `host=… dbname=… user=… password=…`
    Libpq,
    /// `postgresql://user:password@host:port/database?sslmode=…`
    Uri,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::AdoNet => "ADO.NET",
            Format::Libpq => "libpq key=value",
            Format::Uri => "postgresql:// URI",
        })
    }
}

/// A connection string pgvault cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct ParseError {
    /// The form the string was read as.
    pub format: Format,
    /// The key at fault, when one is known and safe to show.
    pub key: Option<String>,
    /// Byte offset in the input where the problem starts.
    pub position: usize,
    /// What is wrong, in words that never quote the input.
    pub reason: &'static str,
}

impl ParseError {
    pub(crate) fn new(
        format: Format,
        key: Option<&str>,
        position: usize,
        reason: &'static str,
    ) -> Self {
        ParseError {
            format,
            key: key.and_then(printable_key),
            position,
            reason,
        }
    }

    /// Always `UserErrorSecretValueInUnsupportedFormat`.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::UserErrorSecretValueInUnsupportedFormat
    }

    fn describe(&self) -> String {
        let at = match &self.key {
            Some(key) => format!("key \"{key}\" at byte {}", self.position),
            None => format!("byte {}", self.position),
        };
        format!(
            "the connection string ({} form) is not supported: {} ({at})",
            self.format, self.reason
        )
    }
}

/// A key as typed, when it is a key name some driver defines. A mistyped
/// string can put part of a password where a key belongs (`password=a b`
/// makes `b` a key), so keys nobody defines are withheld; the position still
/// points at them.
fn printable_key(key: &str) -> Option<String> {
    let key = key.trim();
    let known = crate::libpq::key(key).is_some()
        || crate::ado::key(key).is_some()
        || KNOWN_UNSUPPORTED
            .iter()
            .any(|k| k.eq_ignore_ascii_case(&key.replace(' ', "")));
    known.then(|| key.to_string())
}

/// Keys of libpq or Npgsql that pgvault does not support, named in errors.
const KNOWN_UNSUPPORTED: &[&str] = &[
    "options",
    "service",
    "passfile",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcrl",
    "sslnegotiation",
    "channel_binding",
    "gssencmode",
    "krbsrvname",
    "requirepeer",
    "target_session_attrs",
    "load_balance_hosts",
    "keepalives",
    "keepalives_idle",
    "client_encoding",
    "IntegratedSecurity",
    "KerberosServiceName",
    "SslCertificate",
    "SslKey",
    "SslPassword",
    "Multiplexing",
    "SearchPath",
    "TargetSessionAttributes",
    "LoadBalanceHosts",
    "ServerCompatibilityMode",
    "Passfile",
];

/// What kind of connection failure, as a user fixes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectFailure {
    /// Wrong user or password, or no `pg_hba.conf` entry (28P01, 28000).
    AuthFailed,
    /// The database does not exist (3D000).
    DatabaseNotFound,
    /// The user may not connect to the database (42501).
    PermissionDenied,
    /// Refused, reset, timed out, or the TLS handshake failed.
    ConnectionClosed,
    /// The connection string lacks what connecting needs (no user, bad root
    /// certificate file).
    InvalidParams,
    /// Anything else the server said.
    Other,
}

impl ConnectFailure {
    /// The job error code users see (see [`ConnectError::code`] for a
    /// failure's own).
    pub fn code(self) -> ErrorCode {
        match self {
            ConnectFailure::AuthFailed => ErrorCode::UserErrorDBUserAuthFailed,
            ConnectFailure::DatabaseNotFound => ErrorCode::UserErrorDBNotFound,
            ConnectFailure::PermissionDenied => ErrorCode::UserErrorMissingDBPermissions,
            ConnectFailure::ConnectionClosed => ErrorCode::UserErrorServerConnectionClosed,
            ConnectFailure::InvalidParams => ErrorCode::UserErrorInvalidConnectionSettings,
            ConnectFailure::Other => ErrorCode::UserErrorServerConnectionFailed,
        }
    }

    /// What the user should do about it (the catalogue's action).
    pub fn recommended_action(self) -> &'static str {
        self.code().recommended_action()
    }

    /// The kind of failure a classified code is, as a user fixes it.
    pub(crate) fn of(code: ErrorCode) -> ConnectFailure {
        match code {
            ErrorCode::UserErrorDBUserAuthFailed => ConnectFailure::AuthFailed,
            ErrorCode::UserErrorDBNotFound => ConnectFailure::DatabaseNotFound,
            ErrorCode::UserErrorMissingDBPermissions | ErrorCode::UserErrorRowLevelSecurity => {
                ConnectFailure::PermissionDenied
            }
            ErrorCode::UserErrorServerConnectionClosed => ConnectFailure::ConnectionClosed,
            _ => ConnectFailure::Other,
        }
    }
}

/// Connecting failed. The message is safe to show and log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    pub failure: ConnectFailure,
    pub message: String,
    /// The SQLSTATE the server sent, if any.
    pub sqlstate: Option<String>,
}

impl ConnectError {
    /// The job error code: the SQLSTATE's classification when the server
    /// sent one ([`pgvault_errors::classify_sqlstate`]; an unclassified one
    /// is `UserErrorServerConnectionFailed`), else the failure's code.
    pub fn code(&self) -> ErrorCode {
        let classified = self
            .sqlstate
            .as_deref()
            .map(|sqlstate| pgvault_errors::classify_sqlstate(sqlstate, &self.message));
        match classified {
            Some(ErrorCode::Internal) | None => self.failure.code(),
            Some(code) => code,
        }
    }

    /// The catalogue's action for [`ConnectError::code`].
    pub fn recommended_action(&self) -> &'static str {
        self.code().recommended_action()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(failure: ConnectFailure, sqlstate: Option<&str>) -> ConnectError {
        ConnectError {
            failure,
            message: "connecting to u@h:5432: the server said no".into(),
            sqlstate: sqlstate.map(str::to_string),
        }
    }

    #[test]
    fn a_failure_with_a_sqlstate_takes_the_code_of_its_sqlstate() {
        let starting = failed(ConnectFailure::Other, Some("57P03"));
        assert_eq!(starting.code(), ErrorCode::UserErrorServerConnectionClosed);
        let odd = failed(ConnectFailure::Other, Some("XX000"));
        assert_eq!(odd.code(), ErrorCode::UserErrorServerConnectionFailed);
        let closed = failed(ConnectFailure::ConnectionClosed, None);
        assert_eq!(closed.code(), ErrorCode::UserErrorServerConnectionClosed);
        assert_eq!(
            closed.recommended_action(),
            ErrorCode::UserErrorServerConnectionClosed.recommended_action()
        );
    }

    #[test]
    fn connection_settings_that_cannot_be_used_are_not_a_format_error() {
        let invalid = failed(ConnectFailure::InvalidParams, None);
        assert_eq!(
            invalid.code(),
            ErrorCode::UserErrorInvalidConnectionSettings
        );
    }
}
