//! Copies of recovery points to a second datastore (3-2-1), through the real
//! binaries (a coordinator, a worker, RabbitMQ, Azurite, PostgreSQL). The
//! vault keeps its points on local disk; its policy copies each completed
//! point to an Azurite container:
//! - every backup gets a COPY job that leaves the same objects in the copy
//!   container, listed on the point (API and `--output json`); the point
//!   restores identical from its own location and, after its objects on
//!   disk are deleted, from the copy;
//! - with the source down (backups failing) for longer than the retention,
//!   expiry deletes the oldest point and its copy and keeps the newest 3;
//! - a copy to a target that cannot be written fails with
//!   `UserErrorCopyFailed`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use pgvault_datastore::Datastore;
use pgvault_e2e::azurite::Azurite;
use pgvault_e2e::compare::assert_identical;
use pgvault_e2e::fixtures;
use pgvault_e2e::pgvault::{Api, PgvaultCluster};
use pgvault_e2e::rabbitmq::RabbitMq;
use pgvault_localpg::TempCluster;
use pgvault_proto::v1::*;

const SOURCE_PASSWORD: &str = "src-Pa55word!";
const TIMEOUT: Duration = Duration::from_secs(300);
const DAY: i64 = 86_400;

/// Vault `cp` on `primary`, policy `p` copying to `copy_to` for P7D (points
/// kept P7D too, keep-min the default 3), and the instance protecting
/// `mixed` on `source`. Returns the instance's name.
async fn protect(api: &mut Api, source: &TempCluster, primary: &str, copy_to: &str) -> String {
    api.vaults
        .create_vault(CreateVaultRequest {
            vault_id: "cp".into(),
            vault: Some(Vault {
                region: "local".into(),
                standard_datastore: primary.into(),
                ..Default::default()
            }),
        })
        .await
        .expect("create vault");
    api.policies
        .create_policy(CreatePolicyRequest {
            parent: "vaults/cp".into(),
            policy_id: "p".into(),
            policy: Some(Policy {
                schedule: Some(Schedule {
                    weekdays: vec![Weekday::Monday as i32],
                    time_of_day: "02:00".into(),
                    time_zone: "UTC".into(),
                }),
                retention_rules: vec![RetentionRule {
                    kind: RetentionRuleKind::Default as i32,
                    standard_duration: "P7D".into(),
                    archive_duration: String::new(),
                }],
                copy_datastore: copy_to.into(),
                copy_retention: "P7D".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("create policy");
    api.servers
        .register_server(RegisterServerRequest {
            server_id: "source".into(),
            server: Some(Server {
                host: source.host().into(),
                port: source.port().into(),
                region: "local".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("register server");
    api.secrets
        .put_secret(PutSecretRequest {
            secret_id: "source-admin".into(),
            value: format!("user=postgres password={SOURCE_PASSWORD}"),
        })
        .await
        .expect("put secret");
    let response = api
        .instances
        .configure_backup(ConfigureBackupRequest {
            parent: "vaults/cp".into(),
            policy: "vaults/cp/policies/p".into(),
            rows: vec![ConfigureBackupRow {
                server: "servers/source".into(),
                database: "mixed".into(),
                secret: "secrets/source-admin".into(),
            }],
            default_secret: String::new(),
            assign_missing_permissions: true,
            all_databases_of: String::new(),
            role_passwords: false,
        })
        .await
        .expect("configure backup")
        .into_inner();
    let result = &response.results[0];
    assert_eq!(result.readiness, Readiness::Success as i32, "{result:?}");
    result
        .backup_instance
        .as_ref()
        .expect("instance")
        .name
        .clone()
}

/// Jobs of `operation`, once `count` of them ended in `state`.
async fn jobs_in(
    api: &mut Api,
    cluster: &PgvaultCluster,
    operation: Operation,
    state: JobState,
    count: usize,
) -> Vec<Job> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let jobs = api
            .jobs
            .list_jobs(ListJobsRequest {
                operation: operation as i32,
                page_size: 100,
                ..Default::default()
            })
            .await
            .expect("list jobs")
            .into_inner()
            .jobs;
        if state == JobState::Completed
            && let Some(failed) = jobs.iter().find(|j| j.state == JobState::Failed as i32)
        {
            panic!("{operation:?} job failed: {failed:?}\n{}", cluster.logs());
        }
        if jobs.iter().filter(|j| j.state == state as i32).count() >= count {
            return jobs;
        }
        assert!(
            Instant::now() < deadline,
            "{count} {operation:?} job(s) did not reach {state:?}: {jobs:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn backup_now(api: &mut Api, cluster: &PgvaultCluster, instance: &str) -> String {
    let job = api
        .instances
        .backup_now(BackupNowRequest {
            name: instance.into(),
            rule: RetentionRuleKind::Default as i32,
            ..Default::default()
        })
        .await
        .expect("backup now")
        .into_inner();
    let job = api.wait_for_job(&job.name, TIMEOUT).await.expect("wait");
    assert_eq!(
        job.state,
        JobState::Completed as i32,
        "{job:?}\n{}",
        cluster.logs()
    );
    job.recovery_point
}

/// Every object under `url`, as "vault/instance/point/relative path".
async fn objects(url: &str) -> BTreeSet<String> {
    let store = Datastore::open(url).expect("open datastore");
    let root = store.path("");
    let objects = store.object_store();
    let mut listing = objects.list(Some(&root));
    let mut all = BTreeSet::new();
    while let Some(meta) = listing.next().await {
        let location = meta.expect("list objects").location;
        let relative = location
            .prefix_match(&root)
            .map(|parts| {
                parts
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_else(|| location.to_string());
        all.insert(relative);
    }
    all
}

/// The point's directory ("vault/instance/point") from its resource name.
fn point_prefix(name: &str) -> String {
    let parts: Vec<&str> = name.split('/').collect();
    format!("{}/{}/{}", parts[1], parts[3], parts[5])
}

/// The point's directories present in `set`.
fn points_in(set: &BTreeSet<String>) -> BTreeSet<String> {
    set.iter()
        .map(|o| o.split('/').take(3).collect::<Vec<_>>().join("/"))
        .collect()
}

async fn restore(
    api: &mut Api,
    cluster: &PgvaultCluster,
    point: &str,
    database: &str,
    copy: &str,
) -> Job {
    let job = api
        .restores
        .restore_as_database(RestoreAsDatabaseRequest {
            recovery_point: point.into(),
            target_database: database.into(),
            copy_datastore: copy.into(),
            ..Default::default()
        })
        .await
        .expect("restore")
        .into_inner();
    let job = api.wait_for_job(&job.name, TIMEOUT).await.expect("wait");
    assert_eq!(
        job.state,
        JobState::Completed as i32,
        "{job:?}\n{}",
        cluster.logs()
    );
    job
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_in_azurite_restore_identical_without_the_primary_and_expire_keeping_the_newest_3() {
    let (broker, azurite) = tokio::task::spawn_blocking(|| (RabbitMq::start(), Azurite::start()))
        .await
        .expect("join");
    let broker = broker.expect("start RabbitMQ");
    let azurite = azurite.expect("start Azurite");
    let mut source = TempCluster::start(SOURCE_PASSWORD).expect("start source PostgreSQL");
    fixtures::mixed(&source, "mixed")
        .await
        .expect("mixed fixture");
    let url = broker.url();
    let cluster = tokio::task::spawn_blocking(move || PgvaultCluster::start(&url, 1))
        .await
        .expect("join")
        .expect("start coordinator and a worker");
    let disk = tempfile::tempdir().expect("temp dir");
    let primary = file_url(&disk.path().join("primary"));
    let copy_to = azurite.datastore_url("copies");
    let mut api = cluster.api().await.expect("connect");
    let instance = protect(&mut api, &source, &primary, &copy_to).await;

    // Four backups, each copied (verified) to the Azurite container.
    let mut points = Vec::new();
    for _ in 0..4 {
        points.push(backup_now(&mut api, &cluster, &instance).await);
    }
    let copies = jobs_in(&mut api, &cluster, Operation::Copy, JobState::Completed, 4).await;
    assert_eq!(copies.len(), 4, "one copy job per point: {copies:?}");
    let on_disk = objects(&primary).await;
    let in_copy = objects(&copy_to).await;
    assert_eq!(in_copy, on_disk, "the copy holds the same objects");
    assert_eq!(points_in(&in_copy).len(), 4);
    let newest = points[3].clone();
    let shown = api
        .recovery_points
        .get_recovery_point(GetRecoveryPointRequest {
            name: newest.clone(),
        })
        .await
        .expect("get point")
        .into_inner();
    assert_eq!(shown.copies.len(), 1, "{shown:?}");
    assert_eq!(shown.copies[0].datastore, copy_to);
    assert_eq!(shown.copies[0].state, "COPIED");
    let json = cluster
        .cli(
            &["--output", "json", "recovery-point", "get", &newest],
            None,
        )
        .expect("cli");
    let text = String::from_utf8_lossy(&json.stdout);
    assert!(
        json.status.success() && text.contains("\"copies\"") && text.contains("\"COPIED\""),
        "{text}\n{}",
        String::from_utf8_lossy(&json.stderr)
    );

    // Restored from the point itself, then from the copy once the point's
    // own objects are gone: identical both times.
    restore(&mut api, &cluster, &newest, "mixed_from_primary", "").await;
    assert_identical(&source, "mixed", &source, "mixed_from_primary")
        .await
        .expect("restored from the primary is identical");
    std::fs::remove_dir_all(disk.path().join("primary").join(point_prefix(&newest)))
        .expect("delete the primary's objects");
    restore(&mut api, &cluster, &newest, "mixed_from_copy", &copy_to).await;
    assert_identical(&source, "mixed", &source, "mixed_from_copy")
        .await
        .expect("restored from the copy is identical");

    // Backups fail (the source is down) for longer than the retention:
    // expiry deletes the oldest point and its copy, the newest 3 remain.
    source.stop().expect("stop the source");
    cluster.set_clock_offset(9 * DAY).expect("move the clock");
    let deletes = jobs_in(
        &mut api,
        &cluster,
        Operation::Delete,
        JobState::Completed,
        2,
    )
    .await;
    let expected: BTreeSet<String> = points[1..].iter().map(|p| point_prefix(p)).collect();
    let deadline = Instant::now() + TIMEOUT;
    while points_in(&objects(&copy_to).await) != expected {
        assert!(
            Instant::now() < deadline,
            "copies left: {:?}\n{}",
            points_in(&objects(&copy_to).await),
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Another pass changes nothing: exactly one point and one copy deleted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deletes_after = jobs_in(
        &mut api,
        &cluster,
        Operation::Delete,
        JobState::Completed,
        2,
    )
    .await;
    assert_eq!(deletes_after.len(), 2, "{deletes:?} then {deletes_after:?}");
    assert_eq!(points_in(&objects(&copy_to).await), expected);
    let listed: BTreeSet<String> = api
        .recovery_points
        .list_recovery_points(ListRecoveryPointsRequest {
            parent: instance,
            ..Default::default()
        })
        .await
        .expect("list points")
        .into_inner()
        .recovery_points
        .into_iter()
        .map(|p| {
            assert_eq!(p.copies.len(), 1, "{p:?}");
            assert_eq!(p.copies[0].state, "COPIED", "{p:?}");
            p.name
        })
        .collect();
    assert_eq!(listed, points[1..].iter().cloned().collect());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_to_a_target_that_cannot_be_written_fails_with_the_stable_code() {
    let broker = tokio::task::spawn_blocking(RabbitMq::start)
        .await
        .expect("join")
        .expect("start RabbitMQ");
    let source = TempCluster::start(SOURCE_PASSWORD).expect("start source PostgreSQL");
    fixtures::mixed(&source, "mixed")
        .await
        .expect("mixed fixture");
    let url = broker.url();
    let cluster = tokio::task::spawn_blocking(move || PgvaultCluster::start(&url, 1))
        .await
        .expect("join")
        .expect("start coordinator and a worker");
    let disk = tempfile::tempdir().expect("temp dir");
    let primary = file_url(&disk.path().join("primary"));
    let target = disk.path().join("copies");
    let mut api = cluster.api().await.expect("connect");
    let instance = protect(&mut api, &source, &primary, &file_url(&target)).await;
    // The target was checked and created with the policy; now it is a file,
    // where no copy can be written.
    std::fs::remove_dir_all(&target).expect("remove the copy directory");
    std::fs::write(&target, b"not a directory").expect("a file in its place");

    let point = backup_now(&mut api, &cluster, &instance).await;
    let jobs = jobs_in(&mut api, &cluster, Operation::Copy, JobState::Failed, 1).await;
    let failed = &jobs[0];
    let error = failed.error.as_ref().expect("the failed copy's error");
    assert_eq!(error.code, "UserErrorCopyFailed", "{failed:?}");
    assert!(
        error
            .message
            .contains("copying the recovery point to file://"),
        "{error:?}"
    );
    assert!(!error.recommended_action.is_empty(), "{error:?}");
    assert_eq!(failed.recovery_point, point);
    // The point itself is complete and restorable; it just has no copy.
    let shown = api
        .recovery_points
        .get_recovery_point(GetRecoveryPointRequest { name: point })
        .await
        .expect("get point")
        .into_inner();
    assert!(shown.copies.is_empty(), "{shown:?}");
}
