//! `/metrics` of a coordinator over a real state database: scraped before,
//! during and after a successful backup and a failing one, the queue gauges,
//! job counters and histograms, attempt outcomes, error codes, fenced
//! heartbeats, connection slots in use and the instance's last success
//! move; no secret appears. A lease that expires counts as a
//! `LEASE_EXPIRED` attempt and a dead-lettered task message moves the
//! dead-letter gauge. The connected worker slots follow the task queue's
//! consumers, and are left out where the queue cannot count them.

use crate::common;

use std::time::{Duration, Instant};

use std::sync::Arc;

use common::{DB_PASSWORD, Harness, RecordingPublisher, TOKEN, backup_now, claim, job_id};
use pgvault_console::PortFallback;
use pgvault_coordinator::Coordinator;
use pgvault_coordinator::metrics::MetricsOptions;
use pgvault_proto::v1 as pb;
use pgvault_queue::TaskPublisher;
use pgvault_queue::memory::InProcessQueue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn backup_result() -> pb::BackupResult {
    pb::BackupResult {
        snapshot_time: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        stored_bytes: 1234,
        raw_bytes: 5678,
        chunk_count: 3,
        manifest_sha256: "ab".repeat(32),
        server_version: "15.8".into(),
        stage_split: None,
    }
}

fn on_any_port() -> MetricsOptions {
    MetricsOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        fallback: PortFallback::Fail,
    }
}

/// `GET /metrics` over plain HTTP/1.1: (content type, body).
async fn scrape(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").expect("http url");
    let (addr, path) = rest.split_once('/').expect("path");
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the metrics listener");
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("http response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or_default()
        .to_string();
    (content_type, body.to_string())
}

/// The value of the sample `series` (its name and, when it has labels, all
/// of them in the order the exporter writes them).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .find_map(|rest| rest.split(' ').next()?.parse().ok())
}

/// Scrapes until `check` holds (10 s at most); returns that scrape.
async fn scrape_until(url: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = scrape(url).await;
        if check(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what} never showed in:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn metrics_move_with_a_successful_and_a_failing_backup() {
    let h = Harness::start_with(|c| c.metrics = Some(on_any_port())).await;
    let url = h
        .handle
        .as_ref()
        .and_then(|c| c.metrics_url())
        .expect("metrics served")
        .to_string();
    h.fixture().await;
    let instance = h.protect("app").await;
    let instance_id = instance.rsplit('/').next().unwrap().to_string();

    let (content_type, before) = scrape(&url).await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(before.ends_with("# EOF\n"), "{before}");
    // The feed takes its start on its first pass as leader; wait for it.
    scrape_until(&url, "the feed leader", |t| {
        value(t, "pgvault_metrics_feed_leader") == Some(1.0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(value(&before, "pgvault_dead_letters"), Some(0.0));
    assert!(
        !before.contains("pgvault_instance_last_success_timestamp_seconds{"),
        "no backup yet:\n{before}"
    );

    // A successful backup: queued, in progress, completed.
    let job = backup_now(&h, &instance).await;
    let id = job_id(&job);
    let queued = r#"pgvault_jobs_active{operation="ON_DEMAND_BACKUP",state="QUEUED"}"#;
    let (_, text) = scrape(&url).await;
    assert_eq!(value(&text, queued), Some(1.0), "{text}");
    assert!(
        value(
            &text,
            r#"pgvault_jobs_oldest_age_seconds{operation="ON_DEMAND_BACKUP",state="QUEUED"}"#
        )
        .is_some_and(|age| (0.0..60.0).contains(&age)),
        "{text}"
    );
    h.publisher.wait_for(&id, 1).await;
    let claimed = claim(&h, &id, "w1").await;
    assert!(claimed.claimed, "{}", claimed.reason);
    let (_, during) = scrape(&url).await;
    assert_eq!(value(&during, queued), None, "{during}");
    assert_eq!(
        value(
            &during,
            r#"pgvault_jobs_active{operation="ON_DEMAND_BACKUP",state="IN_PROGRESS"}"#
        ),
        Some(1.0),
        "{during}"
    );
    // The claim holds slots of pg1's budget: 2 data connections (not
    // reported), the snapshot holder and pg_dump.
    let slots = r#"pgvault_server_connections_in_use{server="pg1"}"#;
    assert_eq!(value(&during, slots), Some(4.0), "{during}");
    h.workers()
        .complete_task(pb::CompleteTaskRequest {
            job_id: id.clone(),
            lease_token: claimed.lease_token.clone(),
            result: Some(pb::complete_task_request::Result::Backup(backup_result())),
            progress: None,
            tables: Vec::new(),
        })
        .await
        .expect("complete");
    let completed =
        r#"pgvault_jobs_finished_total{operation="ON_DEMAND_BACKUP",state="COMPLETED"}"#;
    let after = scrape_until(&url, "the completed job", |t| {
        value(t, completed) == Some(1.0)
    })
    .await;
    assert_eq!(
        value(&after, slots),
        None,
        "completion frees them:
{after}"
    );
    assert_eq!(
        value(
            &after,
            r#"pgvault_job_bytes_count{operation="ON_DEMAND_BACKUP"}"#
        ),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        value(
            &after,
            r#"pgvault_job_duration_seconds_count{operation="ON_DEMAND_BACKUP",state="COMPLETED"}"#
        ),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        value(
            &after,
            r#"pgvault_job_attempts_ended_total{operation="ON_DEMAND_BACKUP",outcome="COMPLETED"}"#
        ),
        Some(1.0),
        "{after}"
    );
    let last = format!(
        r#"pgvault_instance_last_success_timestamp_seconds{{vault="v",backup_instance="{instance_id}",server="pg1",database="app"}}"#
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        value(&after, &last).is_some_and(|t| (now - t).abs() < 120.0),
        "{last} near {now}:\n{after}"
    );

    // A failing backup: a stale heartbeat is fenced, the job fails with a
    // datastore error.
    let job = backup_now(&h, &instance).await;
    let id = job_id(&job);
    h.publisher.wait_for(&id, 1).await;
    let claimed = claim(&h, &id, "w1").await;
    assert!(claimed.claimed, "{}", claimed.reason);
    let stale = h
        .workers()
        .heartbeat(pb::HeartbeatRequest {
            job_id: id.clone(),
            lease_token: uuid::Uuid::new_v4().to_string(),
            progress: None,
            tables: Vec::new(),
        })
        .await
        .expect_err("a heartbeat with another lease token is fenced");
    assert_eq!(stale.code(), tonic::Code::FailedPrecondition);
    h.workers()
        .fail_task(pb::FailTaskRequest {
            job_id: id.clone(),
            lease_token: claimed.lease_token,
            error: Some(pb::JobError {
                code: "DatastoreUnavailable".into(),
                message: "the datastore did not answer".into(),
                recommended_action: "check the datastore".into(),
            }),
            retryable: false,
            log_tail: Vec::new(),
            tables: Vec::new(),
        })
        .await
        .expect("fail");
    let failed = r#"pgvault_jobs_finished_total{operation="ON_DEMAND_BACKUP",state="FAILED"}"#;
    let end = scrape_until(&url, "the failed job", |t| value(t, failed) == Some(1.0)).await;
    assert_eq!(value(&end, completed), Some(1.0), "counted once:\n{end}");
    assert_eq!(
        value(
            &end,
            r#"pgvault_job_errors_total{operation="ON_DEMAND_BACKUP",code="DatastoreUnavailable",category="system"}"#
        ),
        Some(1.0),
        "{end}"
    );
    assert_eq!(
        value(&end, "pgvault_fenced_heartbeats_total"),
        Some(1.0),
        "{end}"
    );
    assert_eq!(
        value(&end, "pgvault_metrics_state_errors_total"),
        Some(0.0),
        "{end}"
    );
    assert_eq!(
        value(
            &end,
            r#"pgvault_jobs_active{operation="ON_DEMAND_BACKUP",state="IN_PROGRESS"}"#
        ),
        None,
        "{end}"
    );
    assert_eq!(
        value(&end, &last),
        value(&after, &last),
        "a failure is no success"
    );
    for secret in [DB_PASSWORD, TOKEN] {
        assert!(!end.contains(secret), "{secret} in the metrics");
    }
    h.stop().await;
}

#[tokio::test]
async fn two_coordinators_report_the_same_state_and_count_each_job_once() {
    let h = Harness::start_with(|c| c.metrics = Some(on_any_port())).await;
    let mut config = common::config(&h.cluster);
    config.metrics = Some(on_any_port());
    // Publishing into the harness's recorder whichever dispatcher wins.
    let second = Coordinator::start(config, h.publisher.clone())
        .await
        .expect("second coordinator");
    let urls = [
        h.handle
            .as_ref()
            .and_then(|c| c.metrics_url())
            .unwrap()
            .to_string(),
        second.metrics_url().expect("metrics served").to_string(),
    ];
    h.fixture().await;
    let instance = h.protect("app").await;
    let sum = |texts: &[String], series: &str| -> f64 {
        texts.iter().filter_map(|t| value(t, series)).sum()
    };
    async fn scrape_all(urls: &[String]) -> Vec<String> {
        let mut texts = Vec::new();
        for url in urls {
            texts.push(scrape(url).await.1);
        }
        texts
    }
    // One leader; wait until its feed has started.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sum(&scrape_all(&urls).await, "pgvault_metrics_feed_leader") != 1.0 {
        assert!(Instant::now() < deadline, "no single feed leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let job = backup_now(&h, &instance).await;
    let id = job_id(&job);
    h.publisher.wait_for(&id, 1).await;
    let claimed = claim(&h, &id, "w1").await;
    assert!(claimed.claimed, "{}", claimed.reason);
    h.workers()
        .complete_task(pb::CompleteTaskRequest {
            job_id: id.clone(),
            lease_token: claimed.lease_token,
            result: Some(pb::complete_task_request::Result::Backup(backup_result())),
            progress: None,
            tables: Vec::new(),
        })
        .await
        .expect("complete");
    let completed =
        r#"pgvault_jobs_finished_total{operation="ON_DEMAND_BACKUP",state="COMPLETED"}"#;
    let deadline = Instant::now() + Duration::from_secs(10);
    let texts = loop {
        let texts = scrape_all(&urls).await;
        if sum(&texts, completed) >= 1.0 {
            break texts;
        }
        assert!(Instant::now() < deadline, "the job was never counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    let later = scrape_all(&urls).await;
    assert_eq!(
        sum(&later, completed),
        1.0,
        "counted once in the cluster:\n{later:?}"
    );
    let instance_id = instance.rsplit('/').next().unwrap();
    let last = format!(
        r#"pgvault_instance_last_success_timestamp_seconds{{vault="v",backup_instance="{instance_id}",server="pg1",database="app"}}"#
    );
    let seen: Vec<Option<f64>> = texts.iter().map(|t| value(t, &last)).collect();
    assert!(seen[0].is_some(), "{texts:?}");
    assert_eq!(
        seen[0], seen[1],
        "state gauges are the same on every coordinator"
    );
    second.shutdown().await.expect("second stops");
    h.stop().await;
}

#[tokio::test]
async fn worker_slots_connected_follows_the_task_queues_consumers() {
    // The harness's recording publisher cannot count consumers: no series.
    let h = Harness::start_with(|c| c.metrics = Some(on_any_port())).await;
    let recording = h
        .handle
        .as_ref()
        .and_then(|c| c.metrics_url())
        .expect("metrics served")
        .to_string();
    let (_, text) = scrape(&recording).await;
    assert!(
        text.contains("# EOF") && !text.contains("pgvault_worker_slots_connected "),
        "{text}"
    );

    let queue = InProcessQueue::new();
    let mut config = common::config(&h.cluster);
    config.metrics = Some(on_any_port());
    let coordinator = Coordinator::start(config, queue.publisher())
        .await
        .expect("a coordinator on the in-process queue");
    let url = coordinator
        .metrics_url()
        .expect("metrics served")
        .to_string();
    let slots = "pgvault_worker_slots_connected";
    scrape_until(&url, "no slot", |t| value(t, slots) == Some(0.0)).await;
    let first = queue.consumer();
    let second = queue.consumer();
    scrape_until(&url, "two slots", |t| value(t, slots) == Some(2.0)).await;
    drop(first);
    scrape_until(&url, "one slot", |t| value(t, slots) == Some(1.0)).await;
    drop(second);
    scrape_until(&url, "no slot again", |t| value(t, slots) == Some(0.0)).await;
    coordinator.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_lease_expiry_and_a_dead_letter_move_their_metrics() {
    let h = Harness::start_with(|c| c.metrics = Some(on_any_port())).await;
    let url = h
        .handle
        .as_ref()
        .and_then(|c| c.metrics_url())
        .expect("metrics served")
        .to_string();
    h.fixture().await;
    let instance = h.protect("app").await;
    scrape_until(&url, "the feed leader", |t| {
        value(t, "pgvault_metrics_feed_leader") == Some(1.0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Claimed, then never a heartbeat: the 2 s lease expires and the
    // reaper re-queues the job.
    let job = backup_now(&h, &instance).await;
    let id = job_id(&job);
    h.publisher.wait_for(&id, 1).await;
    let claimed = claim(&h, &id, "w1").await;
    assert!(claimed.claimed, "{}", claimed.reason);
    let expired =
        r#"pgvault_job_attempts_ended_total{operation="ON_DEMAND_BACKUP",outcome="LEASE_EXPIRED"}"#;
    scrape_until(&url, "the lease expiry", |t| value(t, expired) == Some(1.0)).await;
    h.publisher.wait_for(&id, 2).await;

    // A task message a worker rejects is recorded as a dead letter by the
    // coordinator draining the dead-letter queue (another coordinator on
    // the same state database: the gauge is the state database's).
    let queue = InProcessQueue::new();
    let drain = Coordinator::start_with_dead_letters(
        common::config(&h.cluster),
        Arc::new(RecordingPublisher::default()),
        Some(queue.dead_letter_source()),
    )
    .await
    .expect("a coordinator draining the dead letters");
    assert_eq!(
        value(&scrape(&url).await.1, "pgvault_dead_letters"),
        Some(0.0)
    );
    queue
        .publish("garbage", b"not a task".to_vec())
        .await
        .expect("publish");
    queue
        .consumer()
        .next()
        .await
        .expect("delivered")
        .reject()
        .await
        .expect("reject");
    scrape_until(&url, "the dead letter", |t| {
        value(t, "pgvault_dead_letters") == Some(1.0)
    })
    .await;
    drain.shutdown().await.expect("shutdown");
}
