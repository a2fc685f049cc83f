//! `manifest.json`, the commit point of a recovery point: written last, it
//! lists every object (with size and SHA-256) a restore needs, plus what the
//! schema archive cannot carry (sequence values, roles, populated
//! materialized views). Object paths are relative to the recovery point.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::database_properties::DatabaseProperties;
use super::error::{EngineError, ErrorCode};

/// Bumped when a reader of an older version could not restore the new layout.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const SCHEMA_FILE: &str = "schema.dump";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format_version: u32,
    pub tool: String,
    pub tool_version: String,
    /// `server_version` as reported by the source (e.g. `15.8`).
    pub server_version: String,
    pub server_version_num: i32,
    pub snapshot_time: DateTime<Utc>,
    pub database: String,
    /// Source database encoding and locale, reused when creating the target.
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
    /// The `pg_dump -Fc --schema-only` archive.
    pub schema: ObjectEntry,
    /// Roles owning or granted something in the database (no passwords).
    pub roles: Vec<String>,
    pub tables: Vec<TableEntry>,
    pub sequences: Vec<SequenceEntry>,
    /// Materialized views that were populated: refreshed after post-data.
    pub materialized_views: Vec<RelationName>,
    /// Large objects: metadata and the chunk holding their bytes.
    pub large_objects: Option<LargeObjects>,
    /// Settings, comment, privileges and owner of the database itself
    /// (absent in manifests written before pgvault recorded them).
    #[serde(default)]
    pub database_properties: DatabaseProperties,
}

/// One stored object and how to verify it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectEntry {
    /// Path relative to the recovery point's prefix.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RelationName {
    pub schema: String,
    pub name: String,
}

/// A table (or leaf partition) whose rows are in `chunks`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableEntry {
    /// OID on the source (names the chunk directory).
    pub oid: u32,
    pub schema: String,
    pub name: String,
    /// Columns in COPY order (generated columns excluded).
    pub columns: Vec<String>,
    pub chunks: Vec<ChunkEntry>,
    /// An extension's configuration table: created (and possibly seeded) by
    /// `CREATE EXTENSION`, so its rows are added, never truncated first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub extension_config: bool,
}

/// One COPY stream (text format), zstd-compressed, as one object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkEntry {
    pub index: u32,
    /// ctid page range `[start_page, end_page)`; `None` bounds are open.
    pub start_page: Option<u64>,
    pub end_page: Option<u64>,
    pub rows: u64,
    /// Uncompressed COPY bytes.
    pub raw_bytes: u64,
    pub object: ObjectEntry,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SequenceEntry {
    pub schema: String,
    pub name: String,
    pub last_value: i64,
    pub is_called: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LargeObjects {
    /// (oid, owner) of every large object.
    pub objects: Vec<LargeObjectMeta>,
    /// GRANT statements re-creating their ACLs.
    pub grants: Vec<String>,
    /// Stream of `oid u32 BE | length u64 BE | bytes` records.
    pub data: ChunkEntry,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LargeObjectMeta {
    pub oid: u32,
    pub owner: String,
}

impl Manifest {
    pub fn chunk_count(&self) -> u32 {
        let tables: usize = self.tables.iter().map(|t| t.chunks.len()).sum();
        (tables + usize::from(self.large_objects.is_some())) as u32
    }

    pub fn to_json(&self) -> Result<Vec<u8>, EngineError> {
        serde_json::to_vec_pretty(self)
            .map_err(|e| EngineError::internal(format!("cannot encode manifest: {e}")))
    }

    /// Parses and sanity-checks a manifest read from a datastore.
    pub fn from_json(bytes: &[u8], path: &str) -> Result<Manifest, EngineError> {
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| {
            EngineError::new(
                ErrorCode::ManifestInvalid,
                format!("manifest {path} is not valid: {e}"),
            )
        })?;
        if manifest.format_version > FORMAT_VERSION {
            return Err(EngineError::new(
                ErrorCode::ManifestInvalid,
                format!(
                    "manifest {path} has format version {}, this worker reads up to {FORMAT_VERSION}",
                    manifest.format_version
                ),
            ));
        }
        let all_paths = manifest
            .tables
            .iter()
            .flat_map(|t| t.chunks.iter().map(|c| &c.object.path))
            .chain(std::iter::once(&manifest.schema.path));
        for p in all_paths {
            if p.split('/').any(|s| s == ".." || s.is_empty()) {
                return Err(EngineError::new(
                    ErrorCode::ManifestInvalid,
                    format!("manifest {path} holds a bad object path"),
                ));
            }
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let object = ObjectEntry {
            path: "data/1/00000.copy.zst".into(),
            size: 3,
            sha256: "ab".into(),
        };
        Manifest {
            format_version: FORMAT_VERSION,
            tool: "pgvault".into(),
            tool_version: "0.1.0".into(),
            server_version: "15.8".into(),
            server_version_num: 150008,
            snapshot_time: Utc::now(),
            database: "db".into(),
            encoding: "UTF8".into(),
            collate: "C".into(),
            ctype: "C".into(),
            schema: ObjectEntry {
                path: SCHEMA_FILE.into(),
                size: 1,
                sha256: "cd".into(),
            },
            roles: vec!["app".into()],
            tables: vec![TableEntry {
                extension_config: false,
                oid: 1,
                schema: "public".into(),
                name: "t".into(),
                columns: vec!["a".into()],
                chunks: vec![ChunkEntry {
                    index: 0,
                    start_page: None,
                    end_page: None,
                    rows: 1,
                    raw_bytes: 2,
                    object,
                }],
            }],
            sequences: vec![],
            materialized_views: vec![],
            large_objects: None,
            database_properties: Default::default(),
        }
    }

    #[test]
    fn round_trips_and_rejects_bad_paths_and_newer_formats() {
        let manifest = sample();
        let json = manifest.to_json().unwrap();
        assert_eq!(Manifest::from_json(&json, "m").unwrap(), manifest);
        assert_eq!(manifest.chunk_count(), 1);

        let mut bad = sample();
        bad.tables[0].chunks[0].object.path = "../../etc/passwd".into();
        let err = Manifest::from_json(&bad.to_json().unwrap(), "m").unwrap_err();
        assert_eq!(err.code, ErrorCode::ManifestInvalid);

        let mut newer = sample();
        newer.format_version = FORMAT_VERSION + 1;
        assert!(Manifest::from_json(&newer.to_json().unwrap(), "m").is_err());
        assert_eq!(
            Manifest::from_json(b"{", "m").unwrap_err().code,
            ErrorCode::ManifestInvalid
        );
    }
}
