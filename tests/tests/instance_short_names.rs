//! Names people can type: a backup instance is named `<server>-<database>`
//! in its vault (suffixed when taken) and every CLI command takes it as
//! `VAULT/NAME`; `restore … --instance VAULT/NAME --latest` restores the
//! instance's newest recovery point without copying ids around. Driven
//! through the CLI against `pgvault up`, as the README's walkthrough is.

use std::process::Output;

use pgvault_e2e::compare::assert_identical;
use pgvault_e2e::fixtures;
use pgvault_e2e::pg_access::PgAccess;
use pgvault_e2e::pgvault::PgvaultUp;
use pgvault_localpg::TempCluster;
use serde_json::Value;

const SOURCE_PASSWORD: &str = "names-src-pw";

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn ok(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "`pgvault {what}` failed ({}):\n{}",
        output.status,
        text(&output)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A database with one small table `t`.
async fn small_database(source: &TempCluster, name: &str, rows: u32) {
    fixtures::create_database(source, name)
        .await
        .expect("create database");
    source
        .client(name)
        .await
        .expect("connect")
        .batch_execute(&format!(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, {rows}) g;"
        ))
        .await
        .expect("load table t");
}

/// `up` with vault `demo`, policy `nightly`, server `src` and secret
/// `src-admin`; then configures `databases` on `src` in one command and
/// returns the configure results (JSON).
fn configure(up: &PgvaultUp, source: &TempCluster, databases: &[&str]) -> Value {
    up.create_demo_vault("nightly", "mon,thu", source.port());
    let secret = format!("user=postgres password={SOURCE_PASSWORD}");
    ok(
        up.cli(&["secret", "put", "src-admin"], Some(&secret))
            .unwrap(),
        "secret put",
    );
    let mut args = vec![
        "backup",
        "configure",
        "--vault",
        "demo",
        "--policy",
        "nightly",
        "--secret",
        "src-admin",
        "--server",
        "src",
        "--assign-missing-permissions",
        "--output",
        "json",
    ];
    for database in databases {
        args.extend(["--database", database]);
    }
    json(&ok(up.cli(&args, None).unwrap(), "backup configure"))
}

fn short_names(configured: &Value) -> Vec<String> {
    configured["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            r["backup_instance"]["short_name"]
                .as_str()
                .unwrap_or_else(|| panic!("a short name in {r}"))
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn short_names_back_up_and_latest_restores_the_newest_point_through_the_cli() {
    let source = TempCluster::start(SOURCE_PASSWORD).expect("start source PostgreSQL");
    small_database(&source, "billing", 100).await;
    small_database(&source, "orders", 50).await;
    let up = tokio::task::spawn_blocking(PgvaultUp::start)
        .await
        .unwrap()
        .expect("pgvault up");
    let cli = |args: &[&str]| up.cli(args, None).expect("run pgvault");

    let configured = configure(&up, &source, &["billing", "orders"]);
    assert_eq!(short_names(&configured), ["src-billing", "src-orders"]);
    let listed = ok(cli(&["backup", "list", "--vault", "demo"]), "backup list");
    assert!(
        listed.contains("demo/src-billing") && listed.contains("demo/src-orders"),
        "{listed}"
    );

    // No point yet: --latest says so and what to run.
    let early = cli(&[
        "restore",
        "database",
        "--instance",
        "demo/src-billing",
        "--latest",
        "--target-database",
        "too_early",
    ]);
    assert!(!early.status.success(), "{}", text(&early));
    let message = text(&early);
    assert!(
        message.contains("demo/src-billing has no recovery point yet")
            && message.contains("pgvault backup now demo/src-billing"),
        "{message}"
    );

    ok(
        cli(&["backup", "now", "demo/src-billing", "--wait"]),
        "backup now demo/src-billing",
    );
    ok(
        cli(&["backup", "now", "src-orders", "--vault", "demo", "--wait"]),
        "backup now src-orders --vault demo",
    );
    // A change, then a second point: --latest must restore this one.
    source
        .client("billing")
        .await
        .unwrap()
        .batch_execute("INSERT INTO t VALUES (1001, 'after the first point')")
        .await
        .unwrap();
    ok(
        cli(&["backup", "now", "demo/src-billing", "--wait"]),
        "second backup now demo/src-billing",
    );
    let points = json(&ok(
        cli(&[
            "recovery-point",
            "list",
            "demo/src-billing",
            "--output",
            "json",
        ]),
        "recovery-point list demo/src-billing",
    ));
    assert_eq!(points["recovery_points"].as_array().map(Vec::len), Some(2));

    ok(
        cli(&[
            "restore",
            "database",
            "--instance",
            "demo/src-billing",
            "--latest",
            "--target-database",
            "billing_latest",
            "--wait",
        ]),
        "restore database --latest",
    );
    assert_identical(&source, "billing", &source, "billing_latest")
        .await
        .unwrap();

    let exports = tempfile::tempdir().expect("temp dir");
    let to = exports.path().to_str().unwrap();
    ok(
        cli(&[
            "restore",
            "files",
            "--instance",
            "demo/src-orders",
            "--latest",
            "--to",
            to,
            "--name",
            "orders.sql",
            "--wait",
        ]),
        "restore files --latest",
    );
    let sql = std::fs::read_to_string(exports.path().join("orders.sql")).expect("orders.sql");
    assert!(sql.contains("row 50"), "the SQL file holds the orders rows");

    // Jobs show the instance's short name; --instance filters by it.
    let jobs = ok(
        cli(&["job", "list", "--instance", "demo/src-billing"]),
        "job list --instance demo/src-billing",
    );
    assert!(
        jobs.contains("src-billing") && !jobs.contains("src-orders"),
        "{jobs}"
    );
    let restore_jobs = json(&ok(
        cli(&["job", "list", "--operation", "restore", "--output", "json"]),
        "job list --operation restore",
    ));
    let mut restored: Vec<&str> = restore_jobs["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["backup_instance_short_name"].as_str().unwrap_or_default())
        .collect();
    restored.sort_unstable();
    assert_eq!(restored, ["src-billing", "src-orders"]);

    // A point and --latest together are refused before anything is sent.
    let both = cli(&[
        "restore",
        "database",
        "some-point",
        "--instance",
        "demo/src-billing",
        "--latest",
        "--target-database",
        "x",
    ]);
    assert!(!both.status.success());
    assert!(
        text(&both).contains("cannot be used with"),
        "{}",
        text(&both)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_colliding_short_name_is_suffixed_and_unknown_names_say_how_to_list_them() {
    let source = TempCluster::start(SOURCE_PASSWORD).expect("start source PostgreSQL");
    small_database(&source, "shop_a", 10).await;
    small_database(&source, "shop-a", 20).await;
    let up = tokio::task::spawn_blocking(PgvaultUp::start)
        .await
        .unwrap()
        .expect("pgvault up");
    let cli = |args: &[&str]| up.cli(args, None).expect("run pgvault");

    let configured = configure(&up, &source, &["shop_a", "shop-a"]);
    assert_eq!(short_names(&configured), ["src-shop-a", "src-shop-a-2"]);

    let second = ok(
        cli(&["backup", "get", "demo/src-shop-a-2"]),
        "backup get demo/src-shop-a-2",
    );
    assert!(
        second.contains("shop-a") && !second.contains("shop_a"),
        "{second}"
    );
    // The id keeps working beside the short name.
    let id = configured["results"][1]["backup_instance"]["name"]
        .as_str()
        .expect("instance name")
        .to_string();
    let by_id = json(&ok(
        cli(&["backup", "get", &id, "--output", "json"]),
        "backup get by id",
    ));
    assert_eq!(by_id["short_name"], "src-shop-a-2");

    let unknown = cli(&["backup", "now", "demo/src-nope"]);
    assert!(!unknown.status.success());
    let message = text(&unknown);
    assert!(
        message.contains("backup instance \"demo/src-nope\" not found")
            && message.contains("pgvault backup list --vault demo"),
        "{message}"
    );
}
