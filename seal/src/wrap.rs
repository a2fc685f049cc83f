//! Wrapping a key under another: AES-256-GCM with a random 96-bit nonce and
//! associated data naming what the key is (`pgvault-vault-key:{vault}:{version}`
//! under the master key, `pgvault-data-key:{point}` under a vault key), so a
//! wrapped key moved to another row does not unwrap. Stored form:
//! nonce (12) ‖ ciphertext (32) ‖ tag (16).

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};

use crate::SecretKey;

/// Bytes of a wrapped key.
pub const WRAPPED_LEN: usize = 12 + 32 + 16;

/// The associated data of vault key `version` of `vault`.
pub fn vault_key_aad(vault: &str, version: u32) -> String {
    format!("pgvault-vault-key:{vault}:{version}")
}

/// The associated data of the data key of recovery point `point`.
pub fn data_key_aad(point: &str) -> String {
    format!("pgvault-data-key:{point}")
}

/// `key` sealed under `kek`, bound to `aad`.
pub fn wrap(kek: &SecretKey, aad: &str, key: &SecretKey) -> Vec<u8> {
    let aead = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(kek.expose()));
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let sealed = aead
        .encrypt(
            &nonce,
            Payload {
                msg: key.expose(),
                aad: aad.as_bytes(),
            },
        )
        .unwrap_or_default();
    let mut out = Vec::with_capacity(WRAPPED_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// The key `wrapped` holds, if `kek` and `aad` are the ones it was wrapped
/// with (else `None`: a wrong key, a moved row or damaged bytes).
pub fn unwrap(kek: &SecretKey, aad: &str, wrapped: &[u8]) -> Option<SecretKey> {
    if wrapped.len() != WRAPPED_LEN {
        return None;
    }
    let aead = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(kek.expose()));
    let (nonce, sealed) = wrapped.split_at(12);
    let plain = aead
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: aad.as_bytes(),
            },
        )
        .ok()?;
    SecretKey::from_slice(&plain).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_key_unwraps_only_with_its_key_and_label() {
        let (kek, key) = (SecretKey::generate(), SecretKey::generate());
        let wrapped = wrap(&kek, &data_key_aad("p1"), &key);
        assert_eq!(wrapped.len(), WRAPPED_LEN);
        assert_eq!(
            unwrap(&kek, &data_key_aad("p1"), &wrapped),
            Some(key.clone())
        );
        assert_eq!(unwrap(&kek, &data_key_aad("p2"), &wrapped), None);
        assert_eq!(
            unwrap(&SecretKey::generate(), &data_key_aad("p1"), &wrapped),
            None
        );
        let mut broken = wrapped.clone();
        broken[20] ^= 1;
        assert_eq!(unwrap(&kek, &data_key_aad("p1"), &broken), None);
        assert!(!wrapped.windows(32).any(|w| w == key.expose()));
    }
}
