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
    /// Data connections that ran (side tasks are not among them).
    pub connections: u32,
    /// Consecutive phases of the wall clock.
    pub phases: Vec<StageTime>,
    /// All connections' time together, by stage.
    pub connection_stages: Vec<StageTime>,
    /// CPU time of compression and decompression.
    pub cpu: Vec<StageTime>,
    /// Work beside the data connections (schema dump, large objects),
    /// each timed whole; absent from splits stored before it existed.
    #[serde(default)]
    pub side_tasks: Vec<StageTime>,
}

/// The stage workers before side tasks reported the schema dump under, as
/// one more connection.
const LEGACY_SCHEMA_STAGE: &str = "schema_dump";

impl StageSplit {
    /// A split as older workers reported it (and as stored then) counted
    /// the schema dump as a connection with a `schema_dump` stage: that
    /// stage becomes the side task and the connection is taken off, so
    /// per-connection figures divide by the data connections. The rest of
    /// that lane's time (its connect, its upload waits) cannot be told
    /// apart and stays with the connections.
    pub fn without_legacy_schema_lane(mut self) -> StageSplit {
        let Some(at) = self
            .connection_stages
            .iter()
            .position(|s| s.name == LEGACY_SCHEMA_STAGE)
        else {
            return self;
        };
        let schema = self.connection_stages.remove(at);
        self.connections = self.connections.saturating_sub(1);
        if !self
            .side_tasks
            .iter()
            .any(|s| s.name == LEGACY_SCHEMA_STAGE)
        {
            self.side_tasks.insert(0, schema);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(name: &str, seconds: f64) -> StageTime {
        StageTime {
            name: name.into(),
            seconds,
        }
    }

    #[test]
    fn a_legacy_schema_lane_becomes_a_side_task_and_no_connection() {
        let legacy = StageSplit {
            wall_seconds: 10.0,
            raw_bytes: 1,
            stored_bytes: 1,
            connections: 9,
            phases: vec![],
            connection_stages: vec![time("copy_out_wait", 40.0), time("schema_dump", 3.0)],
            cpu: vec![],
            side_tasks: vec![],
        };
        let split = legacy.clone().without_legacy_schema_lane();
        assert_eq!(split.connections, 8);
        assert_eq!(split.connection_stages, [time("copy_out_wait", 40.0)]);
        assert_eq!(split.side_tasks, [time("schema_dump", 3.0)]);
        // A current split is left as it is.
        assert_eq!(split.clone().without_legacy_schema_lane(), split);
        // Stored before side tasks existed: the field defaults to none.
        let mut stored = serde_json::to_value(&legacy).unwrap();
        stored.as_object_mut().unwrap().remove("side_tasks");
        let read: StageSplit = serde_json::from_value(stored).unwrap();
        assert_eq!(read, legacy);
    }
}
