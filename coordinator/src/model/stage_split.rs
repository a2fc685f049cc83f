//! Where a finished backup's or restore's time went, as its worker reported
//! it ([`StageSplit`]): kept with the attempt that completed the job (a
//! `jsonb` column of `job_attempts`) and shown by `GetJob`/`WatchJob`.

use serde::{Deserialize, Serialize};

/// Seconds spent in one named phase or stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTime {
    pub name: String,
    pub seconds: f64,
}

/// Throughput and the split of one completed attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageSplit {
    pub wall_seconds: f64,
    /// Uncompressed COPY bytes moved; bytes stored (backups) or read (restores).
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    /// Data connections that ran.
    pub connections: u32,
    /// Consecutive phases of the wall clock.
    pub phases: Vec<StageTime>,
    /// All connections' time together, by stage.
    pub connection_stages: Vec<StageTime>,
    /// CPU time of compression and decompression.
    pub cpu: Vec<StageTime>,
}
