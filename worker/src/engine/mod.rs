//! The dump/restore engine: consistent, parallel, streaming logical backups
//! of one PostgreSQL database into a datastore, and restores of them as a
//! new database. It knows nothing of AMQP or gRPC: callers pass a target, a
//! datastore, a prefix (the recovery point), options, a progress sink and a
//! cancellation token.
//!
//! # Layout
//! - [`types`]: inputs and outputs (`PgTarget`, `EngineOptions`, `Progress`, summaries).
//! - [`error`]: `EngineError` with stable `ErrorCode`s.
//! - [`manifest`]: `manifest.json`, the commit point of a recovery point.
//! - `backup`, `backup_data`, `catalog`: taking a backup.
//! - `restore`, `restore_data`: restoring as a database.
//! - `large_objects`: large objects both ways.
//! - `objects`: streaming, checksummed object I/O (zstd + multipart).
//! - `connect`, `pgtools`, `ident`, `progress`: plumbing.

mod backup;
mod backup_data;
mod catalog;
mod connect;
pub mod error;
mod ident;
mod large_objects;
pub mod manifest;
mod objects;
mod pgtools;
mod progress;
mod restore;
mod restore_data;
pub mod types;

pub use backup::backup;
pub use error::{EngineError, ErrorCode};
pub use manifest::Manifest;
pub use restore::restore_database;
pub use types::{
    BackupSummary, EngineOptions, NoProgress, PgTarget, Progress, ProgressSink, RestoreSummary,
};
