//! Large objects, which `pg_dump --schema-only` leaves out: their metadata
//! (oid, owner, ACL as GRANT statements) goes into the manifest and their
//! bytes into one zstd chunk of records
//! `oid u32 BE | (len u32 BE | bytes)* | 0u32`, read and written in slices so
//! memory stays bounded whatever their size.

use bytes::{Buf, BytesMut};
use pgvault_datastore::Datastore;
use tokio_postgres::Client;

use super::error::{EngineError, ErrorCode};
use super::ident::quote_ident;
use super::manifest::{ChunkEntry, LargeObjectMeta, LargeObjects};
use super::objects::{ChunkReader, ChunkWriter, ObjectWriter};
use super::types::EngineOptions;

/// Bytes read or written per `lo_get`/`lo_put` call.
const SLICE: i32 = 1024 * 1024;
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

    let object = ObjectWriter::create(
        store,
        prefix,
        OBJECT_PATH,
        options.part_size,
        options.parts_in_flight,
    )
    .await?;
    let mut writer = ChunkWriter::new(object, options.zstd_level)?;
    let written: Result<(), EngineError> = async {
        for meta in &objects {
            writer.write(&meta.oid.to_be_bytes()).await?;
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
                writer.write(&(data.len() as u32).to_be_bytes()).await?;
                writer.write(&data).await?;
                offset += data.len() as i64;
                if data.len() < SLICE as usize {
                    break;
                }
            }
            writer.write(&0u32.to_be_bytes()).await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = written {
        writer.abort().await;
        return Err(e);
    }
    let (object, raw_bytes, _) = writer.finish().await?;
    let data = ChunkEntry {
        index: 0,
        start_page: None,
        end_page: None,
        rows: objects.len() as u64,
        raw_bytes,
        object,
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
) -> Result<u64, EngineError> {
    let pg = |e: tokio_postgres::Error| {
        EngineError::from_pg(&e, describe).context("restoring large objects")
    };
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
    let mut reader = ChunkReader::open(store, prefix, &large_objects.data.object).await?;
    let mut buffer = BytesMut::new();
    let mut state = Record::Oid;
    let mut raw = 0u64;
    let mut put_offset: i64 = 0;
    loop {
        let next = reader.next().await?;
        let at_end = next.is_none();
        if let Some(bytes) = next {
            raw += bytes.len() as u64;
            buffer.extend_from_slice(&bytes);
        }
        loop {
            match state {
                Record::Oid | Record::Length(_) if buffer.len() < 4 => break,
                Record::Oid => {
                    state = Record::Length(buffer.get_u32());
                    put_offset = 0;
                }
                Record::Length(oid) => match buffer.get_u32() {
                    0 => state = Record::Oid,
                    len => {
                        state = Record::Data {
                            oid,
                            remaining: len as usize,
                        }
                    }
                },
                Record::Data { oid, remaining } => {
                    let take = remaining.min(buffer.len());
                    if take == 0 {
                        break;
                    }
                    let slice = buffer.split_to(take);
                    client
                        .query_one(
                            "SELECT pg_catalog.lo_put($1, $2, $3)",
                            &[&oid, &put_offset, &slice.as_ref()],
                        )
                        .await
                        .map_err(pg)?;
                    put_offset += take as i64;
                    state = if take == remaining {
                        Record::Length(oid)
                    } else {
                        Record::Data {
                            oid,
                            remaining: remaining - take,
                        }
                    };
                }
            }
        }
        if at_end {
            break;
        }
    }
    if !buffer.is_empty() || !matches!(state, Record::Oid) {
        return Err(bad("truncated large object record"));
    }
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

/// Where the record parser stands.
#[derive(Clone, Copy)]
enum Record {
    Oid,
    Length(u32),
    Data { oid: u32, remaining: usize },
}
