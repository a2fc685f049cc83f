//! Secret handling: AES-256-GCM sealing of stored values (random 96-bit
//! nonce per version), parsing a connection string (any of the three forms,
//! through `pgvault_pgconn`), and [`Redacted`], a wrapper that keeps values
//! out of `Debug` and `Display`.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, OsRng};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
pub use pgvault_pgconn::ConnParams;

use crate::error::{CoordinatorError, Result};

/// A value that must never be printed: `Debug` and `Display` show `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted<T>(pub T);

impl<T> Redacted<T> {
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A sealed secret version as stored.
pub struct Sealed {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// Seals and opens secret values with the configured master key, and
/// wraps vault keys under it ([`Cipher::wrap_key`]).
#[derive(Clone)]
pub struct Cipher {
    aead: Aes256Gcm,
    /// The master key itself, for wrapping keys (`pgvault_seal::wrap`).
    master: pgvault_seal::SecretKey,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher(<redacted>)")
    }
}

impl Cipher {
    pub fn new(master_key: &[u8; 32]) -> Self {
        Cipher {
            aead: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(master_key)),
            master: pgvault_seal::SecretKey::from_slice(master_key)
                .unwrap_or_else(|_| pgvault_seal::SecretKey::generate()),
        }
    }

    /// `key` wrapped under the master key, bound to `aad`.
    pub fn wrap_key(&self, aad: &str, key: &pgvault_seal::SecretKey) -> Vec<u8> {
        pgvault_seal::wrap::wrap(&self.master, aad, key)
    }

    /// The key `wrapped` holds; `None` when the master key (or `aad`) is
    /// not the one it was wrapped with.
    pub fn unwrap_key(&self, aad: &str, wrapped: &[u8]) -> Option<pgvault_seal::SecretKey> {
        pgvault_seal::wrap::unwrap(&self.master, aad, wrapped)
    }

    /// Encrypts `value`; `aad` binds it to its secret id and version.
    pub fn seal(&self, value: &str, aad: &str) -> Result<Sealed> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .aead
            .encrypt(
                &nonce,
                aes_gcm::aead::Payload {
                    msg: value.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CoordinatorError::internal("cannot encrypt secret"))?;
        Ok(Sealed {
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Decrypts a stored version. Fails when the master key differs from the
    /// one it was sealed with.
    pub fn open(&self, sealed: &Sealed, aad: &str) -> Result<Redacted<String>> {
        if sealed.nonce.len() != 12 {
            return Err(CoordinatorError::internal(
                "stored secret has a malformed nonce",
            ));
        }
        let plain = self
            .aead
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                aes_gcm::aead::Payload { msg: &sealed.ciphertext, aad: aad.as_bytes() },
            )
            .map_err(|_| {
                CoordinatorError::FailedPrecondition(
                    "cannot decrypt a stored secret: the coordinator's master key is not the one it was stored with"
                        .into(),
                )
            })?;
        String::from_utf8(plain)
            .map(Redacted)
            .map_err(|_| CoordinatorError::internal("stored secret is not UTF-8"))
    }
}

/// Associated data for a secret version: binds ciphertext to its row.
pub fn secret_aad(secret_id: &str, version: u32) -> String {
    format!("pgvault-secret:{secret_id}:{version}")
}

/// Parses a connection string in any form users have (ADO.NET, libpq
/// `key=value`, `postgresql://` URI; see `pgvault_pgconn`). A secret must
/// name a user; host, port and database come from the server and instance
/// when they are absent. Errors carry the code
/// `UserErrorSecretValueInUnsupportedFormat`, a key and a byte position,
/// never the value.
pub fn parse_connection_string(field: &str, value: &str) -> Result<ConnParams> {
    let params = pgvault_pgconn::parse(value)
        .map_err(|e| CoordinatorError::invalid(field, format!("{}: {e}", e.code())))?;
    if params.user.is_none() {
        return Err(CoordinatorError::invalid(
            field,
            format!(
                "{}: the connection string must name a user (User Id=... or user=...)",
                pgvault_errors::ErrorCode::UserErrorSecretValueInUnsupportedFormat
            ),
        ));
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_and_bind_aad() {
        let cipher = Cipher::new(&[7u8; 32]);
        let sealed = cipher
            .seal("password=hunter2", &secret_aad("db", 1))
            .unwrap();
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            cipher.open(&sealed, &secret_aad("db", 1)).unwrap().expose(),
            "password=hunter2"
        );
        assert!(cipher.open(&sealed, &secret_aad("db", 2)).is_err());
        assert!(
            Cipher::new(&[8u8; 32])
                .open(&sealed, &secret_aad("db", 1))
                .is_err()
        );
    }

    #[test]
    fn parses_all_connection_string_forms() {
        let c = parse_connection_string(
            "value",
            "host=h user=alice password='s3 cret' sslmode=require",
        )
        .unwrap();
        assert_eq!(
            (
                c.user.as_deref(),
                c.password.as_ref().map(|p| p.expose()),
                c.ssl_mode.as_libpq()
            ),
            (Some("alice"), Some("s3 cret"), "require")
        );
        let c = parse_connection_string("value", "postgresql://bob:pw%40x@db.example:5433/app")
            .unwrap();
        assert_eq!(c.password.as_ref().map(|p| p.expose()), Some("pw@x"));
        assert_eq!(c.database.as_deref(), Some("app"));
        let c = parse_connection_string(
            "value",
            "Server=h;Database=d;User Id=carol;Password=x;Ssl Mode=Require;Trust Server Certificate=true",
        )
        .unwrap();
        assert_eq!(c.user.as_deref(), Some("carol"));
        assert!(c.trust_server_certificate);
    }

    #[test]
    fn errors_and_debug_never_show_the_value() {
        let err = parse_connection_string("value", "host=h user=alice password=hunter2 bogus")
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(
            err.to_string()
                .contains("UserErrorSecretValueInUnsupportedFormat")
        );
        let err = parse_connection_string("value", "host=h password=hunter2").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let c = parse_connection_string("value", "user=alice password=hunter2").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(format!("{}", Redacted("x")), "<redacted>");
    }
}
