//! `job show` of a backup or restore fanned out across workers: the
//! workers that took part (the leader first) and, per table, which worker
//! stored (a restore: loaded) which chunk.

use pgvault_proto::v1::Job;

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
    Some(format!(
        "workers: {workers}\n{}",
        list_table(&["TABLE", "CHUNK", "STATE", "WORKER"], rows)
    ))
}

#[cfg(test)]
mod tests {
    use pgvault_proto::v1::ChunkWork;

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
}
