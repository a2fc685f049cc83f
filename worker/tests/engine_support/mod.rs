//! Shared helpers of the engine tests: private clusters, a `file://`
//! datastore in a temporary directory, and fingerprints (schema text, table
//! checksums, sequences, large objects) that prove two databases identical.

#![allow(dead_code)]

use std::process::Command;
use std::sync::{Arc, Mutex};

use pgvault_datastore::Datastore;
use pgvault_localpg::TempCluster;
use pgvault_worker::engine::{EngineOptions, PgTarget, Progress, ProgressSink};

pub fn cluster() -> TempCluster {
    TempCluster::start("engine pw")
        .expect("start a private PostgreSQL (needs initdb/pg_ctl, e.g. apt install postgresql-15)")
}

pub fn target(cluster: &TempCluster, database: &str) -> PgTarget {
    PgTarget {
        host: cluster.host().to_string(),
        port: cluster.port(),
        database: database.to_string(),
        user: cluster.user().to_string(),
        password: cluster.password().to_string(),
        ssl_mode: String::new(),
    }
}

pub fn datastore(dir: &tempfile::TempDir) -> Datastore {
    Datastore::open(&format!("file://{}", dir.path().display())).expect("open file datastore")
}

pub fn options(cluster: &TempCluster) -> EngineOptions {
    EngineOptions {
        connections: 3,
        pg_bin_dir: Some(cluster.bin_dir().to_path_buf()),
        ..EngineOptions::default()
    }
}

/// Records every progress report.
#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<Progress>>);

impl ProgressSink for Recorder {
    fn report(&self, progress: &Progress) {
        self.0.lock().unwrap().push(progress.clone());
    }
}

pub fn recorder() -> Arc<Recorder> {
    Arc::new(Recorder::default())
}

pub async fn create_database(cluster: &TempCluster, name: &str) {
    let client = cluster.connect("postgres").await.unwrap();
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
}

/// `pg_dump --schema-only` as plain text, without comments and the
/// `\restrict` lines that carry a random key.
pub fn schema_text(cluster: &TempCluster, database: &str) -> String {
    let output = Command::new(cluster.bin_dir().join("pg_dump"))
        .env("PGPASSWORD", cluster.password())
        .args([
            "-h",
            cluster.host(),
            "-p",
            &cluster.port().to_string(),
            "-U",
            cluster.user(),
            "--schema-only",
        ])
        .arg(format!("--dbname=dbname='{database}'"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|l| {
            !l.starts_with("--") && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Per-relation checksums of every table and materialized view, sequence
/// values and large objects: equal fingerprints mean equal data.
pub async fn data_fingerprint(cluster: &TempCluster, database: &str) -> Vec<String> {
    let client = cluster.connect(database).await.unwrap();
    let relations = client
        .query(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relkind::text, c.relispopulated FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'm', 'S', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    for row in relations {
        let (name, kind, populated): (String, String, bool) = (row.get(0), row.get(1), row.get(2));
        if !populated {
            out.push(format!("{name} not populated"));
            continue;
        }
        let sql = if kind == "S" {
            format!("SELECT last_value::text || '/' || is_called::text FROM {name}")
        } else {
            format!(
                "SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '-') FROM ONLY {name} t"
            )
        };
        let value: String = client
            .query_one(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
            .get(0);
        out.push(format!("{name} {value}"));
    }
    for row in client
        .query(
            "SELECT oid::text || ' ' || md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY oid",
            &[],
        )
        .await
        .unwrap()
    {
        out.push(format!("lo {}", row.get::<_, String>(0)));
    }
    out
}

pub async fn database_exists(cluster: &TempCluster, name: &str) -> bool {
    let client = cluster.connect("postgres").await.unwrap();
    client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .is_some()
}
