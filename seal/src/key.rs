//! Keys as values that cannot be printed: [`SecretKey`] (32 random bytes,
//! zeroed on drop, `Debug` redacted, never `Display`) and [`PointKey`], a
//! recovery point's data key with the point's id, as a task receives it.

use std::fmt;

use aes_gcm::aead::OsRng;
use aes_gcm::aead::rand_core::RngCore;

/// 32 bytes of key material (AES-256).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> SecretKey {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        SecretKey(key)
    }

    /// `bytes` must be 32 long; the error says how long it was, never what.
    pub fn from_slice(bytes: &[u8]) -> Result<SecretKey, String> {
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("a key has {} bytes, AES-256-GCM needs 32", bytes.len()))?;
        Ok(SecretKey(key))
    }

    /// The key material, for sealing and for the task message that carries it.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        // Best effort: key material does not linger in freed memory.
        for byte in self.0.iter_mut() {
            // SAFETY: a plain write to an owned, aligned byte.
            unsafe { std::ptr::write_volatile(byte, 0) };
        }
    }
}

/// The unwrapped data key of one recovery point and its id (the point's id,
/// bound into every sealed stream's associated data).
#[derive(Clone, PartialEq, Eq)]
pub struct PointKey {
    key_id: String,
    key: SecretKey,
}

impl PointKey {
    /// `key` must be 32 bytes (AES-256); the error names what is wrong,
    /// never the key.
    pub fn new(key_id: &str, key: &[u8]) -> Result<PointKey, String> {
        if key_id.is_empty() {
            return Err("a data key needs the id of its recovery point".to_string());
        }
        let key = SecretKey::from_slice(key)
            .map_err(|e| format!("the data key of point {key_id}: {e}"))?;
        Ok(PointKey {
            key_id: key_id.to_string(),
            key,
        })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn secret(&self) -> &SecretKey {
        &self.key
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        self.key.expose()
    }
}

impl fmt::Debug for PointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PointKey({}, <redacted>)", self.key_id)
    }
}
