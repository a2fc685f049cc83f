//! Client-side encryption of recovery points, shared by the engine (which
//! seals and opens objects) and the coordinator (which keeps the keys and
//! reads manifests):
//! - [`format`]: the sealed-object format, a STREAM construction over
//!   AES-256-GCM ([`Sealer`], [`Opener`], whole small objects).
//! - [`key`]: [`SecretKey`] and [`PointKey`], unprintable key values.
//! - [`wrap`]: a key wrapped under another (data key under the vault key,
//!   vault key under the coordinator's master key).
//! - [`key_object`]: `key.json`, the point's data key wrapped by its vault
//!   key, stored with the point; [`key_file`]: a vault's exported keys.
//!   Together they open a point without the coordinator.
//!
//! This crate does no I/O and spawns nothing: callers run sealing on their
//! CPU pool. SHA-256s recorded for sealed objects are of the stored bytes,
//! so verifying and copying a point needs no key.

pub mod format;
pub mod key;
pub mod key_file;
pub mod key_object;
#[cfg(test)]
mod tests;
pub mod wrap;

pub use format::{
    HEADER_LEN, Opener, RECORD_PLAINTEXT, SealError, Sealer, is_sealed, open_whole, seal_whole,
    sealed_len,
};
pub use key::{PointKey, SecretKey};
