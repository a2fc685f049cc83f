//! `manifest.json`, the commit point of a recovery point: written last, it
//! lists every object (with size and SHA-256) a restore needs. The format
//! lives in [`pgvault_manifest`], shared with the coordinator; this module
//! re-exports it for the engine and maps its errors to job errors.

pub use pgvault_manifest::DatabaseProperties;
pub use pgvault_manifest::format::*;

use super::error::{EngineError, ErrorCode};

impl From<ManifestError> for EngineError {
    fn from(error: ManifestError) -> Self {
        EngineError::new(ErrorCode::ManifestInvalid, error.to_string())
    }
}
