//! Restore as files and selective restore, end to end through `pgvault up`
//! (coordinator, in-process worker, local-disk datastore): a database with
//! several schemas is backed up; `pgvault restore files --to ./dir` writes a
//! SQL file that `psql` loads into an empty database identical to the
//! source; a restore of one schema plus one table creates only those tables,
//! with identical rows, and completes with warnings naming the foreign key
//! it left out; unknown names, bad destinations and unwritable directories
//! are refused with clear errors.

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::Duration;

use pgvault_e2e::compare::{assert_identical, fingerprint};
use pgvault_e2e::fixtures;
use pgvault_e2e::pgvault::{Api, PgvaultUp};
use pgvault_localpg::TempCluster;
use pgvault_proto::v1::*;
use serde_json::Value;

const SOURCE_PASSWORD: &str = "sel-src-pw";
const JOB_TIMEOUT: Duration = Duration::from_secs(300);

/// Three schemas, a foreign key across them, serial sequences, a view.
const SHOP_SQL: &str = r#"
CREATE SCHEMA sales;
CREATE SCHEMA hr;
CREATE TABLE public.customers (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE public.notes (id serial PRIMARY KEY, body text);
CREATE TABLE sales.orders (
    id serial PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES public.customers (id),
    amount numeric(10, 2) NOT NULL,
    placed timestamptz NOT NULL DEFAULT '2024-01-02 03:04:05+00'
);
CREATE TABLE sales.items (order_id integer NOT NULL REFERENCES sales.orders (id), sku text NOT NULL);
CREATE INDEX items_sku_idx ON sales.items (sku);
CREATE VIEW sales.big_orders AS SELECT * FROM sales.orders WHERE amount > 500;
CREATE TABLE hr.staff (id integer PRIMARY KEY, name text NOT NULL, note text);
INSERT INTO public.customers (name) SELECT 'customer ' || g FROM generate_series(1, 200) g;
INSERT INTO public.notes (body) SELECT E'note\twith\\escapes ' || g FROM generate_series(1, 50) g;
INSERT INTO sales.orders (customer_id, amount) SELECT 1 + g % 200, (g * 7.31) % 1000 FROM generate_series(1, 3000) g;
INSERT INTO sales.items SELECT 1 + g % 3000, 'sku-' || (g % 97) FROM generate_series(1, 6000) g;
INSERT INTO hr.staff SELECT g, 'staff ' || g, CASE WHEN g % 3 = 0 THEN NULL ELSE '' END FROM generate_series(1, 40) g;
"#;

fn ok(output: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "`pgvault {what}` failed ({}):\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn state(job: &Job) -> JobState {
    JobState::try_from(job.state).unwrap_or_default()
}

/// Vault, policy, server, secret, protection and one backup, through the CLI.
/// Returns the recovery point's name.
fn protect_and_back_up(up: &PgvaultUp, source: &TempCluster) -> String {
    let cli = |args: &[&str]| up.cli(args, None).expect("run pgvault");
    up.create_demo_vault("weekly", "mon", source.port());
    let instance = up.protect_demo_database("weekly", SOURCE_PASSWORD, "shop");
    ok(cli(&["backup", "now", &instance, "--wait"]), "backup now");
    let points = json(&ok(
        cli(&["recovery-point", "list", &instance, "--output", "json"]),
        "recovery-point list",
    ));
    points["recovery_points"][0]["name"]
        .as_str()
        .expect("a recovery point")
        .to_string()
}

/// Loads `file` into the new empty database `database` with `psql`.
async fn psql_load(source: &TempCluster, database: &str, file: &std::path::Path) {
    fixtures::create_database(source, database)
        .await
        .expect("create empty database");
    let output = Command::new(source.bin_dir().join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", source.host()])
        .args([
            "-p",
            &source.port().to_string(),
            "-U",
            source.user(),
            "-d",
            database,
        ])
        .arg("-f")
        .arg(file)
        .env("PGPASSWORD", source.password())
        .output()
        .expect("run psql");
    assert!(
        output.status.success(),
        "psql could not load {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The single file written under `dir`.
fn only_file(dir: &std::path::Path) -> std::path::PathBuf {
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    assert_eq!(
        files.len(),
        1,
        "one SQL file in {}: {files:?}",
        dir.display()
    );
    files.into_iter().next().expect("one file")
}

#[tokio::test(flavor = "multi_thread")]
async fn restores_as_a_sql_file_and_selectively_with_clear_errors() {
    let source = TempCluster::start(SOURCE_PASSWORD).expect("start source PostgreSQL");
    fixtures::create_database(&source, "shop")
        .await
        .expect("create shop");
    source
        .connect("shop")
        .await
        .expect("connect to shop")
        .batch_execute(SHOP_SQL)
        .await
        .expect("load shop fixture");
    let up = tokio::task::spawn_blocking(PgvaultUp::start)
        .await
        .unwrap()
        .expect("pgvault up");
    let point = protect_and_back_up(&up, &source);
    let cli = |args: &[&str]| up.cli(args, None).expect("run pgvault");
    let mut api = Api::connect(&up.endpoint, &up.token().expect("token"))
        .await
        .expect("connect to pgvault up");

    // Restore as files: a relative directory (the CLI's cwd is the up dir),
    // the default file name, loaded by psql into an identical database.
    let written = ok(
        cli(&["restore", "files", &point, "--to", "./exports", "--wait"]),
        "restore files --wait",
    );
    assert!(written.contains("WRITTEN TO"), "{written}");
    let exports = up.data_dir.parent().expect("up dir").join("exports");
    let file = only_file(&exports);
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .expect("utf-8 name");
    assert!(
        name.starts_with("shop-") && name.ends_with("Z.sql"),
        "default name is <database>-<snapshot>.sql: {name}"
    );
    psql_load(&source, "shop_from_sql", &file).await;
    assert_identical(&source, "shop", &source, "shop_from_sql")
        .await
        .unwrap();
    let jobs = api
        .jobs
        .list_jobs(ListJobsRequest::default())
        .await
        .expect("list jobs")
        .into_inner()
        .jobs;
    let files_job = jobs
        .iter()
        .find(|j| j.restore_kind == RestoreKind::Files as i32)
        .expect("the restore-as-files job is listed");
    assert_eq!(state(files_job), JobState::Completed, "{files_job:?}");
    assert_eq!(
        files_job.target_url,
        format!("file://{}", exports.display())
    );
    assert_eq!(files_job.target_file, name);
    let size = std::fs::metadata(&file).expect("stat SQL file").len();
    assert_eq!(
        files_job.output_size, size,
        "the job reports the file's size"
    );
    assert_eq!(files_job.output_sha256.len(), 64, "{files_job:?}");

    // Restore as files into a datastore URL (Azure Blob on Azurite; the
    // worker creates the container): the blob loads just the same.
    let mut azurite = tokio::task::spawn_blocking(pgvault_e2e::azurite::Azurite::start)
        .await
        .unwrap()
        .expect("start Azurite (scripts/test.sh installs it from npm)");
    let url =
        azurite
            .datastore_url("exports")
            .replacen("az://exports?", "az://exports/nightly?", 1);
    let written = ok(
        cli(&[
            "restore", "files", &point, "--to", &url, "--name", "shop.sql", "--wait",
        ]),
        "restore files to az:// --wait",
    );
    assert!(written.contains("WRITTEN TO"), "{written}");
    let store = pgvault_datastore::Datastore::open(&url).expect("open the Azurite datastore");
    let blob = store
        .object_store()
        .get(&store.path("shop.sql"))
        .await
        .expect("the SQL file is a blob under the URL's prefix")
        .bytes()
        .await
        .expect("read the blob");
    let downloaded = tempfile::tempdir().expect("tempdir");
    let local = downloaded.path().join("shop.sql");
    std::fs::write(&local, &blob).expect("write the downloaded file");
    psql_load(&source, "shop_from_blob", &local).await;
    assert_identical(&source, "shop", &source, "shop_from_blob")
        .await
        .unwrap();
    azurite.stop();

    // Selective restore as a database: one schema plus one table.
    let job = api
        .restores
        .restore_as_database(RestoreAsDatabaseRequest {
            recovery_point: point.clone(),
            target_database: "shop_sales".into(),
            schemas: vec!["sales".into()],
            tables: vec!["hr.staff".into()],
            ..Default::default()
        })
        .await
        .expect("selective restore accepted")
        .into_inner();
    assert_eq!(job.schemas, vec!["sales"]);
    assert_eq!(job.tables, vec!["hr.staff"]);
    let job = api.wait_for_job(&job.name, JOB_TIMEOUT).await.unwrap();
    assert_eq!(
        state(&job),
        JobState::CompletedWithWarnings,
        "the foreign key to public.customers is left out: {job:?}"
    );
    assert!(
        job.warnings
            .iter()
            .any(|w| w.contains("FK CONSTRAINT") && w.contains("orders_customer_id_fkey")),
        "the skipped foreign key is named: {:?}",
        job.warnings
    );
    let whole = fingerprint(&source, "shop").await.unwrap();
    let part = fingerprint(&source, "shop_sales").await.unwrap();
    let restored: BTreeSet<&str> = part.tables.keys().map(String::as_str).collect();
    assert_eq!(
        restored,
        BTreeSet::from(["hr.staff", "sales.items", "sales.orders"]),
        "only the selected tables exist"
    );
    for (table, rows) in &part.tables {
        assert_eq!(Some(rows), whole.tables.get(table), "rows of {table}");
    }

    // Unknown names are refused before any job, naming the name and valid ones.
    let status = api
        .restores
        .restore_as_database(RestoreAsDatabaseRequest {
            recovery_point: point.clone(),
            target_database: "never".into(),
            tables: vec!["sales.nope".into()],
            ..Default::default()
        })
        .await
        .expect_err("unknown table");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("sales.nope") && status.message().contains("sales.orders"),
        "{status:?}"
    );
    let status = api
        .restores
        .restore_as_files(RestoreAsFilesRequest {
            recovery_point: point.clone(),
            target_url: format!("file://{}", exports.display()),
            schemas: vec!["payroll".into()],
            ..Default::default()
        })
        .await
        .expect_err("unknown schema");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("payroll"), "{status:?}");
    let status = api
        .restores
        .restore_as_files(RestoreAsFilesRequest {
            recovery_point: point.clone(),
            target_url: "ftp://somewhere/dir".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad destination");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("target_url:"), "{status:?}");

    // A destination the worker cannot write fails the job with a coded error.
    let blocker = exports.join("not-a-directory");
    std::fs::write(&blocker, b"x").expect("write blocker file");
    let job = api
        .restores
        .restore_as_files(RestoreAsFilesRequest {
            recovery_point: point.clone(),
            target_url: format!("file://{}/sub", blocker.display()),
            tables: vec!["hr.staff".into()],
            ..Default::default()
        })
        .await
        .expect("accepted: only the worker can tell")
        .into_inner();
    let job = api.wait_for_job(&job.name, JOB_TIMEOUT).await.unwrap();
    assert_eq!(state(&job), JobState::Failed, "{job:?}");
    let error = job.error.expect("a failed job carries an error");
    assert_eq!(error.code, "UserErrorDestinationNotWritable", "{error:?}");
    assert!(!error.recommended_action.is_empty());

    // The CLI takes --schema/--table on restore database too.
    ok(
        cli(&[
            "restore",
            "database",
            &point,
            "--target-database",
            "shop_hr",
            "--schema",
            "hr",
            "--wait",
        ]),
        "restore database --schema --wait",
    );
    let hr = fingerprint(&source, "shop_hr").await.unwrap();
    assert_eq!(
        hr.tables.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["hr.staff"]
    );
    let logs = up.process.log_text();
    assert!(
        !logs.contains(SOURCE_PASSWORD),
        "a secret leaked into the logs"
    );
}
