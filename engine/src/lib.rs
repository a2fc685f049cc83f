//! The dump/restore engine: consistent, parallel, streaming logical backups
//! of one PostgreSQL database into a datastore, and restores of them (whole
//! or a [`Selection`] of schemas and tables) as a new database or as a plain
//! SQL file. It knows nothing of AMQP or gRPC: callers pass a target, a
//! datastore, a prefix (the recovery point), options, a progress sink and a
//! cancellation token.
//!
//! # Layout
//! - [`types`]: inputs and outputs (`PgTarget`, `EngineOptions`, `Progress`, summaries).
//! - [`error`]: `EngineError` with stable `ErrorCode`s.
//! - [`manifest`]: `manifest.json`, the commit point of a recovery point.
//! - `backup`, `backup_plan`, `backup_data`, `catalog`, `key_ranges`: taking a backup
//!   (small tables share bundle objects, one zstd frame per table);
//!   `globals`: the server's roles, role settings and tablespaces, for
//!   servers protected whole; [`fanout`]: one backup's chunks dumped by
//!   several workers on the leader's snapshot (the [`fanout::ChunkDispatch`] seam).
//! - `restore`, `restore_data`, `post_data`, `restore_plan`,
//!   `restore_schedule`, `analyze`: restoring as a database.
//! - `restore_sql`: restoring as a plain SQL file in a datastore;
//!   `restore_globals`: a point's globals onto a server (whole-server
//!   restores), adjusted by `globals_script` (tablespaces left out when
//!   asked, existing roles' passwords kept).
//! - [`selection`], `toc`, `recovery_point`: selective restores (schema
//!   archive TOC and dependencies) and opening a recovery point.
//! - [`database_properties`]: database settings, comment, privileges, owner.
//! - `large_objects`: large objects both ways.
//! - `objects`: streaming, checksummed object I/O (zstd + multipart),
//!   sealed with the point's data key when [`EngineOptions::encryption`]
//!   is set ([`seal`], the `pgvault-seal` crate).
//! - [`drill`]: restore drills — a point restored into a scratch database,
//!   every table's rows and row digest compared with the manifest.
//! - [`verify`]: verifying a recovery point without a database (the
//!   manifest, every object through the restore's readers, strays).
//! - [`offline`]: finding points in a datastore and opening them with a
//!   vault key file alone (`pgvault recovery-point export`).
//! - [`lifecycle`]: verified copies of recovery points between datastores
//!   (tier moves, rehydrates) and deleting them.
//! - [`stages`]: where the time goes (phases, per-connection lanes, CPU),
//!   returned in every summary; `cpu`: thread CPU time of CPU work.
//! - [`server_budget`]: living within a grant of server connections.
//! - `connect`, `pgtools`, `ident`, `progress`: plumbing; `tool_compat`:
//!   restoring with a `pg_restore` newer than the target server.
//!
//! # Memory and CPU
//! A backup or restore holds at most `connections × parts × part_size`
//! bytes of part buffers (`parts` is
//! [`EngineOptions::parts_per_connection`]: `parts_in_flight`, lowered so
//! that all parts fit `memory_budget`, but never below one), plus about
//! 3 MiB of pipeline buffers per connection (1 MiB COPY batches, 2 MiB
//! ranged reads). The parts' bound is therefore
//! `max(memory_budget, connections × part_size)`: with the defaults (8 MiB
//! parts, 128 MiB budget) 128 MiB up to 16 connections, under 256 MiB
//! resident; above 16 connections one part each exceeds the budget (32
//! connections hold up to 256 MiB of parts). CPU work (zstd, SHA-256, row counts, decompression) runs on
//! one process-wide pool of one thread per core (`cpu`), so CPU parallelism
//! is bounded by the machine, not by the number of connections; network and
//! storage I/O stay async.

mod analyze;
mod backup;
mod backup_data;
mod backup_plan;
mod catalog;
mod connect;
mod cpu;
pub mod database_properties;
pub mod drill;
pub mod error;
pub mod fanout;
mod globals;
mod globals_script;
mod ident;
mod key_ranges;
mod large_objects;
pub mod lifecycle;
pub mod manifest;
pub(crate) mod objects;
pub mod offline;
mod pgtools;
mod post_data;
mod progress;
mod recovery_point;
mod restore;
mod restore_data;
pub mod restore_fanout;
mod restore_globals;
mod restore_plan;
mod restore_schedule;
mod restore_sql;
mod row_digest;
pub mod selection;
pub mod server_budget;
pub mod stages;
mod toc;
mod tool_compat;
pub mod types;
pub mod verify;

pub use backup::{backup, backup_fanned};
pub use drill::{DrillSummary, TableCheck, drill_point};
pub use error::{EngineError, ErrorCode};
pub use manifest::Manifest;
/// The sealed-object format and the point's data key ([`pgvault_seal`]).
pub use pgvault_seal as seal;
pub use restore::{
    RestoreRun, restore_database, restore_database_fanned, restore_database_selected,
};
pub use restore_globals::{GlobalsRestored, restore_globals};
pub use restore_sql::restore_as_sql;
pub use selection::Selection;
pub use stages::{CpuStage, LaneStage, SideTask, StageTimes};
pub use types::{
    BackupSummary, EngineOptions, NoProgress, PgTarget, Progress, ProgressSink, RestoreSummary,
    TableProgress, TableState,
};
pub use verify::{VerifySummary, verify_point};
