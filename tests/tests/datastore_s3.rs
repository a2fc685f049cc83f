//! The `s3://` datastore against a real S3 server (moto on loopback), end
//! to end through `pgvault up` and the CLI, as users run it: creating a
//! vault creates its bucket; a backup whose largest chunk spans several
//! multipart parts restores as a database identical to the source; and
//! restore as files writes a SQL file to another `s3://` URL (bucket
//! created on the way) that psql loads into an identical database.

use std::process::Output;

use futures::TryStreamExt;
use object_store::path::Path;
use pgvault_e2e::compare::assert_identical;
use pgvault_e2e::fixtures;
use pgvault_e2e::moto::{self, Moto};
use pgvault_e2e::pgvault::PgvaultUp;
use pgvault_localpg::TempCluster;

const SOURCE_PASSWORD: &str = "s3-src-pw";

/// The engine's multipart part size (`EngineOptions::part_size`).
const PART_SIZE: usize = 8 * 1024 * 1024;

/// One row holding ~22 MB of random hex: the chunk that holds it compresses
/// to ~11 MB, more than one part, so its upload takes several parts.
const NOISE_SQL: &str = "
CREATE TABLE noise (id integer PRIMARY KEY, payload text NOT NULL);
INSERT INTO noise SELECT 1, string_agg(md5(random()::text), '') FROM generate_series(1, 700000);
INSERT INTO noise SELECT g, md5(g::text) FROM generate_series(2, 1000) g;
";

fn ok(output: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_datastore_gets_its_bucket_and_round_trips_backups_multipart_chunks_and_sql_files() {
    let moto = tokio::task::spawn_blocking(Moto::start)
        .await
        .unwrap()
        .expect("start moto (scripts/test.sh installs it from PyPI into .tools/venv)");
    let source = TempCluster::start(SOURCE_PASSWORD).expect("start source PostgreSQL");
    fixtures::pgbench(&source, "shop", 1)
        .await
        .expect("pgbench fixture");
    source
        .connect("shop")
        .await
        .expect("connect to shop")
        .batch_execute(NOISE_SQL)
        .await
        .expect("load the incompressible table");
    let up = tokio::task::spawn_blocking(|| PgvaultUp::start_with_env(&moto::AWS_ENV))
        .await
        .unwrap()
        .expect("pgvault up");
    let cli = |args: &[&str]| up.cli(args, None).expect("run pgvault");

    // Creating the vault creates its bucket.
    let backups = moto.store("backups").expect("a store on the bucket");
    assert!(
        backups.list_with_delimiter(None).await.is_err(),
        "no bucket before the vault exists"
    );
    let url = moto.datastore_url("backups/prod");
    ok(
        cli(&[
            "vault",
            "create",
            "demo",
            "--region",
            "local",
            "--datastore",
            &url,
        ]),
        "vault create on s3://",
    );
    backups
        .list_with_delimiter(None)
        .await
        .unwrap_or_else(|e| panic!("vault create made the bucket: {e}\n{}", moto.log_tail(20)));

    // Protect, back up, restore as a database: identical.
    ok(
        cli(&[
            "policy",
            "create",
            "weekly",
            "--vault",
            "demo",
            "--weekdays",
            "mon",
            "--at",
            "02:30",
        ]),
        "policy create",
    );
    let port = source.port().to_string();
    ok(
        cli(&[
            "server",
            "register",
            "src",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--region",
            "local",
        ]),
        "server register",
    );
    let instance = up.protect_demo_database("weekly", SOURCE_PASSWORD, "shop");
    ok(
        cli(&["backup", "now", &instance, "--wait"]),
        "backup now to s3://",
    );
    let points: serde_json::Value = serde_json::from_str(&ok(
        cli(&["recovery-point", "list", &instance, "--output", "json"]),
        "recovery-point list",
    ))
    .expect("JSON");
    let point = points["recovery_points"][0]["name"]
        .as_str()
        .expect("a recovery point")
        .to_string();
    ok(
        cli(&[
            "restore",
            "database",
            &point,
            "--target-database",
            "shop_restored",
            "--wait",
        ]),
        "restore database from s3://",
    );
    assert_identical(&source, "shop", &source, "shop_restored")
        .await
        .unwrap();

    // Everything sits under the URL's prefix, and the noise chunk took more
    // than one multipart part.
    let objects: Vec<_> = backups
        .list(Some(&Path::from("prod")))
        .try_collect()
        .await
        .expect("list the vault's objects");
    assert!(
        objects
            .iter()
            .any(|o| o.location.as_ref().ends_with("manifest.json")),
        "a manifest under prod/: {objects:?}"
    );
    let largest = objects
        .iter()
        .max_by_key(|o| o.size)
        .expect("objects were written");
    assert!(
        largest.size > PART_SIZE,
        "the largest object ({} bytes, {}) is larger than one {PART_SIZE}-byte part",
        largest.size,
        largest.location
    );

    // Restore as files into another s3:// URL: the bucket is created, and
    // the SQL file loads into an identical database.
    let exports_url = moto.datastore_url("exports/nightly");
    let written = ok(
        cli(&[
            "restore",
            "files",
            &point,
            "--to",
            &exports_url,
            "--name",
            "shop.sql",
            "--wait",
        ]),
        "restore files to s3://",
    );
    assert!(written.contains("WRITTEN TO"), "{written}");
    let sql = moto
        .store("exports")
        .expect("a store on the exports bucket")
        .get(&Path::from("nightly/shop.sql"))
        .await
        .expect("the SQL file is under the URL's prefix")
        .bytes()
        .await
        .expect("read the SQL file");
    let downloaded = tempfile::tempdir().expect("tempdir");
    let file = downloaded.path().join("shop.sql");
    std::fs::write(&file, &sql).expect("write the downloaded file");
    fixtures::create_database(&source, "shop_from_sql")
        .await
        .expect("create an empty database");
    fixtures::load_sql_file(&source, "shop_from_sql", &file).expect("psql loads the file");
    assert_identical(&source, "shop", &source, "shop_from_sql")
        .await
        .unwrap();
    drop(up);
    drop(moto);
}
