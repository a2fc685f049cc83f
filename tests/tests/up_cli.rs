//! The all-in-one `pgvault up` driven only through the CLI, as the README's
//! walkthrough does: vault, policy, server, secret, configure, backup now
//! --wait and restore --latest --wait by the instance's short name (no JSON
//! parsing); the restored database is identical to its source; after Ctrl-C
//! and a second `up` on the same directory, the state is back.

use std::process::Output;

use pgvault_e2e::compare::assert_identical;
use pgvault_e2e::fixtures;
use pgvault_e2e::pgvault::PgvaultUp;
use pgvault_localpg::TempCluster;
use serde_json::Value;

const SOURCE_PASSWORD: &str = "cli-src-pw";

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

#[tokio::test(flavor = "multi_thread")]
async fn up_protects_backs_up_and_restores_through_the_cli_and_keeps_state_across_restarts() {
    let source = TempCluster::start(SOURCE_PASSWORD).expect("start source PostgreSQL");
    fixtures::mixed(&source, "mixed")
        .await
        .expect("mixed fixture");
    let up = tokio::task::spawn_blocking(PgvaultUp::start)
        .await
        .unwrap()
        .expect("pgvault up");
    let cli = |args: &[&str]| up.cli(args, None).expect("run pgvault");

    up.create_demo_vault("nightly", "mon,thu", source.port());
    let secret = format!("user=postgres password={SOURCE_PASSWORD}");
    ok(
        up.cli(&["secret", "put", "src-admin"], Some(&secret))
            .unwrap(),
        "secret put",
    );
    let listed = ok(cli(&["secret", "list"]), "secret list");
    assert!(
        listed.contains("src-admin") && !listed.contains(SOURCE_PASSWORD),
        "{listed}"
    );
    let databases = ok(
        cli(&["server", "databases", "src", "--secret", "src-admin"]),
        "server databases",
    );
    assert!(
        databases.contains("mixed") && !databases.contains("template1"),
        "{databases}"
    );

    let configured = ok(
        cli(&[
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
            "--database",
            "mixed",
            "--assign-missing-permissions",
            "--output",
            "json",
        ]),
        "backup configure",
    );
    // The walkthrough types the instance as VAULT/<server>-<database>.
    assert_eq!(
        json(&configured)["results"][0]["backup_instance"]["short_name"],
        "src-mixed",
        "{configured}"
    );
    let instance = "demo/src-mixed".to_string();

    ok(
        cli(&["backup", "now", &instance, "--wait"]),
        "backup now --wait",
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
            "database",
            "--instance",
            &instance,
            "--latest",
            "--target-database",
            "mixed_copy",
            "--wait",
        ]),
        "restore database --latest --wait",
    );
    assert_identical(&source, "mixed", &source, "mixed_copy")
        .await
        .unwrap();

    // Restoring over an existing database fails the job: exit code non-zero.
    let clash = cli(&[
        "restore",
        &point,
        "--target-database",
        "mixed_copy",
        "--wait",
    ]);
    assert!(
        !clash.status.success(),
        "restore into an existing database must fail"
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&clash.stdout),
        String::from_utf8_lossy(&clash.stderr)
    );
    assert!(text.contains("UserErrorDatabaseNameAlreadyInUse"), "{text}");

    let jobs = ok(cli(&["job", "list"]), "job list");
    assert!(!jobs.contains(SOURCE_PASSWORD), "{jobs}");

    // Ctrl-C stops everything cleanly; a second `up` finds the same state.
    let up = tokio::task::spawn_blocking(move || up.restart())
        .await
        .unwrap()
        .expect("second pgvault up");
    let vaults = ok(
        up.cli(&["vault", "list"], None).unwrap(),
        "vault list after restart",
    );
    assert!(vaults.contains("demo"), "{vaults}");
    let again = ok(
        up.cli(
            &["recovery-point", "list", &instance, "--output", "json"],
            None,
        )
        .unwrap(),
        "list",
    );
    assert_eq!(
        json(&again)["recovery_points"][0]["name"].as_str(),
        Some(point.as_str())
    );
    let log = up.process.log_text();
    assert!(
        !log.contains(SOURCE_PASSWORD),
        "password leaked into the log:\n{log}"
    );
}
