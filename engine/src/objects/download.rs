//! Reading a stored object (or a byte range of it) as a stream of blocks:
//! ranged reads of [`READ_BLOCK`] bytes, `ahead` of them in flight. The
//! first read also checks the object's stored size against what the
//! manifest says, so a truncated or extended object fails as corrupt.

use std::ops::Range;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange};
use pgvault_datastore::Datastore;

use crate::error::{EngineError, ErrorCode, store_error};

/// Stored bytes per ranged read: big enough for few requests (a chunk is a
/// few MiB stored), small enough that 16 connections reading ahead stay
/// well inside the memory bound.
pub(crate) const READ_BLOCK: usize = 2 * 1024 * 1024;

/// Blocks of `range` of the object at `path` (called `name` in messages),
/// whose whole stored size must be `object_size`.
pub(crate) fn blocks(
    store: &Datastore,
    path: Path,
    name: &str,
    object_size: u64,
    range: Range<u64>,
    ahead: usize,
) -> BoxStream<'static, Result<Bytes, EngineError>> {
    let step = READ_BLOCK as u64;
    let ranges: Vec<Range<u64>> = (range.start..range.end)
        .step_by(READ_BLOCK)
        .map(|start| start..(start + step).min(range.end))
        .collect();
    let object_store = store.object_store();
    let name = name.to_string();
    futures::stream::iter(ranges.into_iter().enumerate())
        .map(move |(i, range)| {
            let (object_store, path, name) = (object_store.clone(), path.clone(), name.clone());
            async move {
                let options = GetOptions {
                    range: Some(GetRange::Bounded(range.start as usize..range.end as usize)),
                    ..GetOptions::default()
                };
                let result = object_store
                    .get_opts(&path, options)
                    .await
                    .map_err(|e| store_error(&e, "read", &name, false))?;
                if i == 0 && result.meta.size as u64 != object_size {
                    return Err(EngineError::new(
                        ErrorCode::ChecksumMismatch,
                        format!(
                            "object {name} holds {} bytes, the manifest says {object_size}",
                            result.meta.size
                        ),
                    ));
                }
                result
                    .bytes()
                    .await
                    .map_err(|e| store_error(&e, "read", &name, false))
            }
        })
        .buffered(ahead.max(1))
        .boxed()
}
