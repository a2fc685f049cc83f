//! Notifications end to end, through `pgvault up` and the CLI: a failing
//! backup (the source's password changed) produces exactly one signed
//! notification at a local webhook receiver, whose HMAC verifies with the
//! signing key; a channel whose receiver is down at first (its port
//! closed) gets its notification after retries, and `pgvault notification
//! list` shows the attempts. The signing key and the webhook URL's token
//! appear nowhere in the coordinator's log or the CLI's listings.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use pgvault_e2e::fixtures;
use pgvault_e2e::pgvault::PgvaultUp;
use pgvault_e2e::webhook::{Received, Receiver};
use pgvault_localpg::TempCluster;
use sha2::Sha256;

const SOURCE_PASSWORD: &str = "notify-src-pw";
const SIGNING_KEY: &str = "whsec-9f1c2d3e4b5a69788796a5b4c3d2e1f0";
/// In the webhook URLs' paths, like a Slack URL's token.
const URL_TOKEN: &str = "T0KEN-IN-THE-PATH-5e6f";

/// Checks the signature headers of `request` the way a receiver would,
/// with an HMAC computed here (not with the coordinator's code).
fn assert_signed(request: &Received) {
    let timestamp = request
        .header("x-pgvault-timestamp")
        .expect("a timestamp header");
    let signature = request
        .header("x-pgvault-signature")
        .expect("a signature header");
    let mut mac = Hmac::<Sha256>::new_from_slice(SIGNING_KEY.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&request.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(signature, expected, "the signature does not verify");
    let sent: i64 = timestamp.parse().expect("unix seconds");
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now - sent).abs() < 300,
        "a fresh timestamp: {sent} vs {now}"
    );
}

fn stdout_of(output: std::process::Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "`pgvault {what}` failed ({}):\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A loopback address nothing listens on (for now).
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}

/// `notification list --vault demo` as JSON deliveries.
fn deliveries(up: &PgvaultUp) -> Vec<serde_json::Value> {
    let out = stdout_of(
        up.cli(
            &[
                "notification",
                "list",
                "--vault",
                "demo",
                "--output",
                "json",
            ],
            None,
        )
        .unwrap(),
        "notification list",
    );
    let value: serde_json::Value = serde_json::from_str(&out).expect("json");
    value["deliveries"].as_array().cloned().unwrap_or_default()
}

fn of_channel<'a>(list: &'a [serde_json::Value], channel: &str) -> Vec<&'a serde_json::Value> {
    let name = format!("vaults/demo/notificationChannels/{channel}");
    list.iter()
        .filter(|d| d["channel"] == name.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_backup_is_notified_once_signed_and_a_receiver_down_at_first_gets_it_after_retries()
 {
    let source = TempCluster::start(SOURCE_PASSWORD).expect("start source PostgreSQL");
    fixtures::mixed(&source, "mixed")
        .await
        .expect("mixed fixture");
    let up = tokio::task::spawn_blocking(|| {
        PgvaultUp::start_with_env(&[
            ("PGVAULT_COORDINATOR__REAPER_INTERVAL_SECONDS", "1"),
            ("PGVAULT_COORDINATOR__NOTIFICATION_RETRY_SECONDS", "1"),
            ("PGVAULT_COORDINATOR__NOTIFICATION_MAX_ATTEMPTS", "10"),
            ("PGVAULT_COORDINATOR__NOTIFICATION_TIMEOUT_SECONDS", "5"),
        ])
    })
    .await
    .unwrap()
    .expect("pgvault up");
    let cli = |args: &[&str], stdin: Option<&str>, what: &str| {
        stdout_of(up.cli(args, stdin).expect("run pgvault"), what)
    };
    up.create_demo_vault("nightly", "mon", source.port());
    let instance = up.protect_demo_database("nightly", SOURCE_PASSWORD, "mixed");

    // The signing key is a stored secret the vault is granted.
    let short = up
        .cli(
            &["secret", "put", "short-key", "--signing-key"],
            Some("too-short"),
        )
        .unwrap();
    assert!(!short.status.success(), "a short signing key is refused");
    cli(
        &["secret", "put", "hook-key", "--signing-key"],
        Some(SIGNING_KEY),
        "secret put --signing-key",
    );
    let ungranted = up
        .cli(
            &[
                "notification",
                "channel",
                "add",
                "ops",
                "--vault",
                "demo",
                "--url",
                "http://127.0.0.1:9/x",
                "--signing-secret",
                "hook-key",
            ],
            None,
        )
        .unwrap();
    assert!(
        !ungranted.status.success(),
        "an ungranted secret is refused"
    );
    assert!(
        String::from_utf8_lossy(&ungranted.stderr).contains("pgvault secret grant"),
        "{}",
        String::from_utf8_lossy(&ungranted.stderr)
    );
    cli(
        &["secret", "grant", "hook-key", "--vault", "demo"],
        None,
        "secret grant",
    );

    let receiver = Receiver::start().await.expect("webhook receiver");
    let url = format!("http://{}/hooks/{URL_TOKEN}", receiver.addr);
    cli(
        &[
            "notification",
            "channel",
            "add",
            "ops",
            "--vault",
            "demo",
            "--url",
            &url,
            "--events",
            "failed",
            "--signing-secret",
            "hook-key",
        ],
        None,
        "notification channel add",
    );
    let channels = cli(
        &["notification", "channel", "list", "--vault", "demo"],
        None,
        "notification channel list",
    );
    assert!(
        channels.contains(&format!("http://{}", receiver.addr)),
        "{channels}"
    );
    assert!(
        !channels.contains(URL_TOKEN),
        "the URL's token is listed:\n{channels}"
    );

    // A backup that succeeds tells a channel subscribed to failures nothing.
    cli(
        &["backup", "now", &instance, "--wait"],
        None,
        "backup now --wait",
    );
    // The source's password changes: the next backup fails to connect.
    let client = source.connect("postgres").await.expect("connect to source");
    client
        .batch_execute("ALTER USER postgres PASSWORD 'changed-pw'")
        .await
        .expect("change the password");
    let failed = up
        .cli(
            &["backup", "now", &instance, "--wait", "--output", "json"],
            None,
        )
        .unwrap();
    assert!(!failed.status.success(), "the backup should fail");

    receiver
        .wait_for(1, Duration::from_secs(60))
        .await
        .expect("the failure is notified");
    // Several sender passes later, still exactly one.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = receiver.received();
    assert_eq!(got.len(), 1, "exactly one notification: {got:#?}");
    let request = &got[0];
    assert!(
        request
            .request_line
            .starts_with(&format!("POST /hooks/{URL_TOKEN} ")),
        "{}",
        request.request_line
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("x-pgvault-event"), Some("failed"));
    assert_signed(request);
    let body = request.json();
    assert_eq!(body["event"], "failed", "{body}");
    assert_eq!(body["vault"], "demo", "{body}");
    assert_eq!(body["server"], "src", "{body}");
    assert_eq!(body["database"], "mixed", "{body}");
    assert_eq!(body["operation"], "ON_DEMAND_BACKUP", "{body}");
    assert_eq!(body["state"], "FAILED", "{body}");
    assert_eq!(body["error_code"], "UserErrorDBUserAuthFailed", "{body}");
    assert!(
        body["recommended_action"]
            .as_str()
            .is_some_and(|a| !a.is_empty()),
        "{body}"
    );
    let first_job = body["job_id"].as_str().expect("a job id").to_string();
    assert_eq!(
        request.header("x-pgvault-delivery"),
        body["delivery_id"].as_str(),
        "{body}"
    );

    // A second channel whose receiver is down: its port is closed.
    let late_addr = closed_port();
    let late_url = format!("http://{late_addr}/late/{URL_TOKEN}");
    cli(
        &[
            "notification",
            "channel",
            "add",
            "late",
            "--vault",
            "demo",
            "--url",
            &late_url,
            "--format",
            "generic",
            "--events",
            "failed,missed",
            "--signing-secret",
            "hook-key",
        ],
        None,
        "notification channel add late",
    );
    let failed_again = up
        .cli(&["backup", "now", &instance, "--wait"], None)
        .unwrap();
    assert!(
        !failed_again.status.success(),
        "the second backup fails too"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let retried = loop {
        let list = deliveries(&up);
        let late = of_channel(&list, "late");
        if let Some(d) = late.first().filter(|d| d["attempts"].as_u64() >= Some(2)) {
            break (*d).clone();
        }
        assert!(
            Instant::now() < deadline,
            "no retried delivery to late: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(retried["state"], "pending", "{retried}");
    let error = retried["last_error"].as_str().unwrap_or_default();
    assert!(!error.is_empty(), "{retried}");
    assert!(
        !error.contains(URL_TOKEN),
        "the URL is in the error: {error}"
    );

    // The receiver comes up on that port: the next retry reaches it.
    let late = Receiver::start_on(late_addr).await.expect("late receiver");
    let got_late = late
        .wait_for(1, Duration::from_secs(60))
        .await
        .expect("the retried notification arrives");
    assert_signed(&got_late[0]);
    let late_body = got_late[0].json();
    assert_eq!(late_body["event"], "failed", "{late_body}");
    assert_ne!(
        late_body["job_id"],
        first_job.as_str(),
        "the second failure"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let delivered = loop {
        let list = deliveries(&up);
        if let Some(d) = of_channel(&list, "late")
            .first()
            .filter(|d| d["state"] == "delivered")
        {
            break (*d).clone();
        }
        assert!(
            Instant::now() < deadline,
            "late never shows delivered: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(delivered["attempts"].as_u64() >= Some(3), "{delivered}");
    assert_eq!(
        delivered["job"],
        late_body["job_id"]
            .as_str()
            .map(|j| format!("jobs/{j}"))
            .unwrap()
            .as_str()
    );
    // The first channel got the second failure too, once.
    let list = deliveries(&up);
    let ops = of_channel(&list, "ops");
    assert_eq!(ops.len(), 2, "{list:#?}");
    assert!(
        ops.iter()
            .all(|d| d["state"] == "delivered" && d["attempts"] == 1),
        "{list:#?}"
    );
    assert_eq!(receiver.received().len(), 2);

    let table = cli(
        &["notification", "list", "--vault", "demo"],
        None,
        "notification list",
    );
    assert!(table.contains("delivered"), "{table}");
    for text in [up.process.log_text(), table, channels] {
        assert!(
            !text.contains(SIGNING_KEY),
            "the signing key leaked:\n{text}"
        );
        assert!(!text.contains(URL_TOKEN), "the URL's token leaked:\n{text}");
    }
}
