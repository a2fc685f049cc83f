//! The key object (`key.json`) in every encrypted recovery point's
//! directory: the point's data key wrapped by one version of its vault's
//! key, so the point can be opened with the datastore and the vault's key
//! file alone (`pgvault recovery-point export`). It holds no plaintext key:
//! the wrapped key is bound to the point id by its associated data
//! ([`data_key_aad`]), so a key object moved to another point does not open.
//! Written before the manifest, which records its size and SHA-256.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::wrap::{WRAPPED_LEN, data_key_aad, unwrap};
use crate::{PointKey, SecretKey};

/// The object's name inside the point's directory.
pub const KEY_OBJECT_FILE: &str = "key.json";
/// The format version this code writes and reads.
pub const KEY_OBJECT_FORMAT: u32 = 1;
/// The only algorithm so far.
pub const AES_256_GCM: &str = "aes-256-gcm";

/// `key.json`, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyObject {
    /// [`KEY_OBJECT_FORMAT`]; a reader refuses newer formats.
    pub format_version: u32,
    /// Sealing algorithm of the point's objects and of the wrapping.
    pub algorithm: String,
    /// The recovery point's id (also the wrapping's associated data).
    pub point_id: String,
    /// The vault whose key wraps the data key.
    pub vault_id: String,
    /// The version of the vault key that wraps it (rotation does not
    /// rewrite this object: the version stays the one at backup time).
    pub vault_key_version: u32,
    /// base64 of nonce (12) ‖ AES-256-GCM(data key) ‖ tag (16), associated
    /// data `pgvault-data-key:{point_id}`.
    pub wrapped_key: String,
}

impl KeyObject {
    pub fn new(point_id: &str, vault_id: &str, vault_key_version: u32, wrapped: &[u8]) -> Self {
        KeyObject {
            format_version: KEY_OBJECT_FORMAT,
            algorithm: AES_256_GCM.to_string(),
            point_id: point_id.to_string(),
            vault_id: vault_id.to_string(),
            vault_key_version,
            wrapped_key: STANDARD.encode(wrapped),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses and checks a stored key object; the error says what is wrong.
    pub fn from_json(bytes: &[u8]) -> Result<KeyObject, String> {
        let object: KeyObject = serde_json::from_slice(bytes)
            .map_err(|e| format!("{KEY_OBJECT_FILE} is not a pgvault key object: {e}"))?;
        if object.format_version > KEY_OBJECT_FORMAT || object.format_version == 0 {
            return Err(format!(
                "{KEY_OBJECT_FILE} has format version {}, this version of pgvault reads version {KEY_OBJECT_FORMAT}",
                object.format_version
            ));
        }
        if object.algorithm != AES_256_GCM {
            return Err(format!(
                "{KEY_OBJECT_FILE} names algorithm \"{}\", this version of pgvault knows only {AES_256_GCM}",
                object.algorithm
            ));
        }
        if object.point_id.is_empty() || object.vault_key_version == 0 {
            return Err(format!(
                "{KEY_OBJECT_FILE} lacks its point id or vault key version"
            ));
        }
        if object.wrapped().map(|w| w.len()) != Some(WRAPPED_LEN) {
            return Err(format!(
                "{KEY_OBJECT_FILE} holds a wrapped key that is not {WRAPPED_LEN} bytes of base64"
            ));
        }
        Ok(object)
    }

    fn wrapped(&self) -> Option<Vec<u8>> {
        STANDARD.decode(&self.wrapped_key).ok()
    }

    /// The point's data key, if `vault_key` is the version it names;
    /// `None`: another key, or an object moved from another point.
    pub fn open(&self, vault_key: &SecretKey) -> Option<PointKey> {
        let data_key = unwrap(vault_key, &data_key_aad(&self.point_id), &self.wrapped()?)?;
        PointKey::new(&self.point_id, data_key.expose()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wrap::wrap;

    fn object(point: &str, vault_key: &SecretKey, data_key: &SecretKey) -> KeyObject {
        let wrapped = wrap(vault_key, &data_key_aad(point), data_key);
        KeyObject::new(point, "prod", 3, &wrapped)
    }

    #[test]
    fn a_key_object_round_trips_and_opens_only_with_its_vault_key_and_point() {
        let (vault_key, data_key) = (SecretKey::generate(), SecretKey::generate());
        let stored = object("p1", &vault_key, &data_key).to_json();
        let parsed = KeyObject::from_json(&stored).unwrap();
        assert_eq!(parsed.vault_key_version, 3);
        let opened = parsed.open(&vault_key).expect("opens");
        assert_eq!(opened.key_id(), "p1");
        assert_eq!(opened.secret(), &data_key);
        assert!(parsed.open(&SecretKey::generate()).is_none());
        let mut moved = parsed.clone();
        moved.point_id = "p2".into();
        assert!(moved.open(&vault_key).is_none(), "bound to its point");
        let text = String::from_utf8(stored).unwrap();
        assert!(!text.contains(&STANDARD.encode(data_key.expose())));
    }

    #[test]
    fn malformed_key_objects_are_refused_with_the_reason() {
        let (vault_key, data_key) = (SecretKey::generate(), SecretKey::generate());
        let good = object("p1", &vault_key, &data_key);
        let mut newer = good.clone();
        newer.format_version = 9;
        assert!(
            KeyObject::from_json(&newer.to_json())
                .unwrap_err()
                .contains("format version 9")
        );
        let mut short = good.clone();
        short.wrapped_key = STANDARD.encode([1u8; 10]);
        assert!(
            KeyObject::from_json(&short.to_json())
                .unwrap_err()
                .contains("60 bytes")
        );
        assert!(
            KeyObject::from_json(b"{}")
                .unwrap_err()
                .contains("not a pgvault key object")
        );
    }
}
