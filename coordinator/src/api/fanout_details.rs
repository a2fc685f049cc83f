//! A fanned-out backup's details (`GetJob`, `WatchJob`): the workers that
//! dumped chunks of its latest attempt (the leader first) and, per table,
//! which worker did which chunk, and the combined throughput
//! ([`super::fanout_rate`]).

use pgvault_proto::v1 as pb;

use crate::error::Result;
use crate::model::Job;
use crate::store::{Store, chunk_tasks};

/// Fills `workers`, `chunks` and `throughput`; a job that never fanned out
/// gets none of them.
pub async fn add(store: &Store, job: &mut pb::Job, of: &Job) -> Result<()> {
    let rows = chunk_tasks::latest(store.pool(), of.id).await?;
    if rows.is_empty() {
        return Ok(());
    }
    let progress = chunk_tasks::progress(store.pool(), of.id).await?;
    job.throughput =
        super::fanout_rate::throughput(of.lease_owner.as_deref(), &progress).map(|mut t| {
            t.chunks_total = u32::try_from(rows.len()).unwrap_or(u32::MAX);
            t
        });
    job.workers = workers(of.lease_owner.as_deref(), &rows);
    job.chunks = rows
        .into_iter()
        .flat_map(|row| {
            let worker = if row.state == "DONE" {
                row.worker_id.clone().unwrap_or_default()
            } else {
                String::new()
            };
            row.tables.into_iter().map(move |table| pb::ChunkWork {
                table,
                chunk: row.key.clone(),
                worker_id: worker.clone(),
                state: row.state.clone(),
            })
        })
        .collect();
    Ok(())
}

/// Workers that stored chunks, the leader first, then by name.
fn workers(leader: Option<&str>, rows: &[chunk_tasks::ChunkRow]) -> Vec<String> {
    let mut names: Vec<String> = rows
        .iter()
        .filter(|r| r.state == "DONE")
        .filter_map(|r| r.worker_id.clone())
        .collect();
    names.sort();
    names.dedup();
    if let Some(at) = leader.and_then(|l| names.iter().position(|n| n == l)) {
        let leader = names.remove(at);
        names.insert(0, leader);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(worker: &str, state: &str) -> chunk_tasks::ChunkRow {
        chunk_tasks::ChunkRow {
            key: "data/1/00000.copy.zst".into(),
            state: state.into(),
            worker_id: Some(worker.into()),
            tables: vec!["public.t".into()],
            entries: None,
            size: 0,
            rows: 0,
        }
    }

    #[test]
    fn workers_are_those_that_stored_chunks_leader_first() {
        let rows = [
            row("w2", "DONE"),
            row("w3", "IN_PROGRESS"),
            row("w1", "DONE"),
            row("w2", "DONE"),
        ];
        assert_eq!(workers(Some("w2"), &rows), ["w2", "w1"]);
        assert_eq!(workers(Some("w9"), &rows), ["w1", "w2"]);
        assert!(workers(None, &[]).is_empty());
    }
}
