//! Policies over time, through the real binaries (two coordinators or one,
//! a worker, RabbitMQ, Azurite, PostgreSQL). Time moves through the
//! coordinators' clock-offset file; nothing sleeps for a schedule:
//! - a policy due a minute or two from now fires exactly once with two
//!   coordinators running, and restarting the leader mid-slot does not fire
//!   it again;
//! - advancing the clock expires recovery points through TIER_MOVE and
//!   DELETE jobs against real Azurite containers (standard and archive), and
//!   after each step exactly the right blobs remain in each container; a
//!   restore from the archive tier rehydrates the point first, and the
//!   rehydrated copy is deleted when its period ends; a soft-deleted point
//!   keeps its blobs through the vault's window and is purged after it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
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

struct Servers {
    _broker: RabbitMq,
    azurite: Azurite,
    source: TempCluster,
    cluster: PgvaultCluster,
}

async fn start_servers() -> Servers {
    let (broker, azurite) = tokio::task::spawn_blocking(|| (RabbitMq::start(), Azurite::start()))
        .await
        .expect("join");
    let broker = broker.expect("start RabbitMQ");
    let azurite = azurite.expect("start Azurite");
    let source = TempCluster::start(SOURCE_PASSWORD).expect("start source PostgreSQL");
    fixtures::mixed(&source, "mixed")
        .await
        .expect("mixed fixture");
    let url = broker.url();
    let cluster = tokio::task::spawn_blocking(move || PgvaultCluster::start(&url, 1))
        .await
        .expect("join")
        .expect("start coordinator and a worker");
    Servers {
        _broker: broker,
        azurite,
        source,
        cluster,
    }
}

/// Vault `lc` (standard and optional archive containers), policy `p`,
/// server `source` with its secret, and the instance protecting `mixed`.
async fn protect(
    api: &mut Api,
    s: &Servers,
    archive: Option<&str>,
    schedule: Schedule,
    rules: Vec<RetentionRule>,
) -> String {
    api.vaults
        .create_vault(CreateVaultRequest {
            vault_id: "lc".into(),
            vault: Some(Vault {
                region: "local".into(),
                standard_datastore: s.azurite.datastore_url("lc-standard"),
                archive_datastore: archive
                    .map(|c| s.azurite.datastore_url(c))
                    .unwrap_or_default(),
                ..Default::default()
            }),
        })
        .await
        .expect("create vault");
    api.policies
        .create_policy(CreatePolicyRequest {
            parent: "vaults/lc".into(),
            policy_id: "p".into(),
            policy: Some(Policy {
                schedule: Some(schedule),
                retention_rules: rules,
                // Only the newest point is held past its expiry (the
                // default floor of 3 would hold every point here).
                keep_min: 1,
                ..Default::default()
            }),
        })
        .await
        .expect("create policy");
    api.servers
        .register_server(RegisterServerRequest {
            server_id: "source".into(),
            server: Some(Server {
                host: s.source.host().into(),
                port: s.source.port().into(),
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
            parent: "vaults/lc".into(),
            policy: "vaults/lc/policies/p".into(),
            rows: vec![ConfigureBackupRow {
                server: "servers/source".into(),
                database: "mixed".into(),
                secret: "secrets/source-admin".into(),
            }],
            default_secret: String::new(),
            // The owner token grants the vault access to the secret inline.
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

/// Jobs of `operation` (in any state), once `count` of them completed;
/// fails on a failed one.
async fn ended_jobs(api: &mut Api, s: &Servers, operation: Operation, count: usize) -> Vec<Job> {
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
        if let Some(failed) = jobs.iter().find(|j| j.state == JobState::Failed as i32) {
            panic!("{operation:?} job failed: {failed:?}\n{}", s.cluster.logs());
        }
        let ended = jobs
            .iter()
            .filter(|j| j.state == JobState::Completed as i32)
            .count();
        if ended >= count {
            return jobs;
        }
        assert!(
            Instant::now() < deadline,
            "{count} {operation:?} job(s) did not complete: {jobs:?}\n{}",
            s.cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn backup_now(api: &mut Api, s: &Servers, instance: &str, rule: RetentionRuleKind) -> Job {
    let job = api
        .instances
        .backup_now(BackupNowRequest {
            name: instance.into(),
            rule: rule as i32,
            workers: 0,
        })
        .await
        .expect("backup now")
        .into_inner();
    let job = api.wait_for_job(&job.name, TIMEOUT).await.expect("wait");
    assert_eq!(
        job.state,
        JobState::Completed as i32,
        "{job:?}\n{}",
        s.cluster.logs()
    );
    job
}

/// Every blob in `container`, as "vault/instance/point…/relative path".
async fn blobs(s: &Servers, container: &str) -> BTreeSet<String> {
    let store = Datastore::open(&s.azurite.datastore_url(container)).expect("open container");
    let objects = store.object_store();
    let mut listing = objects.list(None);
    let mut all = BTreeSet::new();
    while let Some(meta) = listing.next().await {
        all.insert(meta.expect("list blobs").location.to_string());
    }
    all
}

/// The point's directory ("vault/instance/point") from its resource name.
fn point_prefix(name: &str) -> String {
    let parts: Vec<&str> = name.split('/').collect();
    format!("{}/{}/{}", parts[1], parts[3], parts[5])
}

/// `set`'s blobs under `prefix`, relative to it.
fn under(set: &BTreeSet<String>, prefix: &str) -> BTreeSet<String> {
    set.iter()
        .filter_map(|b| b.strip_prefix(&format!("{prefix}/")).map(str::to_string))
        .collect()
}

/// The blobs of each `(prefix, relative files)` joined.
fn expected(points: &[(&str, &BTreeSet<String>)]) -> BTreeSet<String> {
    points
        .iter()
        .flat_map(|(prefix, files)| files.iter().map(move |f| format!("{prefix}/{f}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slot_due_a_minute_from_now_fires_once_with_two_coordinators_and_a_leader_restart() {
    let mut s = start_servers().await;
    let mut api = s.cluster.api().await.expect("connect");
    // The first coordinator leads the scheduler before the second starts.
    let deadline = Instant::now() + TIMEOUT;
    while !s
        .cluster
        .coordinator
        .log_text()
        .lines()
        .any(|l| l.contains("now the leader") && l.contains("scheduler"))
    {
        assert!(Instant::now() < deadline, "{}", s.cluster.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.cluster.add_coordinator().expect("second coordinator");

    // Due in one to two minutes: never before the instance is configured.
    let due = Utc::now() + chrono::Duration::minutes(2);
    let schedule = Schedule {
        weekdays: (1..=7).collect(),
        time_of_day: format!("{:02}:{:02}", due.hour(), due.minute()),
        time_zone: "UTC".into(),
    };
    let rules = vec![RetentionRule {
        kind: RetentionRuleKind::Default as i32,
        standard_duration: "P7D".into(),
        archive_duration: String::new(),
    }];
    let instance = protect(&mut api, &s, None, schedule, rules).await;
    // Three minutes ahead: the slot is due now, on both coordinators' clocks.
    s.cluster.set_clock_offset(180).expect("move the clock");
    // Wait until the slot's job exists (ended or not).
    let deadline = Instant::now() + TIMEOUT;
    while ended_jobs(&mut api, &s, Operation::ScheduledBackup, 0)
        .await
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the slot never fired\n{}",
            s.cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Stop the leader while its slot's backup runs; the other takes over.
    // (It is started again only after the takeover: a restarted leader may
    // otherwise win the lock back before the other's next look.)
    s.cluster.coordinator.stop(Duration::from_secs(10));
    let deadline = Instant::now() + TIMEOUT;
    while !s.cluster.extra_coordinators[0]
        .log_text()
        .lines()
        .any(|l| l.contains("now the leader") && l.contains("scheduler"))
    {
        assert!(
            Instant::now() < deadline,
            "no takeover\n{}",
            s.cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.cluster
        .restart_coordinator()
        .expect("start the old leader again");
    let mut api = s.cluster.api().await.expect("reconnect");
    let jobs = ended_jobs(&mut api, &s, Operation::ScheduledBackup, 1).await;
    assert_eq!(
        jobs.len(),
        1,
        "one job for one slot: {jobs:?}\n{}",
        s.cluster.logs()
    );
    let points = api
        .recovery_points
        .list_recovery_points(ListRecoveryPointsRequest {
            parent: instance,
            ..Default::default()
        })
        .await
        .expect("list points")
        .into_inner()
        .recovery_points;
    assert_eq!(points.len(), 1, "{points:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn advancing_the_clock_moves_and_deletes_points_leaving_exactly_the_right_blobs() {
    let s = start_servers().await;
    let mut api = s.cluster.api().await.expect("connect");
    let schedule = Schedule {
        weekdays: vec![Weekday::Monday as i32],
        time_of_day: "02:00".into(),
        time_zone: "UTC".into(),
    };
    let rules = vec![
        RetentionRule {
            kind: RetentionRuleKind::Default as i32,
            standard_duration: "P7D".into(),
            archive_duration: "P6M".into(),
        },
        RetentionRule {
            kind: RetentionRuleKind::Weekly as i32,
            standard_duration: "P14D".into(),
            archive_duration: String::new(),
        },
    ];
    let instance = protect(&mut api, &s, Some("lc-archive"), schedule, rules).await;
    // A: Default (archived at 7 days), B: Weekly (deleted at 14 days), C:
    // the newest, kept forever once protection stops per policy (so no
    // scheduled backup adds points while the clock moves).
    let mut names = Vec::new();
    for rule in [
        RetentionRuleKind::Default,
        RetentionRuleKind::Weekly,
        RetentionRuleKind::Default,
    ] {
        names.push(
            backup_now(&mut api, &s, &instance, rule)
                .await
                .recovery_point,
        );
    }
    api.instances
        .stop_protection(StopProtectionRequest {
            name: instance.clone(),
            mode: StopMode::KeepPerPolicy as i32,
        })
        .await
        .expect("stop protection");
    let [a, b, c] = [0, 1, 2].map(|i| point_prefix(&names[i]));
    let standard = blobs(&s, "lc-standard").await;
    let [files_a, files_b, files_c] = [&a, &b, &c].map(|p| under(&standard, p));
    assert!(
        files_a.contains("manifest.json") && files_a.len() > 2,
        "{files_a:?}"
    );
    assert_eq!(
        standard,
        expected(&[(&a, &files_a), (&b, &files_b), (&c, &files_c)])
    );
    assert!(blobs(&s, "lc-archive").await.is_empty());

    // Day 8: A moves to archive (copied, verified, standard copy deleted).
    s.cluster.set_clock_offset(8 * DAY).expect("clock");
    ended_jobs(&mut api, &s, Operation::TierMove, 1).await;
    assert_eq!(
        blobs(&s, "lc-standard").await,
        expected(&[(&b, &files_b), (&c, &files_c)])
    );
    assert_eq!(blobs(&s, "lc-archive").await, expected(&[(&a, &files_a)]));
    let archived = api
        .recovery_points
        .get_recovery_point(GetRecoveryPointRequest {
            name: names[0].clone(),
        })
        .await
        .expect("archived point")
        .into_inner();
    assert_eq!(archived.tier, DatastoreTier::Archive as i32);

    // Day 15: B is deleted.
    s.cluster.set_clock_offset(15 * DAY).expect("clock");
    ended_jobs(&mut api, &s, Operation::Delete, 1).await;
    assert_eq!(blobs(&s, "lc-standard").await, expected(&[(&c, &files_c)]));
    assert_eq!(blobs(&s, "lc-archive").await, expected(&[(&a, &files_a)]));

    // Restoring A rehydrates it into the standard container first.
    let restore = api
        .restores
        .restore_as_database(RestoreAsDatabaseRequest {
            recovery_point: names[0].clone(),
            target_database: "mixed_from_archive".into(),
            rehydrate_days: 10,
            ..Default::default()
        })
        .await
        .expect("restore")
        .into_inner();
    let restore = api
        .wait_for_job(&restore.name, TIMEOUT)
        .await
        .expect("wait");
    assert_eq!(
        restore.state,
        JobState::Completed as i32,
        "{restore:?}\n{}",
        s.cluster.logs()
    );
    assert_identical(&s.source, "mixed", &s.source, "mixed_from_archive")
        .await
        .expect("restored from archive is identical");
    let rehydrates = ended_jobs(&mut api, &s, Operation::Rehydrate, 1).await;
    assert_eq!(rehydrates.len(), 1);
    let standard = blobs(&s, "lc-standard").await;
    let copy = standard
        .iter()
        .find(|b| b.starts_with(&format!("{a}-rehydrated-")))
        .map(|b| b.split('/').take(3).collect::<Vec<_>>().join("/"))
        .expect("a rehydrated copy in the standard container");
    assert_eq!(standard, expected(&[(&c, &files_c), (&copy, &files_a)]));

    // Day 26: the rehydrated copy's 10 days are over; the archive point stays.
    s.cluster.set_clock_offset(26 * DAY).expect("clock");
    ended_jobs(&mut api, &s, Operation::Delete, 2).await;
    assert_eq!(blobs(&s, "lc-standard").await, expected(&[(&c, &files_c)]));
    assert_eq!(blobs(&s, "lc-archive").await, expected(&[(&a, &files_a)]));

    // Day 200: past A's archive expiry (7 days + 6 months): deleted too.
    s.cluster.set_clock_offset(200 * DAY).expect("clock");
    let deletes = ended_jobs(&mut api, &s, Operation::Delete, 3).await;
    assert_eq!(blobs(&s, "lc-standard").await, expected(&[(&c, &files_c)]));
    assert!(blobs(&s, "lc-archive").await.is_empty());

    // Exactly once: one tier move, three deletes, whatever the passes.
    assert_eq!(deletes.len(), 3, "{deletes:?}");
    let moves = ended_jobs(&mut api, &s, Operation::TierMove, 1).await;
    assert_eq!(moves.len(), 1, "{moves:?}");
    let points = api
        .recovery_points
        .list_recovery_points(ListRecoveryPointsRequest {
            parent: instance,
            ..Default::default()
        })
        .await
        .expect("list points")
        .into_inner()
        .recovery_points;
    assert_eq!(points.len(), 1, "only C (kept forever) remains: {points:?}");
    assert_eq!(points[0].name, names[2]);

    // Soft delete: C is deleted, undeleted and deleted again; its blobs stay
    // through the vault's 14-day window and are purged after it.
    let delete_c = || DeleteRecoveryPointRequest {
        name: names[2].clone(),
    };
    let deleted = api
        .recovery_points
        .delete_recovery_point(delete_c())
        .await
        .expect("delete C")
        .into_inner();
    assert!(deleted.purge_time.is_some(), "{deleted:?}");
    api.recovery_points
        .undelete_recovery_point(UndeleteRecoveryPointRequest {
            name: names[2].clone(),
        })
        .await
        .expect("undelete C");
    api.recovery_points
        .delete_recovery_point(delete_c())
        .await
        .expect("delete C again");
    s.cluster.set_clock_offset(213 * DAY).expect("clock");
    assert_eq!(blobs(&s, "lc-standard").await, expected(&[(&c, &files_c)]));
    s.cluster.set_clock_offset(215 * DAY).expect("clock");
    let deletes = ended_jobs(&mut api, &s, Operation::Delete, 4).await;
    assert_eq!(deletes.len(), 4, "{deletes:?}");
    assert!(blobs(&s, "lc-standard").await.is_empty());
    assert!(blobs(&s, "lc-archive").await.is_empty());
}
