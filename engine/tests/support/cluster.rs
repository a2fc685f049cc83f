//! Private PostgreSQL clusters and their databases for the engine tests:
//! starting one, the engine's target and options for it, creating databases
//! with SQL loaded, running SQL, and loading SQL files with psql.

use std::path::Path;
use std::process::Command;

use pgvault_engine::{EngineOptions, PgTarget};
use pgvault_localpg::TempCluster;

pub fn cluster() -> TempCluster {
    TempCluster::start("engine pw")
        .expect("start a private PostgreSQL (needs initdb/pg_ctl, e.g. apt install postgresql-15)")
}

/// A fresh cluster with the database `database` holding what `sql` creates.
pub async fn source(database: &str, sql: &str) -> TempCluster {
    let cluster = cluster();
    add_database(&cluster, database, sql).await;
    cluster
}

pub fn target(cluster: &TempCluster, database: &str) -> PgTarget {
    PgTarget {
        host: cluster.host().to_string(),
        port: cluster.port(),
        database: database.to_string(),
        user: cluster.user().to_string(),
        password: cluster.password().to_string(),
        ssl_mode: String::new(),
        trust_server_certificate: false,
        ssl_root_cert: None,
    }
}

pub fn options(cluster: &TempCluster) -> EngineOptions {
    EngineOptions {
        connections: 3,
        pg_bin_dir: Some(cluster.bin_dir().to_path_buf()),
        ..EngineOptions::default()
    }
}

pub async fn create_database(cluster: &TempCluster, name: &str) {
    execute(cluster, "postgres", &format!("CREATE DATABASE \"{name}\"")).await;
}

/// Creates the database `name` on `cluster` and runs `sql` in it.
pub async fn add_database(cluster: &TempCluster, name: &str, sql: &str) {
    create_database(cluster, name).await;
    execute(cluster, name, sql).await;
}

/// Runs `sql` (one or more statements) in `database`.
pub async fn execute(cluster: &TempCluster, database: &str, sql: &str) {
    cluster
        .connect(database)
        .await
        .unwrap()
        .batch_execute(sql)
        .await
        .unwrap();
}

pub async fn database_exists(cluster: &TempCluster, name: &str) -> bool {
    let client = cluster.connect("postgres").await.unwrap();
    client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .is_some()
}

/// Loads a SQL file with `psql -v ON_ERROR_STOP=1 -f` into `database`.
pub fn psql_file(cluster: &TempCluster, database: &str, file: &Path) {
    let output = Command::new(cluster.bin_dir().join("psql"))
        .env("PGPASSWORD", cluster.password())
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            cluster.host(),
            "-p",
            &cluster.port().to_string(),
            "-U",
            cluster.user(),
            "-f",
        ])
        .arg(file)
        .arg(format!("--dbname=dbname='{database}'"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
