//! Verifying recovery points through the real binaries (coordinator, a
//! worker, RabbitMQ, PostgreSQL) on a file:// datastore the test damages on
//! disk:
//! - a sound point verifies (`pgvault recovery-point verify --wait`) and
//!   shows `ok`; a flipped byte in a chunk fails verify naming the object
//!   and its table (and fails a restore naming the object), a deleted chunk
//!   is missing, a stray object is unexpected, a chunk swapped in from
//!   another point is corrupt, a truncated manifest is a manifest error —
//!   each recorded on the point with its code;
//! - a policy's verify schedule (the clock moved past its slot) verifies
//!   the point once and records the result.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
use pgvault_e2e::fixtures;
use pgvault_e2e::pgvault::{Api, PgvaultCluster};
use pgvault_e2e::rabbitmq::RabbitMq;
use pgvault_e2e::scenario::{JOB_TIMEOUT, SOURCE_PASSWORD, files_under, protect, setup_vault};
use pgvault_localpg::TempCluster;
use pgvault_proto::v1::*;
use serde_json::Value;

/// RabbitMQ, a source cluster with a pgbench database, a coordinator and
/// a worker; vault `f` stores points under a temporary directory.
struct Servers {
    api: Api,
    cluster: PgvaultCluster,
    source: TempCluster,
    _broker: RabbitMq,
    /// The backup instance protecting the database.
    instance: String,
    store: tempfile::TempDir,
}

async fn start(database: &str) -> Servers {
    let store = tempfile::Builder::new()
        .prefix("pgvault-verify-")
        .tempdir()
        .expect("datastore directory");
    let url = format!("file://{}", store.path().display());
    let broker = tokio::task::spawn_blocking(RabbitMq::start)
        .await
        .expect("join")
        .expect("start RabbitMQ");
    let source = TempCluster::start(SOURCE_PASSWORD).expect("start source PostgreSQL");
    fixtures::pgbench(&source, database, 1)
        .await
        .expect("pgbench database");
    let amqp = broker.url();
    let cluster = tokio::task::spawn_blocking(move || PgvaultCluster::start(&amqp, 1))
        .await
        .expect("join")
        .expect("start coordinator and a worker");
    let mut api = cluster.api().await.expect("connect");
    setup_vault(&mut api, &url, &source).await.expect("vault f");
    let instance = protect(&mut api, database).await.expect("protect");
    Servers {
        api,
        cluster,
        source,
        _broker: broker,
        instance,
        store,
    }
}

async fn backup(s: &mut Servers) -> RecoveryPoint {
    let job = s
        .api
        .instances
        .backup_now(BackupNowRequest {
            name: s.instance.clone(),
            rule: RetentionRuleKind::Default as i32,
            ..Default::default()
        })
        .await
        .expect("backup now")
        .into_inner();
    let job = s
        .api
        .wait_for_job(&job.name, JOB_TIMEOUT)
        .await
        .expect("backup ends");
    assert_eq!(
        job.state,
        JobState::Completed as i32,
        "{job:?}\n{}",
        s.cluster.logs()
    );
    s.api
        .recovery_points
        .get_recovery_point(GetRecoveryPointRequest {
            name: job.recovery_point.clone(),
        })
        .await
        .expect("get point")
        .into_inner()
}

/// The point's directory on disk.
fn dir_of(store: &Path, point: &RecoveryPoint) -> PathBuf {
    let parts: Vec<&str> = point.name.split('/').collect();
    store.join(parts[1]).join(parts[3]).join(parts[5])
}

/// The relative path of the first data chunk of `table` in the point's manifest.
fn chunk_of(dir: &Path, table: &str) -> String {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest"))
            .expect("manifest JSON");
    let tables = manifest["tables"].as_array().expect("tables");
    let entry = tables
        .iter()
        .find(|t| t["name"] == table)
        .unwrap_or_else(|| panic!("no table {table} in {manifest}"));
    entry["chunks"][0]["object"]["path"]
        .as_str()
        .expect("chunk path")
        .to_string()
}

fn ok(output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Verifies `point` and waits; returns the ended job.
async fn verify(s: &mut Servers, point: &RecoveryPoint) -> Job {
    let job = s
        .api
        .recovery_points
        .verify_recovery_point(VerifyRecoveryPointRequest {
            name: point.name.clone(),
        })
        .await
        .expect("verify")
        .into_inner();
    assert_eq!(job.operation, Operation::Verify as i32, "{job:?}");
    s.api
        .wait_for_job(&job.name, JOB_TIMEOUT)
        .await
        .expect("verify ends")
}

/// Verify fails with `code`, its message naming every word of `names`,
/// and the point records the failure.
async fn fails_with(s: &mut Servers, point: &RecoveryPoint, code: &str, names: &[&str]) {
    let job = verify(s, point).await;
    assert_eq!(job.state, JobState::Failed as i32, "{job:?}");
    let error = job.error.clone().expect("error");
    assert_eq!(error.code, code, "{error:?}");
    for name in names {
        assert!(error.message.contains(name), "{name:?} not in {error:?}");
    }
    assert!(!error.recommended_action.is_empty(), "{error:?}");
    let shown = shown(s, point).await;
    assert_eq!(shown.last_verify_result, "failed", "{shown:?}");
    assert_eq!(shown.last_verify_error_code, code, "{shown:?}");
    assert_eq!(shown.last_verify_job, job.name, "{shown:?}");
}

async fn shown(s: &mut Servers, point: &RecoveryPoint) -> RecoveryPoint {
    s.api
        .recovery_points
        .get_recovery_point(GetRecoveryPointRequest {
            name: point.name.clone(),
        })
        .await
        .expect("get point")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_names_a_flipped_byte_a_missing_chunk_a_stray_a_swapped_chunk_and_a_truncated_manifest()
 {
    let mut s = start("shop").await;
    let store = s.store.path().to_path_buf();
    let point = backup(&mut s).await;
    let dir = dir_of(&store, &point);
    let files_before = files_under(&store);

    // A sound point verifies through the CLI and shows ok.
    let out = ok(s
        .cluster
        .cli(&["recovery-point", "verify", &point.name, "--wait"], None)
        .expect("cli"));
    assert!(out.contains("verify"), "{out}");
    let json: Value = serde_json::from_str(&ok(s
        .cluster
        .cli(
            &["recovery-point", "show", &point.name, "--output", "json"],
            None,
        )
        .expect("cli")))
    .expect("JSON");
    assert_eq!(json["last_verify_result"], "ok", "{json}");
    assert!(json["last_verified_at"].is_string(), "{json}");
    let jobs = ok(s
        .cluster
        .cli(
            &["job", "list", "--operation", "verify", "--output", "json"],
            None,
        )
        .expect("cli"));
    assert!(
        jobs.contains("OPERATION_VERIFY") || jobs.contains("VERIFY"),
        "{jobs}"
    );

    // A flipped byte in a chunk of pgbench_accounts: verify and restore name it.
    let chunk = chunk_of(&dir, "pgbench_accounts");
    let path = dir.join(&chunk);
    let original = std::fs::read(&path).expect("read chunk");
    let mut flipped = original.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    std::fs::write(&path, &flipped).expect("flip a byte");
    fails_with(
        &mut s,
        &point,
        "VerifyObjectCorrupt",
        &[&chunk, "public.pgbench_accounts"],
    )
    .await;
    let restore = s
        .api
        .restores
        .restore_as_database(RestoreAsDatabaseRequest {
            recovery_point: point.name.clone(),
            target_database: "shop_flipped".into(),
            ..Default::default()
        })
        .await
        .expect("restore")
        .into_inner();
    let restore = s
        .api
        .wait_for_job(&restore.name, JOB_TIMEOUT)
        .await
        .expect("restore ends");
    assert_eq!(restore.state, JobState::Failed as i32, "{restore:?}");
    let error = restore.error.expect("restore error");
    assert!(error.message.contains(&chunk), "{error:?}");
    std::fs::write(&path, &original).expect("repair the chunk");

    // A deleted chunk is missing, named with its table.
    std::fs::rename(&path, store.join("aside")).expect("move the chunk away");
    fails_with(
        &mut s,
        &point,
        "VerifyObjectMissing",
        &[&chunk, "public.pgbench_accounts", "missing"],
    )
    .await;
    std::fs::rename(store.join("aside"), &path).expect("put the chunk back");

    // A stray object in the point's directory is unexpected.
    let stray = dir.join("data").join("stray.copy.zst");
    std::fs::write(&stray, b"not pgvault's").expect("write a stray");
    fails_with(
        &mut s,
        &point,
        "VerifyUnexpectedObject",
        &["data/stray.copy.zst", "not named by the manifest"],
    )
    .await;
    std::fs::remove_file(&stray).expect("remove the stray");

    // The chunk of the same table from another point (other rows) swapped in.
    s.source
        .connect("shop")
        .await
        .expect("connect")
        .batch_execute("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 7 = 0")
        .await
        .expect("change rows");
    let second = backup(&mut s).await;
    let second_dir = dir_of(&store, &second);
    let second_chunk = chunk_of(&second_dir, "pgbench_accounts");
    std::fs::copy(second_dir.join(&second_chunk), &path).expect("swap the chunk in");
    fails_with(
        &mut s,
        &point,
        "VerifyObjectCorrupt",
        &[&chunk, "table public.pgbench_accounts", "the manifest says"],
    )
    .await;
    std::fs::write(&path, &original).expect("repair the chunk");
    let job = verify(&mut s, &point).await;
    assert_eq!(job.state, JobState::Completed as i32, "{job:?}");
    assert_eq!(shown(&mut s, &point).await.last_verify_result, "ok");

    // A truncated manifest no longer matches the SHA-256 of the backup.
    let manifest = dir.join("manifest.json");
    let json = std::fs::read(&manifest).expect("read manifest");
    std::fs::write(&manifest, &json[..json.len() - 10]).expect("truncate manifest");
    fails_with(
        &mut s,
        &point,
        "VerifyManifestCorrupt",
        &["manifest.json", "truncated"],
    )
    .await;
    std::fs::write(&manifest, &json).expect("repair the manifest");

    // Verify never wrote: the first point's files are as they were.
    let files_after: Vec<String> = files_under(&store)
        .into_iter()
        .filter(|f| files_before.contains(f))
        .collect();
    assert_eq!(files_after, files_before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_s_verify_schedule_verifies_each_point_once_per_slot_and_records_it() {
    let mut s = start("sched").await;
    let point = backup(&mut s).await;
    // Due in one to two minutes on a policy the instance moves to.
    let due = Utc::now() + chrono::Duration::minutes(2);
    let at = format!("{:02}:{:02}", due.hour(), due.minute());
    let out = ok(s
        .cluster
        .cli(
            &[
                "policy",
                "create",
                "pv",
                "--vault",
                "f",
                "--weekdays",
                "mon",
                "--at",
                "02:30",
                "--verify",
                &format!("mon,tue,wed,thu,fri,sat,sun@{at}"),
                "--output",
                "json",
            ],
            None,
        )
        .expect("cli"));
    let policy: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(policy["verify_schedule"]["time_of_day"], at, "{policy}");
    s.api
        .instances
        .change_policy(ChangePolicyRequest {
            name: s.instance.clone(),
            policy: "vaults/f/policies/pv".into(),
            reapply_retention: false,
        })
        .await
        .expect("change policy");
    // Three minutes ahead: the verify slot is due.
    s.cluster.set_clock_offset(180).expect("move the clock");
    let deadline = Instant::now() + JOB_TIMEOUT;
    let verified = loop {
        let current = shown(&mut s, &point).await;
        if !current.last_verify_result.is_empty() {
            break current;
        }
        assert!(
            Instant::now() < deadline,
            "the verify slot never ran\n{}",
            s.cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(verified.last_verify_result, "ok", "{verified:?}");
    // Later ticks of the same slot queue nothing more.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let verifies = s
        .api
        .jobs
        .list_jobs(ListJobsRequest {
            operation: Operation::Verify as i32,
            page_size: 100,
            all: true,
            ..Default::default()
        })
        .await
        .expect("list jobs")
        .into_inner()
        .jobs;
    assert_eq!(verifies.len(), 1, "{verifies:?}");
    assert_eq!(verifies[0].recovery_point, point.name, "{verifies:?}");
}
