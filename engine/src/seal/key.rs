//! [`PointKey`]: a recovery point's data key as a task receives it, kept
//! out of `Debug` (and never `Display`ed), so it cannot reach a log, a span
//! or an error.

use std::fmt;

/// The unwrapped data key of one recovery point and its id (the point's id,
/// bound into every sealed stream's associated data).
#[derive(Clone, PartialEq, Eq)]
pub struct PointKey {
    key_id: String,
    key: [u8; 32],
}

impl PointKey {
    /// `key` must be 32 bytes (AES-256); the error names what is wrong,
    /// never the key.
    pub fn new(key_id: &str, key: &[u8]) -> Result<PointKey, String> {
        let key: [u8; 32] = key.try_into().map_err(|_| {
            format!(
                "the data key of point {key_id} has {} bytes, AES-256-GCM needs 32",
                key.len()
            )
        })?;
        if key_id.is_empty() {
            return Err("a data key needs the id of its recovery point".to_string());
        }
        Ok(PointKey {
            key_id: key_id.to_string(),
            key,
        })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.key
    }
}

impl fmt::Debug for PointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PointKey({}, <redacted>)", self.key_id)
    }
}

impl Drop for PointKey {
    fn drop(&mut self) {
        // Best effort: the key does not outlive its task in memory.
        for byte in self.key.iter_mut() {
            // SAFETY: a plain write to an owned, aligned byte.
            unsafe { std::ptr::write_volatile(byte, 0) };
        }
    }
}
