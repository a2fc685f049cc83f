//! Extensions' configuration tables (`pg_extension_config_dump`, as pg_cron,
//! pg_partman or PostGIS use them): `CREATE EXTENSION` recreates the table
//! and the rows its own script seeds; the user's rows (those the
//! extension's condition selects) and the configuration sequence's value
//! come from the backup — restored as a database and as a SQL script.
//!
//! No contrib extension of PostgreSQL 15 has configuration tables, so the
//! test installs a tiny one (`pgvault_test_config`) into the server's
//! extension directory (root, as the test scripts run).

use crate::support;

use pgvault_localpg::TempCluster;
use support::*;

const CONTROL: &str = "comment = 'pgvault test: configuration tables'\n\
default_version = '1.0'\nrelocatable = false\nschema = cfg\n";

const SCRIPT: &str = r#"
CREATE TABLE cfg.settings (name text PRIMARY KEY, value text, system boolean NOT NULL DEFAULT false);
INSERT INTO cfg.settings VALUES ('version', '1.0', true);
SELECT pg_catalog.pg_extension_config_dump('cfg.settings', 'WHERE NOT system');
CREATE SEQUENCE cfg.job_seq;
SELECT pg_catalog.pg_extension_config_dump('cfg.job_seq', '');
CREATE TABLE cfg.jobs (id bigint PRIMARY KEY DEFAULT nextval('cfg.job_seq'), command text NOT NULL);
SELECT pg_catalog.pg_extension_config_dump('cfg.jobs', '');
"#;

/// Writes the extension's control and script files where `cluster`'s
/// server looks for them.
async fn install_test_extension(cluster: &TempCluster) {
    let sharedir: String = cluster
        .connect("postgres")
        .await
        .unwrap()
        .query_one("SELECT setting FROM pg_config WHERE name = 'SHAREDIR'", &[])
        .await
        .unwrap()
        .get(0);
    let dir = std::path::Path::new(&sharedir).join("extension");
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).unwrap_or_else(|e| {
            panic!(
                "cannot install the test extension into {} ({e}): run the tests as root, as scripts/test.sh does",
                dir.display()
            )
        })
    };
    write("pgvault_test_config.control", CONTROL);
    write("pgvault_test_config--1.0.sql", SCRIPT);
}

/// (settings rows, jobs rows, next job id) of `database`.
async fn state(cluster: &TempCluster, database: &str) -> (Vec<String>, Vec<String>, i64) {
    let client = cluster.connect(database).await.unwrap();
    let settings = client
        .query(
            "SELECT name || '=' || value || ':' || system FROM cfg.settings ORDER BY name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let jobs = client
        .query("SELECT id || ' ' || command FROM cfg.jobs ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let next: i64 = client
        .query_one("SELECT nextval('cfg.job_seq')", &[])
        .await
        .unwrap()
        .get(0);
    (settings, jobs, next)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extension_configuration_rows_and_sequences_come_back_without_duplicating_seeded_rows() {
    let source = cluster();
    install_test_extension(&source).await;
    add_database(
        &source,
        "app",
        "CREATE SCHEMA cfg; CREATE EXTENSION pgvault_test_config; \
         INSERT INTO cfg.settings VALUES ('color', 'blue', false), ('size', 'L', false); \
         INSERT INTO cfg.jobs (command) VALUES ('vacuum'), ('analyze'); \
         CREATE TABLE public.t (id int PRIMARY KEY); INSERT INTO public.t VALUES (1)",
    )
    .await;

    let point = back_up(&source, "app", &options(&source)).await;
    let manifest = point.manifest();
    let settings = manifest
        .tables
        .iter()
        .find(|t| t.name == "settings")
        .expect("the configuration table is in the manifest");
    assert!(settings.extension_config);
    assert_eq!(
        settings.chunks.iter().map(|c| c.rows).sum::<u64>(),
        2,
        "only the user's rows"
    );

    // Leaves the source's sequence where it was: state() takes one value.
    let expected = (
        vec![
            "color=blue:false".to_string(),
            "size=L:false".into(),
            "version=1.0:true".into(),
        ],
        vec!["1 vacuum".to_string(), "2 analyze".into()],
        3,
    );
    assert_eq!(state(&source, "app").await, expected);

    point
        .restore(
            &source,
            "app copy",
            Some(&point.summary.manifest_sha256),
            &options(&source),
        )
        .await
        .expect("restore");
    assert_eq!(state(&source, "app copy").await, expected);

    point.load_as_script(&source, "app from script").await;
    assert_eq!(state(&source, "app from script").await, expected);
}
