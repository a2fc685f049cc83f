//! The combined throughput of a fanned-out backup (`GetJob`, `WatchJob`):
//! from the progress of its latest attempt's claimed chunks, the bytes and
//! rate of each worker and of the fleet. A rate is bytes over the span from
//! the first claim to the last chunk stored, or to now while one is in
//! flight, so an idle worker's rate stays what it achieved.

use std::collections::BTreeMap;

use pgvault_proto::v1 as pb;

use crate::store::chunk_tasks::ChunkProgress;

/// Spans shorter than this give no rate (nothing measurable yet).
const MIN_SPAN_SECONDS: f64 = 0.001;

/// Bytes, chunks stored and span (seconds ago it began, ended) of a set of
/// chunks.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    bytes: u64,
    chunks_done: u32,
    began: f64,
    ended: Option<f64>,
    in_flight: bool,
}

impl Tally {
    fn add(&mut self, chunk: &ChunkProgress) {
        self.bytes = self.bytes.saturating_add(chunk.bytes);
        self.began = self.began.max(chunk.since_claim);
        if chunk.done {
            self.chunks_done += 1;
            let ended = self
                .ended
                .map_or(chunk.since_done, |e| e.min(chunk.since_done));
            self.ended = Some(ended);
        } else {
            self.in_flight = true;
        }
    }

    fn rate(&self) -> f64 {
        let ended = if self.in_flight {
            0.0
        } else {
            self.ended.unwrap_or(0.0)
        };
        let span = self.began - ended;
        if span < MIN_SPAN_SECONDS {
            0.0
        } else {
            self.bytes as f64 / span
        }
    }
}

/// The throughput of the chunks in `progress`, the `leader`'s share first;
/// `None` when no chunk was claimed yet.
pub fn throughput(
    leader: Option<&str>,
    progress: &[ChunkProgress],
) -> Option<pb::FanoutThroughput> {
    if progress.is_empty() {
        return None;
    }
    let mut all = Tally::default();
    let mut each: BTreeMap<&str, Tally> = BTreeMap::new();
    for chunk in progress {
        all.add(chunk);
        each.entry(chunk.worker_id.as_str()).or_default().add(chunk);
    }
    let mut workers: Vec<pb::WorkerThroughput> = each
        .into_iter()
        .map(|(worker, tally)| pb::WorkerThroughput {
            worker_id: worker.to_string(),
            bytes_done: tally.bytes,
            bytes_per_second: tally.rate(),
            chunks_done: tally.chunks_done,
        })
        .collect();
    if let Some(at) = leader.and_then(|l| workers.iter().position(|w| w.worker_id == l)) {
        let first = workers.remove(at);
        workers.insert(0, first);
    }
    Some(pb::FanoutThroughput {
        bytes_done: all.bytes,
        bytes_per_second: all.rate(),
        chunks_done: all.chunks_done,
        chunks_total: 0,
        workers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(worker: &str, bytes: u64, since_claim: f64, done_ago: Option<f64>) -> ChunkProgress {
        ChunkProgress {
            worker_id: worker.into(),
            done: done_ago.is_some(),
            bytes,
            since_claim,
            since_done: done_ago.unwrap_or(0.0),
        }
    }

    #[test]
    fn no_claimed_chunk_gives_no_throughput() {
        assert_eq!(throughput(Some("w1"), &[]), None);
    }

    #[test]
    fn combined_rate_is_all_bytes_over_the_span_of_the_work() {
        // w1 stored 300 in the 10 s from its claim; w2 is 5 s into a chunk
        // with 100 read: the span runs from the first claim (10 s ago) to now.
        let rows = [
            chunk("w2", 100, 5.0, None),
            chunk("w1", 200, 10.0, Some(4.0)),
            chunk("w1", 100, 4.0, Some(0.0)),
        ];
        let t = throughput(Some("w1"), &rows).expect("claimed");
        assert_eq!(t.bytes_done, 400);
        assert_eq!(t.chunks_done, 2);
        assert!((t.bytes_per_second - 40.0).abs() < 1e-9, "{t:?}");
        let names: Vec<&str> = t.workers.iter().map(|w| w.worker_id.as_str()).collect();
        assert_eq!(names, ["w1", "w2"]);
        assert!((t.workers[0].bytes_per_second - 30.0).abs() < 1e-9);
        assert_eq!(t.workers[0].chunks_done, 2);
        assert!((t.workers[1].bytes_per_second - 20.0).abs() < 1e-9);
        assert_eq!(t.workers[1].chunks_done, 0);
    }

    #[test]
    fn a_finished_workers_rate_ends_at_its_last_stored_chunk() {
        // w2 worked from 20 s ago to 10 s ago: its rate does not decay while
        // it idles, and the fleet's span ends at the last chunk stored.
        let rows = [
            chunk("w2", 500, 20.0, Some(10.0)),
            chunk("w1", 500, 20.0, Some(15.0)),
        ];
        let t = throughput(None, &rows).expect("claimed");
        assert!((t.bytes_per_second - 100.0).abs() < 1e-9, "{t:?}");
        assert_eq!(t.workers[0].worker_id, "w1");
        assert!((t.workers[0].bytes_per_second - 100.0).abs() < 1e-9);
        assert!((t.workers[1].bytes_per_second - 50.0).abs() < 1e-9);
    }

    #[test]
    fn a_chunk_just_claimed_has_no_rate_yet() {
        let t = throughput(Some("w1"), &[chunk("w1", 0, 0.0, None)]).expect("claimed");
        assert_eq!(t.bytes_per_second, 0.0);
        assert_eq!(t.workers.len(), 1);
        assert!(t.bytes_per_second.is_finite());
    }
}
