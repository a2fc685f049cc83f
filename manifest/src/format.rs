//! The manifest's format: it lists every object (with size and SHA-256) a
//! restore needs, plus what the schema archive cannot carry (sequence
//! values, roles, populated materialized views, database properties) and
//! the relations and schemas a selective restore may name. Object paths are
//! relative to the recovery point.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::database::DatabaseProperties;

/// Bumped when a reader of an older version could not restore the new
/// layout. 2: chunks may be [`SegmentEntry`]s of a bundle object shared by
/// many small tables. A manifest records the lowest version that reads it
/// ([`Manifest::required_format_version`]), so points without bundles stay
/// readable by version 1 readers.
pub const FORMAT_VERSION: u32 = 2;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const SCHEMA_FILE: &str = "schema.dump";
/// The server's globals (`pg_dumpall --globals-only --no-role-passwords`).
pub const GLOBALS_FILE: &str = "globals.sql";

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
    /// Every relation a selective restore may name: tables (partitioned
    /// ones and partitions included), views, materialized views and foreign
    /// tables. `None` in manifests written before pgvault recorded it; see
    /// [`Manifest::selectable_relations`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relations: Option<Vec<RelationEntry>>,
    /// Every schema of the database (system schemas excluded), recorded
    /// with `relations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schemas: Option<Vec<String>>,
    /// The server's globals a whole-server restore needs — roles with
    /// their attributes and memberships (never passwords), role and
    /// role-in-database settings, tablespaces — as SQL
    /// (`pg_dumpall --globals-only --no-role-passwords`). Captured by
    /// backups of servers protected whole; `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub globals: Option<ObjectEntry>,
    /// The globals hold the roles' passwords (as the server stores them:
    /// SCRAM or MD5 hashes), which a whole-server protection captures only
    /// when asked and only into an encrypted vault. `false` (the default,
    /// and every manifest written before it existed): no password.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub globals_role_passwords: bool,
    /// Major version of the `pg_dump` that wrote `schema` (and of the
    /// `pg_dumpall` of `globals`): its archive is read only by a
    /// `pg_restore` of that major or newer. `None` in manifests written
    /// before pgvault recorded it, read as the source server's major
    /// ([`Manifest::dump_tools_major`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump_tools_major: Option<u32>,
    /// `key.json` of an encrypted point: its data key wrapped by the vault
    /// key (see `pgvault_seal::key_object`), written before this manifest.
    /// `None` for unencrypted points and those backed up before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_object: Option<ObjectEntry>,
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

/// What kind of relation a [`RelationEntry`] is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RelationKind {
    Table,
    PartitionedTable,
    View,
    MaterializedView,
    ForeignTable,
}

impl RelationKind {
    /// `pg_class.relkind` → kind, for the relations a selection may name.
    pub fn from_relkind(relkind: char) -> Option<RelationKind> {
        Some(match relkind {
            'r' => RelationKind::Table,
            'p' => RelationKind::PartitionedTable,
            'v' => RelationKind::View,
            'm' => RelationKind::MaterializedView,
            'f' => RelationKind::ForeignTable,
            _ => return None,
        })
    }
}

/// A relation a selective restore may name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RelationEntry {
    pub schema: String,
    pub name: String,
    pub kind: RelationKind,
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

/// One COPY stream (text format) as one zstd frame: the whole of `object`,
/// or the `segment` of it when the object is a bundle of small tables.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkEntry {
    pub index: u32,
    /// ctid page range `[start_page, end_page)`; `None` bounds are open.
    pub start_page: Option<u64>,
    pub end_page: Option<u64>,
    /// On servers without TID range scans (before PostgreSQL 14): the
    /// range of the integer primary key this chunk holds instead of pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_range: Option<KeyRange>,
    pub rows: u64,
    /// Uncompressed COPY bytes.
    pub raw_bytes: u64,
    /// The stored object (for a bundle: the whole bundle, shared with the
    /// other tables' chunks that name it).
    pub object: ObjectEntry,
    /// Where in a bundle `object` this chunk's frame is (format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<SegmentEntry>,
    /// Content digest of the chunk's rows, independent of compression and
    /// row order: the sum mod 2^128 of the xxh3-128 of every COPY text row
    /// (without its newline), as 32 hex digits. `None` in points written
    /// before pgvault recorded it (and for large objects' bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_digest: Option<String>,
}

/// A byte range of a bundle object holding one table's zstd frame, with its
/// own SHA-256, so a restore reads and verifies just that range.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SegmentEntry {
    pub offset: u64,
    pub size: u64,
    pub sha256: String,
}

/// A [`ChunkEntry::row_digest`] as written in the manifest.
pub fn format_row_digest(digest: u128) -> String {
    format!("{digest:032x}")
}

/// Parses a [`ChunkEntry::row_digest`]; `None` if it is not 32 hex digits.
pub fn parse_row_digest(text: &str) -> Option<u128> {
    (text.len() == 32)
        .then(|| u128::from_str_radix(text, 16).ok())
        .flatten()
}

impl TableEntry {
    /// The table's row digest, the sum mod 2^128 of its chunks' digests;
    /// `None` when any chunk has none (points written before digests) or
    /// one is malformed.
    pub fn row_digest(&self) -> Option<u128> {
        self.chunks.iter().try_fold(0u128, |sum, chunk| {
            let digest = parse_row_digest(chunk.row_digest.as_deref()?)?;
            Some(sum.wrapping_add(digest))
        })
    }

    /// Rows of every chunk.
    pub fn rows(&self) -> u64 {
        self.chunks.iter().map(|c| c.rows).sum()
    }
}

impl ChunkEntry {
    /// The stored bytes this chunk's frame occupies.
    pub fn stored_range(&self) -> std::ops::Range<u64> {
        match &self.segment {
            Some(s) => s.offset..s.offset + s.size,
            None => 0..self.object.size,
        }
    }

    /// SHA-256 of the stored bytes of [`ChunkEntry::stored_range`].
    pub fn stored_sha256(&self) -> &str {
        match &self.segment {
            Some(s) => &s.sha256,
            None => &self.object.sha256,
        }
    }
}

/// `[start, end)` of an integer primary key column; `None` bounds are open.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyRange {
    pub column: String,
    pub start: Option<i64>,
    pub end: Option<i64>,
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

/// A manifest that cannot be used. Messages name the manifest's path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest {path} is not valid: {reason}")]
    Invalid { path: String, reason: String },
    #[error(
        "manifest {path} has format version {version}, this version of pgvault reads up to {FORMAT_VERSION}"
    )]
    TooNew { path: String, version: u32 },
    #[error("manifest {path} holds a bad object path")]
    BadPath { path: String },
    #[error("manifest {path} has a segment outside its object {object}")]
    BadSegment { path: String, object: String },
}

impl Manifest {
    /// The major of the tools that wrote the point: recorded, else (older
    /// manifests) the source server's.
    pub fn dump_tools_major(&self) -> u32 {
        self.dump_tools_major
            .unwrap_or_else(|| crate::versions::major_of_version_num(self.server_version_num))
    }

    /// The lowest client-tools major that restores this point into a
    /// server of `target_major` (`None`: no server, a SQL script).
    pub fn restore_tools_major(&self, target_major: Option<u32>) -> u32 {
        crate::versions::restore_tools_major(
            crate::versions::major_of_version_num(self.server_version_num),
            self.dump_tools_major(),
            target_major,
        )
    }

    pub fn chunk_count(&self) -> u32 {
        let tables: usize = self.tables.iter().map(|t| t.chunks.len()).sum();
        (tables + usize::from(self.large_objects.is_some())) as u32
    }

    /// The lowest format version that can restore this manifest: 2 with
    /// bundles (a version 1 reader would load a whole bundle into each of
    /// its tables), else 1.
    pub fn required_format_version(&self) -> u32 {
        let bundled = self
            .tables
            .iter()
            .flat_map(|t| t.chunks.iter())
            .any(|c| c.segment.is_some());
        if bundled { 2 } else { 1 }
    }

    /// Every distinct stored object the manifest references (a bundle once),
    /// schema archive first, globals then the key object last.
    pub fn objects(&self) -> Vec<&ObjectEntry> {
        let mut seen = std::collections::HashSet::new();
        std::iter::once(&self.schema)
            .chain(
                self.tables
                    .iter()
                    .flat_map(|t| t.chunks.iter().map(|c| &c.object)),
            )
            .chain(self.large_objects.iter().map(|lo| &lo.data.object))
            .chain(self.globals.iter())
            .chain(self.key_object.iter())
            .filter(|o| seen.insert(o.path.as_str()))
            .collect()
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest always encodes as JSON")
    }

    /// Parses and sanity-checks a manifest read from a datastore; `path`
    /// names it in errors.
    pub fn from_json(bytes: &[u8], path: &str) -> Result<Manifest, ManifestError> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Invalid {
                path: path.to_string(),
                reason: e.to_string(),
            })?;
        if manifest.format_version > FORMAT_VERSION {
            return Err(ManifestError::TooNew {
                path: path.to_string(),
                version: manifest.format_version,
            });
        }
        let all_paths = manifest
            .tables
            .iter()
            .flat_map(|t| t.chunks.iter().map(|c| &c.object.path))
            .chain(manifest.large_objects.iter().map(|lo| &lo.data.object.path))
            .chain(std::iter::once(&manifest.schema.path))
            .chain(manifest.globals.iter().map(|g| &g.path))
            .chain(manifest.key_object.iter().map(|k| &k.path));
        for p in all_paths {
            if p.split('/').any(|s| s == ".." || s.is_empty()) {
                return Err(ManifestError::BadPath {
                    path: path.to_string(),
                });
            }
        }
        for chunk in manifest.tables.iter().flat_map(|t| t.chunks.iter()) {
            if let Some(segment) = &chunk.segment
                && segment
                    .offset
                    .checked_add(segment.size)
                    .is_none_or(|end| end > chunk.object.size)
            {
                return Err(ManifestError::BadSegment {
                    path: path.to_string(),
                    object: chunk.object.path.clone(),
                });
            }
        }
        Ok(manifest)
    }

    /// The relations a selective restore may name. Manifests written before
    /// `relations` was recorded offer what they hold data for: tables, leaf
    /// partitions and populated materialized views (not extensions'
    /// configuration tables: their extension creates them).
    pub fn selectable_relations(&self) -> Vec<RelationEntry> {
        if let Some(relations) = &self.relations {
            return relations.clone();
        }
        let tables = self
            .tables
            .iter()
            .filter(|t| !t.extension_config)
            .map(|t| RelationEntry {
                schema: t.schema.clone(),
                name: t.name.clone(),
                kind: RelationKind::Table,
            });
        let views = self.materialized_views.iter().map(|v| RelationEntry {
            schema: v.schema.clone(),
            name: v.name.clone(),
            kind: RelationKind::MaterializedView,
        });
        tables.chain(views).collect()
    }

    /// The schemas a selective restore may name. Manifests written before
    /// `schemas` was recorded offer the schemas of their relations and
    /// sequences.
    pub fn selectable_schemas(&self) -> Vec<String> {
        if let Some(schemas) = &self.schemas {
            return schemas.clone();
        }
        let mut schemas: Vec<String> = self
            .selectable_relations()
            .into_iter()
            .map(|r| r.schema)
            .chain(self.sequences.iter().map(|s| s.schema.clone()))
            .collect();
        schemas.sort();
        schemas.dedup();
        schemas
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
                    key_range: None,
                    rows: 1,
                    raw_bytes: 2,
                    object,
                    segment: None,
                    row_digest: None,
                }],
            }],
            sequences: vec![],
            materialized_views: vec![],
            large_objects: None,
            database_properties: Default::default(),
            relations: None,
            schemas: None,
            globals: None,
            globals_role_passwords: false,
            dump_tools_major: Some(15),
            key_object: None,
        }
    }

    #[test]
    fn round_trips_and_rejects_bad_paths_and_newer_formats() {
        let manifest = sample();
        let json = manifest.to_json();
        assert_eq!(Manifest::from_json(&json, "m").unwrap(), manifest);
        assert_eq!(manifest.chunk_count(), 1);

        let mut bad = sample();
        bad.tables[0].chunks[0].object.path = "../../etc/passwd".into();
        let err = Manifest::from_json(&bad.to_json(), "m").unwrap_err();
        assert_eq!(err, ManifestError::BadPath { path: "m".into() });

        let mut newer = sample();
        newer.format_version = FORMAT_VERSION + 1;
        let err = Manifest::from_json(&newer.to_json(), "m").unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("format version {}", FORMAT_VERSION + 1)),
            "{err}"
        );
        assert!(matches!(
            Manifest::from_json(b"{", "m").unwrap_err(),
            ManifestError::Invalid { .. }
        ));
    }

    #[test]
    fn manifests_without_the_dump_tools_major_read_as_the_source_major() {
        let mut older = sample();
        older.dump_tools_major = None;
        let json = String::from_utf8(older.to_json()).unwrap();
        assert!(!json.contains("dump_tools_major"), "{json}");
        assert!(!json.contains("globals_role_passwords"), "{json}");
        let read = Manifest::from_json(json.as_bytes(), "m").unwrap();
        assert_eq!(read.dump_tools_major(), 15);
        assert_eq!(read.restore_tools_major(Some(15)), 15);
        assert_eq!(read.restore_tools_major(Some(17)), 17);

        // A 15 server dumped by the 18 tools: only an 18 pg_restore reads it.
        let mut newer_tools = sample();
        newer_tools.dump_tools_major = Some(18);
        let read = Manifest::from_json(&newer_tools.to_json(), "m").unwrap();
        assert_eq!(read.dump_tools_major(), 18);
        assert_eq!(read.restore_tools_major(Some(15)), 18);
        assert_eq!(read.restore_tools_major(None), 18);
    }

    #[test]
    fn bundled_manifests_need_version_2_list_each_object_once_and_keep_segments_inside() {
        let mut manifest = sample();
        assert_eq!(manifest.required_format_version(), 1);
        let version_1 = String::from_utf8(manifest.to_json()).unwrap();
        assert!(!version_1.contains("segment"), "{version_1}");

        let bundle = ObjectEntry {
            path: "data/bundles/00000.copy.zst".into(),
            size: 100,
            sha256: "ee".into(),
        };
        let mut table = manifest.tables[0].clone();
        table.chunks[0].object = bundle.clone();
        table.chunks[0].segment = Some(SegmentEntry {
            offset: 40,
            size: 60,
            sha256: "ff".into(),
        });
        let mut other = table.clone();
        other.oid = 2;
        other.chunks[0].segment = Some(SegmentEntry {
            offset: 0,
            size: 40,
            sha256: "aa".into(),
        });
        manifest.tables = vec![table, other];
        assert_eq!(manifest.required_format_version(), 2);
        assert_eq!(manifest.tables[0].chunks[0].stored_range(), 40..100);
        assert_eq!(manifest.tables[0].chunks[0].stored_sha256(), "ff");
        let paths: Vec<&str> = manifest.objects().iter().map(|o| o.path.as_str()).collect();
        assert_eq!(paths, [SCHEMA_FILE, "data/bundles/00000.copy.zst"]);
        assert_eq!(
            Manifest::from_json(&manifest.to_json(), "m").unwrap(),
            manifest
        );

        manifest.tables[0].chunks[0].segment.as_mut().unwrap().size = 61;
        assert_eq!(
            Manifest::from_json(&manifest.to_json(), "m").unwrap_err(),
            ManifestError::BadSegment {
                path: "m".into(),
                object: "data/bundles/00000.copy.zst".into()
            }
        );
    }

    #[test]
    fn globals_are_listed_last_checked_like_any_object_and_absent_from_older_manifests() {
        let mut manifest = sample();
        let old = String::from_utf8(manifest.to_json()).unwrap();
        assert!(!old.contains("globals"), "{old}");
        manifest.globals = Some(ObjectEntry {
            path: GLOBALS_FILE.into(),
            size: 10,
            sha256: "ab".into(),
        });
        let paths: Vec<&str> = manifest.objects().iter().map(|o| o.path.as_str()).collect();
        assert_eq!(paths.first(), Some(&SCHEMA_FILE));
        assert_eq!(paths.last(), Some(&GLOBALS_FILE));
        assert_eq!(
            Manifest::from_json(&manifest.to_json(), "m").unwrap(),
            manifest
        );
        manifest.globals.as_mut().unwrap().path = "../globals.sql".into();
        assert_eq!(
            Manifest::from_json(&manifest.to_json(), "m").unwrap_err(),
            ManifestError::BadPath { path: "m".into() }
        );
    }

    #[test]
    fn manifests_without_recorded_relations_offer_what_they_hold_data_for() {
        let mut manifest = sample();
        manifest.materialized_views = vec![RelationName {
            schema: "reports".into(),
            name: "totals".into(),
        }];
        manifest.sequences = vec![SequenceEntry {
            schema: "ids".into(),
            name: "s".into(),
            last_value: 1,
            is_called: true,
        }];
        let names: Vec<(String, RelationKind)> = manifest
            .selectable_relations()
            .into_iter()
            .map(|r| (format!("{}.{}", r.schema, r.name), r.kind))
            .collect();
        assert_eq!(
            names,
            vec![
                ("public.t".to_string(), RelationKind::Table),
                ("reports.totals".to_string(), RelationKind::MaterializedView)
            ]
        );
        assert_eq!(
            manifest.selectable_schemas(),
            vec!["ids", "public", "reports"]
        );

        manifest.relations = Some(vec![]);
        manifest.schemas = Some(vec!["empty".into()]);
        assert!(manifest.selectable_relations().is_empty());
        assert_eq!(manifest.selectable_schemas(), vec!["empty"]);
        let json = manifest.to_json();
        assert_eq!(Manifest::from_json(&json, "m").unwrap(), manifest);
    }
}
