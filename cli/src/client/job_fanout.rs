//! `job show` and `job watch` of a backup or restore fanned out across
//! workers: the workers that took part (the leader first), the fleet's
//! combined throughput and each worker's, and, per table, which worker
//! stored (a restore: loaded) which chunk.

use pgvault_proto::v1::{FanoutThroughput, Job};

use super::output::{list_table, or_dash};

/// The WORKERS line and the CHUNKS table; `None` for a job that never
/// fanned out.
pub fn section(job: &Job) -> Option<String> {
    if job.chunks.is_empty() {
        return None;
    }
    let mut rows: Vec<Vec<String>> = job
        .chunks
        .iter()
        .map(|c| {
            vec![
                c.table.clone(),
                c.chunk.clone(),
                c.state.clone(),
                or_dash(&c.worker_id),
            ]
        })
        .collect();
    rows.sort();
    let workers = if job.workers.is_empty() {
        "-".to_string()
    } else {
        job.workers.join(", ")
    };
    let rate = throughput_line(job)
        .map(|line| format!("throughput: {line}\n"))
        .unwrap_or_default();
    Some(format!(
        "workers: {workers}\n{rate}{}",
        list_table(&["TABLE", "CHUNK", "STATE", "WORKER"], rows)
    ))
}

/// Megabytes (10^6 bytes) per second, as people read a rate.
fn mb_per_s(bytes_per_second: f64) -> f64 {
    bytes_per_second / 1e6
}

/// E.g. "3 workers · 412 MB/s combined (w1 150, w2 131, w3 131) · 37/64
/// chunks"; `None` for a job that never fanned out.
pub fn throughput_line(job: &Job) -> Option<String> {
    let t: &FanoutThroughput = job.throughput.as_ref()?;
    let each: Vec<String> = t
        .workers
        .iter()
        .map(|w| format!("{} {:.0}", w.worker_id, mb_per_s(w.bytes_per_second)))
        .collect();
    let count = t.workers.len();
    Some(format!(
        "{count} worker{} · {:.0} MB/s combined ({}) · {}/{} chunks",
        if count == 1 { "" } else { "s" },
        mb_per_s(t.bytes_per_second),
        each.join(", "),
        t.chunks_done,
        t.chunks_total
    ))
}

#[cfg(test)]
mod tests {
    use pgvault_proto::v1::{ChunkWork, WorkerThroughput};

    use super::*;

    #[test]
    fn the_chunks_section_names_the_workers_and_who_did_each_chunk() {
        assert_eq!(section(&Job::default()), None);
        let job = Job {
            workers: vec!["w1".into(), "w2".into()],
            chunks: vec![
                ChunkWork {
                    table: "public.big".into(),
                    chunk: "data/1/00001.copy.zst".into(),
                    worker_id: "w2".into(),
                    state: "DONE".into(),
                },
                ChunkWork {
                    table: "public.big".into(),
                    chunk: "data/1/00000.copy.zst".into(),
                    worker_id: "w1".into(),
                    state: "DONE".into(),
                },
            ],
            ..Job::default()
        };
        let text = section(&job).expect("shown");
        assert!(text.starts_with("workers: w1, w2\n"), "{text}");
        let first = text.lines().nth(2).expect("a row");
        assert!(first.contains("00000") && first.contains("w1"), "{text}");
    }

    #[test]
    fn the_throughput_line_shows_the_combined_rate_and_each_workers() {
        assert_eq!(throughput_line(&Job::default()), None);
        let worker = |id: &str, rate: f64| WorkerThroughput {
            worker_id: id.into(),
            bytes_done: 1,
            bytes_per_second: rate,
            chunks_done: 1,
        };
        let job = Job {
            throughput: Some(FanoutThroughput {
                bytes_done: 3,
                bytes_per_second: 412.2e6,
                chunks_done: 37,
                chunks_total: 64,
                workers: vec![
                    worker("w1", 150.0e6),
                    worker("w2", 131.4e6),
                    worker("w3", 130.6e6),
                ],
            }),
            ..Job::default()
        };
        assert_eq!(
            throughput_line(&job).as_deref(),
            Some("3 workers · 412 MB/s combined (w1 150, w2 131, w3 131) · 37/64 chunks")
        );
    }
}
