//! PostgreSQL connection strings in the three forms users paste — ADO.NET
//! (`Server=…;Port=…;Database=…;User Id=…;Password=…;Ssl Mode=Require`),
//! libpq `key=value` and `postgresql://` URIs — parsed into one
//! [`ConnParams`], and [`connect`] that honours every libpq TLS mode and
//! classifies failures into job error codes.
//!
//! ```
//! let params = pgvault_pgconn::parse("Server=db;Database=app;User Id=alice;Password=\"p;w\"").unwrap();
//! assert_eq!(params.user.as_deref(), Some("alice"));
//! assert_eq!(params.password.as_ref().map(|p| p.expose()), Some("p;w"));
//! assert!(!format!("{params:?}").contains("p;w"));
//! ```
//!
//! Parse errors ([`ParseError`]) carry the code
//! `UserErrorSecretValueInUnsupportedFormat`, the offending key and a byte
//! position, and never any value: a password cannot leak through them.
//!
//! # Layout
//! - `params`: [`ConnParams`], [`SslMode`], [`Password`] and the keys every
//!   format maps onto.
//! - `libpq`, `uri`, `ado`: one parser and one formatter per format.
//! - `error`: [`ParseError`] and [`ConnectError`] with their codes.
//! - `tls`: rustls client configurations per TLS mode.
//! - `connect`: [`connect`] and error classification by SQLSTATE.

mod ado;
mod connect;
mod error;
mod libpq;
mod params;
mod tls;
mod uri;

pub use connect::{ConnectOptions, Connection, classify, connect};
pub use error::{ConnectError, ConnectFailure, Format, ParseError};
pub use params::{ConnParams, Password, SslMode};

/// Parses a connection string in any of the three forms. The form is told
/// by its shape: `postgres://` or `postgresql://` is a URI; a first key that
/// is not a libpq key name (`Server`, `User Id`, `Password`) or a first value
/// ended by `;` is ADO.NET; anything else is libpq `key=value`.
pub fn parse(text: &str) -> Result<ConnParams, ParseError> {
    match detect(text) {
        Format::Uri => uri::parse(text),
        Format::AdoNet => ado::parse(text),
        Format::Libpq => libpq::parse(text),
    }
}

/// The format [`parse`] reads `text` as.
pub fn detect(text: &str) -> Format {
    let trimmed = text.trim_start();
    let lower: String = trimmed
        .chars()
        .take(13)
        .collect::<String>()
        .to_ascii_lowercase();
    if lower.starts_with("postgresql://") || lower.starts_with("postgres://") {
        return Format::Uri;
    }
    let Some(eq) = trimmed.find('=') else {
        // No pair at all: whichever parser reports it, ADO.NET if it has `;`.
        return if trimmed.contains(';') {
            Format::AdoNet
        } else {
            Format::Libpq
        };
    };
    let key = trimmed[..eq].trim();
    if key.contains(';') || key.chars().any(char::is_whitespace) {
        return Format::AdoNet;
    }
    if crate::libpq::key(key).is_none() {
        // Not a libpq key name (they are lowercase): ADO.NET if it is one of
        // its keys or the text is `;`-separated; else libpq reports it.
        return if ado::key(key).is_some() || trimmed.contains(';') {
            Format::AdoNet
        } else {
            Format::Libpq
        };
    }
    let rest = trimmed[eq + 1..].trim_start_matches([' ', '\t']);
    match rest.chars().next() {
        Some('"') => return Format::AdoNet,
        Some('\'') => return Format::Libpq,
        _ => {}
    }
    match rest.find(|c: char| c == ';' || c.is_ascii_whitespace()) {
        Some(i) if rest[i..].starts_with(';') => Format::AdoNet,
        Some(_) => Format::Libpq,
        None => Format::Libpq,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_form() {
        assert_eq!(detect("postgresql://u@h/db"), Format::Uri);
        assert_eq!(detect("  POSTGRES://h"), Format::Uri);
        assert_eq!(detect("Server=h;Database=d"), Format::AdoNet);
        assert_eq!(detect("User Id=alice"), Format::AdoNet);
        assert_eq!(detect("Server=h"), Format::AdoNet);
        assert_eq!(detect("host = h; port=5432"), Format::AdoNet);
        assert_eq!(detect("host=h password=a;b"), Format::Libpq);
        assert_eq!(detect("host=h"), Format::Libpq);
        assert_eq!(detect("password='x;y' host=h"), Format::Libpq);
        assert_eq!(detect("Password=\"x y\";Host=h"), Format::AdoNet);
        assert_eq!(detect("Password=a b;Host=h"), Format::AdoNet);
        assert_eq!(detect("bogus=1"), Format::Libpq);
    }
}
