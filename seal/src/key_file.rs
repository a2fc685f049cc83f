//! The vault key file (`pgvault vault export-key`): every version of one
//! vault's key, unwrapped, as JSON. With the datastore it is all that
//! `pgvault recovery-point export` needs to open the vault's points; it is
//! as secret as the data (written 0600, never logged). `Debug` redacts the
//! keys.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::SecretKey;
use crate::key_object::AES_256_GCM;

/// What the file says it is.
pub const KEY_FILE_KIND: &str = "pgvault-vault-key-file";
/// The format version this code writes and reads.
pub const KEY_FILE_FORMAT: u32 = 1;

/// One version of the vault's key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVersion {
    pub version: u32,
    /// base64 of the 32 key bytes.
    pub key: String,
}

/// The key file, as stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// [`KEY_FILE_KIND`].
    pub kind: String,
    /// [`KEY_FILE_FORMAT`]; a reader refuses newer formats.
    pub format_version: u32,
    pub vault_id: String,
    pub algorithm: String,
    /// When the file was written (RFC 3339), for the humans holding it.
    pub exported_at: String,
    /// Every version the vault has, oldest first.
    pub versions: Vec<KeyVersion>,
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let versions: Vec<u32> = self.versions.iter().map(|v| v.version).collect();
        write!(
            f,
            "KeyFile({}, versions {versions:?}, <redacted>)",
            self.vault_id
        )
    }
}

impl KeyFile {
    pub fn new(vault_id: &str, exported_at: &str, versions: &[(u32, SecretKey)]) -> KeyFile {
        KeyFile {
            kind: KEY_FILE_KIND.to_string(),
            format_version: KEY_FILE_FORMAT,
            vault_id: vault_id.to_string(),
            algorithm: AES_256_GCM.to_string(),
            exported_at: exported_at.to_string(),
            versions: versions
                .iter()
                .map(|(version, key)| KeyVersion {
                    version: *version,
                    key: STANDARD.encode(key.expose()),
                })
                .collect(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Parses a key file; the error says what is wrong, never a key.
    pub fn from_json(bytes: &[u8]) -> Result<KeyFile, String> {
        let file: KeyFile = serde_json::from_slice(bytes).map_err(|e| {
            // serde's message may quote the input: keep only its position.
            format!(
                "not a pgvault vault key file (line {}, column {}); make one with `pgvault vault export-key VAULT --out FILE`",
                e.line(),
                e.column()
            )
        })?;
        if file.kind != KEY_FILE_KIND {
            return Err(format!(
                "not a pgvault vault key file (kind \"{}\"); make one with `pgvault vault export-key VAULT --out FILE`",
                file.kind
            ));
        }
        if file.format_version > KEY_FILE_FORMAT || file.format_version == 0 {
            return Err(format!(
                "the key file has format version {}, this version of pgvault reads version {KEY_FILE_FORMAT}",
                file.format_version
            ));
        }
        if file.algorithm != AES_256_GCM {
            return Err(format!(
                "the key file is for \"{}\", this version of pgvault knows only {AES_256_GCM}",
                file.algorithm
            ));
        }
        for v in &file.versions {
            if STANDARD
                .decode(&v.key)
                .ok()
                .and_then(|b| SecretKey::from_slice(&b).ok())
                .is_none()
            {
                return Err(format!(
                    "version {} in the key file is not 32 bytes of base64",
                    v.version
                ));
            }
        }
        Ok(file)
    }

    /// Version `version` of the key, if the file has it.
    pub fn version(&self, version: u32) -> Option<SecretKey> {
        let entry = self.versions.iter().find(|v| v.version == version)?;
        SecretKey::from_slice(&STANDARD.decode(&entry.key).ok()?).ok()
    }

    /// The versions the file holds, for messages.
    pub fn version_list(&self) -> String {
        let list: Vec<String> = self
            .versions
            .iter()
            .map(|v| v.version.to_string())
            .collect();
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_round_trips_every_version_and_never_prints_keys() {
        let (one, two) = (SecretKey::generate(), SecretKey::generate());
        let file = KeyFile::new(
            "prod",
            "2026-01-01T00:00:00Z",
            &[(1, one.clone()), (2, two.clone())],
        );
        let parsed = KeyFile::from_json(&file.to_json()).unwrap();
        assert_eq!(parsed.version(1), Some(one.clone()));
        assert_eq!(parsed.version(2), Some(two));
        assert_eq!(parsed.version(3), None);
        assert_eq!(parsed.version_list(), "1, 2");
        let debug = format!("{parsed:?}");
        assert!(!debug.contains(&STANDARD.encode(one.expose())), "{debug}");
    }

    #[test]
    fn other_files_are_refused_without_quoting_them() {
        let err = KeyFile::from_json(b"{\"secret\": \"hunter2\"").unwrap_err();
        assert!(err.contains("not a pgvault vault key file"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let mut file = KeyFile::new("prod", "t", &[]);
        file.kind = "other".into();
        assert!(KeyFile::from_json(&file.to_json()).is_err());
        let mut newer = KeyFile::new("prod", "t", &[]);
        newer.format_version = 2;
        assert!(
            KeyFile::from_json(&newer.to_json())
                .unwrap_err()
                .contains("format version 2")
        );
    }
}
