//! Migration 0011 (a job row is what its operation needs) against a real
//! state database: rows of every operation, written the way versions up to
//! 10 wrote them, read back as the `JobSpec` they always meant; where a
//! running attempt writes moves to its attempt row; and the new CHECKs refuse
//! rows that do not fit their operation.

use crate::common;

use pgvault_coordinator::model::{
    AttemptTarget, BackupTrigger, DeleteScope, FileOutput, JobSpec, JobState, RestoreSpec,
    RestoreTarget, RuleKind,
};
use pgvault_coordinator::secret_ref::SecretRef;
use pgvault_coordinator::store::{attempts, jobs, migrate};
use pgvault_localpg::TempCluster;
use sqlx::PgPool;
use uuid::Uuid;

/// The last version before job specs.
const BEFORE: i64 = 10;

/// A vault (with an archive datastore), a server, a secret, a policy, an
/// instance and two of its points (standard, archive). `migrated`: the
/// database has every migration, so the instance row needs its short name
/// (0015); before that the row is written as older versions wrote it.
async fn fixture(pool: &PgPool, migrated: bool) -> (Uuid, Uuid, Uuid) {
    let instance = Uuid::new_v4();
    let (name_column, name) = if migrated {
        (", short_name", ", 'pg1-app'")
    } else {
        ("", "")
    };
    let (standard, archive) = (Uuid::new_v4(), Uuid::new_v4());
    sqlx::raw_sql(&format!(
        "INSERT INTO vaults (id, standard_datastore, archive_datastore) VALUES ('v', 'file:///s', 'file:///a');
         INSERT INTO servers (id, host, port) VALUES ('pg1', '127.0.0.1', 5432);
         INSERT INTO secrets (id, latest_version) VALUES ('db', 2);
         INSERT INTO policies (vault_id, id, weekdays, time_of_day, time_zone, retention_rules)
              VALUES ('v', 'p', '{{1}}', '02:00', 'UTC', '[]');
         INSERT INTO backup_instances (id, vault_id, server_id, database, policy_id, secret_id{name_column})
              VALUES ('{instance}', 'v', 'pg1', 'app', 'p', 'db'{name});"
    ))
    .execute(pool)
    .await
    .expect("fixture");
    (instance, standard, archive)
}

/// Inserts a job the way versions up to 10 did; returns its id.
async fn old_job(pool: &PgPool, columns: &str, values: &str) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::raw_sql(&format!(
        "INSERT INTO jobs (id, vault_id, {columns}) VALUES ('{id}', 'v', {values})"
    ))
    .execute(pool)
    .await
    .unwrap_or_else(|e| panic!("old job ({columns}): {e}"));
    id
}

async fn point(pool: &PgPool, instance: Uuid, point: Uuid, job: Uuid, tier: &str) {
    sqlx::query(
        "INSERT INTO recovery_points (id, backup_instance_id, job_id, database, snapshot_time, tier,
                                      datastore_url, prefix, stored_bytes, raw_bytes, chunk_count,
                                      manifest_sha256, server_version, retention_tag, expire_time)
         VALUES ($1, $2, $3, 'app', now(), $4, 'file:///s', 'v/i/p', 1, 1, 1, 'x', '15', 'DEFAULT', now())",
    )
    .bind(point)
    .bind(instance)
    .bind(job)
    .bind(tier)
    .execute(pool)
    .await
    .expect("point");
}

#[tokio::test]
async fn rows_of_every_operation_written_before_job_specs_read_back_as_their_spec() {
    let (_cluster, pool) = common::old_versions::state_database_at(BEFORE).await;
    let (i, standard, archive) = fixture(&pool, false).await;

    // Backups: a completed scheduled one (its point in recovery_point_id),
    // a queued on-demand one, and one running since before attempt history.
    let scheduled = old_job(
        &pool,
        "operation, state, backup_instance_id",
        &format!("'SCHEDULED_BACKUP', 'COMPLETED', '{i}'"),
    )
    .await;
    point(&pool, i, standard, scheduled, "STANDARD").await;
    point(&pool, i, archive, scheduled, "ARCHIVE").await;
    sqlx::query("UPDATE jobs SET recovery_point_id = $1 WHERE id = $2")
        .bind(standard)
        .bind(scheduled)
        .execute(&pool)
        .await
        .expect("produced point");
    let on_demand = old_job(
        &pool,
        "operation, state, backup_instance_id, retention_rule",
        &format!("'ON_DEMAND_BACKUP', 'QUEUED', '{i}', 'MONTHLY'"),
    )
    .await;
    let attempt_point = Uuid::new_v4();
    let running = old_job(
        &pool,
        "operation, state, backup_instance_id, attempt, lease_owner, start_time, \
         attempt_point_id, attempt_datastore, attempt_prefix",
        &format!(
            "'SCHEDULED_BACKUP', 'IN_PROGRESS', '{i}', 2, 'host:1', now(), \
             '{attempt_point}', 'file:///s', 'v/{i}/{attempt_point}'"
        ),
    )
    .await;

    // Restores: into a database (latest secret), with a pinned secret,
    // queued before restore targets existed, and as files.
    let restore_columns = "operation, state, backup_instance_id, recovery_point_id, \
                           target_server_id, target_database, target_secret_id, target_secret_ref";
    let to_database = old_job(
        &pool,
        restore_columns,
        &format!("'RESTORE', 'COMPLETED', '{i}', '{standard}', 'pg1', 'app_copy', 'db', NULL"),
    )
    .await;
    let pinned = old_job(
        &pool,
        restore_columns,
        &format!(
            "'RESTORE', 'FAILED', '{i}', '{standard}', 'pg1', 'app_v2', 'db', 'secret://db/2'"
        ),
    )
    .await;
    let untargeted = old_job(
        &pool,
        restore_columns,
        &format!("'RESTORE', 'COMPLETED', '{i}', '{standard}', 'pg1', 'app_old', 'db', NULL"),
    )
    .await;
    let to_files = old_job(
        &pool,
        "operation, state, backup_instance_id, recovery_point_id",
        &format!("'RESTORE', 'COMPLETED_WITH_WARNINGS', '{i}', '{standard}'"),
    )
    .await;
    sqlx::raw_sql(&format!(
        "INSERT INTO restore_targets (job_id, kind, schemas) VALUES ('{to_database}', 'DATABASE', '{{sales}}'), ('{pinned}', 'DATABASE', '{{}}');
         INSERT INTO restore_targets (job_id, kind, target_url, target_file, tables, output_size, output_sha256, warnings)
              VALUES ('{to_files}', 'FILES', 'file:///out', 'app.sql', '{{hr.staff}}', 42, 'abc', '{{left out: x}}');"
    ))
    .execute(&pool)
    .await
    .expect("restore targets");

    // Lifecycle jobs, and a restore waiting for the rehydrate.
    let lifecycle =
        "operation, state, backup_instance_id, recovery_point_id, lifecycle_stage, rehydrate_days";
    let tier_move = old_job(
        &pool,
        lifecycle,
        &format!("'TIER_MOVE', 'COMPLETED', '{i}', '{standard}', 'STANDARD_EXPIRY', NULL"),
    )
    .await;
    let rehydrate = old_job(
        &pool,
        lifecycle,
        &format!("'REHYDRATE', 'IN_PROGRESS', '{i}', '{archive}', 'REHYDRATE', 12"),
    )
    .await;
    let waiting = old_job(
        &pool,
        &format!("{restore_columns}, waits_for_job_id"),
        &format!(
            "'RESTORE', 'QUEUED', '{i}', '{archive}', 'pg1', 'app_archived', NULL, 'env://PGVAULT_DB', '{rehydrate}'"
        ),
    )
    .await;
    sqlx::query("INSERT INTO restore_targets (job_id, kind) VALUES ($1, 'DATABASE')")
        .bind(waiting)
        .execute(&pool)
        .await
        .expect("waiting target");
    let delete_archive = old_job(
        &pool,
        lifecycle,
        &format!("'DELETE', 'QUEUED', '{i}', '{archive}', 'ARCHIVE_EXPIRY', NULL"),
    )
    .await;
    let delete_copy = old_job(
        &pool,
        lifecycle,
        &format!(
            "'DELETE', 'QUEUED', '{i}', '{archive}', 'REHYDRATED_EXPIRY/v/i/p-rehydrated-1', NULL"
        ),
    )
    .await;

    migrate::migrate_locked(&pool, |_| Box::pin(async { Ok(()) }))
        .await
        .expect("migration 11 applies over old rows");

    let spec = |id: Uuid| {
        let pool = pool.clone();
        async move { jobs::get(&pool, id).await.expect("job reads").spec }
    };
    let database = |name: &str, secret: SecretRef| RestoreTarget::Database {
        server_id: "pg1".into(),
        database: name.into(),
        secret,
    };
    let latest = || SecretRef::Stored {
        id: "db".into(),
        version: None,
    };
    let restore = |point_id, target, schemas: &[&str], tables: &[&str], warnings: &[&str]| {
        JobSpec::Restore(Box::new(RestoreSpec {
            instance_id: i,
            point_id,
            target,
            copy_datastore: None,
            schemas: schemas.iter().map(|s| s.to_string()).collect(),
            tables: tables.iter().map(|s| s.to_string()).collect(),
            warnings: warnings.iter().map(|s| s.to_string()).collect(),
        }))
    };
    assert_eq!(
        spec(scheduled).await,
        JobSpec::Backup {
            instance_id: i,
            trigger: BackupTrigger::Scheduled,
            produced_point_id: Some(standard),
        }
    );
    assert_eq!(
        spec(on_demand).await,
        JobSpec::Backup {
            instance_id: i,
            trigger: BackupTrigger::OnDemand {
                rule: RuleKind::Monthly
            },
            produced_point_id: None,
        }
    );
    assert_eq!(
        spec(to_database).await,
        restore(
            standard,
            database("app_copy", latest()),
            &["sales"],
            &[],
            &[]
        )
    );
    assert_eq!(
        spec(pinned).await,
        restore(
            standard,
            database(
                "app_v2",
                SecretRef::Stored {
                    id: "db".into(),
                    version: Some(2)
                }
            ),
            &[],
            &[],
            &[]
        )
    );
    assert_eq!(
        spec(untargeted).await,
        restore(standard, database("app_old", latest()), &[], &[], &[])
    );
    assert_eq!(
        spec(to_files).await,
        restore(
            standard,
            RestoreTarget::Files {
                url: "file:///out".into(),
                file: "app.sql".into(),
                output: Some(FileOutput {
                    size: 42,
                    sha256: "abc".into()
                }),
            },
            &[],
            &["hr.staff"],
            &["left out: x"]
        )
    );
    assert_eq!(
        spec(tier_move).await,
        JobSpec::TierMove {
            instance_id: i,
            point_id: standard
        }
    );
    assert_eq!(
        spec(rehydrate).await,
        JobSpec::Rehydrate {
            instance_id: i,
            point_id: archive,
            days: 12
        }
    );
    let waiting_job = jobs::get(&pool, waiting).await.expect("waiting restore");
    assert_eq!(waiting_job.waits_for_job_id, Some(rehydrate));
    assert_eq!(waiting_job.state, JobState::Queued);
    assert_eq!(
        waiting_job.spec,
        restore(
            archive,
            database("app_archived", SecretRef::Env("PGVAULT_DB".into())),
            &[],
            &[],
            &[]
        )
    );
    assert_eq!(
        spec(delete_archive).await,
        JobSpec::Delete {
            instance_id: i,
            point_id: archive,
            scope: DeleteScope::ArchiveExpiry
        }
    );
    assert_eq!(
        spec(delete_copy).await,
        JobSpec::Delete {
            instance_id: i,
            point_id: archive,
            scope: DeleteScope::RehydratedCopy {
                prefix: "v/i/p-rehydrated-1".into()
            }
        }
    );

    // The running backup's attempt got its history row, with where it writes.
    assert_eq!(
        attempts::target(&pool, running, 2).await.expect("target"),
        Some(AttemptTarget {
            point_id: Some(attempt_point),
            datastore_url: "file:///s".into(),
            prefix: format!("v/{i}/{attempt_point}"),
        })
    );
    let history = attempts::list(&pool, running).await.expect("attempts");
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].worker, "host:1");
}

#[tokio::test]
async fn rows_that_do_not_fit_their_operation_are_refused_by_the_state_database() {
    let cluster = tokio::task::spawn_blocking(|| TempCluster::start("migration-Pa55word"))
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("cannot start PostgreSQL (install postgresql-15): {e}"));
    let pool = PgPool::connect(&cluster.url("postgres"))
        .await
        .expect("pool");
    migrate::migrate_locked(&pool, |_| Box::pin(async { Ok(()) }))
        .await
        .expect("migrations");
    let (i, standard, _) = fixture(&pool, true).await;
    let refused = |columns: &'static str, values: String, constraint: &'static str| {
        let pool = pool.clone();
        async move {
            let error = sqlx::raw_sql(&format!(
                "INSERT INTO jobs (id, vault_id, {columns}) VALUES (gen_random_uuid(), 'v', {values})"
            ))
            .execute(&pool)
            .await
            .expect_err(constraint);
            assert!(
                error.to_string().contains(constraint),
                "{constraint}: {error}"
            );
        }
    };
    refused(
        "operation, state, backup_instance_id",
        format!("'VALIDATE', 'QUEUED', '{i}'"),
        "jobs_operation_check",
    )
    .await;
    refused(
        "operation, state, backup_instance_id",
        format!("'SCHEDULED_BACKUP', 'SLEEPING', '{i}'"),
        "jobs_state_check",
    )
    .await;
    refused(
        "operation, state, backup_instance_id",
        format!("'ON_DEMAND_BACKUP', 'QUEUED', '{i}'"),
        "jobs_retention_rule_check",
    )
    .await;
    refused(
        "operation, state, backup_instance_id, recovery_point_id",
        format!("'SCHEDULED_BACKUP', 'QUEUED', '{i}', '{standard}'"),
        "jobs_recovery_point_check",
    )
    .await;
    refused(
        "operation, state, backup_instance_id, recovery_point_id",
        format!("'DELETE', 'QUEUED', '{i}', '{standard}'"),
        "jobs_lifecycle_stage_check",
    )
    .await;
    refused(
        "operation, state, backup_instance_id, recovery_point_id, lifecycle_stage",
        format!("'REHYDRATE', 'QUEUED', '{i}', '{standard}', 'REHYDRATE'"),
        "jobs_rehydrate_days_check",
    )
    .await;
}
