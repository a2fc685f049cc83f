//! Where a backup's or restore's time goes, measured cheaply (a few
//! `Instant`s and atomics per batch of rows, never per row).
//!
//! Three views, each adding up on its own:
//! - **phases**: the job's wall clock cut into consecutive phases
//!   (`connect`, `data`, `final flush`, …); they sum to the wall time.
//! - **lanes**: every data connection is a lane, in exactly one
//!   [`LaneStage`] at a time (waiting for COPY data, for the CPU pool, for an
//!   upload, for the server to take COPY FROM data, building an index, …);
//!   the stages sum to the lanes' lifetimes. A lane's split says what its
//!   connection waited for. Work beside the data connections (the schema
//!   dump's own `pg_dump` connection, large objects on the snapshot's or
//!   the maintenance connection) is a [`SideTask`], timed whole and kept
//!   apart, so `lanes` is the number of data connections and per-connection
//!   figures divide by it.
//! - **cpu**: thread CPU time of the CPU-bound steps ([`CpuStage`]:
//!   compress + hash, decompress + verify, row counting), and how many of
//!   those steps ran off the CPU pool (on an async runtime thread); zero is
//!   the pool's promise (see `cpu_pool`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a data connection (a lane) is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LaneStage {
    /// Connecting and setting the session up (snapshot, settings).
    Connect,
    /// Taking COPY rows off the connection (client work on the runtime).
    CopyOutReceive,
    /// Waiting for the server's COPY data.
    CopyOutWait,
    /// Waiting until a batch is compressed and hashed.
    Compress,
    /// Waiting for an upload (a free part slot, or the upload's completion).
    UploadWait,
    /// Waiting for stored bytes from the datastore.
    DownloadWait,
    /// Waiting until stored bytes are verified and decompressed.
    Decompress,
    /// Waiting for the server to take `COPY … FROM` data, or to commit it.
    CopyInWait,
    /// Building an index (a restore's `CREATE INDEX`, constraint indexes included).
    IndexBuild,
    /// Other post-data entries: foreign keys, triggers, rules, …
    PostData,
    /// `ANALYZE` of a restored table.
    Analyze,
    /// Nothing ready for this connection (work waits on other work).
    Idle,
}

impl LaneStage {
    pub const ALL: [LaneStage; 12] = [
        LaneStage::Connect,
        LaneStage::CopyOutReceive,
        LaneStage::CopyOutWait,
        LaneStage::Compress,
        LaneStage::UploadWait,
        LaneStage::DownloadWait,
        LaneStage::Decompress,
        LaneStage::CopyInWait,
        LaneStage::IndexBuild,
        LaneStage::PostData,
        LaneStage::Analyze,
        LaneStage::Idle,
    ];

    /// The stable name (bench JSON, job details).
    pub fn as_str(self) -> &'static str {
        match self {
            LaneStage::Connect => "connect",
            LaneStage::CopyOutReceive => "copy_out_receive",
            LaneStage::CopyOutWait => "copy_out_wait",
            LaneStage::Compress => "compress",
            LaneStage::UploadWait => "upload_wait",
            LaneStage::DownloadWait => "download_wait",
            LaneStage::Decompress => "decompress",
            LaneStage::CopyInWait => "copy_in_wait",
            LaneStage::IndexBuild => "index_build",
            LaneStage::PostData => "post_data",
            LaneStage::Analyze => "analyze",
            LaneStage::Idle => "idle",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Work beside the data connections, timed from start to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SideTask {
    /// `pg_dump --schema-only` streaming the schema archive, on a
    /// connection of its own (alongside the data when the grant allows).
    SchemaDump,
    /// Large objects, dumped on the snapshot's connection or restored on
    /// the maintenance connection, after the data.
    LargeObjects,
}

impl SideTask {
    pub const ALL: [SideTask; 2] = [SideTask::SchemaDump, SideTask::LargeObjects];

    /// The stable name (bench JSON, job details).
    pub fn as_str(self) -> &'static str {
        match self {
            SideTask::SchemaDump => "schema_dump",
            SideTask::LargeObjects => "large_objects",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// CPU-bound steps, measured in thread CPU time where they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CpuStage {
    /// zstd compression of COPY text, row counting and SHA-256 of the result.
    CompressHash,
    /// SHA-256 of stored bytes and zstd decompression.
    DecompressVerify,
    /// SHA-256 of uncompressed objects (schema archive, scripts).
    Hash,
}

impl CpuStage {
    pub const ALL: [CpuStage; 3] = [
        CpuStage::CompressHash,
        CpuStage::DecompressVerify,
        CpuStage::Hash,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CpuStage::CompressHash => "compress_hash",
            CpuStage::DecompressVerify => "decompress_verify",
            CpuStage::Hash => "hash",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One phase of the job's wall clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseTime {
    pub name: String,
    pub time: Duration,
}

/// Time all lanes spent in one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneTime {
    pub stage: LaneStage,
    pub time: Duration,
    /// Times a lane entered the stage.
    pub count: u64,
}

/// Time of one side task (summed if it ran more than once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideTime {
    pub task: SideTask,
    pub time: Duration,
    pub count: u64,
}

/// CPU time of one CPU-bound step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTime {
    pub stage: CpuStage,
    /// Thread CPU time (user + system) spent in the step.
    pub busy: Duration,
    /// Input bytes the step processed.
    pub bytes: u64,
    pub jobs: u64,
    /// Jobs that ran on a thread of an async runtime instead of the CPU pool.
    pub off_pool: u64,
}

/// The stage split of one finished backup or restore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageTimes {
    pub wall: Duration,
    /// Consecutive phases; they add up to `wall`.
    pub phases: Vec<PhaseTime>,
    /// Data connections (lanes) that ran; side tasks are not among them.
    pub lanes: u32,
    /// Sum of the lanes' lifetimes; `lane_stages` add up to it.
    pub lane_time: Duration,
    /// Stages with time spent in them, in [`LaneStage::ALL`] order.
    pub lane_stages: Vec<LaneTime>,
    /// Side tasks that ran, in [`SideTask::ALL`] order.
    pub side_tasks: Vec<SideTime>,
    /// CPU steps that ran, in [`CpuStage::ALL`] order.
    pub cpu: Vec<CpuTime>,
    /// Threads of the CPU pool, and the most CPU steps that ran at once
    /// (anywhere in the process) while this job's did.
    pub pool_threads: u32,
    pub pool_peak_busy: u32,
}

impl StageTimes {
    /// Time of one lane stage (zero if no lane entered it).
    pub fn lane(&self, stage: LaneStage) -> Duration {
        self.lane_stages
            .iter()
            .find(|l| l.stage == stage)
            .map(|l| l.time)
            .unwrap_or_default()
    }

    /// Time of one side task (zero if it did not run).
    pub fn side(&self, task: SideTask) -> Duration {
        self.side_tasks
            .iter()
            .find(|t| t.task == task)
            .map(|t| t.time)
            .unwrap_or_default()
    }

    /// CPU time of one CPU step (zero if it never ran).
    pub fn cpu_busy(&self, stage: CpuStage) -> Duration {
        self.cpu
            .iter()
            .find(|c| c.stage == stage)
            .map(|c| c.busy)
            .unwrap_or_default()
    }

    /// Wall time of a phase (zero if it did not happen).
    pub fn phase(&self, name: &str) -> Duration {
        self.phases
            .iter()
            .filter(|p| p.name == name)
            .map(|p| p.time)
            .sum()
    }
}

const LANES: usize = LaneStage::ALL.len();
const CPUS: usize = CpuStage::ALL.len();
const SIDES: usize = SideTask::ALL.len();

/// The counters of one job; shared by its lanes and CPU jobs.
pub(crate) struct StageClock {
    started: Instant,
    lane_ns: [AtomicU64; LANES],
    lane_count: [AtomicU64; LANES],
    lanes: AtomicU64,
    lane_total_ns: AtomicU64,
    side_ns: [AtomicU64; SIDES],
    side_count: [AtomicU64; SIDES],
    cpu_ns: [AtomicU64; CPUS],
    cpu_bytes: [AtomicU64; CPUS],
    cpu_jobs: [AtomicU64; CPUS],
    cpu_off_pool: [AtomicU64; CPUS],
    /// Most CPU steps seen running at once (process-wide) during this job.
    cpu_peak: AtomicU64,
    phases: Mutex<PhaseLog>,
}

/// Finished phases and the current one (name, since).
type PhaseLog = (Vec<PhaseTime>, Option<(String, Instant)>);

impl Default for StageClock {
    fn default() -> Self {
        StageClock {
            started: Instant::now(),
            lane_ns: Default::default(),
            lane_count: Default::default(),
            lanes: AtomicU64::new(0),
            lane_total_ns: AtomicU64::new(0),
            side_ns: Default::default(),
            side_count: Default::default(),
            cpu_ns: Default::default(),
            cpu_bytes: Default::default(),
            cpu_jobs: Default::default(),
            cpu_off_pool: Default::default(),
            cpu_peak: AtomicU64::new(0),
            phases: Mutex::new((Vec::new(), None)),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl StageClock {
    /// Ends the current phase (if any) and starts `name`.
    pub(crate) fn phase(&self, name: &str) {
        let now = Instant::now();
        let mut phases = self.phases.lock().unwrap_or_else(|p| p.into_inner());
        let (done, current) = &mut *phases;
        let since = match current.take() {
            Some((previous, since)) => {
                done.push(PhaseTime {
                    name: previous,
                    time: now - since,
                });
                now
            }
            // Time before the first phase belongs to it.
            None => self.started,
        };
        *current = Some((name.to_string(), since));
    }

    /// Records CPU work of `stage` over `bytes` input bytes, which ran with
    /// `running` CPU steps (itself included) in the process.
    pub(crate) fn cpu(
        &self,
        stage: CpuStage,
        busy: Duration,
        bytes: u64,
        on_pool: bool,
        running: u32,
    ) {
        self.cpu_peak
            .fetch_max(u64::from(running), Ordering::Relaxed);
        let i = stage.index();
        self.cpu_ns[i].fetch_add(nanos(busy), Ordering::Relaxed);
        self.cpu_bytes[i].fetch_add(bytes, Ordering::Relaxed);
        self.cpu_jobs[i].fetch_add(1, Ordering::Relaxed);
        if !on_pool {
            self.cpu_off_pool[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The split so far; the current phase counts up to now.
    pub(crate) fn times(&self, pool_threads: u32) -> StageTimes {
        let now = Instant::now();
        let phases = {
            let guard = self.phases.lock().unwrap_or_else(|p| p.into_inner());
            let mut phases = guard.0.clone();
            if let Some((name, since)) = &guard.1 {
                phases.push(PhaseTime {
                    name: name.clone(),
                    time: now - *since,
                });
            }
            phases
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StageTimes {
            wall: now - self.started,
            phases,
            lanes: u32::try_from(load(&self.lanes)).unwrap_or(u32::MAX),
            lane_time: Duration::from_nanos(load(&self.lane_total_ns)),
            lane_stages: LaneStage::ALL
                .iter()
                .filter(|s| load(&self.lane_count[s.index()]) > 0)
                .map(|s| LaneTime {
                    stage: *s,
                    time: Duration::from_nanos(load(&self.lane_ns[s.index()])),
                    count: load(&self.lane_count[s.index()]),
                })
                .collect(),
            side_tasks: SideTask::ALL
                .iter()
                .filter(|t| load(&self.side_count[t.index()]) > 0)
                .map(|t| SideTime {
                    task: *t,
                    time: Duration::from_nanos(load(&self.side_ns[t.index()])),
                    count: load(&self.side_count[t.index()]),
                })
                .collect(),
            cpu: CpuStage::ALL
                .iter()
                .filter(|s| load(&self.cpu_jobs[s.index()]) > 0)
                .map(|s| CpuTime {
                    stage: *s,
                    busy: Duration::from_nanos(load(&self.cpu_ns[s.index()])),
                    bytes: load(&self.cpu_bytes[s.index()]),
                    jobs: load(&self.cpu_jobs[s.index()]),
                    off_pool: load(&self.cpu_off_pool[s.index()]),
                })
                .collect(),
            pool_threads,
            pool_peak_busy: u32::try_from(load(&self.cpu_peak)).unwrap_or(u32::MAX),
        }
    }
}

/// One data connection's stopwatch: always in exactly one stage, so its
/// stages add up to its lifetime. Dropping it books the last stretch. A
/// side task's stopwatch ([`Lane::side`]) is handed to the same code (object
/// writers enter upload waits on it) but books its whole lifetime to its
/// task instead.
pub(crate) struct Lane {
    clock: std::sync::Arc<StageClock>,
    stage: LaneStage,
    since: Instant,
    born: Instant,
    /// `Some` for a side task: no data connection, no stage booking.
    side: Option<SideTask>,
}

impl Lane {
    /// A data lane that starts in [`LaneStage::Connect`].
    pub(crate) fn start(clock: std::sync::Arc<StageClock>) -> Lane {
        let now = Instant::now();
        clock.lanes.fetch_add(1, Ordering::Relaxed);
        clock.lane_count[LaneStage::Connect.index()].fetch_add(1, Ordering::Relaxed);
        Lane {
            clock,
            stage: LaneStage::Connect,
            since: now,
            born: now,
            side: None,
        }
    }

    /// The stopwatch of a side task: not a data connection, its lifetime
    /// booked to `task`.
    pub(crate) fn side(clock: std::sync::Arc<StageClock>, task: SideTask) -> Lane {
        let now = Instant::now();
        Lane {
            clock,
            stage: LaneStage::Connect,
            since: now,
            born: now,
            side: Some(task),
        }
    }

    /// Switches to `stage`; returns the stage it leaves.
    pub(crate) fn enter(&mut self, stage: LaneStage) -> LaneStage {
        if stage == self.stage {
            return stage;
        }
        let now = Instant::now();
        self.book(now);
        self.since = now;
        if self.side.is_none() {
            self.clock.lane_count[stage.index()].fetch_add(1, Ordering::Relaxed);
        }
        std::mem::replace(&mut self.stage, stage)
    }

    /// Runs `work` in `stage`, then returns to the stage the lane was in.
    pub(crate) async fn time<T>(
        &mut self,
        stage: LaneStage,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let previous = self.enter(stage);
        let out = work.await;
        self.enter(previous);
        out
    }

    fn book(&self, now: Instant) {
        if self.side.is_none() {
            self.clock.lane_ns[self.stage.index()]
                .fetch_add(nanos(now - self.since), Ordering::Relaxed);
        }
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        let now = Instant::now();
        self.book(now);
        let lifetime = nanos(now - self.born);
        match self.side {
            None => {
                self.clock
                    .lane_total_ns
                    .fetch_add(lifetime, Ordering::Relaxed);
            }
            Some(task) => {
                self.clock.side_ns[task.index()].fetch_add(lifetime, Ordering::Relaxed);
                self.clock.side_count[task.index()].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn lane_stages_add_up_to_lane_lifetimes_and_phases_to_the_wall() {
        let clock = Arc::new(StageClock::default());
        clock.phase("connect");
        {
            let mut lane = Lane::start(clock.clone());
            std::thread::sleep(Duration::from_millis(2));
            lane.enter(LaneStage::CopyOutWait);
            std::thread::sleep(Duration::from_millis(3));
            lane.enter(LaneStage::Compress);
        }
        let mut other = Lane::start(clock.clone());
        other.enter(LaneStage::Idle);
        drop(other);
        // A side task: not a data lane, its stages not booked.
        let mut schema = Lane::side(clock.clone(), SideTask::SchemaDump);
        schema.enter(LaneStage::UploadWait);
        std::thread::sleep(Duration::from_millis(2));
        drop(schema);
        clock.phase("data");
        clock.cpu(
            CpuStage::CompressHash,
            Duration::from_millis(1),
            10,
            true,
            1,
        );
        clock.cpu(
            CpuStage::CompressHash,
            Duration::from_millis(1),
            5,
            false,
            2,
        );
        let times = clock.times(2);

        assert_eq!(times.lanes, 2, "the side task is no data lane");
        let staged: Duration = times.lane_stages.iter().map(|l| l.time).sum();
        assert_eq!(staged, times.lane_time);
        assert_eq!(times.lane(LaneStage::UploadWait), Duration::ZERO);
        assert_eq!(times.side_tasks.len(), 1);
        assert_eq!(
            (times.side_tasks[0].task, times.side_tasks[0].count),
            (SideTask::SchemaDump, 1)
        );
        assert!(times.side(SideTask::SchemaDump) >= Duration::from_millis(2));
        assert_eq!(times.side(SideTask::LargeObjects), Duration::ZERO);
        assert!(times.lane(LaneStage::CopyOutWait) >= Duration::from_millis(3));
        let phased: Duration = times.phases.iter().map(|p| p.time).sum();
        assert_eq!(phased, times.wall);
        assert_eq!(
            times
                .phases
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
            ["connect", "data"]
        );
        let cpu = times.cpu[0];
        assert_eq!(
            (cpu.stage, cpu.jobs, cpu.bytes, cpu.off_pool),
            (CpuStage::CompressHash, 2, 15, 1)
        );
        assert_eq!(cpu.busy, Duration::from_millis(2));
        assert_eq!((times.pool_threads, times.pool_peak_busy), (2, 2));
    }
}
