//! `manifest.json`, the commit point of a recovery point, and the rules both
//! sides of a restore must agree on: the engine writes and reads manifests,
//! the coordinator reads them to check a selective restore before a job is
//! queued. Keeping the format, the naming of relations and the matching of
//! selected names here means the two can never disagree.
//!
//! # Layout
//! - [`format`]: the manifest's types, parsing and sanity checks.
//! - [`database`]: what the manifest records about the database itself.
//! - [`names`]: how relations are named for people and for SQL.
//! - [`selection`]: which schemas and relations a selective restore may name.
//! - [`versions`]: which PostgreSQL majors a recovery point restores into.

pub mod database;
pub mod format;
pub mod names;
pub mod selection;
pub mod versions;

pub use database::{DatabaseGrant, DatabaseProperties, DatabaseSetting};
pub use format::{
    ChunkEntry, FORMAT_VERSION, KeyRange, LargeObjectMeta, LargeObjects, MANIFEST_FILE, Manifest,
    ManifestError, ObjectEntry, RelationEntry, RelationKind, RelationName, SCHEMA_FILE,
    SegmentEntry, SequenceEntry, TableEntry, format_row_digest, parse_row_digest,
};
pub use selection::{Selection, SelectionError};
pub use versions::{OlderTarget, check_restorable};
