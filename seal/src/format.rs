//! The sealed-object format, version 1. A sealed **stream** (a whole small
//! object, the schema archive, or one segment of a chunk object) is
//!
//! ```text
//! header (16 bytes): "PGVS" | version 1 | algorithm 1 (AES-256-GCM) | 0 0 0 | nonce prefix (7 random bytes)
//! records:           AES-256-GCM(plaintext piece) ‖ 16-byte tag, each piece 64 KiB,
//!                    the last one shorter (0..64 KiB-1 bytes) and flagged final
//! nonce (12 bytes):  nonce prefix (7) ‖ record counter (u32, big-endian) ‖ final flag (1 or 0)
//! AAD:               "pgvault-seal-v1" 0 ‖ len ‖ key id (the point id) ‖ len ‖ object path
//!                    (relative to the point) ‖ stream offset in the object (u64) ‖ header
//! ```
//!
//! The counter authenticates order (a swapped or repeated record fails),
//! the final flag truncation and extension (a stream must end with exactly
//! one final record, and a full record is never final), the AAD which point,
//! object and position the stream belongs to (a chunk copied from another
//! point or object fails) and the header itself. Reading a stream needs to
//! know where it ends: the manifest records each segment's stored range.

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{AeadInPlace, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce, Tag};

use crate::PointKey;

const MAGIC: &[u8; 4] = b"PGVS";
const VERSION: u8 = 1;
const AES_256_GCM: u8 = 1;
/// Bytes of the stream header.
pub const HEADER_LEN: usize = 16;
/// Plaintext bytes of every record but the last.
pub const RECORD_PLAINTEXT: usize = 64 * 1024;
const TAG_LEN: usize = 16;
const RECORD: usize = RECORD_PLAINTEXT + TAG_LEN;

/// Whether `stored` begins like a sealed stream (the header's magic).
pub fn is_sealed(stored: &[u8]) -> bool {
    stored.starts_with(MAGIC)
}

/// Stored size of a stream of `plaintext` bytes.
pub fn sealed_len(plaintext: u64) -> u64 {
    let full = plaintext / RECORD_PLAINTEXT as u64;
    let rest = plaintext % RECORD_PLAINTEXT as u64;
    HEADER_LEN as u64 + full * RECORD as u64 + rest + TAG_LEN as u64
}

/// Why a stream does not open. Messages name no key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealError {
    /// It does not begin with a sealed header (stored unencrypted).
    NotSealed,
    /// Unknown version or algorithm.
    Unsupported(String),
    /// A record failed authentication: altered, reordered, truncated or
    /// from another point, object or position.
    Authentication { record: u32 },
    /// The stream ends before its header or its final record.
    Truncated,
    /// More than 2^32 records in one stream.
    TooLong,
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealError::NotSealed => f.write_str("it is not sealed (stored unencrypted)"),
            SealError::Unsupported(what) => write!(
                f,
                "it is sealed with {what}, which this build does not read"
            ),
            SealError::Authentication { record } => write!(
                f,
                "record {record} failed authentication: the object was altered, truncated, reordered or belongs to another recovery point or object"
            ),
            SealError::Truncated => {
                f.write_str("it ends before its final record: the object was truncated")
            }
            SealError::TooLong => f.write_str("a sealed stream holds at most 2^32 records"),
        }
    }
}

fn aead(key: &PointKey) -> Aes256Gcm {
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.bytes()))
}

/// Associated data of a stream (without its header, appended once known).
fn aad(key: &PointKey, object: &str, offset: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64 + object.len());
    aad.extend_from_slice(b"pgvault-seal-v1\0");
    for part in [key.key_id().as_bytes(), object.as_bytes()] {
        aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad.extend_from_slice(&offset.to_be_bytes());
    aad
}

fn nonce(prefix: &[u8; 7], counter: u32, last: bool) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..7].copy_from_slice(prefix);
    nonce[7..11].copy_from_slice(&counter.to_be_bytes());
    nonce[11] = u8::from(last);
    nonce
}

/// Seals one stream incrementally: [`Sealer::push`] any amount, then
/// [`Sealer::finish`]. Holds at most one record of plaintext.
pub struct Sealer {
    aead: Aes256Gcm,
    aad: Vec<u8>,
    header: [u8; HEADER_LEN],
    header_written: bool,
    counter: u32,
    pending: Vec<u8>,
}

impl Sealer {
    /// A stream of `object` (path relative to the point) starting at byte
    /// `offset` of it, under a fresh random nonce prefix.
    pub fn new(key: &PointKey, object: &str, offset: u64) -> Sealer {
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(MAGIC);
        header[4] = VERSION;
        header[5] = AES_256_GCM;
        OsRng.fill_bytes(&mut header[9..]);
        let mut aad = aad(key, object, offset);
        aad.extend_from_slice(&header);
        Sealer {
            aead: aead(key),
            aad,
            header,
            header_written: false,
            counter: 0,
            pending: Vec::new(),
        }
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.header_written {
            out.extend_from_slice(&self.header);
            self.header_written = true;
        }
    }

    fn record(&mut self, plain: &[u8], last: bool, out: &mut Vec<u8>) -> Result<(), SealError> {
        let mut prefix = [0u8; 7];
        prefix.copy_from_slice(&self.header[9..]);
        let nonce = nonce(&prefix, self.counter, last);
        let start = out.len();
        out.extend_from_slice(plain);
        let tag = self
            .aead
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &self.aad, &mut out[start..])
            .map_err(|_| SealError::TooLong)?;
        out.extend_from_slice(&tag);
        self.counter = self.counter.checked_add(1).ok_or(SealError::TooLong)?;
        Ok(())
    }

    /// Appends to `out` the header (first call) and every full record.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), SealError> {
        self.start(out);
        if !self.pending.is_empty() {
            let take = (RECORD_PLAINTEXT - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == RECORD_PLAINTEXT {
                let pending = std::mem::take(&mut self.pending);
                self.record(&pending, false, out)?;
                self.pending = pending;
                self.pending.clear();
            }
        }
        while data.len() >= RECORD_PLAINTEXT {
            self.record(&data[..RECORD_PLAINTEXT], false, out)?;
            data = &data[RECORD_PLAINTEXT..];
        }
        self.pending.extend_from_slice(data);
        Ok(())
    }

    /// Appends the final record (what is pending, maybe nothing).
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), SealError> {
        self.start(out);
        let pending = std::mem::take(&mut self.pending);
        self.record(&pending, true, out)
    }
}

/// Opens one stream incrementally: [`Opener::push`] its stored bytes in
/// order, then [`Opener::finish`] at its end. Holds at most one record
/// plus the last block pushed.
pub struct Opener {
    aead: Aes256Gcm,
    aad: Vec<u8>,
    prefix: Option<[u8; 7]>,
    counter: u32,
    buffer: Vec<u8>,
}

impl Opener {
    /// The stream of `object` at byte `offset` of it.
    pub fn new(key: &PointKey, object: &str, offset: u64) -> Opener {
        Opener {
            aead: aead(key),
            aad: aad(key, object, offset),
            prefix: None,
            counter: 0,
            buffer: Vec::new(),
        }
    }

    fn header(&mut self) -> Result<Option<usize>, SealError> {
        if self.prefix.is_some() {
            return Ok(Some(0));
        }
        if self.buffer.len() < HEADER_LEN {
            if !MAGIC.starts_with(&self.buffer[..self.buffer.len().min(4)]) {
                return Err(SealError::NotSealed);
            }
            return Ok(None);
        }
        let header = &self.buffer[..HEADER_LEN];
        if &header[..4] != MAGIC {
            return Err(SealError::NotSealed);
        }
        if header[4] != VERSION || header[5] != AES_256_GCM {
            return Err(SealError::Unsupported(format!(
                "format version {} / algorithm {}",
                header[4], header[5]
            )));
        }
        let mut prefix = [0u8; 7];
        prefix.copy_from_slice(&header[9..]);
        self.aad.extend_from_slice(header);
        self.prefix = Some(prefix);
        Ok(Some(HEADER_LEN))
    }

    fn record(
        &mut self,
        at: usize,
        len: usize,
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), SealError> {
        let prefix = self.prefix.ok_or(SealError::Truncated)?;
        let failed = SealError::Authentication {
            record: self.counter,
        };
        if len < TAG_LEN {
            return Err(SealError::Truncated);
        }
        let body = len - TAG_LEN;
        let nonce = nonce(&prefix, self.counter, last);
        let start = out.len();
        out.extend_from_slice(&self.buffer[at..at + body]);
        let tag = Tag::clone_from_slice(&self.buffer[at + body..at + len]);
        if self
            .aead
            .decrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                &self.aad,
                &mut out[start..],
                &tag,
            )
            .is_err()
        {
            out.truncate(start);
            return Err(failed);
        }
        self.counter = self.counter.checked_add(1).ok_or(SealError::TooLong)?;
        Ok(())
    }

    /// Appends to `out` the plaintext of every record known not to be the
    /// last (a full record followed by more bytes).
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), SealError> {
        self.buffer.extend_from_slice(data);
        let Some(mut at) = self.header()? else {
            return Ok(());
        };
        while self.buffer.len() - at > RECORD {
            self.record(at, RECORD, false, out)?;
            at += RECORD;
        }
        self.buffer.drain(..at);
        Ok(())
    }

    /// At the end of the stream: opens the final record.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), SealError> {
        match self.header()? {
            None => Err(SealError::Truncated),
            Some(at) => {
                let len = self.buffer.len() - at;
                if len < TAG_LEN {
                    return Err(SealError::Truncated);
                }
                self.record(at, len, true, out).map_err(|e| match e {
                    // The last bytes may be a whole non-final record: cut short.
                    SealError::Authentication { .. } if len == RECORD => SealError::Truncated,
                    other => other,
                })
            }
        }
    }
}

/// Seals a small object whole (the manifest, globals).
pub fn seal_whole(key: &PointKey, object: &str, data: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut out = Vec::with_capacity(sealed_len(data.len() as u64) as usize);
    let mut sealer = Sealer::new(key, object, 0);
    sealer.push(data, &mut out)?;
    sealer.finish(&mut out)?;
    Ok(out)
}

/// Opens a small object sealed whole.
pub fn open_whole(key: &PointKey, object: &str, stored: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut out = Vec::with_capacity(stored.len());
    let mut opener = Opener::new(key, object, 0);
    opener.push(stored, &mut out)?;
    opener.finish(&mut out)?;
    Ok(out)
}
