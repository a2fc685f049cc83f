//! Errors of the datastore crate: bad URLs, stores that cannot be built, and
//! failures creating the directory, bucket or container.

/// The datastore URL forms pgvault accepts, quoted in every URL error.
pub const ACCEPTED_FORMS: &str = "file:///abs/dir, /abs/dir, \
s3://bucket/prefix?endpoint=..&region=..&allow_http=true, \
az://container/prefix?account=..&endpoint=..&emulator=true";

#[derive(Debug, thiserror::Error)]
pub enum DatastoreError {
    /// The URL cannot be understood; `reason` names the problem.
    #[error("invalid datastore url: {reason} (accepted forms: {ACCEPTED_FORMS})")]
    InvalidUrl { reason: String },

    /// object_store refused the configuration; `reason` is its error with
    /// URLs redacted (see `redact`), so the error is kept as text only.
    #[error("cannot open datastore {url}: {reason}")]
    Open { url: String, reason: String },

    /// The directory, bucket or container could not be created or reached.
    #[error("cannot create datastore {url}: {reason}")]
    Create { url: String, reason: String },

    /// Written objects could not be made durable (flushed to disk).
    #[error("cannot flush datastore {url} to disk: {source}")]
    Flush {
        url: String,
        #[source]
        source: std::io::Error,
    },
}

impl DatastoreError {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        DatastoreError::InvalidUrl {
            reason: reason.into(),
        }
    }
}
