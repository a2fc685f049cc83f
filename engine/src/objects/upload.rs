//! Writing one object with bounded memory and no CPU work: bytes are
//! buffered until a part is full; an object smaller than a part is stored
//! with one `put` (one request, not three), a larger one as a multipart
//! upload with at most `parts` part buffers alive — the one being filled
//! and the ones uploading. Callers hash and compress before (on the CPU
//! pool); this is async I/O only.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use pgvault_datastore::Datastore;

use crate::error::{EngineError, store_error};

/// S3's smallest part (all but the last).
const MIN_PART: usize = 5 * 1024 * 1024;

pub(crate) struct Upload {
    store: Arc<dyn ObjectStore>,
    path: Path,
    /// What messages call the object.
    name: String,
    part_size: usize,
    /// Part buffers allowed at once (filling + uploading).
    parts: usize,
    /// Bytes of an object not (yet) larger than a part.
    buffered: Vec<Bytes>,
    buffered_len: usize,
    /// Started once the object outgrows one part.
    multipart: Option<WriteMultipart>,
    size: u64,
}

impl Upload {
    /// Nothing is sent until a part is full or the upload is finished.
    pub(crate) fn new(
        store: &Datastore,
        path: Path,
        name: &str,
        part_size: usize,
        parts: usize,
    ) -> Upload {
        Upload {
            store: store.object_store(),
            path,
            name: name.to_string(),
            part_size: part_size.max(MIN_PART),
            parts: parts.max(1),
            buffered: Vec::new(),
            buffered_len: 0,
            multipart: None,
            size: 0,
        }
    }

    /// Appends `bytes`, waiting first while `parts` part buffers are alive.
    pub(crate) async fn put(&mut self, bytes: Bytes) -> Result<(), EngineError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.size += bytes.len() as u64;
        if let Some(multipart) = &mut self.multipart {
            multipart
                .wait_for_capacity(self.parts)
                .await
                .map_err(|e| store_error(&e, "upload", &self.name, true))?;
            multipart.put(bytes);
            return Ok(());
        }
        self.buffered_len += bytes.len();
        self.buffered.push(bytes);
        if self.buffered_len >= self.part_size {
            let upload = self
                .store
                .put_multipart(&self.path)
                .await
                .map_err(|e| store_error(&e, "start upload of", &self.name, true))?;
            let mut multipart = WriteMultipart::new_with_chunk_size(upload, self.part_size);
            for bytes in self.buffered.drain(..) {
                multipart.put(bytes);
            }
            self.buffered_len = 0;
            self.multipart = Some(multipart);
        }
        Ok(())
    }

    /// Stores what is buffered and completes the upload; returns the size.
    pub(crate) async fn finish(self) -> Result<u64, EngineError> {
        match self.multipart {
            Some(multipart) => {
                multipart
                    .finish()
                    .await
                    .map_err(|e| store_error(&e, "complete upload of", &self.name, true))?;
            }
            None => {
                let payload: PutPayload = self.buffered.into_iter().collect();
                self.store
                    .put(&self.path, payload)
                    .await
                    .map_err(|e| store_error(&e, "write", &self.name, true))?;
            }
        }
        Ok(self.size)
    }

    /// Abandons the upload (best effort: it is never referenced anyway).
    pub(crate) async fn abort(self) {
        if let Some(multipart) = self.multipart
            && let Err(error) = multipart.abort().await
        {
            tracing::debug!(%error, object = %self.name, "could not abort multipart upload");
        }
    }
}
