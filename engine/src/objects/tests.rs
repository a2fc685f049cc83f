//! Object round trips on a `file://` datastore: a multi-frame chunk read
//! back whole, a bundle's segments read one by one (each verified on its
//! own), a single small object stored with one put, and corruption or a
//! truncated object failing as checksum mismatches.

use std::sync::Arc;

use pgvault_datastore::Datastore;

use super::{ChunkReader, ChunkWriter, ObjectWriter, Source};
use crate::error::ErrorCode;
use crate::manifest::{ChunkEntry, ObjectEntry, SegmentEntry};
use crate::stages::{Lane, StageClock};

fn rows(n: usize, tag: &str) -> Vec<u8> {
    (0..n)
        .flat_map(|i| format!("{i}\t{tag} row {i} {}\n", "x".repeat(i % 90)).into_bytes())
        .collect()
}

async fn read_all(store: &Datastore, source: Source, clock: &Arc<StageClock>) -> Vec<u8> {
    let mut lane = Lane::start(clock.clone());
    let mut reader = ChunkReader::open(store, "p", source, 2, clock.clone()).unwrap();
    let mut out = Vec::new();
    while let Some(bytes) = reader.next(&mut lane).await.unwrap() {
        out.extend_from_slice(&bytes);
    }
    reader.verify().unwrap();
    out
}

#[tokio::test]
async fn chunks_of_many_frames_and_bundle_segments_read_back_verified() {
    let dir = tempfile::tempdir().unwrap();
    let store = Datastore::open(&format!("file://{}", dir.path().display())).unwrap();
    let clock = Arc::new(StageClock::default());
    let mut lane = Lane::start(clock.clone());

    // 3+ MiB in 1 MiB batches: several zstd frames in one object.
    let big = rows(60_000, "big");
    assert!(big.len() > 3 * 1024 * 1024);
    let mut writer = ChunkWriter::create(
        &store,
        "p",
        "data/1/00000.copy.zst",
        8 << 20,
        2,
        1,
        false,
        clock.clone(),
    );
    for batch in big.chunks(1024 * 1024) {
        writer.write(batch.to_vec(), &mut lane).await.unwrap();
    }
    let (object, segment) = writer.finish(Vec::new(), &mut lane).await.unwrap();
    assert_eq!(
        (segment.raw_bytes, segment.rows),
        (big.len() as u64, 60_000)
    );
    assert_eq!(read_all(&store, Source::whole(&object), &clock).await, big);

    // A bundle: three tables, the middle one empty.
    let tables = [rows(300, "a"), Vec::new(), rows(7, "c")];
    let mut writer = ChunkWriter::create(
        &store,
        "p",
        "data/bundles/00000.copy.zst",
        8 << 20,
        2,
        1,
        true,
        clock.clone(),
    );
    let mut segments = Vec::new();
    for table in &tables {
        let (segment, _) = writer.end_segment(table.clone(), &mut lane).await.unwrap();
        segments.push(segment);
    }
    let bundle = writer.close(&mut lane).await.unwrap();
    assert_eq!(segments.iter().map(|s| s.size).sum::<u64>(), bundle.size);
    for (table, segment) in tables.iter().zip(&segments) {
        let chunk = ChunkEntry {
            index: 0,
            start_page: None,
            end_page: None,
            key_range: None,
            rows: segment.rows,
            raw_bytes: segment.raw_bytes,
            object: bundle.clone(),
            segment: Some(SegmentEntry {
                offset: segment.offset,
                size: segment.size,
                sha256: segment.sha256.clone(),
            }),
            row_digest: None,
        };
        assert!(segment.size > 0, "even an empty table is a valid frame");
        assert_eq!(read_all(&store, Source::of(&chunk), &clock).await, *table);
    }

    // A flipped byte in the last segment fails it, not the first.
    let path = dir.path().join("p/data/bundles/00000.copy.zst");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = &segments[2];
    bytes[(last.offset + last.size / 2) as usize] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let first = Source {
        path: bundle.path.clone(),
        object_size: bundle.size,
        range: segments[0].offset..segments[0].offset + segments[0].size,
        sha256: segments[0].sha256.clone(),
    };
    assert_eq!(read_all(&store, first, &clock).await, tables[0]);
    let broken = Source {
        range: last.offset..last.offset + last.size,
        sha256: last.sha256.clone(),
        ..Source::whole(&bundle)
    };
    let mut reader = ChunkReader::open(&store, "p", broken, 2, clock.clone()).unwrap();
    let failed = loop {
        match reader.next(&mut lane).await {
            Ok(Some(_)) => continue,
            Ok(None) => break reader.verify().unwrap_err(),
            Err(e) => break e,
        }
    };
    assert_eq!(failed.code, ErrorCode::ChecksumMismatch, "{failed}");

    // A truncated object fails on its first read.
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let mut reader =
        ChunkReader::open(&store, "p", Source::whole(&bundle), 2, clock.clone()).unwrap();
    let err = reader.next(&mut lane).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::ChecksumMismatch, "{err}");
    assert!(err.message.contains("holds"), "{err}");
}

#[tokio::test]
async fn small_objects_are_one_file_with_their_hash() {
    let dir = tempfile::tempdir().unwrap();
    let store = Datastore::open(&format!("file://{}", dir.path().display())).unwrap();
    let mut writer = ObjectWriter::create(
        &store,
        "p",
        "schema.dump",
        8 << 20,
        2,
        Arc::new(StageClock::default()),
    );
    writer.write(b"hello ").await.unwrap();
    writer
        .put(bytes::Bytes::from_static(b"world"))
        .await
        .unwrap();
    let entry: ObjectEntry = writer.finish().await.unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("p/schema.dump")).unwrap(),
        b"hello world"
    );
    assert_eq!(entry.size, 11);
    assert_eq!(
        entry.sha256,
        "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    );
}
