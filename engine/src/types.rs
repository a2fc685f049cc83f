//! The engine's inputs and outputs: where to connect ([`PgTarget`]), how hard
//! to work ([`EngineOptions`]), what progress looks like ([`Progress`],
//! per table [`TableProgress`], [`ProgressSink`]) and what a finished job returns.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::manifest::ObjectEntry;
use super::stages::StageTimes;

/// A PostgreSQL server and database to dump from or restore into.
#[derive(Clone, PartialEq, Eq)]
pub struct PgTarget {
    pub host: String,
    pub port: u16,
    /// Source database (backup) or the new database's name (restore).
    pub database: String,
    pub user: String,
    /// Never logged; redacted in `Debug`.
    pub password: String,
    /// libpq sslmode; `""` means `prefer`.
    pub ssl_mode: String,
    /// ADO.NET "Trust Server Certificate": TLS without checking the
    /// certificate (only with modes that do not verify).
    pub trust_server_certificate: bool,
    /// PEM file of root certificates (on the worker) for `verify-ca` and
    /// `verify-full`; `None`: the system's roots.
    pub ssl_root_cert: Option<PathBuf>,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("ssl_mode", &self.ssl_mode)
            .field("trust_server_certificate", &self.trust_server_certificate)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .finish()
    }
}

impl PgTarget {
    /// `server h:p, database "d"` for messages (no user secret).
    pub fn describe(&self) -> String {
        self.describe_db(&self.database)
    }

    pub(crate) fn describe_db(&self, database: &str) -> String {
        format!(
            "server {}:{}, database \"{}\"",
            self.host, self.port, database
        )
    }
}

/// Knobs of a backup or restore. `Default` suits a small worker.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Parallel data connections (besides the snapshot holder).
    pub connections: usize,
    /// zstd level of chunk objects.
    pub zstd_level: i32,
    /// Tables whose main fork is larger than this are split into ctid ranges.
    pub split_threshold_bytes: u64,
    /// Multipart upload part size, and the size of a restore's ranged reads.
    pub part_size: usize,
    /// Part buffers one connection may hold at once: the part being filled
    /// and those uploading (backups), or the ranges read ahead (restores).
    /// Lowered per job so that `connections × parts × part_size` stays
    /// within `memory_budget` (see [`EngineOptions::parts_per_connection`]).
    pub parts_in_flight: usize,
    /// Bytes all connections' part buffers may hold together.
    pub memory_budget: usize,
    /// `lock_timeout` for the ACCESS SHARE locks of a backup.
    pub lock_timeout: Duration,
    /// Directories of pg_dump/pg_restore sets, looked at before the usual
    /// places (`/usr/lib/postgresql/*/bin`, `pg_config`, `PATH`); each
    /// server gets the lowest major at least its own.
    pub pg_bin_dirs: Vec<PathBuf>,
    /// The setting `pg_bin_dirs` comes from, named in errors (e.g.
    /// `worker.pg_bin_dirs`).
    pub pg_bin_dirs_setting: &'static str,
    /// Per task: also capture the server's globals into the point
    /// (`globals.sql`, see the manifest's `globals`), for servers
    /// protected whole.
    pub capture_globals: bool,
    /// Per backup task capturing the globals: include the roles' passwords
    /// (as the server stores them, hashed) — asked on a whole-server
    /// protection and allowed only into an encrypted vault. Reading them
    /// takes a superuser. `false`: `--no-role-passwords`.
    pub capture_role_passwords: bool,
    /// Per restore task restoring the globals: leave out the tablespace
    /// definitions (`CREATE TABLESPACE`, and the grants, comments and
    /// options on them), for a target without their directories. Objects
    /// are always restored into the target's default tablespace.
    pub skip_tablespaces: bool,
    /// Most connections a backup or restore may open to its server at once,
    /// everything included (the worker's share of the server's connection
    /// budget); `None`: not limited. See [`crate::server_budget`].
    pub server_connections: Option<usize>,
    /// Per task: the data key of the recovery point the task writes or
    /// reads (see [`crate::seal`]); `None`: the point is stored unencrypted.
    /// Debug prints no key.
    pub encryption: Option<crate::seal::PointKey>,
    /// Per backup task of an encrypted point: its key object (the data key
    /// wrapped by the vault key), stored as `key.json` before the manifest
    /// so the point opens with the vault's key file alone. `None`: none is
    /// written (unencrypted, or a coordinator that does not send it).
    pub key_object: Option<crate::seal::key_object::KeyObject>,
    /// A backup whose planned data is above this is fanned out across the
    /// fleet even when the job did not ask (see [`crate::fanout`]).
    pub fanout_threshold_bytes: u64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        EngineOptions {
            connections: cores.max(2),
            // Level 1: on COPY text it compresses about as well as gzip -6
            // at a fraction of the CPU (bench/run.sh); higher levels cost
            // 3× the time for a few percent.
            zstd_level: 1,
            // Small enough that a big table keeps every connection busy to
            // the end, large enough that per-chunk costs do not show.
            split_threshold_bytes: 32 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
            parts_in_flight: 2,
            // 16 connections × 1 part × 8 MiB, plus ~3 MiB of pipeline
            // buffers per connection: under 256 MiB resident.
            memory_budget: 128 * 1024 * 1024,
            lock_timeout: Duration::from_secs(30),
            pg_bin_dirs: Vec::new(),
            pg_bin_dirs_setting: "worker.pg_bin_dirs",
            capture_globals: false,
            capture_role_passwords: false,
            skip_tablespaces: false,
            server_connections: None,
            encryption: None,
            key_object: None,
            fanout_threshold_bytes: 4 * 1024 * 1024 * 1024,
        }
    }
}

impl EngineOptions {
    /// Part buffers per connection: `parts_in_flight`, lowered (to no less
    /// than one) so that all connections' parts fit `memory_budget`. A
    /// backup or restore holds at most `connections × this × part_size`
    /// bytes of parts, plus a few MiB of pipeline buffers per connection:
    /// at most `max(memory_budget, connections × part_size)`, since a
    /// connection needs one part however many connections there are (the
    /// defaults exceed their 128 MiB budget above 16 connections).
    pub fn parts_per_connection(&self) -> usize {
        let per_part = self
            .connections
            .max(1)
            .saturating_mul(self.part_size.max(1));
        (self.memory_budget / per_part).clamp(1, self.parts_in_flight.max(1))
    }
}

/// A progress snapshot, reported after every chunk and phase change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Raw (uncompressed COPY) bytes dumped or loaded so far.
    pub bytes_done: u64,
    pub rows_done: u64,
    pub chunks_done: u32,
    pub chunks_total: u32,
    /// `connect`, `schema`, `pre-data`, `data`, `sequences`, `post-data`,
    /// `analyze`, `final flush`, `done`, … (the phases of [`crate::StageTimes`]).
    pub phase: String,
}

/// Where one table of a backup or restore is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableState {
    Queued,
    Running,
    Done,
    Failed,
}

/// Progress of one table (a sub-task), reported whenever it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableProgress {
    /// Schema-qualified name, identifiers quoted where needed.
    pub name: String,
    pub state: TableState,
    pub chunks_done: u32,
    pub chunks_total: u32,
    pub rows: u64,
    /// Uncompressed COPY bytes.
    pub raw_bytes: u64,
    /// Compressed bytes written (backups) or read (restores).
    pub stored_bytes: u64,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
}

/// Receives progress; called from engine tasks, so it must not block.
pub trait ProgressSink: Send + Sync {
    fn report(&self, progress: &Progress);

    /// One table's progress changed (backups and restores only). Sinks
    /// that do not show tables ignore it.
    fn report_table(&self, _table: &TableProgress) {}
}

/// A sink that drops every report.
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn report(&self, _progress: &Progress) {}
}

/// What a completed backup produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    /// When the exported snapshot was taken (server clock).
    pub snapshot_time: DateTime<Utc>,
    /// Bytes written to the datastore (chunks, schema, manifest).
    pub stored_bytes: u64,
    /// Uncompressed COPY bytes.
    pub raw_bytes: u64,
    pub chunk_count: u32,
    /// SHA-256 (hex) of manifest.json: restores verify against it.
    pub manifest_sha256: String,
    pub server_version: String,
    pub rows: u64,
    /// Where the time went.
    pub stages: StageTimes,
}

/// What a completed restore loaded (or wrote, for a restore as files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSummary {
    pub rows: u64,
    /// Uncompressed COPY bytes loaded.
    pub bytes: u64,
    /// Tables whose rows were restored.
    pub tables: u32,
    /// Objects a selective restore left out because they touch a table it
    /// does not restore (e.g. `FK CONSTRAINT app.orders orders_customer_fkey`),
    /// and large objects; empty when everything was restored.
    pub skipped_objects: Vec<String>,
    /// The SQL file written by a restore as files: path (as given), size and
    /// SHA-256; `None` for restores into a database.
    pub output: Option<ObjectEntry>,
    /// Where the time went.
    pub stages: StageTimes,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    fn with(connections: usize, parts_in_flight: usize) -> EngineOptions {
        EngineOptions {
            connections,
            parts_in_flight,
            part_size: 8 * MIB,
            memory_budget: 128 * MIB,
            ..EngineOptions::default()
        }
    }

    /// The bytes of parts the options allow at most.
    fn held(o: &EngineOptions) -> usize {
        o.connections * o.parts_per_connection() * o.part_size
    }

    #[test]
    fn parts_fit_the_budget_until_each_connection_is_down_to_one_part() {
        // Few connections: parts_in_flight, within the budget.
        assert_eq!(with(4, 2).parts_per_connection(), 2);
        assert_eq!(with(4, 8).parts_per_connection(), 4, "128 / (4 × 8)");
        assert_eq!(with(8, 2).parts_per_connection(), 2);
        assert_eq!(with(16, 2).parts_per_connection(), 1);
        assert_eq!(with(0, 0).parts_per_connection(), 1, "zeros count as one");
        for connections in 1..=64 {
            for parts_in_flight in 1..=4 {
                let o = with(connections, parts_in_flight);
                let parts = o.parts_per_connection();
                assert!((1..=parts_in_flight).contains(&parts), "{connections}");
                // The documented bound, exact: the budget, or one part each.
                assert!(
                    held(&o) <= o.memory_budget.max(connections * o.part_size),
                    "{connections} × {parts}"
                );
                if connections <= 16 {
                    assert!(held(&o) <= o.memory_budget, "{connections}");
                }
            }
        }
        // Above 16 connections of 8 MiB, one part each exceeds 128 MiB.
        assert_eq!(with(17, 2).parts_per_connection(), 1);
        assert_eq!(held(&with(32, 2)), 256 * MIB);
    }
}
