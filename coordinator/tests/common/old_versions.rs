//! A state database as an older coordinator left it: the repository's
//! migrations up to a given version only, for tests of a migration against
//! rows written the old way.

use std::path::Path;

use pgvault_localpg::TempCluster;
use sqlx::PgPool;
use sqlx::migrate::Migrator;

/// Applies migrations `1..=last` of `migrations/` to `pool`.
pub async fn migrate_up_to(pool: &PgPool, last: i64) {
    let all = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let old = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(&all).expect("migrations dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let version: i64 = name
            .split('_')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(i64::MAX);
        if version <= last {
            std::fs::copy(&path, old.path().join(&name)).expect("copy migration");
        }
    }
    Migrator::new(old.path())
        .await
        .expect("old migrations")
        .run(pool)
        .await
        .unwrap_or_else(|e| panic!("apply migrations 1-{last}: {e}"));
}

/// A new PostgreSQL cluster whose `postgres` database is a state database
/// at version `last`, and a pool on it.
pub async fn state_database_at(last: i64) -> (TempCluster, PgPool) {
    let cluster = tokio::task::spawn_blocking(|| TempCluster::start("migration-Pa55word"))
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("cannot start PostgreSQL (install postgresql-15): {e}"));
    let pool = PgPool::connect(&cluster.url("postgres"))
        .await
        .expect("pool");
    migrate_up_to(&pool, last).await;
    (cluster, pool)
}
