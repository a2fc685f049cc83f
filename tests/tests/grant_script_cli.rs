//! The missing-privileges path as a user walks it, through `pgvault up` and
//! the CLI: a low-privileged user on a database with a schema named
//! `we"ird sch.ema` and a row-level-security table fails validation with
//! UserErrorMissingDBPermissions; the kept row's generated SQL, run as the
//! administrator with `psql`, fixes it; `backup revalidate` protects the
//! row; the first backup completes and its restore holds every row, also
//! those RLS hides from ordinary users.

use std::process::{Command, Output};

use pgvault_e2e::compare::assert_identical;
use pgvault_e2e::pgvault::PgvaultUp;
use pgvault_localpg::TempCluster;
use serde_json::Value;

const ADMIN_PASSWORD: &str = "Adm1n-grant-pw";
const LOW_PASSWORD: &str = "L0w-priv-grant-pw";

fn run(output: Output, what: &str) -> (bool, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(
        !stdout.contains(LOW_PASSWORD) && !stderr.contains(LOW_PASSWORD),
        "`pgvault {what}` printed the password"
    );
    (output.status.success(), format!("{stdout}{stderr}"))
}

fn ok(output: Output, what: &str) -> String {
    let (success, text) = run(output, what);
    assert!(success, "`pgvault {what}` failed:\n{text}");
    text
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_low_privileged_user_is_fixed_by_the_generated_script_then_revalidated_and_backed_up() {
    let source = TempCluster::start(ADMIN_PASSWORD).expect("start source PostgreSQL");
    let admin = source.connect("postgres").await.expect("connect");
    admin
        .batch_execute("CREATE DATABASE shop")
        .await
        .expect("create shop");
    let shop = source.connect("shop").await.expect("connect shop");
    shop.batch_execute(&format!(
        "CREATE ROLE lowpriv LOGIN PASSWORD '{LOW_PASSWORD}';
         CREATE SCHEMA \"we\"\"ird sch.ema\";
         CREATE TABLE \"we\"\"ird sch.ema\".\"Orders \"\"2024\"\"\" (
             id serial PRIMARY KEY, tenant text NOT NULL, amount numeric);
         INSERT INTO \"we\"\"ird sch.ema\".\"Orders \"\"2024\"\"\" (tenant, amount)
             SELECT CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END, i FROM generate_series(1, 500) i;
         ALTER TABLE \"we\"\"ird sch.ema\".\"Orders \"\"2024\"\"\" ENABLE ROW LEVEL SECURITY;
         CREATE POLICY only_a ON \"we\"\"ird sch.ema\".\"Orders \"\"2024\"\"\" USING (tenant = 'a');"
    ))
    .await
    .expect("seed shop");

    let up = tokio::task::spawn_blocking(PgvaultUp::start)
        .await
        .expect("join")
        .expect("pgvault up");
    let cli = |args: &[&str]| up.cli(args, None).expect("run pgvault");
    up.create_demo_vault("nightly", "mon", source.port());
    ok(
        up.cli(
            &["secret", "put", "low"],
            Some(&format!("user=lowpriv password={LOW_PASSWORD}")),
        )
        .expect("run pgvault"),
        "secret put",
    );

    // Validation fails on privileges; the row is kept with its grant script.
    let (success, text) = run(
        cli(&[
            "backup",
            "configure",
            "--vault",
            "demo",
            "--policy",
            "nightly",
            "--secret",
            "low",
            "--server",
            "src",
            "--database",
            "shop",
            "--assign-missing-permissions",
            "--output",
            "json",
        ]),
        "backup configure",
    );
    assert!(!success, "a row failing validation fails the command");
    let result = json(&text)["results"][0].clone();
    assert_eq!(result["readiness"], "FAILED_VALIDATION", "{result}");
    assert_eq!(
        result["error"]["code"], "UserErrorMissingDBPermissions",
        "{result}"
    );
    let instance = result["backup_instance"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("the failed row is kept: {result}"))
        .to_string();
    assert_eq!(
        result["backup_instance"]["protection_state"],
        "PROTECTION_VALIDATION_FAILED"
    );
    let sql = result["grant_script"]["sql"]
        .as_str()
        .expect("a grant script")
        .to_string();
    assert!(sql.contains("\"we\"\"ird sch.ema\""), "{sql}");
    assert!(sql.to_uppercase().contains("BYPASSRLS"), "{sql}");

    // The administrator runs the script as generated, with psql.
    let script = up.data_dir.join("grant.sql");
    std::fs::write(&script, &sql).expect("write script");
    let psql = Command::new(source.bin_dir().join("psql"))
        .args(["-v", "ON_ERROR_STOP=1", "-X", "-q", "-h", "127.0.0.1", "-p"])
        .arg(source.port().to_string())
        .args(["-U", "postgres", "-d", "shop", "-f"])
        .arg(&script)
        .env("PGPASSWORD", ADMIN_PASSWORD)
        .output()
        .expect("run psql");
    assert!(
        psql.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&psql.stderr)
    );

    let revalidated = json(&ok(
        cli(&["backup", "revalidate", &instance, "--output", "json"]),
        "backup revalidate",
    ));
    let result = &revalidated["results"][0];
    assert_eq!(result["readiness"], "SUCCESS", "{result}");
    assert_eq!(
        result["backup_instance"]["protection_state"],
        "PROTECTION_CONFIGURED"
    );
    ok(
        cli(&["backup", "now", &instance, "--wait"]),
        "backup now --wait",
    );

    // The point holds the rows RLS hides: restore it (as the administrator,
    // whose secret the vault is granted) and compare with the source.
    ok(
        up.cli(
            &["secret", "put", "admin"],
            Some(&format!("user=postgres password={ADMIN_PASSWORD}")),
        )
        .expect("run pgvault"),
        "secret put admin",
    );
    ok(
        cli(&["secret", "grant", "admin", "--vault", "demo"]),
        "secret grant",
    );
    let points = json(&ok(
        cli(&["recovery-point", "list", &instance, "--output", "json"]),
        "recovery-point list",
    ));
    let point = points["recovery_points"][0]["name"]
        .as_str()
        .expect("a recovery point")
        .to_string();
    ok(
        cli(&[
            "restore",
            &point,
            "--target-database",
            "shop_copy",
            "--secret",
            "admin",
            "--wait",
        ]),
        "restore --wait",
    );
    assert_identical(&source, "shop", &source, "shop_copy")
        .await
        .expect("the restore equals the source");
    let log = up.process.log_text();
    assert!(!log.contains(LOW_PASSWORD) && !log.contains(ADMIN_PASSWORD));
}
