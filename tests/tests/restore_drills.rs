//! Restore drills through the real binaries (coordinator, a worker,
//! RabbitMQ, a source PostgreSQL and a separate drill server) on a file://
//! datastore the test damages on disk:
//! - a policy naming an unknown drill server is refused with the fix;
//! - under a policy with `--drill-every 1` a backup is followed by a DRILL
//!   job that completes; `recovery-point show` reports the point verified
//!   by drill on the drill server (tables, rows, row checksums compared),
//!   and no scratch database is left on the drill server;
//! - with one chunk object corrupted, the next drill (on demand, `--wait`)
//!   fails naming the object, the point records the failure code, and the
//!   scratch database is gone again.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Instant;

use pgvault_e2e::fixtures;
use pgvault_e2e::pgvault::{Api, PgvaultCluster};
use pgvault_e2e::rabbitmq::RabbitMq;
use pgvault_e2e::scenario::{JOB_TIMEOUT, SOURCE_PASSWORD, protect, setup_vault};
use pgvault_localpg::TempCluster;
use pgvault_proto::v1::*;
use serde_json::Value;

const DRILL_PASSWORD: &str = "drill-pw";

/// Every scratch database left on `server`.
async fn scratch_databases(server: &TempCluster) -> Vec<String> {
    let client = server
        .connect("postgres")
        .await
        .expect("connect to drill server");
    client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'pgvault\\_drill\\_%'",
            &[],
        )
        .await
        .expect("list databases")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout(&output)
}

/// The point's directory on disk.
fn dir_of(store: &Path, point: &str) -> PathBuf {
    let parts: Vec<&str> = point.split('/').collect();
    store.join(parts[1]).join(parts[3]).join(parts[5])
}

/// The relative path of the first data chunk of `table` in the point's manifest.
fn chunk_of(dir: &Path, table: &str) -> String {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest"))
            .expect("manifest JSON");
    let entry = manifest["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["name"] == table)
        .unwrap_or_else(|| panic!("no table {table} in {manifest}"))
        .clone();
    assert!(
        entry["chunks"][0]["row_digest"].is_string(),
        "the backup records row checksums: {entry}"
    );
    entry["chunks"][0]["object"]["path"]
        .as_str()
        .expect("chunk path")
        .to_string()
}

/// Rows of every chunk of the point's manifest.
fn manifest_rows(dir: &Path) -> u64 {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest"))
            .expect("manifest JSON");
    manifest["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .flat_map(|t| t["chunks"].as_array().expect("chunks").iter())
        .map(|c| c["rows"].as_u64().expect("rows"))
        .sum()
}

async fn drills(api: &mut Api) -> Vec<Job> {
    api.jobs
        .list_jobs(ListJobsRequest {
            operation: Operation::Drill as i32,
            page_size: 100,
            all: true,
            ..Default::default()
        })
        .await
        .expect("list jobs")
        .into_inner()
        .jobs
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drill_after_every_backup_verifies_the_point_and_a_corrupted_chunk_fails_the_next_naming_it()
 {
    let store = tempfile::Builder::new()
        .prefix("pgvault-drill-")
        .tempdir()
        .expect("datastore directory");
    let url = format!("file://{}", store.path().display());
    let broker = tokio::task::spawn_blocking(RabbitMq::start)
        .await
        .expect("join")
        .expect("start RabbitMQ");
    let source = TempCluster::start(SOURCE_PASSWORD).expect("start source PostgreSQL");
    let drill_server = TempCluster::start(DRILL_PASSWORD).expect("start drill PostgreSQL");
    fixtures::pgbench(&source, "shop", 1)
        .await
        .expect("pgbench database");
    let amqp = broker.url();
    let cluster = tokio::task::spawn_blocking(move || PgvaultCluster::start(&amqp, 1))
        .await
        .expect("join")
        .expect("start coordinator and a worker");
    let mut api = cluster.api().await.expect("connect");
    setup_vault(&mut api, &url, &source).await.expect("vault f");
    let instance = protect(&mut api, "shop").await.expect("protect");
    api.servers
        .register_server(RegisterServerRequest {
            server_id: "drill".into(),
            server: Some(Server {
                host: drill_server.host().into(),
                port: drill_server.port().into(),
                region: "local".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("register the drill server");
    api.secrets
        .put_secret(PutSecretRequest {
            secret_id: "drill-admin".into(),
            value: format!("user=postgres password={DRILL_PASSWORD}"),
        })
        .await
        .expect("put secret");
    api.secrets
        .grant_secret_access(GrantSecretAccessRequest {
            secret: "secrets/drill-admin".into(),
            vault: "vaults/f".into(),
        })
        .await
        .expect("grant the secret to the vault");

    // An unknown drill server is refused, naming it and the fix.
    let policy_args = |server: &'static str| {
        vec![
            "policy",
            "create",
            "pd",
            "--vault",
            "f",
            "--weekdays",
            "mon",
            "--at",
            "02:30",
            "--drill-server",
            server,
            "--drill-secret",
            "drill-admin",
            "--drill-every",
            "1",
            "--output",
            "json",
        ]
    };
    let refused = cluster.cli(&policy_args("nowhere"), None).expect("cli");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("unknown drill server \"nowhere\"")
            && stderr.contains("pgvault server list"),
        "{stderr}"
    );
    let policy: Value =
        serde_json::from_str(&ok(cluster.cli(&policy_args("drill"), None).expect("cli")))
            .expect("JSON");
    assert_eq!(policy["drill_server"], "drill", "{policy}");
    assert_eq!(policy["drill_every"], 1, "{policy}");
    api.instances
        .change_policy(ChangePolicyRequest {
            name: instance.clone(),
            policy: "vaults/f/policies/pd".into(),
            reapply_retention: false,
        })
        .await
        .expect("change policy");

    // A backup: its point is drilled when it completes.
    let job = api
        .instances
        .backup_now(BackupNowRequest {
            name: instance.clone(),
            rule: RetentionRuleKind::Default as i32,
            ..Default::default()
        })
        .await
        .expect("backup now")
        .into_inner();
    let backup = api
        .wait_for_job(&job.name, JOB_TIMEOUT)
        .await
        .expect("backup ends");
    assert_eq!(
        backup.state,
        JobState::Completed as i32,
        "{backup:?}\n{}",
        cluster.logs()
    );
    let point = backup.recovery_point.clone();
    let deadline = Instant::now() + JOB_TIMEOUT;
    let drill = loop {
        if let Some(drill) = drills(&mut api).await.into_iter().next() {
            break drill;
        }
        assert!(
            Instant::now() < deadline,
            "no drill was queued\n{}",
            cluster.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    assert_eq!(drill.recovery_point, point, "{drill:?}");
    let drill = api
        .wait_for_job(&drill.name, JOB_TIMEOUT)
        .await
        .expect("drill ends");
    assert_eq!(
        drill.state,
        JobState::Completed as i32,
        "{drill:?}\n{}",
        cluster.logs()
    );

    let shown = ok(cluster
        .cli(&["recovery-point", "show", &point], None)
        .expect("cli"));
    let line = shown
        .lines()
        .find(|l| l.starts_with("DRILL"))
        .unwrap_or_else(|| panic!("no DRILL line in {shown}"));
    assert!(
        line.contains("verified by drill at") && line.contains("on drill (4 tables, "),
        "{line}"
    );
    assert!(!line.contains("row counts only"), "{line}");
    let json: Value = serde_json::from_str(&ok(cluster
        .cli(
            &["recovery-point", "show", &point, "--output", "json"],
            None,
        )
        .expect("cli")))
    .expect("JSON");
    assert_eq!(json["last_drill_result"], "ok", "{json}");
    assert_eq!(json["last_drill_checksums"], true, "{json}");
    assert_eq!(json["last_drill_job"], drill.name, "{json}");
    // Every row the backup recorded was read back (pgbench: 100,000 accounts…).
    let dir = dir_of(store.path(), &point);
    assert_eq!(json["last_drill_rows"], manifest_rows(&dir), "{json}");
    assert!(
        json["last_drill_rows"].as_u64().unwrap() > 100_000,
        "{json}"
    );
    assert!(scratch_databases(&drill_server).await.is_empty());

    // One chunk object corrupted: the next drill fails naming it.
    let chunk = chunk_of(&dir, "pgbench_accounts");
    let path = dir.join(&chunk);
    let mut bytes = std::fs::read(&path).expect("read chunk");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&path, &bytes).expect("flip a byte");
    let failed = cluster
        .cli(
            &[
                "recovery-point",
                "drill",
                &point,
                "--server",
                "drill",
                "--secret",
                "drill-admin",
                "--wait",
            ],
            None,
        )
        .expect("cli");
    assert!(!failed.status.success(), "{}", stdout(&failed));
    let jobs = drills(&mut api).await;
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let second = jobs
        .into_iter()
        .find(|j| j.name != drill.name)
        .expect("the second drill");
    assert_eq!(second.state, JobState::Failed as i32, "{second:?}");
    let error = second.error.clone().expect("error");
    assert!(error.message.contains(&chunk), "{error:?}");
    assert!(!error.recommended_action.is_empty(), "{error:?}");
    let json: Value = serde_json::from_str(&ok(cluster
        .cli(
            &["recovery-point", "show", &point, "--output", "json"],
            None,
        )
        .expect("cli")))
    .expect("JSON");
    assert_eq!(json["last_drill_result"], "failed", "{json}");
    assert_eq!(json["last_drill_error_code"], error.code.as_str(), "{json}");
    assert_eq!(json["last_drill_job"], second.name, "{json}");
    let shown = ok(cluster
        .cli(&["recovery-point", "show", &point], None)
        .expect("cli"));
    assert!(
        shown.contains(&format!("failed ({})", error.code)),
        "{shown}"
    );
    assert!(scratch_databases(&drill_server).await.is_empty());
}
