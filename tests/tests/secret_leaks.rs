//! The leak test: a cluster (coordinator and a worker over RabbitMQ) driven
//! only through the `pgvault` CLI runs backups and restores that succeed
//! and ones that fail on wrong passwords, rotates a password (the next
//! backup succeeds without reconfiguring), then searches every process log,
//! every job's details as the API returns them (JSON) and all CLI output for
//! the passwords and the API token, also URL-encoded, and finds none.

use std::process::Output;

use pgvault_e2e::pgvault::{PgvaultCluster, TEST_TOKEN};
use pgvault_e2e::rabbitmq::RabbitMq;
use pgvault_localpg::TempCluster;
use serde_json::Value;

const SOURCE_PASSWORD: &str = "Src pw!@#%/:leak1";
const ROTATED_PASSWORD: &str = "R0tated&pw=?+leak2";
const WRONG_PASSWORD: &str = "Wr0ng;pw'\"leak3";
/// The coordinator's state-database password (see the harness).
const STATE_PASSWORD: &str = "state-db-pw";

/// Everything the CLI printed, kept for the final search.
#[derive(Default)]
struct Transcript(String);

impl Transcript {
    fn record(&mut self, args: &[&str], output: &Output) -> (bool, String) {
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        self.0
            .push_str(&format!("$ pgvault {}\n{stdout}{stderr}\n", args.join(" ")));
        (output.status.success(), stdout)
    }
}

/// `s` percent-encoded as in a URL (every byte but unreserved characters).
fn url_encoded(s: &str, upper: bool) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else if upper {
                format!("%{b:02X}")
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

/// A libpq key=value connection string with the password quoted.
fn connection(password: &str) -> String {
    format!(
        "user=postgres password='{}'",
        password.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn no_password_or_token_reaches_logs_job_details_or_cli_output() {
    let broker = tokio::task::spawn_blocking(RabbitMq::start)
        .await
        .expect("join")
        .expect("start RabbitMQ");
    let source = TempCluster::start(SOURCE_PASSWORD).expect("start source PostgreSQL");
    let admin = source.connect("postgres").await.expect("connect");
    for sql in ["CREATE DATABASE shop", "CREATE DATABASE other"] {
        admin.batch_execute(sql).await.expect("create database");
    }
    let shop = source.connect("shop").await.expect("connect shop");
    shop.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text);
         INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 2000) i;",
    )
    .await
    .expect("seed shop");
    let url = broker.url();
    let cluster = tokio::task::spawn_blocking(move || PgvaultCluster::start(&url, 1))
        .await
        .expect("join")
        .expect("start coordinator and a worker");
    let datastore_dir = tempfile::tempdir().expect("datastore dir");
    let datastore = format!("file://{}", datastore_dir.path().display());
    let port = source.port().to_string();

    let mut transcript = Transcript::default();
    let mut pgvault = |args: &[&str], stdin: Option<&str>| {
        let output = cluster.cli(args, stdin).expect("run pgvault");
        transcript.record(args, &output)
    };
    let must = |(ok, out): (bool, String), what: &str| {
        assert!(ok, "`pgvault {what}` failed: {out}");
        out
    };
    let json = |text: &str| -> Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };

    must(
        pgvault(
            &[
                "vault",
                "create",
                "leaks",
                "--region",
                "local",
                "--datastore",
                &datastore,
            ],
            None,
        ),
        "vault create",
    );
    must(
        pgvault(
            &[
                "policy",
                "create",
                "nightly",
                "--vault",
                "leaks",
                "--weekdays",
                "mon",
                "--at",
                "02:30",
            ],
            None,
        ),
        "policy create",
    );
    must(
        pgvault(
            &[
                "server",
                "register",
                "src",
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--region",
                "local",
            ],
            None,
        ),
        "server register",
    );
    must(
        pgvault(
            &["secret", "put", "good"],
            Some(&connection(SOURCE_PASSWORD)),
        ),
        "secret put good",
    );
    must(
        pgvault(
            &["secret", "put", "wrong"],
            Some(&connection(WRONG_PASSWORD)),
        ),
        "secret put wrong",
    );
    must(
        pgvault(&["secret", "grant", "good", "--vault", "leaks"], None),
        "secret grant good",
    );
    must(
        pgvault(&["secret", "grant", "wrong", "--vault", "leaks"], None),
        "secret grant wrong",
    );

    // A wrong password is refused at configure time (the row is kept).
    let (ok, refused) = pgvault(
        &[
            "backup",
            "configure",
            "--vault",
            "leaks",
            "--policy",
            "nightly",
            "--secret",
            "wrong",
            "--server",
            "src",
            "--database",
            "other",
        ],
        None,
    );
    assert!(
        !ok && refused.contains("UserErrorDBUserAuthFailed"),
        "{refused}"
    );

    let configured = json(&must(
        pgvault(
            &[
                "backup",
                "configure",
                "--vault",
                "leaks",
                "--policy",
                "nightly",
                "--secret",
                "secret://good",
                "--server",
                "src",
                "--database",
                "shop",
                "--output",
                "json",
            ],
            None,
        ),
        "backup configure",
    ));
    let instance = configured["results"][0]["backup_instance"]["name"]
        .as_str()
        .expect("instance")
        .to_string();
    must(
        pgvault(&["backup", "now", &instance, "--wait"], None),
        "first backup",
    );

    // Rotation: the database password changes and a new version is put;
    // the next backup succeeds without reconfiguring anything.
    admin
        .batch_execute(&format!(
            "ALTER ROLE postgres PASSWORD '{}'",
            ROTATED_PASSWORD.replace('\'', "''")
        ))
        .await
        .expect("rotate the password");
    must(
        pgvault(
            &["secret", "put", "good"],
            Some(&connection(ROTATED_PASSWORD)),
        ),
        "secret put (rotated)",
    );
    must(
        pgvault(&["backup", "now", &instance, "--wait"], None),
        "backup after rotation",
    );

    // Failing jobs: a restore with the wrong password, and a backup after
    // the secret is rotated to a wrong value.
    let points = json(&must(
        pgvault(
            &["recovery-point", "list", &instance, "--output", "json"],
            None,
        ),
        "recovery-point list",
    ));
    let point = points["recovery_points"][0]["name"]
        .as_str()
        .expect("a point")
        .to_string();
    let (ok, out) = pgvault(
        &[
            "restore",
            &point,
            "--target-database",
            "shop_wrong",
            "--secret",
            "wrong",
            "--wait",
        ],
        None,
    );
    assert!(!ok, "a restore with a wrong password fails: {out}");
    must(
        pgvault(
            &[
                "restore",
                &point,
                "--target-database",
                "shop_copy",
                "--wait",
            ],
            None,
        ),
        "restore",
    );
    must(
        pgvault(
            &["secret", "put", "good"],
            Some(&connection(WRONG_PASSWORD)),
        ),
        "secret put (wrong)",
    );
    let (ok, out) = pgvault(&["backup", "now", &instance, "--wait"], None);
    assert!(!ok, "a backup with a wrong password fails: {out}");

    // Every job's details as the API returns them.
    let jobs = json(&must(
        pgvault(&["job", "list", "--output", "json"], None),
        "job list",
    ));
    let names: Vec<String> = jobs["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["name"].as_str().expect("name").to_string())
        .collect();
    assert!(names.len() >= 5, "{jobs}");
    let mut failed = 0;
    for name in &names {
        let job = json(&must(
            pgvault(&["job", "show", name, "--output", "json"], None),
            "job show",
        ));
        if job["state"] == "FAILED" {
            failed += 1;
            assert_eq!(job["error"]["code"], "UserErrorDBUserAuthFailed", "{job}");
        }
    }
    assert_eq!(failed, 2, "the wrong-password restore and backup failed");
    for args in [
        &["secret", "list", "--output", "json"][..],
        &["backup", "list"][..],
        &["backup", "get", &instance, "--output", "json"][..],
    ] {
        must(pgvault(args, None), "listing");
    }

    let everything = format!("{}\n{}", transcript.0, cluster.logs());
    assert!(
        everything.contains("UserErrorDBUserAuthFailed") && everything.contains("job"),
        "the search covers real output"
    );
    for secret in [
        SOURCE_PASSWORD,
        ROTATED_PASSWORD,
        WRONG_PASSWORD,
        TEST_TOKEN,
        STATE_PASSWORD,
    ] {
        for form in [
            secret.to_string(),
            url_encoded(secret, true),
            url_encoded(secret, false),
        ] {
            assert!(
                !everything.contains(&form),
                "{form:?} (a password or the token) leaked into the output below\n{everything}"
            );
        }
    }
    drop(cluster);
    drop(broker);
}
