//! `pgvault up` serves Prometheus metrics by default and prints where: a
//! real backup through the in-process worker and a backup that fails
//! (wrong password) move the job counters, the error codes and the
//! instance's last success; the source's password never appears. Its one
//! worker slot is counted as connected, from the in-process queue and, with
//! RabbitMQ, from the broker, where the count follows consumers that come
//! and go and scrapes ask over one kept connection.

use std::time::{Duration, Instant};

use pgvault_e2e::fixtures;
use pgvault_e2e::pgvault::PgvaultUp;
use pgvault_e2e::rabbitmq::RabbitMq;
use pgvault_localpg::TempCluster;
use pgvault_queue::TaskConsumer;
use pgvault_queue::amqp::AmqpQueue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SOURCE_PASSWORD: &str = "metrics-src-pw";

/// The URL `up` printed on its "metrics" line.
fn printed_url(up: &PgvaultUp) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = up.process.log_text();
        if let Some(url) = log
            .lines()
            .find_map(|l| l.trim().strip_prefix("metrics"))
            .map(|rest| rest.trim().to_string())
            .filter(|url| url.starts_with("http://"))
        {
            return url;
        }
        assert!(
            Instant::now() < deadline,
            "up printed no metrics URL:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn scrape(url: &str) -> String {
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
    body.to_string()
}

/// The value of the first sample whose name and labels start with `prefix`.
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn scrape_until(url: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = scrape(url).await;
        if check(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what} never showed in:\n{text}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn ok(output: std::process::Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "`pgvault {what}` failed ({}):\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn up_serves_metrics_that_move_with_a_real_backup_and_a_failing_one() {
    let source = TempCluster::start(SOURCE_PASSWORD).expect("start source PostgreSQL");
    fixtures::mixed(&source, "mixed")
        .await
        .expect("mixed fixture");
    let up = tokio::task::spawn_blocking(PgvaultUp::start)
        .await
        .unwrap()
        .expect("pgvault up");
    let url = printed_url(&up);
    assert!(url.ends_with("/metrics"), "{url}");
    let cli = |args: &[&str]| up.cli(args, None).expect("run pgvault");

    up.create_demo_vault("nightly", "mon", source.port());
    let secret = format!("user=postgres password={SOURCE_PASSWORD}");
    ok(
        up.cli(&["secret", "put", "src-admin"], Some(&secret))
            .unwrap(),
        "secret put",
    );
    let configured = ok(
        cli(&[
            "backup",
            "configure",
            "--vault",
            "demo",
            "--policy",
            "nightly",
            "--secret",
            "src-admin",
            "--server",
            "src",
            "--database",
            "mixed",
            "--assign-missing-permissions",
            "--output",
            "json",
        ]),
        "backup configure",
    );
    let configured: serde_json::Value = serde_json::from_str(&configured).expect("json");
    let instance = configured["results"][0]["backup_instance"]["name"]
        .as_str()
        .expect("instance")
        .to_string();
    // The feed starts counting on its first pass as leader.
    scrape_until(&url, "the feed leader", |t| {
        value(t, "pgvault_metrics_feed_leader ") == Some(1.0)
    })
    .await;
    // up's worker (concurrency 1) consumes the in-process queue.
    scrape_until(&url, "up's worker slot", |t| {
        value(t, "pgvault_worker_slots_connected ") == Some(1.0)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;

    ok(
        cli(&["backup", "now", &instance, "--wait"]),
        "backup now --wait",
    );
    let completed =
        r#"pgvault_jobs_finished_total{operation="ON_DEMAND_BACKUP",state="COMPLETED"}"#;
    let after = scrape_until(&url, "the completed backup", |t| {
        value(t, completed) == Some(1.0)
    })
    .await;
    let bytes_sum = value(
        &after,
        r#"pgvault_job_bytes_sum{operation="ON_DEMAND_BACKUP"}"#,
    );
    assert!(bytes_sum.is_some_and(|b| b > 0.0), "{after}");
    let instance_id = instance.rsplit('/').next().unwrap();
    let last = format!(
        r#"pgvault_instance_last_success_timestamp_seconds{{vault="demo",backup_instance="{instance_id}",server="src",database="mixed"}}"#
    );
    assert!(value(&after, &last).is_some(), "{last}:\n{after}");

    // The source's password changes: the next backup fails to connect.
    let client = source.connect("postgres").await.expect("connect to source");
    client
        .batch_execute("ALTER USER postgres PASSWORD 'changed-pw'")
        .await
        .expect("change the password");
    let failed_run = cli(&["backup", "now", &instance, "--wait"]);
    assert!(!failed_run.status.success(), "the backup should fail");
    let failed = r#"pgvault_jobs_finished_total{operation="ON_DEMAND_BACKUP",state="FAILED"}"#;
    let end = scrape_until(&url, "the failed backup", |t| value(t, failed) == Some(1.0)).await;
    assert!(
        value(&end, r#"pgvault_job_errors_total{operation="ON_DEMAND_BACKUP",code="UserErrorDBUserAuthFailed""#)
            .is_some_and(|n| n >= 1.0),
        "{end}"
    );
    assert_eq!(value(&end, completed), Some(1.0), "{end}");
    assert_eq!(
        value(&end, &last),
        value(&after, &last),
        "a failure is no success"
    );
    assert!(
        !end.contains(SOURCE_PASSWORD),
        "the password is in the metrics"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_slots_connected_follows_the_brokers_consumers() {
    let broker = tokio::task::spawn_blocking(RabbitMq::start)
        .await
        .expect("join")
        .expect("start RabbitMQ (installed in /usr/lib/rabbitmq/bin)");
    let amqp_url = broker.url();
    let up = tokio::task::spawn_blocking(move || {
        PgvaultUp::start_with_env(&[("PGVAULT_QUEUE__AMQP_URL", amqp_url.as_str())])
    })
    .await
    .expect("join")
    .expect("pgvault up with RabbitMQ");
    let url = printed_url(&up);
    let slots = "pgvault_worker_slots_connected ";
    scrape_until(&url, "up's worker slot, counted by the broker", |t| {
        value(t, slots) == Some(1.0)
    })
    .await;

    // Another consumer of the task queue (a worker's slot) comes and goes.
    let queue = AmqpQueue::connect(&broker.url(), "pgvault.tasks")
        .await
        .expect("connect to the task queue");
    let mut consumer = queue.consumer("metrics-test");
    let consuming = tokio::spawn(async move {
        // Waits for a delivery that never comes: consuming until aborted.
        let _ = consumer.next().await;
    });
    scrape_until(&url, "a second slot", |t| value(t, slots) == Some(2.0)).await;
    consuming.abort();
    let _ = consuming.await;
    scrape_until(&url, "the second slot gone", |t| {
        value(t, slots) == Some(1.0)
    })
    .await;

    // Scrapes ask the broker over one kept, named connection rather than
    // one new connection each: the same one before and after five more.
    let inspecting = || {
        let listed = broker.connections().expect("list the broker's connections");
        let ours: Vec<String> = listed
            .iter()
            .filter(|(name, _)| name == "pgvault inspect")
            .map(|(_, pid)| pid.clone())
            .collect();
        assert_eq!(ours.len(), 1, "one inspecting connection: {listed:?}");
        ours[0].clone()
    };
    let before = inspecting();
    for _ in 0..5 {
        let text = scrape(&url).await;
        assert_eq!(value(&text, slots), Some(1.0), "{text}");
    }
    assert_eq!(
        inspecting(),
        before,
        "scrapes reopened the inspecting connection"
    );
}
