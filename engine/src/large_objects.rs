//! Large objects, which `pg_dump --schema-only` leaves out: their metadata
//! (oid, owner, ACL as GRANT statements) goes into the manifest and their
//! bytes into one zstd chunk of records
//! `oid u32 BE | (len u32 BE | bytes)* | 0u32`, read and written in slices so
//! memory stays bounded whatever their size.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use pgvault_datastore::Datastore;
use tokio_postgres::Client;

use super::error::{EngineError, ErrorCode};
use super::ident::quote_ident;
use super::manifest::{ChunkEntry, LargeObjectMeta, LargeObjects};
use super::objects::{ChunkReader, ChunkWriter, Source};
use super::stages::{Lane, SideTask, StageClock};
use super::types::EngineOptions;

/// Bytes read or written per `lo_get`/`lo_put` call.
const SLICE: i32 = 1024 * 1024;
/// Record bytes handed to the compressor at once.
const BATCH: usize = 1024 * 1024;
pub(crate) const OBJECT_PATH: &str = "data/large_objects/00000.lo.zst";

pub(crate) async fn count(client: &Client, describe: &str) -> Result<i64, EngineError> {
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_largeobject_metadata",
            &[],
        )
        .await
        .map_err(|e| EngineError::from_pg(&e, describe))?;
    Ok(row.get(0))
}

/// Dumps every large object visible to the snapshot of `client`.
pub(crate) async fn dump(
    client: &Client,
    describe: &str,
    store: &Datastore,
    prefix: &str,
    options: &EngineOptions,
    clock: &Arc<StageClock>,
) -> Result<LargeObjects, EngineError> {
    let pg = |e: tokio_postgres::Error| {
        EngineError::from_pg(&e, describe).context("dumping large objects")
    };
    let rows = client
        .query("SELECT oid, pg_catalog.pg_get_userbyid(lomowner)::text FROM pg_catalog.pg_largeobject_metadata ORDER BY oid", &[])
        .await
        .map_err(pg)?;
    let objects: Vec<LargeObjectMeta> = rows
        .iter()
        .map(|r| LargeObjectMeta {
            oid: r.get(0),
            owner: r.get(1),
        })
        .collect();
    let grants = client
        .query(
            "SELECT l.oid, a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END, \
                    a.is_grantable \
             FROM pg_catalog.pg_largeobject_metadata l, LATERAL aclexplode(l.lomacl) a \
             WHERE l.lomacl IS NOT NULL AND a.grantee <> l.lomowner ORDER BY 1, 2, 3",
            &[],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| {
            let (oid, privilege, grantee, grantable): (u32, String, String, bool) = (r.get(0), r.get(1), r.get(2), r.get(3));
            let option = if grantable { " WITH GRANT OPTION" } else { "" };
            format!("GRANT {privilege} ON LARGE OBJECT {oid} TO {grantee}{option}")
        })
        .collect();

    let mut lane = Lane::side(clock.clone(), SideTask::LargeObjects);
    let mut writer = ChunkWriter::create(
        store,
        prefix,
        OBJECT_PATH,
        options.part_size,
        options.parts_per_connection(),
        options.zstd_level,
        false,
        clock.clone(),
    )
    .sealed(options.encryption.as_ref());
    // Records are gathered into batches for the compressor.
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH);
    let written: Result<(), EngineError> = async {
        for meta in &objects {
            batch.extend_from_slice(&meta.oid.to_be_bytes());
            let mut offset: i64 = 0;
            loop {
                let row = client
                    .query_one(
                        "SELECT pg_catalog.lo_get($1, $2, $3)",
                        &[&meta.oid, &offset, &SLICE],
                    )
                    .await
                    .map_err(pg)?;
                let data: Vec<u8> = row.get(0);
                if data.is_empty() {
                    break;
                }
                batch.extend_from_slice(&(data.len() as u32).to_be_bytes());
                batch.extend_from_slice(&data);
                offset += data.len() as i64;
                if batch.len() >= BATCH {
                    batch = writer.write(std::mem::take(&mut batch), &mut lane).await?;
                }
                if data.len() < SLICE as usize {
                    break;
                }
            }
            batch.extend_from_slice(&0u32.to_be_bytes());
        }
        Ok(())
    }
    .await;
    if let Err(e) = written {
        writer.abort().await;
        return Err(e);
    }
    let (object, segment) = writer.finish(batch, &mut lane).await?;
    let raw_bytes = segment.raw_bytes;
    let data = ChunkEntry {
        index: 0,
        start_page: None,
        end_page: None,
        key_range: None,
        rows: objects.len() as u64,
        raw_bytes,
        object,
        segment: None,
        row_digest: None,
    };
    Ok(LargeObjects {
        objects,
        grants,
        data,
    })
}

/// Recreates the large objects (oids kept) in the database of `client`.
pub(crate) async fn restore(
    client: &Client,
    describe: &str,
    store: &Datastore,
    prefix: &str,
    large_objects: &LargeObjects,
    options: &EngineOptions,
    clock: &Arc<StageClock>,
) -> Result<u64, EngineError> {
    let pg = |e: tokio_postgres::Error| {
        EngineError::from_pg(&e, describe).context("restoring large objects")
    };
    let mut lane = Lane::side(clock.clone(), SideTask::LargeObjects);
    let bad = |why: &str| {
        EngineError::new(
            ErrorCode::ChecksumMismatch,
            format!(
                "object {} is corrupted: {why}",
                large_objects.data.object.path
            ),
        )
    };
    client.batch_execute("BEGIN").await.map_err(pg)?;
    for meta in &large_objects.objects {
        client
            .query_one("SELECT pg_catalog.lo_create($1)", &[&meta.oid])
            .await
            .map_err(pg)?;
        client
            .batch_execute(&format!(
                "ALTER LARGE OBJECT {} OWNER TO {}",
                meta.oid,
                quote_ident(&meta.owner)
            ))
            .await
            .map_err(pg)?;
    }
    let mut reader = ChunkReader::open(
        store,
        prefix,
        Source::whole(&large_objects.data.object),
        options.parts_per_connection(),
        clock.clone(),
    )?
    .sealed(options.encryption.as_ref());
    let mut records = RecordParser::default();
    let mut raw = 0u64;
    loop {
        let next = reader.next(&mut lane).await?;
        let at_end = next.is_none();
        if let Some(bytes) = next {
            raw += bytes.len() as u64;
            records.push(&bytes);
        }
        while let Some((oid, offset, data)) = records.next_data() {
            client
                .query_one(
                    "SELECT pg_catalog.lo_put($1, $2, $3)",
                    &[&oid, &offset, &data.as_ref()],
                )
                .await
                .map_err(pg)?;
        }
        if at_end {
            break;
        }
    }
    records.finish().map_err(bad)?;
    reader.verify()?;
    if raw != large_objects.data.raw_bytes {
        return Err(bad("unexpected size"));
    }
    for grant in &large_objects.grants {
        client.batch_execute(grant).await.map_err(pg)?;
    }
    client.batch_execute("COMMIT").await.map_err(pg)?;
    Ok(raw)
}

/// Splits the record stream back into `(oid, offset, bytes)` slices, fed
/// with whatever the decompressor produces; memory stays one slice.
#[derive(Default)]
pub(crate) struct RecordParser {
    buffer: BytesMut,
    state: Record,
    offset: i64,
}

/// Where the record parser stands.
#[derive(Clone, Copy, Default)]
enum Record {
    #[default]
    Oid,
    Length(u32),
    Data {
        oid: u32,
        remaining: usize,
    },
}

impl RecordParser {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next slice of large-object bytes available so far.
    pub(crate) fn next_data(&mut self) -> Option<(u32, i64, Bytes)> {
        loop {
            match self.state {
                Record::Oid | Record::Length(_) if self.buffer.len() < 4 => return None,
                Record::Oid => {
                    self.state = Record::Length(self.buffer.get_u32());
                    self.offset = 0;
                }
                Record::Length(oid) => match self.buffer.get_u32() {
                    0 => self.state = Record::Oid,
                    len => {
                        self.state = Record::Data {
                            oid,
                            remaining: len as usize,
                        }
                    }
                },
                Record::Data { oid, remaining } => {
                    let take = remaining.min(self.buffer.len());
                    if take == 0 {
                        return None;
                    }
                    let data = self.buffer.split_to(take).freeze();
                    let offset = self.offset;
                    self.offset += take as i64;
                    self.state = if take == remaining {
                        Record::Length(oid)
                    } else {
                        Record::Data {
                            oid,
                            remaining: remaining - take,
                        }
                    };
                    return Some((oid, offset, data));
                }
            }
        }
    }

    /// At the end of the stream: every record must be complete.
    pub(crate) fn finish(&self) -> Result<(), &'static str> {
        if self.buffer.is_empty() && matches!(self.state, Record::Oid) {
            Ok(())
        } else {
            Err("truncated large object record")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records_split_anywhere() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&7u32.to_be_bytes());
        stream.extend_from_slice(&3u32.to_be_bytes());
        stream.extend_from_slice(b"abc");
        stream.extend_from_slice(&2u32.to_be_bytes());
        stream.extend_from_slice(b"de");
        stream.extend_from_slice(&0u32.to_be_bytes());
        stream.extend_from_slice(&9u32.to_be_bytes());
        stream.extend_from_slice(&0u32.to_be_bytes());
        for step in [1, 2, 5, stream.len()] {
            let mut parser = RecordParser::default();
            let mut got: Vec<(u32, i64, Vec<u8>)> = Vec::new();
            for piece in stream.chunks(step) {
                parser.push(piece);
                while let Some((oid, offset, data)) = parser.next_data() {
                    got.push((oid, offset, data.to_vec()));
                }
            }
            parser.finish().unwrap();
            let joined: Vec<u8> = got.iter().flat_map(|g| g.2.clone()).collect();
            assert_eq!(joined, b"abcde", "step {step}");
            assert!(got.iter().all(|g| g.0 == 7));
            assert_eq!(got.last().map(|g| g.1 + g.2.len() as i64), Some(5));
        }
        let mut parser = RecordParser::default();
        parser.push(&stream[..6]);
        while parser.next_data().is_some() {}
        assert!(parser.finish().is_err());
    }
}
