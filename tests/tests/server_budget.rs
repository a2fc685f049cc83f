//! Per-server connection budgets end to end over RabbitMQ: with the source
//! server's budget at 2 (set with `pgvault server update`), two workers
//! backing up two databases of it at once never hold more than 2
//! connections to it (sampled from `pg_stat_activity`, application name
//! `pgvault`, which the engine's connections and its pg_dump both carry);
//! the second backup waits for slots (and says so) and both complete. A
//! table lock holds the first backup until the wait was seen.
//!
//! PostgreSQL lists a backend until its process has exited, which on a busy
//! machine can be some milliseconds after pgvault closed the connection
//! (pg_dump's, when the data connection opens next; or the last backup's,
//! when the other starts). What the budget bounds is what pgvault holds, so
//! the count checked is the highest one that lasted [`HELD`]: two backups'
//! connections at once would last their whole data phases. (That a backup
//! granted 2 dumps its schema before its data, never beside it, is the
//! engine's `server_budget` unit tests' to prove: pg_dump of a small schema
//! overlaps a data connection too briefly for sampling to catch every time.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pgvault_e2e::fixtures;
use pgvault_e2e::pgvault::PgvaultCluster;
use pgvault_e2e::rabbitmq::RabbitMq;
use pgvault_e2e::scenario::{JOB_TIMEOUT, SOURCE_PASSWORD, protect, setup_vault};
use pgvault_localpg::TempCluster;
use pgvault_proto::v1::*;

const DATABASES: [&str; 2] = ["shop", "crm"];

/// How long a count of connections must last to count as held.
const HELD: Duration = Duration::from_millis(150);

/// What the sampler saw.
struct Seen {
    /// Most connections listed at once, however briefly.
    most: i64,
    /// Most connections listed throughout some [`HELD`] window.
    held: i64,
    /// Samples that saw any.
    busy: u64,
}

/// Samples the source's pgvault connections every 5 ms until `stop`.
fn sample_connections(
    client: tokio_postgres::Client,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Seen> {
    tokio::spawn(async move {
        let mut samples: Vec<(std::time::Instant, i64)> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let row = client
                .query_one(
                    "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE application_name = 'pgvault'",
                    &[],
                )
                .await
                .expect("sample pg_stat_activity");
            samples.push((std::time::Instant::now(), row.get(0)));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Seen {
            most: samples.iter().map(|&(_, n)| n).max().unwrap_or(0),
            held: held(&samples, HELD),
            busy: samples.iter().filter(|&&(_, n)| n > 0).count() as u64,
        }
    })
}

/// The highest count that every sample of some window of at least `window`
/// saw (the window from each sample to the first one `window` later).
fn held(samples: &[(std::time::Instant, i64)], window: Duration) -> i64 {
    let mut best = 0;
    for (i, &(start, _)) in samples.iter().enumerate() {
        let Some(end) = samples[i..].iter().position(|&(t, _)| t - start >= window) else {
            break;
        };
        let lowest = samples[i..=i + end]
            .iter()
            .map(|&(_, n)| n)
            .min()
            .unwrap_or(0);
        best = best.max(lowest);
    }
    best
}

#[test]
fn a_count_held_for_the_window_counts_and_a_blip_does_not() {
    let t0 = std::time::Instant::now();
    let at = |ms: u64, n: i64| (t0 + Duration::from_millis(ms), n);
    let window = Duration::from_millis(250);
    // 3 for 10 ms while a closed backend goes, 2 for 400 ms.
    let blip = [
        at(0, 2),
        at(5, 3),
        at(10, 3),
        at(15, 2),
        at(200, 2),
        at(400, 2),
    ];
    assert_eq!(held(&blip, window), 2);
    // 3 for 300 ms: held.
    let over = [at(0, 2), at(5, 3), at(150, 3), at(305, 3), at(310, 2)];
    assert_eq!(held(&over, window), 3);
    // Too short a run to hold anything.
    assert_eq!(held(&[at(0, 2), at(100, 2)], window), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_never_hold_more_connections_to_a_source_than_its_budget() {
    let broker = tokio::task::spawn_blocking(RabbitMq::start)
        .await
        .unwrap()
        .expect("start RabbitMQ (install rabbitmq-server)");
    let source = TempCluster::start(SOURCE_PASSWORD)
        .expect("start source PostgreSQL (install postgresql-15)");
    for db in DATABASES {
        fixtures::pgbench(&source, db, 3).await.expect("pgbench");
    }
    let url = broker.url();
    let cluster = tokio::task::spawn_blocking(move || PgvaultCluster::start(&url, 2))
        .await
        .unwrap()
        .expect("start coordinator and 2 workers");
    let mut api = cluster.api().await.expect("connect to coordinator");
    let datastore = tempfile::tempdir().expect("tempdir");
    let datastore_url = format!("file://{}", datastore.path().display());
    setup_vault(&mut api, &datastore_url, &source)
        .await
        .expect("vault, policy, server, secret");
    let mut instances = Vec::new();
    for db in DATABASES {
        instances.push(protect(&mut api, db).await.expect("protect"));
    }

    // The budget as a user sets it.
    let updated = cluster
        .cli(
            &["server", "update", "source", "--max-connections", "2"],
            None,
        )
        .expect("run pgvault server update");
    let shown = String::from_utf8_lossy(&updated.stdout);
    assert!(
        updated.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&updated.stderr)
    );
    assert!(shown.contains("0/2"), "{shown}");

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_connections(
        source.connect("postgres").await.expect("connect to source"),
        stop.clone(),
    );
    // Whichever backup gets the slots blocks inside its dump until the other
    // was seen waiting for them: a fast backup cannot end before the wait
    // shows (the engine waits up to its 30 s lock timeout).
    let mut locks = Vec::new();
    for db in DATABASES {
        let client = source.connect(db).await.expect("connect to lock");
        client
            .batch_execute("BEGIN; LOCK TABLE pgbench_accounts IN ACCESS EXCLUSIVE MODE")
            .await
            .expect("lock a table");
        locks.push(client);
    }
    let mut jobs = Vec::new();
    for instance in &instances {
        let job = api
            .instances
            .backup_now(BackupNowRequest {
                name: instance.clone(),
                rule: RetentionRuleKind::Default as i32,
                workers: 0,
            })
            .await
            .expect("backup now")
            .into_inner();
        jobs.push(job.name);
    }
    // While they run, the one without slots says why it waits.
    let mut waiting_seen = String::new();
    let deadline = std::time::Instant::now() + JOB_TIMEOUT;
    let ended = loop {
        let mut current = Vec::new();
        for job in &jobs {
            let job = api
                .jobs
                .get_job(GetJobRequest { name: job.clone() })
                .await
                .expect("get job")
                .into_inner();
            if job
                .queued_reason
                .starts_with("waiting for a connection slot")
            {
                waiting_seen = job.queued_reason.clone();
            }
            current.push(job);
        }
        if !waiting_seen.is_empty() {
            for lock in locks.drain(..) {
                lock.batch_execute("COMMIT")
                    .await
                    .expect("release the lock");
            }
        }
        let finished =
            |j: &Job| ![JobState::Queued as i32, JobState::InProgress as i32].contains(&j.state);
        if current.iter().all(finished) {
            break current;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "backups still running: {current:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.store(true, Ordering::Relaxed);
    let seen = sampler.await.expect("sampler");

    for job in &ended {
        assert_eq!(
            job.state,
            JobState::Completed as i32,
            "{job:?}\n{}",
            cluster.logs()
        );
    }
    assert!(
        seen.busy > 0,
        "the sampler never saw a backup's connections"
    );
    assert!(
        seen.held <= 2,
        "the source held {} pgvault connections for {HELD:?} with a budget of 2 (most listed at once: {})",
        seen.held,
        seen.most
    );
    assert!(
        seen.most >= 2,
        "a backup uses the 2 connections it was granted; at most {} were seen",
        seen.most
    );
    assert_eq!(
        waiting_seen,
        "waiting for a connection slot on server source (2 of 2 in use)"
    );
    // A backup needs both slots: the two ran one after the other.
    let window = |job: &Job| {
        let start = job.start_time.as_ref().expect("start time");
        let end = job.end_time.as_ref().expect("end time");
        ((start.seconds, start.nanos), (end.seconds, end.nanos))
    };
    let (a, b) = (window(&ended[0]), window(&ended[1]));
    assert!(
        a.1 <= b.0 || b.1 <= a.0,
        "the backups overlapped: {a:?} and {b:?}"
    );
}
