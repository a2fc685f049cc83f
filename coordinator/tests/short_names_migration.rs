//! Migration 0015 (short names of backup instances) against a real state
//! database: instances created before it get `<server>-<database>` in their
//! vault, oldest first, the later of two alike suffixed; names are unique
//! per vault, not globally; and an instance inserted afterwards is named
//! the same way by the store, past the migrated names.

use crate::common;

use chrono::Utc;
use pgvault_coordinator::model::{BackupInstance, ProtectionState};
use pgvault_coordinator::secret_ref::SecretRef;
use pgvault_coordinator::store::instances::{self, Inserted};
use pgvault_coordinator::store::migrate;
use sqlx::PgPool;
use uuid::Uuid;

/// The last version before short names.
const BEFORE: i64 = 14;

/// An instance the way versions up to 14 wrote it, created at `minute`.
async fn old_instance(pool: &PgPool, vault: &str, database: &str, minute: i32) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO backup_instances (id, vault_id, server_id, database, policy_id, secret_id,
                                       protection_state, create_time)
         VALUES ($1, $2, 'pg1', $3, 'p', 'db', 'PROTECTION_VALIDATION_FAILED',
                 '2026-01-01'::timestamptz + make_interval(mins => $4))",
    )
    .bind(id)
    .bind(vault)
    .bind(database)
    .bind(minute)
    .execute(pool)
    .await
    .expect("old instance");
    id
}

async fn short_name(pool: &PgPool, id: Uuid) -> String {
    let (name,): (String,) =
        sqlx::query_as("SELECT short_name FROM backup_instances WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .expect("short name");
    name
}

#[tokio::test]
async fn instances_created_before_short_names_are_named_per_vault_oldest_first() {
    let (_cluster, pool) = common::old_versions::state_database_at(BEFORE).await;
    sqlx::raw_sql(
        "INSERT INTO vaults (id, standard_datastore) VALUES ('v', 'file:///s'), ('w', 'file:///w');
         INSERT INTO servers (id, host, port) VALUES ('pg1', '127.0.0.1', 5432);
         INSERT INTO secrets (id, latest_version) VALUES ('db', 1);
         INSERT INTO policies (vault_id, id, weekdays, time_of_day, time_zone, retention_rules)
              VALUES ('v', 'p', '{1}', '02:00', 'UTC', '[]'), ('w', 'p', '{1}', '02:00', 'UTC', '[]');",
    )
    .execute(&pool)
    .await
    .expect("fixture");
    // Created in this order: the newer "Billing" collides with "billing".
    let newer = old_instance(&pool, "v", "Billing", 2).await;
    let older = old_instance(&pool, "v", "billing", 1).await;
    let odd = old_instance(&pool, "v", "Sales Dept. (EU)", 3).await;
    let other_vault = old_instance(&pool, "w", "billing", 4).await;

    migrate::migrate_locked(&pool, |_| Box::pin(async { Ok(()) }))
        .await
        .expect("migration 15 applies over old rows");

    assert_eq!(short_name(&pool, older).await, "pg1-billing");
    assert_eq!(short_name(&pool, newer).await, "pg1-billing-2");
    assert_eq!(short_name(&pool, odd).await, "pg1-sales-dept-eu");
    assert_eq!(short_name(&pool, other_vault).await, "pg1-billing");
    assert_eq!(
        instances::find_id_by_short_name(&pool, "v", "pg1-billing-2")
            .await
            .unwrap(),
        Some(newer)
    );
    assert_eq!(
        instances::find_id_by_short_name(&pool, "w", "pg1-billing-2")
            .await
            .unwrap(),
        None
    );

    // A new instance alike is named past the migrated ones.
    let new = BackupInstance {
        id: Uuid::new_v4(),
        vault_id: "v".into(),
        server_id: "pg1".into(),
        database: "BILLING".into(),
        short_name: String::new(),
        policy_id: "p".into(),
        secret: SecretRef::Stored {
            id: "db".into(),
            version: None,
        },
        protection_state: ProtectionState::Validating,
        last_error: None,
        create_time: Utc::now(),
    };
    let Inserted::Created(created) = instances::insert(&pool, &new).await.expect("insert") else {
        panic!("a validating row is created");
    };
    assert_eq!(created.short_name, "pg1-billing-3");

    // The constraint holds even for writers that bypass the store.
    let duplicate =
        sqlx::query("UPDATE backup_instances SET short_name = 'pg1-billing' WHERE id = $1")
            .bind(newer)
            .execute(&pool)
            .await;
    assert!(duplicate.is_err(), "two instances of a vault share a name");
}
