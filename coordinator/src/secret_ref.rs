//! Secret references: how a backup instance or a restore names the
//! credential it connects with.
//!
//! | form | meaning |
//! |---|---|
//! | `secret://NAME` (or the resource name `secrets/NAME`) | the latest version of a stored secret, re-read for every job |
//! | `secret://NAME/3` | version 3 of a stored secret, pinned |
//! | `env://VAR` | the coordinator's environment variable `VAR` |
//! | `file:///abs/path` | a file on the coordinator's machine |
//!
//! Stored secrets are read only by vaults granted access to them
//! (`secret_grants`). `env://` and `file://` values are kept outside pgvault:
//! they are read by the coordinator (never by workers) when a row is
//! validated and every time a job is claimed, and only where the
//! coordinator's configuration allows ([`ExternalSecrets`]): a variable whose
//! name starts with `coordinator.secret_env_prefix`, a file under
//! `coordinator.secret_file_dir`. They need no grant: whoever configured the
//! coordinator put them there for pgvault to use.
//!
//! Parse errors never echo the reference beyond its scheme: a connection
//! string pasted by mistake must not come back in an error.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use pgvault_errors::ErrorCode;

use crate::error::{CoordinatorError, Result};
use crate::model::JobError;

const FORMS: &str =
    "secret://NAME, secret://NAME/VERSION, env://VAR, file:///ABSOLUTE/PATH or secrets/NAME";

/// Where a credential comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// A stored secret; `version: None` follows the latest version.
    Stored { id: String, version: Option<u32> },
    /// An environment variable of the coordinator.
    Env(String),
    /// A file on the coordinator's machine (absolute path).
    File(PathBuf),
}

impl SecretRef {
    /// Parses any accepted form; an `InvalidArgument` on `field` otherwise,
    /// naming the forms expected.
    pub fn parse(field: &str, text: &str) -> Result<SecretRef> {
        let text = text.trim();
        let bad = |why: &str| {
            CoordinatorError::invalid(
                field,
                format!("{why}; a secret reference is one of {FORMS}"),
            )
        };
        if text.is_empty() {
            return Err(bad("a secret reference is required"));
        }
        if let Some(rest) = text.strip_prefix("secrets/") {
            return stored(field, rest, None)
                .map_err(|_| bad("\"secrets/…\" must name a secret id"));
        }
        if let Some(rest) = text.strip_prefix("secret://") {
            let (id, version) =
                match rest.split_once('/') {
                    Some((id, version)) => {
                        let version = version.parse::<u32>().ok().filter(|v| *v >= 1).ok_or_else(
                            || bad("the version in secret://NAME/VERSION must be a number from 1"),
                        )?;
                        (id, Some(version))
                    }
                    None => (rest, None),
                };
            return stored(field, id, version).map_err(|_| {
                bad("secret://NAME must name a secret id (lowercase letters, digits, '-')")
            });
        }
        if let Some(var) = text.strip_prefix("env://") {
            let valid = var.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(bad(
                    "env://VAR must name an environment variable (letters, digits, '_')",
                ));
            }
            return Ok(SecretRef::Env(var.to_string()));
        }
        if let Some(path) = text.strip_prefix("file://") {
            let path = Path::new(path);
            let plain = path.is_absolute()
                && !path.as_os_str().is_empty()
                && !path.to_string_lossy().contains('\0')
                && path
                    .components()
                    .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
            if !plain {
                return Err(bad(
                    "file:// must be followed by an absolute path without \"..\" (file:///etc/pgvault/db1)",
                ));
            }
            return Ok(SecretRef::File(path.to_path_buf()));
        }
        let scheme = text.split_once("://").map(|(s, _)| s).filter(|s| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
        Err(match scheme {
            Some(s) => bad(&format!("the scheme \"{s}\" is not supported")),
            None => bad("the secret reference is in no supported form"),
        })
    }

    /// The stored secret's id, if this names one.
    pub fn stored_id(&self) -> Option<&str> {
        match self {
            SecretRef::Stored { id, .. } => Some(id),
            _ => None,
        }
    }

    /// The name the API shows: `secrets/NAME` for the latest version of a
    /// stored secret (the resource name), the URI otherwise.
    pub fn api_name(&self) -> String {
        match self {
            SecretRef::Stored { id, version: None } => crate::names::secret_name(id),
            other => other.to_string(),
        }
    }
}

fn stored(field: &str, id: &str, version: Option<u32>) -> Result<SecretRef> {
    crate::names::validate_short_id(field, id)?;
    Ok(SecretRef::Stored {
        id: id.to_string(),
        version,
    })
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Stored { id, version: None } => write!(f, "secret://{id}"),
            SecretRef::Stored {
                id,
                version: Some(v),
            } => write!(f, "secret://{id}/{v}"),
            SecretRef::Env(var) => write!(f, "env://{var}"),
            SecretRef::File(path) => write!(f, "file://{}", path.display()),
        }
    }
}

/// Where `env://` and `file://` references may point (coordinator config).
/// Both are off unless configured, since they read the coordinator's own
/// environment and filesystem, which also hold its state-database URL and
/// master key.
#[derive(Debug, Clone, Default)]
pub struct ExternalSecrets {
    /// `env://VAR` works only for variables whose name starts with this.
    pub env_prefix: Option<String>,
    /// `file:///path` works only for files under this directory.
    pub file_dir: Option<PathBuf>,
}

/// A secret reference that cannot be used, as the row or job error users see.
pub fn unusable(code: ErrorCode, message: impl Into<String>) -> CoordinatorError {
    CoordinatorError::SecretUnusable(Box::new(JobError::new(code, message)))
}

impl ExternalSecrets {
    /// Whether this coordinator may read `reference` at all (stored secrets
    /// always; external ones per configuration).
    pub fn check_allowed(&self, reference: &SecretRef) -> Result<()> {
        match reference {
            SecretRef::Stored { .. } => Ok(()),
            SecretRef::Env(var) => match &self.env_prefix {
                Some(prefix) if var.starts_with(prefix.as_str()) => Ok(()),
                Some(prefix) => Err(unusable(
                    ErrorCode::UserErrorInvalidSecret,
                    format!(
                        "{reference} is not allowed: this coordinator reads only environment variables starting with \"{prefix}\""
                    ),
                )),
                None => Err(unusable(
                    ErrorCode::UserErrorInvalidSecret,
                    format!(
                        "{reference} is not allowed: env:// secret references are disabled on this coordinator (the operator enables them with coordinator.secret_env_prefix)"
                    ),
                )),
            },
            SecretRef::File(path) => match &self.file_dir {
                Some(dir) if path.starts_with(dir) => Ok(()),
                Some(dir) => Err(unusable(
                    ErrorCode::UserErrorInvalidSecret,
                    format!(
                        "{reference} is not allowed: this coordinator reads secret files only under {}",
                        dir.display()
                    ),
                )),
                None => Err(unusable(
                    ErrorCode::UserErrorInvalidSecret,
                    format!(
                        "{reference} is not allowed: file:// secret references are disabled on this coordinator (the operator enables them with coordinator.secret_file_dir)"
                    ),
                )),
            },
        }
    }

    /// Reads an external value now. Errors name the reference, never the value.
    pub fn read(&self, reference: &SecretRef) -> Result<crate::secrets::Redacted<String>> {
        self.check_allowed(reference)?;
        match reference {
            SecretRef::Env(var) => std::env::var(var)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(crate::secrets::Redacted)
                .ok_or_else(|| {
                    unusable(
                        ErrorCode::UserErrorInvalidSecret,
                        format!("{reference}: the variable {var} is not set (or empty) in the coordinator's environment; every coordinator needs it (set it and restart them)"),
                    )
                }),
            SecretRef::File(path) => std::fs::canonicalize(path)
                .and_then(|real| {
                    // A symlink must not lead out of the allowed directory.
                    let dir = self.file_dir.as_deref().map(std::fs::canonicalize).transpose()?;
                    if dir.is_some_and(|dir| !real.starts_with(dir)) {
                        return Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
                    }
                    std::fs::read_to_string(real)
                })
                .map(|v| crate::secrets::Redacted(v.trim_end_matches(['\n', '\r']).to_string()))
                .map_err(|e| {
                    unusable(
                        ErrorCode::UserErrorInvalidSecret,
                        format!("{reference}: the coordinator cannot read the file: {}; every coordinator's user must be able to read it", e.kind()),
                    )
                }),
            SecretRef::Stored { .. } => Err(CoordinatorError::internal(
                "stored secrets are not read as external values",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_prints_back() {
        for text in [
            "secret://db1",
            "secret://db1/3",
            "env://PGV_SECRET_DB1",
            "file:///etc/pgvault/db1",
        ] {
            assert_eq!(SecretRef::parse("secret", text).unwrap().to_string(), text);
        }
        let latest = SecretRef::parse("secret", "secrets/db1").unwrap();
        assert_eq!(
            latest,
            SecretRef::Stored {
                id: "db1".into(),
                version: None
            }
        );
        assert_eq!(latest.api_name(), "secrets/db1");
        assert_eq!(
            SecretRef::parse("s", "secret://db1/3").unwrap().api_name(),
            "secret://db1/3"
        );
    }

    #[test]
    fn bad_references_name_the_forms_and_never_echo_the_value() {
        for text in [
            "",
            "secret://",
            "secret://db1/0",
            "secret://db1/x",
            "secret://DB",
            "env://1X",
            "env://A-B",
            "file://relative/path",
            "file:///etc/../shadow",
            "db1",
            "postgresql://u:hunter2@h/db",
            "host=h password=hunter2",
        ] {
            let err = SecretRef::parse("rows[0].secret", text).unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, CoordinatorError::InvalidArgument { .. }),
                "{text}"
            );
            assert!(msg.starts_with("rows[0].secret: "), "{msg}");
            assert!(msg.contains("secret://NAME/VERSION"), "{msg}");
            assert!(!msg.contains("hunter2"), "{msg}");
        }
        let msg = SecretRef::parse("s", "postgresql://u:hunter2@h/db")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("scheme \"postgresql\""), "{msg}");
    }

    #[test]
    fn external_references_are_off_unless_configured() {
        let env = SecretRef::parse("s", "env://PGV_SECRET_X").unwrap();
        let file = SecretRef::parse("s", "file:///srv/secrets/x").unwrap();
        let off = ExternalSecrets::default();
        assert!(off.check_allowed(&env).is_err() && off.check_allowed(&file).is_err());
        let on = ExternalSecrets {
            env_prefix: Some("PGV_SECRET_".into()),
            file_dir: Some("/srv/secrets".into()),
        };
        assert!(on.check_allowed(&env).is_ok() && on.check_allowed(&file).is_ok());
        let other = SecretRef::parse("s", "env://PGVAULT_COORDINATOR__MASTER_KEY").unwrap();
        assert!(on.check_allowed(&other).is_err());
        let outside = SecretRef::parse("s", "file:///srv/secretsx/y").unwrap();
        assert!(on.check_allowed(&outside).is_err());
    }

    #[test]
    fn a_missing_variable_or_file_is_an_invalid_secret_without_the_value() {
        let on = ExternalSecrets {
            env_prefix: Some("PGV_TEST_UNSET_".into()),
            file_dir: Some("/nonexistent".into()),
        };
        for text in ["env://PGV_TEST_UNSET_VAR", "file:///nonexistent/x"] {
            match on.read(&SecretRef::parse("s", text).unwrap()) {
                Err(CoordinatorError::SecretUnusable(e)) => {
                    assert_eq!(e.code, ErrorCode::UserErrorInvalidSecret);
                    assert!(e.message.contains(text), "{}", e.message);
                    assert!(!e.recommended_action.is_empty());
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
