//! What `pgvault-bench` prints about one run besides the summary: the
//! process's CPU time (user + system, from `getrusage`) and the engine's
//! stage split ([`StageTimes`]) as JSON, for `bench/run.sh` to tabulate.

use std::time::Duration;

use pgvault_engine::StageTimes;
use serde_json::{Map, Value, json};

/// User and system CPU seconds this process has used so far.
pub fn process_cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e6
}

/// `{"wall": …, "phases": {…}, "lanes": n, "lane_seconds": …,
/// "lane": {stage: seconds}, "side": {task: seconds}, "cpu": {stage:
/// {"busy": s, "bytes": n, "jobs": n, "off_pool": n}}, "pool_threads": n,
/// "pool_peak_busy": n}`. `lanes` are the data connections; side tasks
/// (schema dump, large objects) are timed whole and not among them.
pub fn stages_json(stages: &StageTimes) -> Value {
    let mut phases = Map::new();
    for phase in &stages.phases {
        let entry = phases.entry(phase.name.clone()).or_insert(json!(0.0));
        *entry = json!(entry.as_f64().unwrap_or(0.0) + secs(phase.time));
    }
    let lane: Map<String, Value> = stages
        .lane_stages
        .iter()
        .map(|l| (l.stage.as_str().to_string(), json!(secs(l.time))))
        .collect();
    let side: Map<String, Value> = stages
        .side_tasks
        .iter()
        .map(|t| (t.task.as_str().to_string(), json!(secs(t.time))))
        .collect();
    let cpu: Map<String, Value> = stages
        .cpu
        .iter()
        .map(|c| {
            (
                c.stage.as_str().to_string(),
                json!({"busy": secs(c.busy), "bytes": c.bytes, "jobs": c.jobs, "off_pool": c.off_pool}),
            )
        })
        .collect();
    json!({
        "wall": secs(stages.wall),
        "phases": phases,
        "lanes": stages.lanes,
        "lane_seconds": secs(stages.lane_time),
        "lane": lane,
        "side": side,
        "cpu": cpu,
        "pool_threads": stages.pool_threads,
        "pool_peak_busy": stages.pool_peak_busy,
    })
}
