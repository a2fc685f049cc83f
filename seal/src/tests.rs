//! The sealed-object format: round trips at every record boundary and each
//! tampering the format promises to detect.

use crate::format::{Opener, SealError, Sealer, open_whole, seal_whole};
use crate::{HEADER_LEN, PointKey, RECORD_PLAINTEXT, is_sealed, sealed_len};

const RECORD: usize = RECORD_PLAINTEXT + 16;

fn key(id: &str, byte: u8) -> PointKey {
    PointKey::new(id, &[byte; 32]).unwrap()
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// Seals `plain` in pushes of `step` bytes, as the chunk writer does.
fn seal_in_steps(key: &PointKey, object: &str, offset: u64, plain: &[u8], step: usize) -> Vec<u8> {
    let mut sealer = Sealer::new(key, object, offset);
    let mut out = Vec::new();
    for piece in plain.chunks(step.max(1)) {
        sealer.push(piece, &mut out).unwrap();
    }
    sealer.finish(&mut out).unwrap();
    out
}

/// Opens `stored` in blocks of `step` bytes, as the chunk reader does.
fn open_in_steps(
    key: &PointKey,
    object: &str,
    offset: u64,
    stored: &[u8],
    step: usize,
) -> Result<Vec<u8>, SealError> {
    let mut opener = Opener::new(key, object, offset);
    let mut out = Vec::new();
    for block in stored.chunks(step.max(1)) {
        opener.push(block, &mut out)?;
    }
    opener.finish(&mut out)?;
    Ok(out)
}

#[test]
fn round_trips_at_every_record_boundary_and_block_size() {
    let k = key("point-1", 1);
    for len in [
        0,
        1,
        RECORD_PLAINTEXT - 1,
        RECORD_PLAINTEXT,
        RECORD_PLAINTEXT + 1,
        3 * RECORD_PLAINTEXT + 17,
    ] {
        let plain = data(len);
        for step in [1000, RECORD_PLAINTEXT, 200_000] {
            let stored = seal_in_steps(&k, "chunks/a.zst", 5, &plain, step);
            assert!(is_sealed(&stored));
            assert_eq!(stored.len() as u64, sealed_len(len as u64), "len {len}");
            for read in [7, RECORD, RECORD + 1, 1 << 21] {
                assert_eq!(
                    open_in_steps(&k, "chunks/a.zst", 5, &stored, read).unwrap(),
                    plain
                );
            }
        }
    }
}

#[test]
fn ciphertext_hides_the_plaintext_and_is_fresh_each_time() {
    let k = key("p", 2);
    let plain = b"distinctive-string-0xC0FFEE ".repeat(100);
    let a = seal_whole(&k, "manifest.json", &plain).unwrap();
    let b = seal_whole(&k, "manifest.json", &plain).unwrap();
    assert_ne!(a, b, "a fresh nonce prefix per stream");
    assert!(!a.windows(19).any(|w| w == b"distinctive-string-"));
    assert_eq!(open_whole(&k, "manifest.json", &a).unwrap(), plain);
}

#[test]
fn a_flipped_byte_anywhere_fails_authentication() {
    let k = key("p", 3);
    let stored = seal_whole(&k, "o", &data(2 * RECORD_PLAINTEXT + 10)).unwrap();
    for at in [HEADER_LEN + 3, HEADER_LEN + RECORD + 5, stored.len() - 1] {
        let mut broken = stored.clone();
        broken[at] ^= 0x01;
        assert!(
            matches!(
                open_whole(&k, "o", &broken),
                Err(SealError::Authentication { .. })
            ),
            "flip at {at}"
        );
    }
    // The header is authenticated too (its nonce prefix).
    let mut broken = stored.clone();
    broken[HEADER_LEN - 1] ^= 0x80;
    assert!(matches!(
        open_whole(&k, "o", &broken),
        Err(SealError::Authentication { record: 0 })
    ));
}

#[test]
fn truncation_is_detected_at_and_between_record_boundaries() {
    let k = key("p", 4);
    let stored = seal_whole(&k, "o", &data(2 * RECORD_PLAINTEXT + 10)).unwrap();
    for keep in [
        0,
        3,
        HEADER_LEN,
        HEADER_LEN + 10,
        HEADER_LEN + RECORD,
        HEADER_LEN + 2 * RECORD,
        stored.len() - 1,
    ] {
        let result = open_whole(&k, "o", &stored[..keep]);
        assert!(result.is_err(), "kept {keep} bytes: {result:?}");
    }
    // Exactly whole non-final records: reported as truncated.
    assert_eq!(
        open_whole(&k, "o", &stored[..HEADER_LEN + 2 * RECORD]),
        Err(SealError::Truncated)
    );
    // An extension after the final record fails too.
    let mut longer = stored.clone();
    longer.extend_from_slice(&stored[HEADER_LEN..HEADER_LEN + RECORD]);
    assert!(open_whole(&k, "o", &longer).is_err());
}

#[test]
fn reordered_records_fail() {
    let k = key("p", 5);
    let stored = seal_whole(&k, "o", &data(3 * RECORD_PLAINTEXT + 1)).unwrap();
    let mut swapped = stored[..HEADER_LEN].to_vec();
    swapped.extend_from_slice(&stored[HEADER_LEN + RECORD..HEADER_LEN + 2 * RECORD]);
    swapped.extend_from_slice(&stored[HEADER_LEN..HEADER_LEN + RECORD]);
    swapped.extend_from_slice(&stored[HEADER_LEN + 2 * RECORD..]);
    assert_eq!(
        open_whole(&k, "o", &swapped),
        Err(SealError::Authentication { record: 0 })
    );
}

#[test]
fn a_stream_moved_to_another_point_object_or_offset_fails() {
    let k = key("point-a", 6);
    let stored = seal_in_steps(&k, "chunks/t1.zst", 100, &data(1000), 1000);
    // Same key bytes but another point id: the AAD differs.
    let other_point = key("point-b", 6);
    assert!(open_in_steps(&other_point, "chunks/t1.zst", 100, &stored, 1 << 20).is_err());
    assert!(open_in_steps(&k, "chunks/t2.zst", 100, &stored, 1 << 20).is_err());
    assert!(open_in_steps(&k, "chunks/t1.zst", 0, &stored, 1 << 20).is_err());
    assert!(open_in_steps(&key("point-a", 7), "chunks/t1.zst", 100, &stored, 1 << 20).is_err());
    assert!(open_in_steps(&k, "chunks/t1.zst", 100, &stored, 1 << 20).is_ok());
}

#[test]
fn an_unsealed_object_is_named_as_such() {
    let k = key("p", 8);
    let zstd_frame = [
        0x28, 0xB5, 0x2F, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    assert_eq!(open_whole(&k, "o", &zstd_frame), Err(SealError::NotSealed));
    assert!(!is_sealed(&zstd_frame));
}

#[test]
fn keys_are_checked_and_never_printed() {
    assert!(
        PointKey::new("p", &[0u8; 16])
            .unwrap_err()
            .contains("16 bytes")
    );
    assert!(PointKey::new("", &[0u8; 32]).is_err());
    let debug = format!("{:?}", key("p", 0xAB));
    assert!(
        !debug.to_lowercase().contains("ab, ") && !debug.contains("171"),
        "{debug}"
    );
    assert!(debug.contains("redacted"));
}
