//! Sealed objects on a `file://` datastore: a bundle's sealed segments read
//! back one by one, nothing of the plaintext nor a zstd frame visible in
//! what is stored, a flipped byte failing authentication naming the object,
//! a segment read at another offset or under another point's key failing,
//! and a sealed schema archive opened block by block.

use std::sync::Arc;

use pgvault_datastore::Datastore;

use super::{ChunkReader, ChunkWriter, ObjectWriter, Source, StreamOpener, blocks, object_path};
use crate::error::{EngineError, ErrorCode};
use crate::seal::PointKey;
use crate::stages::{Lane, StageClock};

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

fn rows(n: usize, tag: &str) -> Vec<u8> {
    (0..n)
        .flat_map(|i| format!("{i}\tsecret-{tag}-{i}\n").into_bytes())
        .collect()
}

async fn read(
    store: &Datastore,
    source: Source,
    key: Option<&PointKey>,
    clock: &Arc<StageClock>,
) -> Result<Vec<u8>, EngineError> {
    let mut lane = Lane::start(clock.clone());
    let mut reader = ChunkReader::open(store, "p", source, 2, clock.clone())?.sealed(key);
    let mut out = Vec::new();
    while let Some(bytes) = reader.next(&mut lane).await? {
        out.extend_from_slice(&bytes);
    }
    reader.verify()?;
    Ok(out)
}

fn segment_source(path: &str, size: u64, offset: u64, len: u64, sha: &str) -> Source {
    Source {
        path: path.to_string(),
        object_size: size,
        range: offset..offset + len,
        sha256: sha.to_string(),
    }
}

#[tokio::test]
async fn sealed_bundle_segments_read_back_and_tampering_names_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let store = Datastore::open(&format!("file://{}", dir.path().display())).unwrap();
    let clock = Arc::new(StageClock::default());
    let mut lane = Lane::start(clock.clone());
    let key = PointKey::new("point-1", &[9u8; 32]).unwrap();
    let path = "data/bundles/00000.copy.zst";

    let tables = [rows(40_000, "a"), Vec::new(), rows(7, "c")];
    let mut writer = ChunkWriter::create(&store, "p", path, 8 << 20, 2, 1, true, clock.clone())
        .sealed(Some(&key));
    let mut segments = Vec::new();
    for table in &tables {
        // Several batches per segment: several frames in one stream.
        for batch in table.chunks(256 * 1024) {
            writer.write(batch.to_vec(), &mut lane).await.unwrap();
        }
        let (segment, _) = writer.end_segment(Vec::new(), &mut lane).await.unwrap();
        segments.push(segment);
    }
    let bundle = writer.close(&mut lane).await.unwrap();
    assert_eq!(segments.iter().map(|s| s.size).sum::<u64>(), bundle.size);

    let stored = std::fs::read(dir.path().join("p").join(path)).unwrap();
    assert!(
        !stored.windows(7).any(|w| w == b"secret-"),
        "plaintext visible"
    );
    assert!(
        !stored.windows(4).any(|w| w == ZSTD_MAGIC),
        "a zstd frame visible"
    );

    let source = |i: usize| {
        let s = &segments[i];
        segment_source(path, bundle.size, s.offset, s.size, &s.sha256)
    };
    for (i, table) in tables.iter().enumerate() {
        assert_eq!(
            read(&store, source(i), Some(&key), &clock).await.unwrap(),
            *table
        );
    }

    // Without the key: refused as unreadable, never returned as text.
    let err = read(&store, source(0), None, &clock).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::EncryptionKeyUnavailable, "{err}");
    // Another point's key, or the right key at another offset: refused.
    let other = PointKey::new("point-2", &[9u8; 32]).unwrap();
    let err = read(&store, source(2), Some(&other), &clock)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::ObjectAuthenticationFailed, "{err}");
    let moved = Source {
        range: 0..segments[2].size,
        ..source(2)
    };
    assert!(read(&store, moved, Some(&key), &clock).await.is_err());

    // A flipped byte in the first segment: authentication fails, naming it.
    let mut bytes = stored.clone();
    bytes[(segments[0].size / 2) as usize] ^= 0x01;
    std::fs::write(dir.path().join("p").join(path), &bytes).unwrap();
    let err = read(&store, source(0), Some(&key), &clock)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::ObjectAuthenticationFailed, "{err}");
    assert!(err.message.contains(path), "{err}");
    assert_eq!(
        read(&store, source(2), Some(&key), &clock).await.unwrap(),
        tables[2]
    );
}

#[tokio::test]
async fn a_sealed_schema_archive_opens_block_by_block() {
    let dir = tempfile::tempdir().unwrap();
    let store = Datastore::open(&format!("file://{}", dir.path().display())).unwrap();
    let clock = Arc::new(StageClock::default());
    let key = PointKey::new("point-1", &[3u8; 32]).unwrap();
    let archive = rows(200_000, "schema");
    let mut writer = ObjectWriter::create(&store, "p", "schema.dump", 8 << 20, 2, clock.clone())
        .sealed(Some(&key));
    for piece in archive.chunks(300_000) {
        writer.write(piece).await.unwrap();
    }
    let entry = writer.finish().await.unwrap();
    assert!(entry.size > archive.len() as u64);

    let open = |key: Option<PointKey>| {
        let (store, entry, clock) = (store.clone(), entry.clone(), clock.clone());
        async move {
            let path = object_path(&store, "p", &entry.path);
            let mut stream = blocks(&store, path, &entry.path, entry.size, 0..entry.size, 2);
            let mut opener = StreamOpener::new(key.as_ref(), &entry.path, &clock);
            let mut out = Vec::new();
            use futures::StreamExt;
            while let Some(block) = stream.next().await {
                out.extend_from_slice(&opener.push(block?).await?);
            }
            out.extend_from_slice(&opener.finish()?);
            Ok::<_, EngineError>(out)
        }
    };
    assert_eq!(open(Some(key.clone())).await.unwrap(), archive);
    let err = open(None).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::EncryptionKeyUnavailable, "{err}");
}
