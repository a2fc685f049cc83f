//! Whole-server protection against a real state database and server (the
//! harness's cluster is both): `all_databases_of` protects every
//! protectable database with the row pipeline, configuring again is a
//! no-op, another vault cannot protect the server whole, and at the next
//! slot a database created since is protected and backed up with the
//! others while a dropped one is recorded as missing (its instance kept),
//! as `GetServer` shows, and its first backup job says it was
//! auto-included. Role passwords are captured only for a server protected
//! whole by an encrypted vault.
//! Time moves through a shifted clock; nothing sleeps for a schedule.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::Harness;
use pgvault_coordinator::clock::ShiftedClock;
use pgvault_proto::v1 as pb;
use sqlx::PgPool;

fn request(vault: &str, policy: &str) -> pb::ConfigureBackupRequest {
    pb::ConfigureBackupRequest {
        parent: format!("vaults/{vault}"),
        policy: format!("vaults/{vault}/policies/{policy}"),
        rows: Vec::new(),
        default_secret: "secrets/pg1-admin".into(),
        assign_missing_permissions: true,
        all_databases_of: "servers/pg1".into(),
        role_passwords: false,
    }
}

async fn soon_policy(h: &Harness, vault: &str) {
    h.create_policy_due_soon(
        vault,
        pb::RetentionRule {
            kind: pb::RetentionRuleKind::Default as i32,
            standard_duration: "P7D".into(),
            archive_duration: String::new(),
        },
    )
    .await;
}

/// Databases of the scheduled backup jobs, sorted.
async fn scheduled_databases(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT i.database FROM jobs j JOIN backup_instances i ON i.id = j.backup_instance_id
          WHERE j.operation = 'SCHEDULED_BACKUP' ORDER BY i.database",
    )
    .fetch_all(pool)
    .await
    .expect("jobs")
}

#[tokio::test]
async fn all_databases_protects_every_database_and_the_next_slot_includes_new_ones() {
    let clock = Arc::new(ShiftedClock::new());
    let adjust = {
        let clock = clock.clone();
        move |c: &mut pgvault_coordinator::CoordinatorConfig| {
            c.scheduler_interval = Duration::from_millis(100);
            c.schedule_max_lateness = Duration::from_secs(3600);
            c.clock = clock.clone();
        }
    };
    let h = Harness::start_with(adjust).await;
    h.fixture().await;
    soon_policy(&h, "v").await;
    let admin = h.cluster.connect("postgres").await.expect("connect");
    for sql in ["CREATE DATABASE orders", "CREATE DATABASE billing"] {
        admin.batch_execute(sql).await.expect("create databases");
    }
    let pool = PgPool::connect(&h.cluster.url("postgres"))
        .await
        .expect("pool");

    // Rows and the whole server are exclusive.
    let mut both = request("v", "soon");
    both.rows.push(pb::ConfigureBackupRow {
        server: "servers/pg1".into(),
        database: "app".into(),
        secret: String::new(),
    });
    let refused = h.instances().configure_backup(both).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");

    let first = h
        .instances()
        .configure_backup(request("v", "soon"))
        .await
        .expect("configure the whole server")
        .into_inner();
    let databases: Vec<&str> = first.results.iter().map(|r| r.database.as_str()).collect();
    // Templates are never offered; the state database is an ordinary one here.
    assert_eq!(databases, ["app", "billing", "orders", "postgres"]);
    for r in &first.results {
        assert_eq!(r.readiness, pb::Readiness::Success as i32, "{r:?}");
        assert!(r.backup_instance.is_some(), "{r:?}");
    }

    // Configuring again changes nothing: the same instances, all ready.
    let again = h
        .instances()
        .configure_backup(request("v", "soon"))
        .await
        .expect("configure again")
        .into_inner();
    let names = |r: &pb::ConfigureBackupResponse| -> Vec<String> {
        r.results
            .iter()
            .filter_map(|r| r.backup_instance.as_ref().map(|i| i.name.clone()))
            .collect()
    };
    assert_eq!(names(&again), names(&first));

    // Another vault cannot protect the server whole.
    h.vaults()
        .create_vault(pb::CreateVaultRequest {
            vault_id: "w".into(),
            vault: Some(pb::Vault {
                standard_datastore: format!("file://{}", h.datastore_dir.path().display()),
                region: "local".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("second vault");
    soon_policy(&h, "w").await;
    let other = h
        .instances()
        .configure_backup(request("w", "soon"))
        .await
        .unwrap_err();
    assert_eq!(other.code(), tonic::Code::FailedPrecondition);
    assert!(
        other
            .message()
            .contains("already protected whole by vault \"v\""),
        "{other:?}"
    );

    // Before the slot: a database is added and one dropped.
    for sql in ["CREATE DATABASE reports", "DROP DATABASE billing"] {
        admin.batch_execute(sql).await.expect("change the server");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(scheduled_databases(&pool).await.is_empty());

    // The slot: the new database is protected and backed up with the others;
    // the dropped one keeps its instance (its backup will fail).
    clock.set_offset(180);
    let mut scheduled = Vec::new();
    for _ in 0..300 {
        scheduled = scheduled_databases(&pool).await;
        if scheduled.len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Several more ticks: nothing fires twice.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        scheduled_databases(&pool).await,
        ["app", "billing", "orders", "postgres", "reports"],
        "{scheduled:?}"
    );
    let (included, missing, error): (Vec<String>, Vec<String>, String) = sqlx::query_as(
        "SELECT included, missing, error FROM server_protection_runs WHERE server_id = 'pg1'",
    )
    .fetch_one(&pool)
    .await
    .expect("one pass recorded");
    assert_eq!(included, ["reports"]);
    assert_eq!(missing, ["billing"]);
    assert_eq!(error, "");
    // GetServer shows the protection and its latest pass.
    let whole = h
        .servers()
        .get_server(pb::GetServerRequest {
            name: "servers/pg1".into(),
        })
        .await
        .expect("get server")
        .into_inner()
        .whole_server_protection
        .expect("protected whole");
    assert_eq!(whole.vault, "vaults/v");
    assert_eq!(whole.policy, "vaults/v/policies/soon");
    assert!(whole.last_slot.is_some());
    assert_eq!(whole.included, ["reports"]);
    assert_eq!(whole.missing, ["billing"]);
    let reports = h
        .instances()
        .list_backup_instances(pb::ListBackupInstancesRequest {
            parent: "vaults/v".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .backup_instances
        .into_iter()
        .find(|i| i.database == "reports")
        .expect("reports is protected");
    assert_eq!(
        reports.protection_state,
        pb::ProtectionState::Configured as i32
    );

    // The first backup of the auto-included database says so (GetJob, and
    // so `job show` and its JSON); the others' backups do not.
    let jobs = h
        .jobs()
        .list_jobs(pb::ListJobsRequest {
            operation: pb::Operation::ScheduledBackup as i32,
            page_size: 100,
            all: true,
            ..Default::default()
        })
        .await
        .expect("list jobs")
        .into_inner()
        .jobs;
    assert_eq!(jobs.len(), 5, "{jobs:?}");
    let mut auto_included = Vec::new();
    for job in jobs {
        let full = common::get(&h, &job.name).await;
        if let Some(found) = full.auto_include {
            auto_included.push((full.backup_instance_short_name.clone(), found));
        }
    }
    assert_eq!(auto_included.len(), 1, "{auto_included:?}");
    let (short_name, found) = &auto_included[0];
    assert_eq!(short_name, "pg1-reports");
    assert_eq!(found.server, "servers/pg1");
    assert_eq!(found.slot_time, whole.last_slot);
}

#[tokio::test]
async fn role_passwords_need_a_server_protected_whole_and_an_encrypted_vault() {
    let h = Harness::start().await;
    h.fixture().await;
    soon_policy(&h, "v").await;

    // Only with all_databases_of.
    let rows = pb::ConfigureBackupRequest {
        all_databases_of: String::new(),
        rows: vec![pb::ConfigureBackupRow {
            server: "servers/pg1".into(),
            database: "app".into(),
            secret: String::new(),
        }],
        role_passwords: true,
        ..request("v", "soon")
    };
    let refused = h.instances().configure_backup(rows).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().starts_with("role_passwords: "),
        "{refused:?}"
    );

    // Never into an unencrypted vault.
    h.vaults()
        .create_vault(pb::CreateVaultRequest {
            vault_id: "plain".into(),
            vault: Some(pb::Vault {
                standard_datastore: format!("file://{}", h.datastore_dir.path().display()),
                region: "local".into(),
                encryption: "none".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("unencrypted vault");
    soon_policy(&h, "plain").await;
    let refused = h
        .instances()
        .configure_backup(pb::ConfigureBackupRequest {
            role_passwords: true,
            ..request("plain", "soon")
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains("vault \"plain\" is not encrypted, and the roles' passwords are captured only into an encrypted vault"),
        "{refused:?}"
    );
    let server = |h: &Harness| {
        let mut servers = h.servers();
        async move {
            servers
                .get_server(pb::GetServerRequest {
                    name: "servers/pg1".into(),
                })
                .await
                .expect("get server")
                .into_inner()
                .whole_server_protection
        }
    };
    assert_eq!(server(&h).await, None, "nothing was recorded");

    // An encrypted vault (the default) captures them; its backups are told to.
    h.instances()
        .configure_backup(pb::ConfigureBackupRequest {
            role_passwords: true,
            ..request("v", "soon")
        })
        .await
        .expect("configure with role passwords");
    assert!(server(&h).await.expect("protected whole").role_passwords);
    let app = "vaults/v/backupInstances/pg1-app";
    let job = h
        .instances()
        .backup_now(pb::BackupNowRequest {
            name: app.into(),
            rule: pb::RetentionRuleKind::Default as i32,
            workers: 0,
        })
        .await
        .expect("backup now")
        .into_inner();
    let claimed = common::claim(&h, &common::job_id(&job), "w1").await;
    match claimed.task.and_then(|t| t.kind) {
        Some(pb::task::Kind::Backup(task)) => {
            assert!(
                task.capture_globals && task.capture_role_passwords,
                "{task:?}"
            )
        }
        other => panic!("expected a backup task, got {other:?}"),
    }

    // Configuring again without the option stops capturing them.
    h.instances()
        .configure_backup(request("v", "soon"))
        .await
        .expect("configure without role passwords");
    assert!(!server(&h).await.expect("protected whole").role_passwords);
}
