//! Client-side encryption of a recovery point's objects: the sealed-object
//! format (a STREAM construction over AES-256-GCM, see [`format`]) and the
//! point's data key ([`PointKey`]), which the coordinator unwraps and hands
//! to the task that reads or writes the point — never the vault or master
//! key. Sealing runs on the engine's CPU pool (callers run [`Sealer`] and
//! [`Opener`] inside pool jobs); this module does no I/O.
//!
//! What is sealed: every chunk (each segment of an object is one stream, so
//! a segment of a bundle still reads alone), the schema archive, the
//! globals and the manifest. SHA-256s in the manifest are of the stored
//! (sealed) bytes, so verifying and copying a point needs no key.

mod format;
mod key;
#[cfg(test)]
mod tests;

pub use format::{HEADER_LEN, RECORD_PLAINTEXT, is_sealed, sealed_len};
pub(crate) use format::{Opener, SealError, Sealer, open_whole, seal_whole};
pub use key::PointKey;
