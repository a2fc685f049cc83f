//! The chunk RPCs of a fanned-out backup, called directly over the real
//! state database (no engine, no queue): a chunk is claimed once; reports
//! on a lease that is foreign, expired or of a superseded attempt are
//! refused; an expired chunk lease is re-offered as the next take, which
//! stores its own object; a chunk completed twice counts once; the
//! leader's job lease loss fences its helpers; heartbeat progress adds up
//! into the job's combined throughput.

use crate::common;

use std::time::Duration;

use common::{Harness, backup_now, claim, get, job_id};
use pgvault_proto::v1 as pb;
use tokio::task::JoinHandle;
use tonic::Code;

/// A backup whose leader holds the lease and offered chunks `keys`.
struct Fanned {
    h: Harness,
    job: String,
    id: String,
    leader_token: String,
}

async fn fanned_out(keys: &[&str]) -> Fanned {
    let h = Harness::start().await;
    h.fixture().await;
    let instance = h.protect("app").await;
    let job = backup_now(&h, &instance).await;
    let id = job_id(&job);
    let claimed = claim(&h, &id, "leader:1").await;
    assert!(claimed.claimed, "{}", claimed.reason);
    let leader_token = claimed.lease_token;
    let offered = h
        .workers()
        .offer_chunks(pb::OfferChunksRequest {
            job_id: id.clone(),
            lease_token: leader_token.clone(),
            snapshot_id: "00000003-00000002-1".into(),
            chunks: keys
                .iter()
                .map(|k| pb::ChunkOffer {
                    key: (*k).into(),
                    spec: format!("{{\"object\":\"{k}\"}}"),
                    tables: vec!["public.t".into()],
                })
                .collect(),
            helpers: 2,
            kind: "DUMP".into(),
        })
        .await
        .expect("offer chunks")
        .into_inner();
    assert_eq!(offered.invited, keys.len().min(2) as u32);
    Fanned {
        h,
        job: job.name,
        id,
        leader_token,
    }
}

impl Fanned {
    /// A helper's claim of a chunk of attempt `attempt`.
    async fn help(&self, worker: &str, attempt: u32) -> pb::ClaimChunkResponse {
        self.h
            .workers()
            .claim_chunk(pb::ClaimChunkRequest {
                job_id: self.id.clone(),
                attempt,
                worker_id: worker.into(),
                leader_lease_token: String::new(),
            })
            .await
            .expect("claim chunk")
            .into_inner()
    }

    /// Keeps the job's lease alive (the leader's heartbeats) until aborted.
    fn keep_leading(&self) -> JoinHandle<()> {
        let mut workers = self.h.workers();
        let request = pb::HeartbeatRequest {
            job_id: self.id.clone(),
            lease_token: self.leader_token.clone(),
            progress: None,
            tables: Vec::new(),
        };
        tokio::spawn(async move {
            loop {
                workers
                    .heartbeat(request.clone())
                    .await
                    .expect("leader heartbeat");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    }

    async fn complete(
        &self,
        token: &str,
        key: &str,
        object_path: &str,
        raw_bytes: u64,
    ) -> Result<(), tonic::Status> {
        self.h
            .workers()
            .complete_chunk(pb::CompleteChunkRequest {
                job_id: self.id.clone(),
                lease_token: token.into(),
                key: key.into(),
                object_path: object_path.into(),
                size: 10,
                sha256: "ab".repeat(32),
                rows: 3,
                entries: "[]".into(),
                raw_bytes,
            })
            .await
            .map(|_| ())
    }

    async fn beat(&self, token: &str, bytes_done: u64) -> Result<(), tonic::Status> {
        self.h
            .workers()
            .heartbeat_chunk(pb::HeartbeatChunkRequest {
                job_id: self.id.clone(),
                lease_token: token.into(),
                bytes_done,
                rows_done: 1,
            })
            .await
            .map(|_| ())
    }

    async fn list(&self) -> Vec<pb::ChunkState> {
        self.h
            .workers()
            .list_chunks(pb::ListChunksRequest {
                job_id: self.id.clone(),
                lease_token: self.leader_token.clone(),
            })
            .await
            .expect("list chunks")
            .into_inner()
            .chunks
    }

    /// The stored object path of chunk `key` (state database).
    async fn object_path(&self, key: &str) -> Option<String> {
        let client = self.h.cluster.connect("postgres").await.expect("connect");
        client
            .query_one(
                "SELECT object_path FROM chunk_tasks WHERE chunk_key = $1",
                &[&key],
            )
            .await
            .expect("chunk row")
            .get(0)
    }
}

fn chunk_of(response: &pb::ClaimChunkResponse) -> pb::ChunkTask {
    match response.task.as_ref().and_then(|t| t.kind.clone()) {
        Some(pb::task::Kind::Chunk(chunk)) => chunk,
        other => panic!("a chunk task expected, got {other:?}"),
    }
}

fn refused(result: Result<(), tonic::Status>) {
    let status = result.expect_err("the report must be refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("stop"), "{}", status.message());
}

#[tokio::test]
async fn each_chunk_is_claimed_by_one_worker_only() {
    let f = fanned_out(&["data/1/00000.copy.zst", "data/1/00001.copy.zst"]).await;
    let leading = f.keep_leading();
    let (a, b, c) = tokio::join!(f.help("h1:1", 1), f.help("h2:1", 1), f.help("h3:1", 1));
    let mut won: Vec<String> = [&a, &b, &c]
        .iter()
        .filter(|r| r.claimed)
        .map(|r| chunk_of(r).key)
        .collect();
    won.sort();
    assert_eq!(won, ["data/1/00000.copy.zst", "data/1/00001.copy.zst"]);
    let lost = [&a, &b, &c]
        .into_iter()
        .find(|r| !r.claimed)
        .expect("one claim finds nothing");
    assert_eq!(lost.reason, "no chunk to take now");
    assert_eq!(lost.remaining, 2);
    assert!(!lost.attempt_over);
    // Every take is the first: no chunk was handed out twice.
    assert!(
        [&a, &b, &c]
            .iter()
            .filter(|r| r.claimed)
            .all(|r| chunk_of(r).take == 1)
    );
    let states: Vec<String> = f.list().await.into_iter().map(|c| c.state).collect();
    assert_eq!(states, ["IN_PROGRESS", "IN_PROGRESS"]);
    leading.abort();
}

#[tokio::test]
async fn reports_on_a_foreign_or_expired_chunk_lease_are_refused() {
    let f = fanned_out(&["data/1/00000.copy.zst", "data/1/00001.copy.zst"]).await;
    let leading = f.keep_leading();
    let first = f.help("h1:1", 1).await;
    let second = f.help("h2:1", 1).await;
    let (k1, k2) = (chunk_of(&first).key, chunk_of(&second).key);
    // A token nobody was given, and h1's token on h2's chunk.
    refused(
        f.complete(&uuid::Uuid::new_v4().to_string(), &k1, "x.t1", 1)
            .await,
    );
    refused(f.complete(&first.lease_token, &k2, "x.t1", 1).await);
    refused(f.beat(&uuid::Uuid::new_v4().to_string(), 1).await);
    // h2 keeps its lease alive; h1 lets its lapse (TTL 2 s).
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        f.beat(&second.lease_token, 10).await.expect("h2 alive");
    }
    refused(f.beat(&first.lease_token, 10).await);
    refused(f.complete(&first.lease_token, &k1, "x.t1", 1).await);
    f.complete(&second.lease_token, &k2, "y.t1", 1)
        .await
        .expect("a live lease stores its chunk");
    let listed = f.list().await;
    let state = |k: &str| {
        listed
            .iter()
            .find(|c| c.key == k)
            .expect("listed")
            .state
            .clone()
    };
    assert_ne!(state(&k1), "DONE");
    assert_eq!(state(&k2), "DONE");
    leading.abort();
}

#[tokio::test]
async fn an_expired_chunk_is_offered_again_as_the_next_take_with_its_own_object() {
    let key = "data/1/00000.copy.zst";
    let f = fanned_out(&[key]).await;
    let leading = f.keep_leading();
    let first = f.help("h1:1", 1).await;
    assert_eq!(chunk_of(&first).take, 1);
    // While h1's lease is live nobody else gets the chunk.
    let meanwhile = f.help("h2:1", 1).await;
    assert!(!meanwhile.claimed);
    assert_eq!(meanwhile.remaining, 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let second = f.help("h2:1", 1).await;
    assert!(second.claimed, "{}", second.reason);
    let again = chunk_of(&second);
    assert_eq!((again.key.as_str(), again.take), (key, 2));
    assert_ne!(second.lease_token, first.lease_token);
    // The first take's late report is refused; the second's is kept, with
    // the object the second take wrote.
    refused(
        f.complete(&first.lease_token, key, "data/1/00000.t1.copy.zst", 1)
            .await,
    );
    f.complete(&second.lease_token, key, "data/1/00000.t2.copy.zst", 1)
        .await
        .expect("the live take stores");
    assert_eq!(
        f.object_path(key).await.as_deref(),
        Some("data/1/00000.t2.copy.zst")
    );
    let job = get(&f.h, &f.job).await;
    assert_eq!(job.workers, ["h2:1"]);
    leading.abort();
}

#[tokio::test]
async fn a_chunk_completed_twice_counts_once() {
    let f = fanned_out(&["data/1/00000.copy.zst", "data/1/00001.copy.zst"]).await;
    let leading = f.keep_leading();
    let helper = f.help("h1:1", 1).await;
    let key = chunk_of(&helper).key;
    f.complete(&helper.lease_token, &key, "a.t1", 4096)
        .await
        .expect("stored");
    refused(f.complete(&helper.lease_token, &key, "a.t1", 4096).await);
    let done: Vec<_> = f
        .list()
        .await
        .into_iter()
        .filter(|c| c.state == "DONE")
        .collect();
    assert_eq!(done.len(), 1);
    let next = f.help("h1:1", 1).await;
    assert!(next.claimed);
    assert_ne!(chunk_of(&next).key, key);
    let throughput = get(&f.h, &f.job).await.throughput.expect("fanned out");
    assert_eq!((throughput.chunks_done, throughput.chunks_total), (1, 2));
    assert_eq!(throughput.bytes_done, 4096);
    leading.abort();
}

#[tokio::test]
async fn losing_the_leaders_job_lease_fences_every_helper() {
    let f = fanned_out(&["data/1/00000.copy.zst", "data/1/00001.copy.zst"]).await;
    let helper = f.help("h1:1", 1).await;
    let key = chunk_of(&helper).key;
    // The helper heartbeats its own chunk, but the leader stops: once the
    // job's lease expires (TTL 2 s) the whole attempt is over.
    let mut fenced = None;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Err(status) = f.beat(&helper.lease_token, 1).await {
            fenced = Some(status);
            break;
        }
    }
    let status = fenced.expect("the helper is fenced once the job's lease expires");
    assert_eq!(status.code(), Code::FailedPrecondition);
    refused(f.complete(&helper.lease_token, &key, "a.t1", 1).await);
    let late = f.help("h2:1", 1).await;
    assert!(!late.claimed);
    assert!(late.attempt_over, "{late:?}");
    // The leader's own chunk claims of the lost attempt end too.
    let leader =
        f.h.workers()
            .claim_chunk(pb::ClaimChunkRequest {
                job_id: f.id.clone(),
                attempt: 1,
                worker_id: "leader:1".into(),
                leader_lease_token: f.leader_token.clone(),
            })
            .await
            .expect("claim")
            .into_inner();
    assert!(!leader.claimed && leader.attempt_over, "{leader:?}");
}

#[tokio::test]
async fn chunk_heartbeats_add_up_into_the_jobs_combined_throughput() {
    let f = fanned_out(&["data/1/00000.copy.zst", "data/1/00001.copy.zst"]).await;
    let leading = f.keep_leading();
    let helper = f.help("h1:1", 1).await;
    let own =
        f.h.workers()
            .claim_chunk(pb::ClaimChunkRequest {
                job_id: f.id.clone(),
                attempt: 1,
                worker_id: "leader:1".into(),
                leader_lease_token: f.leader_token.clone(),
            })
            .await
            .expect("leader claims")
            .into_inner();
    assert!(own.claimed, "{}", own.reason);
    tokio::time::sleep(Duration::from_millis(200)).await;
    f.beat(&helper.lease_token, 7_000).await.expect("beat");
    // Progress never goes back (a late, smaller beat).
    f.beat(&helper.lease_token, 5_000).await.expect("beat");
    f.complete(&f.leader_token, &chunk_of(&own).key, "l.t1", 3_000)
        .await
        .expect("leader stores its chunk");
    let job = get(&f.h, &f.job).await;
    let t = job.throughput.expect("fanned out");
    assert_eq!(t.bytes_done, 10_000);
    assert_eq!((t.chunks_done, t.chunks_total), (1, 2));
    let workers: Vec<(&str, u64)> = t
        .workers
        .iter()
        .map(|w| (w.worker_id.as_str(), w.bytes_done))
        .collect();
    assert_eq!(workers, [("leader:1", 3_000), ("h1:1", 7_000)]);
    assert!(t.bytes_per_second > 0.0, "{t:?}");
    assert!(t.workers.iter().all(|w| w.bytes_per_second > 0.0), "{t:?}");
    leading.abort();
}
