//! Whole-server protection through the real binary (`pgvault up`, its
//! worker, a source PostgreSQL): `backup configure --all-databases`
//! protects the server's three databases (its `postgres` database is a
//! configured maintenance database here, so it is skipped), a fourth
//! database created afterwards is protected by the next scheduled run and
//! backed up in that slot with the others. Every point of the server
//! carries its globals (`globals.sql`, sealed in the encrypted vault): the
//! test role with its membership, never its password; the fourth
//! database's first backup job says it was auto-included. `restore server
//! --instance … --latest` then brings all four databases and the roles
//! onto a fresh server, grants included, and refuses to run again over
//! the databases it created. Time moves through the
//! coordinator's clock-offset file; nothing sleeps for a schedule.

use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
use pgvault_e2e::fixtures;
use pgvault_e2e::pg_access::PgAccess;
use pgvault_e2e::pgvault::{Api, PgvaultUp};
use pgvault_localpg::TempCluster;
use pgvault_proto::v1::*;

const SOURCE_PASSWORD: &str = "src-Pa55word!";
const REPORTER_PASSWORD: &str = "Reporter-Pa55!";
const TARGET_PASSWORD: &str = "dst-Pa55word!";
const TIMEOUT: Duration = Duration::from_secs(240);

/// A database with one small table.
async fn small_database(source: &TempCluster, name: &str) {
    fixtures::create_database(source, name)
        .await
        .expect("create database");
    let client = source.client(name).await.expect("connect");
    client
        .batch_execute(&format!(
            "CREATE TABLE items (id int PRIMARY KEY, label text);
             INSERT INTO items SELECT g, '{name} ' || g FROM generate_series(1, 100) g;
             GRANT SELECT ON items TO reporter;"
        ))
        .await
        .expect("fill database");
}

/// Runs the CLI, failing the test with its output when it fails.
fn cli_ok(up: &PgvaultUp, args: &[&str], stdin: Option<&str>) -> String {
    let output = up.cli(args, stdin).expect("run pgvault");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "`pgvault {}` failed ({}):\nstdout: {stdout}\nstderr: {}\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr),
        up.process.log_tail(40)
    );
    stdout
}

/// Instances of vault `demo` by database, with their recovery points.
async fn points_by_database(api: &mut Api) -> Vec<(String, usize)> {
    let instances = api
        .instances
        .list_backup_instances(ListBackupInstancesRequest {
            parent: "vaults/demo".into(),
            ..Default::default()
        })
        .await
        .expect("list instances")
        .into_inner()
        .backup_instances;
    let mut out = Vec::new();
    for instance in instances {
        let points = api
            .recovery_points
            .list_recovery_points(ListRecoveryPointsRequest {
                parent: instance.name.clone(),
                ..Default::default()
            })
            .await
            .expect("list points")
            .into_inner()
            .recovery_points;
        out.push((instance.database, points.len()));
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn all_databases_protects_three_and_the_next_scheduled_run_backs_up_a_fourth() {
    let source = TempCluster::start(SOURCE_PASSWORD).expect("start source PostgreSQL");
    source
        .client("postgres")
        .await
        .expect("connect")
        .batch_execute(&format!(
            "CREATE ROLE readers NOLOGIN;
             CREATE ROLE reporter LOGIN PASSWORD '{REPORTER_PASSWORD}' IN ROLE readers;"
        ))
        .await
        .expect("create roles");
    for name in ["alpha", "beta", "gamma"] {
        small_database(&source, name).await;
    }
    let clock_dir = tempfile::tempdir().expect("temp dir");
    let clock_file = clock_dir.path().join("clock-offset");
    std::fs::write(&clock_file, "0").expect("clock file");
    let clock_path = clock_file.display().to_string();
    let up = PgvaultUp::start_with_env(&[
        ("PGVAULT_COORDINATOR__CLOCK_OFFSET_FILE", &clock_path),
        ("PGVAULT_COORDINATOR__SCHEDULER_INTERVAL_SECONDS", "1"),
        (
            "PGVAULT_COORDINATOR__MAINTENANCE_DATABASES",
            "[postgres, rdsadmin]",
        ),
    ])
    .expect("start pgvault up");

    // Due in one to two minutes: never before the server is configured.
    let due = Utc::now() + chrono::Duration::minutes(2);
    let at = format!("{:02}:{:02}", due.hour(), due.minute());
    let datastore = format!("file://{}", up.data_dir.join("datastore").display());
    let port = source.port().to_string();
    let steps: [&[&str]; 3] = [
        &[
            "vault",
            "create",
            "demo",
            "--region",
            "local",
            "--datastore",
            &datastore,
        ],
        &[
            "policy",
            "create",
            "soon",
            "--vault",
            "demo",
            "--weekdays",
            "mon,tue,wed,thu,fri,sat,sun",
            "--at",
            &at,
            "--time-zone",
            "UTC",
        ],
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
    ];
    for args in steps {
        cli_ok(&up, args, None);
    }
    let secret = format!("user=postgres password={SOURCE_PASSWORD}");
    cli_ok(&up, &["secret", "put", "src-admin"], Some(&secret));

    let table = cli_ok(
        &up,
        &[
            "backup",
            "configure",
            "--vault",
            "demo",
            "--policy",
            "soon",
            "--secret",
            "src-admin",
            "--server",
            "src",
            "--all-databases",
            "--assign-missing-permissions",
        ],
        None,
    );
    assert!(table.contains("3 of 3 databases protected"), "{table}");
    for name in ["alpha", "beta", "gamma"] {
        assert!(table.contains(name), "{table}");
    }
    assert!(!table.contains("postgres"), "{table}");

    // A database created after configuring.
    small_database(&source, "delta").await;

    let mut api = Api::connect(&up.endpoint, &up.token().expect("token"))
        .await
        .expect("connect");
    assert_eq!(
        points_by_database(&mut api).await,
        [
            ("alpha".to_string(), 0),
            ("beta".to_string(), 0),
            ("gamma".to_string(), 0)
        ]
    );

    // Three minutes ahead: the slot is due; all four are backed up in it.
    std::fs::write(&clock_file, "180").expect("move the clock");
    let deadline = Instant::now() + TIMEOUT;
    let want: Vec<(String, usize)> = ["alpha", "beta", "delta", "gamma"]
        .iter()
        .map(|d| (d.to_string(), 1))
        .collect();
    loop {
        let now = points_by_database(&mut api).await;
        if now == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot did not back up all four databases: {now:?}\n{}",
            up.process.log_tail(60)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let log = up.process.log_text();
    assert!(log.contains("auto-included database delta"), "{log}");
    let shown = cli_ok(&up, &["server", "get", "src"], None);
    assert!(shown.contains("PROTECTED WHOLE BY"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("INCLUDED") && l.contains("delta")),
        "{shown}"
    );
    let jobs = api
        .jobs
        .list_jobs(ListJobsRequest {
            operation: Operation::ScheduledBackup as i32,
            page_size: 100,
            all: true,
            ..Default::default()
        })
        .await
        .expect("list jobs")
        .into_inner()
        .jobs;
    assert_eq!(jobs.len(), 4, "one scheduled backup per database: {jobs:?}");
    // The auto-included database's first backup says so; the others do not.
    for job in &jobs {
        let shown = cli_ok(&up, &["job", "show", &job.name], None);
        let says = shown.lines().any(|l| {
            l.starts_with("AUTO-INCLUDED") && l.contains("auto-include pass of server src")
        });
        assert_eq!(
            says,
            job.backup_instance_short_name == "src-delta",
            "{}: {shown}",
            job.backup_instance_short_name
        );
    }

    // Each point carries the server's globals, sealed like every object of
    // an encrypted vault (the restore below proves what they hold: the
    // roles and memberships, without passwords).
    let globals = files_named(&up.data_dir.join("datastore"), "globals.sql");
    assert_eq!(globals.len(), 4, "{globals:?}");
    for path in globals {
        let stored = std::fs::read(&path).expect("read globals");
        let text = String::from_utf8_lossy(&stored);
        assert!(stored.starts_with(b"PGVS"), "{} is sealed", path.display());
        assert!(!text.contains("CREATE ROLE"), "{text}");
        assert!(!text.contains(REPORTER_PASSWORD), "{text}");
    }

    // Restore the slot's point set onto a fresh server.
    let target = TempCluster::start(TARGET_PASSWORD).expect("start target PostgreSQL");
    let target_port = target.port().to_string();
    cli_ok(
        &up,
        &[
            "server",
            "register",
            "dst",
            "--host",
            "127.0.0.1",
            "--port",
            &target_port,
            "--region",
            "local",
        ],
        None,
    );
    let target_secret = format!("user=postgres password={TARGET_PASSWORD}");
    cli_ok(&up, &["secret", "put", "dst-admin"], Some(&target_secret));
    cli_ok(
        &up,
        &["secret", "grant", "--vault", "demo", "dst-admin"],
        None,
    );
    // Named without a point id: the newest scheduled run of an instance.
    let restore = [
        "restore",
        "server",
        "--instance",
        "demo/src-alpha",
        "--latest",
        "--target-server",
        "dst",
        "--secret",
        "dst-admin",
        "--wait",
    ];
    cli_ok(&up, &restore, None);
    for name in ["alpha", "beta", "gamma", "delta"] {
        let client = target.client(name).await.expect("restored database");
        let rows: i64 = client
            .query_one("SELECT count(*) FROM items", &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(rows, 100, "{name}");
        let granted: bool = client
            .query_one(
                "SELECT has_table_privilege('reporter', 'items', 'SELECT')",
                &[],
            )
            .await
            .expect("privilege")
            .get(0);
        assert!(granted, "the grant to reporter restored in {name}");
    }
    let roles = target.client("postgres").await.expect("connect");
    let row = roles
        .query_one(
            "SELECT r.rolcanlogin, pg_has_role('reporter', 'readers', 'MEMBER'),
                    (SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = 'reporter')
               FROM pg_roles r WHERE r.rolname = 'reporter'",
            &[],
        )
        .await
        .expect("reporter exists on the target");
    assert!(row.get::<_, bool>(0) && row.get::<_, bool>(1) && row.get::<_, bool>(2));

    // Again onto the same server: refused up front, naming what exists.
    let again = up.cli(&restore, None).expect("run pgvault");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success(), "{stderr}");
    assert!(
        stderr.contains("already has database \"alpha\", \"beta\", \"delta\", \"gamma\""),
        "{stderr}"
    );
}

/// Every file called `name` below `dir`.
fn files_named(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().is_some_and(|n| n == name) {
                found.push(path);
            }
        }
    }
    found
}
