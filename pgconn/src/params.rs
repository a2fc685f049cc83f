//! The one shape every connection-string form parses into: where to connect,
//! as whom, and how to secure the connection. The password sits in a
//! [`Password`] whose `Debug` and `Display` print `<redacted>`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A password; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(value: impl Into<String>) -> Self {
        Password(value.into())
    }

    /// The clear text, for the one place that sends it to the server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// libpq's `sslmode` (ADO.NET `Ssl Mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SslMode {
    /// Plain connection only.
    Disable,
    /// Plain first; TLS (unverified) if the server refuses a plain one.
    Allow,
    /// TLS (unverified) if the server offers it, else plain.
    #[default]
    Prefer,
    /// TLS, without verifying the certificate (libpq without a root cert).
    Require,
    /// TLS, certificate chain verified against the root certificates.
    VerifyCa,
    /// TLS, chain verified and the host name matched.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling (`verify-ca`).
    pub fn as_libpq(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// The ADO.NET (Npgsql) spelling (`VerifyCA`).
    pub fn as_ado(self) -> &'static str {
        match self {
            SslMode::Disable => "Disable",
            SslMode::Allow => "Allow",
            SslMode::Prefer => "Prefer",
            SslMode::Require => "Require",
            SslMode::VerifyCa => "VerifyCA",
            SslMode::VerifyFull => "VerifyFull",
        }
    }

    /// Reads either spelling, case-insensitively.
    pub fn parse(value: &str) -> Option<SslMode> {
        let v: String = value
            .trim()
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        Some(match v.as_str() {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verifyca" => SslMode::VerifyCa,
            "verifyfull" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// True when the server's certificate chain is checked.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_libpq())
    }
}

/// A parsed connection string. Empty values count as absent. `Debug` shows
/// everything but the password; `Display` shows `user@host:port/database`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnParams {
    /// Host name or IP address.
    pub host: Option<String>,
    pub port: Option<u16>,
    pub database: Option<String>,
    pub user: Option<String>,
    pub password: Option<Password>,
    pub ssl_mode: SslMode,
    /// ADO.NET `Trust Server Certificate`: accept any certificate. Only
    /// meaningful (and only accepted) with modes that do not verify.
    pub trust_server_certificate: bool,
    /// PEM file of root certificates for `verify-ca`/`verify-full`; the
    /// system's roots when absent.
    pub ssl_root_cert: Option<PathBuf>,
    pub application_name: Option<String>,
    pub connect_timeout: Option<Duration>,
}

impl fmt::Debug for ConnParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnParams")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ssl_mode", &self.ssl_mode)
            .field("trust_server_certificate", &self.trust_server_certificate)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .field("application_name", &self.application_name)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl fmt::Display for ConnParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        write!(f, "{}", self.host.as_deref().unwrap_or("localhost"))?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        if let Some(db) = &self.database {
            write!(f, "/{db}")?;
        }
        Ok(())
    }
}

impl ConnParams {
    /// These credentials aimed at another endpoint: pgvault keeps the host
    /// and port on the registered server and the database on the backup
    /// instance, and takes only the rest from the secret.
    pub fn with_target(&self, host: &str, port: u16, database: &str) -> ConnParams {
        ConnParams {
            host: Some(host.to_string()),
            port: Some(port),
            database: Some(database.to_string()),
            ..self.clone()
        }
    }

    /// As a libpq `key=value` string (quoted where needed). Includes the
    /// password: for handing to a process, never for printing.
    pub fn to_libpq(&self) -> String {
        crate::libpq::format(self)
    }

    /// As a `postgresql://` URI (percent-encoded). Includes the password.
    pub fn to_uri(&self) -> String {
        crate::uri::format(self)
    }

    /// As an ADO.NET string (quoted where needed). Includes the password.
    pub fn to_ado(&self) -> String {
        crate::ado::format(self)
    }
}

/// The settings every form maps its own key names onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Host,
    Port,
    Database,
    User,
    Password,
    SslMode,
    TrustServerCertificate,
    SslRootCert,
    ApplicationName,
    ConnectTimeout,
    /// Client-side pool settings of ADO.NET drivers: accepted, meaningless here.
    Ignored,
}

/// Why a value is refused (never the value itself).
pub(crate) type ValueError = &'static str;

impl ConnParams {
    /// Sets `key` from a decoded value.
    pub(crate) fn set(&mut self, key: Key, value: String) -> Result<(), ValueError> {
        if value.contains('\0') {
            return Err("the value contains a NUL character");
        }
        let text = |v: String| if v.is_empty() { None } else { Some(v) };
        match key {
            Key::Host => {
                if value.contains(',') {
                    return Err("several hosts are not supported; name one host");
                }
                self.host = text(value);
            }
            Key::Port => {
                self.port = if value.trim().is_empty() {
                    None
                } else {
                    match value.trim().parse::<u16>() {
                        Ok(p) if p > 0 => Some(p),
                        _ => return Err("the port must be a number from 1 to 65535"),
                    }
                }
            }
            Key::Database => self.database = text(value),
            Key::User => self.user = text(value),
            Key::Password => self.password = text(value).map(Password),
            Key::SslMode => {
                self.ssl_mode = SslMode::parse(&value).ok_or(
                    "the TLS mode must be one of disable, allow, prefer, require, verify-ca, verify-full",
                )?
            }
            Key::TrustServerCertificate => {
                self.trust_server_certificate = match value.trim().to_ascii_lowercase().as_str() {
                    "true" | "yes" | "1" | "on" => true,
                    "false" | "no" | "0" | "off" | "" => false,
                    _ => return Err("the value must be true or false"),
                }
            }
            Key::SslRootCert => self.ssl_root_cert = text(value).map(PathBuf::from),
            Key::ApplicationName => self.application_name = text(value),
            Key::ConnectTimeout => {
                self.connect_timeout = if value.trim().is_empty() {
                    None
                } else {
                    match value.trim().parse::<u64>() {
                        Ok(0) => None,
                        Ok(s) if s <= 86_400 => Some(Duration::from_secs(s)),
                        _ => return Err("the timeout must be a whole number of seconds"),
                    }
                }
            }
            Key::Ignored => {}
        }
        Ok(())
    }

    /// Checks combinations once every key is read.
    pub(crate) fn check(&self) -> Result<(), (Key, ValueError)> {
        if self.trust_server_certificate && self.ssl_mode.verifies() {
            return Err((
                Key::TrustServerCertificate,
                "trusting any server certificate contradicts a verify-ca or verify-full TLS mode",
            ));
        }
        Ok(())
    }
}
