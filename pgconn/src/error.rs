//! Errors of parsing and of connecting. Neither ever holds a value from the
//! connection string: parse errors name a key and a byte position, connect
//! errors carry the server's message (PostgreSQL never repeats passwords).

use std::fmt;

/// Job error code of every connection string pgvault cannot read.
pub const UNSUPPORTED_FORMAT: &str = "UserErrorSecretValueInUnsupportedFormat";

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

    /// Always [`UNSUPPORTED_FORMAT`].
    pub fn code(&self) -> &'static str {
        UNSUPPORTED_FORMAT
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
    /// The job error code users see.
    pub fn code(self) -> &'static str {
        match self {
            ConnectFailure::AuthFailed => "UserErrorDBUserAuthFailed",
            ConnectFailure::DatabaseNotFound => "UserErrorDBNotFound",
            ConnectFailure::PermissionDenied => "UserErrorMissingDBPermissions",
            ConnectFailure::ConnectionClosed => "UserErrorServerConnectionClosed",
            ConnectFailure::InvalidParams => UNSUPPORTED_FORMAT,
            ConnectFailure::Other => "UserErrorServerConnectionFailed",
        }
    }

    /// What the user should do about it.
    pub fn recommended_action(self) -> &'static str {
        match self {
            ConnectFailure::AuthFailed => {
                "Check the user name and password in the secret (put a new version to rotate it), and that pg_hba.conf admits this user from pgvault's address"
            }
            ConnectFailure::DatabaseNotFound => "Check the database name, or create the database",
            ConnectFailure::PermissionDenied => {
                "Grant the user CONNECT on the database (GRANT CONNECT ON DATABASE ... TO ...)"
            }
            ConnectFailure::ConnectionClosed => {
                "Check the server's host, port, firewall rules and TLS settings (Ssl Mode, root certificate)"
            }
            ConnectFailure::InvalidParams => {
                "Correct the connection string and put a new version of the secret"
            }
            ConnectFailure::Other => "Check the server's log for the reason and try again",
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
    pub fn code(&self) -> &'static str {
        self.failure.code()
    }
}
