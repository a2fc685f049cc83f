//! A coordinator or worker that cannot reach its broker or state database
//! stops with one line naming the URL that failed (password removed), never
//! a panic; bad settings name the key, and unknown sections, keys and
//! `PGVAULT_*` variables are refused by name.

use std::process::Command;

use pgvault_e2e::pgvault::pgvault_bin;

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    pgvault_localpg::free_port().expect("free port")
}

fn run(args: &[&str], env: &[(&str, String)]) -> (bool, String) {
    let mut command = Command::new(pgvault_bin().expect("pgvault binary"));
    command.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().expect("run pgvault");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

fn error_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in:\n{stderr}"))
}

#[test]
fn coordinator_with_unreachable_broker_names_the_url_without_password() {
    let port = closed_port();
    let (ok, stderr) = run(
        &[
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--amqp-url",
            &format!("amqp://guest:hunter2@127.0.0.1:{port}/%2f"),
        ],
        &[
            (
                "PGVAULT_COORDINATOR__DATABASE_URL",
                "postgresql://u:pw@127.0.0.1:1/db".to_string(),
            ),
            (
                "PGVAULT_COORDINATOR__MASTER_KEY",
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_string(),
            ),
        ],
    );
    assert!(!ok);
    let line = error_line(&stderr);
    assert!(
        line.contains(&format!("amqp://guest@127.0.0.1:{port}/%2f")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn coordinator_with_unreachable_state_database_names_the_url_without_password() {
    let port = closed_port();
    let (ok, stderr) = run(
        &[
            "up",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &format!("postgresql://pgv:s3cr3t@127.0.0.1:{port}/state"),
        ],
        &[(
            "PGVAULT_UP__DATA_DIR",
            tempfile::tempdir().unwrap().keep().display().to_string(),
        )],
    );
    assert!(!ok);
    let line = error_line(&stderr);
    assert!(
        line.contains(&format!("postgresql://pgv@127.0.0.1:{port}/state")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("s3cr3t") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn worker_with_unreachable_broker_names_the_url() {
    let port = closed_port();
    let (ok, stderr) = run(
        &[
            "worker",
            "--amqp-url",
            &format!("amqp://127.0.0.1:{port}/%2f"),
            "--token",
            "t",
        ],
        &[],
    );
    assert!(!ok);
    assert!(
        error_line(&stderr).contains(&format!("amqp://127.0.0.1:{port}/%2f")),
        "{stderr}"
    );
}

#[test]
fn invalid_setting_is_refused_naming_the_key() {
    let (ok, stderr) = run(
        &[
            "worker",
            "--amqp-url",
            "amqp://127.0.0.1:1/%2f",
            "--token",
            "t",
        ],
        &[("PGVAULT_WORKER__ZSTD_LEVEL", "99".to_string())],
    );
    assert!(!ok);
    assert!(
        error_line(&stderr).contains("worker.zstd_level"),
        "{stderr}"
    );
    let (ok, stderr) = run(
        &["coordinator"],
        &[("PGVAULT_COORDINATOR__LISTEN", "not-an-address".to_string())],
    );
    assert!(!ok);
    assert!(
        error_line(&stderr).contains("coordinator.listen"),
        "{stderr}"
    );
}

#[test]
fn coordinator_without_state_database_says_how_to_set_it() {
    let (ok, stderr) = run(
        &["coordinator", "--amqp-url", "amqp://127.0.0.1:1/%2f"],
        &[],
    );
    assert!(!ok);
    assert!(
        error_line(&stderr).contains("PGVAULT_COORDINATOR__DATABASE_URL"),
        "{stderr}"
    );
}

#[test]
fn tls_settings_are_checked_naming_the_keys() {
    let (ok, stderr) = run(
        &["coordinator"],
        &[(
            "PGVAULT_COORDINATOR__TLS_CERT",
            "/nonexistent/cert.pem".to_string(),
        )],
    );
    assert!(!ok);
    let line = error_line(&stderr);
    assert!(
        line.contains("coordinator.tls_cert") && line.contains("coordinator.tls_key"),
        "{stderr}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let (ok, stderr) = run(
        &["up", "--data-dir", &data_dir.display().to_string()],
        &[
            (
                "PGVAULT_COORDINATOR__TLS_CERT",
                "/nonexistent/cert.pem".to_string(),
            ),
            (
                "PGVAULT_COORDINATOR__TLS_KEY",
                "/nonexistent/key.pem".to_string(),
            ),
        ],
    );
    assert!(!ok);
    assert!(error_line(&stderr).contains("pgvault up"), "{stderr}");
    assert!(!data_dir.exists(), "nothing is started or created");
}

#[test]
fn misspelt_sections_and_variables_are_refused_naming_them() {
    let (ok, stderr) = run(
        &["coordinator"],
        &[(
            "PGVAULT_TELEMTRY__ENDPOINT",
            "http://127.0.0.1:4317".to_string(),
        )],
    );
    assert!(!ok);
    let line = error_line(&stderr);
    assert!(
        line.starts_with("error: unknown environment variable PGVAULT_TELEMTRY__ENDPOINT:")
            && line.contains("COORDINATOR, QUEUE, WORKER, UP, LOG"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pgvault.toml");
    std::fs::write(&file, "[telemtry]\nendpoint = \"http://127.0.0.1:4317\"\n").expect("write");
    let (ok, stderr) = run(
        &[
            "coordinator",
            "--config",
            file.to_str().expect("utf-8 path"),
        ],
        &[],
    );
    assert!(!ok);
    let line = error_line(&stderr);
    assert!(
        line.starts_with("error: unknown section [telemtry]") && line.contains("[coordinator]"),
        "{stderr}"
    );
}
