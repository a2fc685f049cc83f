//! The engine's [`StageTimes`] as the contract's [`pb::StageSplit`], sent
//! with `CompleteTask` so `pgvault job show` can say where the time went:
//! phases of the wall clock, the data connections' time by stage (summed
//! over connections), the side tasks beside them (schema dump, large
//! objects), and CPU time of compression and decompression.

use std::time::Duration;

use pgvault_engine::StageTimes;
use pgvault_engine::stages::CpuStage;
use pgvault_proto::v1 as pb;

fn time(name: &str, duration: Duration) -> pb::StageTime {
    pb::StageTime {
        name: name.to_string(),
        seconds: duration.as_secs_f64(),
    }
}

/// The split of a finished job that moved `raw_bytes` of COPY data and
/// stored (backups) or read (restores) `stored_bytes`.
pub(super) fn stage_split(times: &StageTimes, raw_bytes: u64, stored_bytes: u64) -> pb::StageSplit {
    // Repeated phase names (a phase entered twice) are summed, in order.
    let mut phases: Vec<pb::StageTime> = Vec::new();
    for phase in &times.phases {
        match phases.iter_mut().find(|p| p.name == phase.name) {
            Some(p) => p.seconds += phase.time.as_secs_f64(),
            None => phases.push(time(&phase.name, phase.time)),
        }
    }
    pb::StageSplit {
        wall_seconds: times.wall.as_secs_f64(),
        raw_bytes,
        stored_bytes,
        connections: times.lanes,
        phases,
        connection_stages: times
            .lane_stages
            .iter()
            .map(|l| time(l.stage.as_str(), l.time))
            .collect(),
        cpu: times
            .cpu
            .iter()
            .map(|c| time(c.stage.as_str(), c.busy))
            .collect(),
        side_tasks: times
            .side_tasks
            .iter()
            .map(|t| time(t.task.as_str(), t.time))
            .collect(),
    }
}

/// Stored bytes a restore read and verified (what the CPU pool hashed).
pub(super) fn bytes_read(times: &StageTimes) -> u64 {
    times
        .cpu
        .iter()
        .filter(|c| c.stage == CpuStage::DecompressVerify)
        .map(|c| c.bytes)
        .sum()
}

#[cfg(test)]
mod tests {
    use pgvault_engine::stages::{CpuTime, LaneStage, LaneTime, PhaseTime, SideTask, SideTime};

    use super::*;

    #[test]
    fn phases_lanes_side_tasks_and_cpu_carry_their_names_and_seconds() {
        let times = StageTimes {
            wall: Duration::from_secs(10),
            phases: vec![
                PhaseTime {
                    name: "connect".into(),
                    time: Duration::from_secs(1),
                },
                PhaseTime {
                    name: "data".into(),
                    time: Duration::from_secs(8),
                },
                PhaseTime {
                    name: "connect".into(),
                    time: Duration::from_secs(1),
                },
            ],
            lanes: 2,
            lane_time: Duration::from_secs(16),
            lane_stages: vec![LaneTime {
                stage: LaneStage::CopyOutWait,
                time: Duration::from_millis(1500),
                count: 3,
            }],
            side_tasks: vec![SideTime {
                task: SideTask::SchemaDump,
                time: Duration::from_millis(2500),
                count: 1,
            }],
            cpu: vec![CpuTime {
                stage: CpuStage::DecompressVerify,
                busy: Duration::from_secs(2),
                bytes: 77,
                jobs: 4,
                off_pool: 0,
            }],
            pool_threads: 2,
            pool_peak_busy: 2,
        };
        let split = stage_split(&times, 1000, bytes_read(&times));
        assert_eq!(
            (
                split.wall_seconds,
                split.raw_bytes,
                split.stored_bytes,
                split.connections
            ),
            (10.0, 1000, 77, 2)
        );
        let phases: Vec<(&str, f64)> = split
            .phases
            .iter()
            .map(|p| (p.name.as_str(), p.seconds))
            .collect();
        assert_eq!(phases, [("connect", 2.0), ("data", 8.0)]);
        assert_eq!(split.connection_stages[0].name, "copy_out_wait");
        assert_eq!(split.connection_stages[0].seconds, 1.5);
        assert_eq!(
            (split.cpu[0].name.as_str(), split.cpu[0].seconds),
            ("decompress_verify", 2.0)
        );
        // The schema dump is a side task, not a third connection.
        assert_eq!(
            (
                split.side_tasks[0].name.as_str(),
                split.side_tasks[0].seconds
            ),
            ("schema_dump", 2.5)
        );
    }
}
