//! The agent against a fake coordinator on a loopback port (see
//! `support`): what its hello says and how often it reports status; a task
//! offer claimed, run by the worker's runner and engine, and completed; a
//! probe answered with real `pgvault-probe` results from a private
//! PostgreSQL; reconnection after the stream drops and after the
//! coordinator restarts on the same port; a backup that keeps running while
//! its stream is down and through a coordinator restart; a refused agent
//! that does not spin; a graceful shutdown.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pgvault_agent::{AgentError, AgentOptions, AgentSettings};
use pgvault_localpg::TempCluster;
use pgvault_proto::v1::{
    BackupTask, ConnectionSpec, CoordinatorMessage, DeleteTask, ListDatabasesProbe, PointLocation,
    Probe, ProbeOffer, ReadinessProbe, Task, TaskEnvelope, complete_probe_request,
    complete_task_request, coordinator_message, probe, task,
};
use support::{Fake, Server, TOKEN};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const JOB: &str = "0b3e7c52-9a41-4d7e-b1f0-6c2d8e4a9f13";

/// An agent running in this process.
struct Agent {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), AgentError>>,
}

impl Agent {
    fn start(options: AgentOptions) -> Agent {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(pgvault_agent::run(options, shutdown.clone()));
        Agent { shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the agent stops within 20 s of shutdown")
            .expect("the agent's task")
            .expect("the agent ran");
    }
}

fn options(endpoint: &str, concurrency: usize) -> AgentOptions {
    AgentOptions::from_settings(&AgentSettings {
        coordinator: endpoint.to_string(),
        name: "dc1".into(),
        token: TOKEN.into(),
        concurrency,
        ..AgentSettings::default()
    })
    .expect("agent options")
}

fn cluster() -> TempCluster {
    TempCluster::start("agent-test-pw").unwrap_or_else(|e| {
        panic!("cannot start a private PostgreSQL ({e}); install PostgreSQL 15 (initdb, pg_ctl) as /usr/lib/postgresql/15/bin or set PGVAULT_PG_BIN_DIR")
    })
}

fn spec(cluster: &TempCluster, database: &str, user: &str, password: &str) -> ConnectionSpec {
    ConnectionSpec {
        host: cluster.host().into(),
        port: u32::from(cluster.port()),
        database: database.into(),
        user: user.into(),
        password: password.into(),
        ssl_mode: "disable".into(),
        ..ConnectionSpec::default()
    }
}

/// The major version of this machine's pg_dump, as the agent finds it.
fn pg_dump_major() -> u32 {
    let dir = pgvault_localpg::find_bin_dir(None, pgvault_localpg::CLIENT_PROGRAMS)
        .expect("pg_dump on this machine");
    let output = std::process::Command::new(dir.join("pg_dump"))
        .arg("--version")
        .output()
        .expect("pg_dump --version");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let version = text.split_whitespace().nth(2).expect("a version");
    version
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hello_announces_the_agent_and_statuses_follow_the_interval() {
    let fake = Fake::default();
    let server = Server::start(fake.clone()).await;
    let agent = Agent::start(options(&server.endpoint(), 2));
    fake.until(Duration::from_secs(10), "a hello", |s| !s.hellos.is_empty())
        .await;
    let hello = fake.with(|s| s.hellos[0].clone());
    assert_eq!(hello.agent_id, "dc1");
    assert!(
        uuid::Uuid::parse_str(&hello.instance_id).is_ok(),
        "{hello:?}"
    );
    assert_eq!(hello.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        hello.protocol_version,
        pgvault_proto::AGENT_PROTOCOL_VERSION
    );
    assert_eq!(hello.hostname, pgvault_agent::identity::hostname());
    assert_eq!(hello.pg_tool_majors, vec![pg_dump_major()]);
    assert_eq!(hello.concurrency, 2);
    // The fake's welcome asks for a status every second.
    fake.until(Duration::from_secs(10), "five statuses", |s| {
        s.statuses.len() >= 5
    })
    .await;
    let statuses = fake.with(|s| s.statuses.clone());
    for pair in statuses.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap > Duration::from_millis(500) && gap < Duration::from_millis(2000),
            "statuses {gap:?} apart"
        );
    }
    assert!(statuses.iter().all(|(_, s)| s.running_job_ids.is_empty()));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offered_task_is_claimed_run_and_completed_and_shown_running_meanwhile() {
    let datastore = tempfile::tempdir().unwrap();
    let point = datastore.path().join("prod/instance/point");
    std::fs::create_dir_all(point.join("data/16384")).unwrap();
    std::fs::write(point.join("manifest.json"), b"{}").unwrap();
    std::fs::write(point.join("data/16384/0.copy.zst"), b"0123456789").unwrap();
    let fake = Fake::default();
    fake.with(|s| {
        s.complete_after_running_status = true;
        s.jobs.insert(
            JOB.into(),
            Task {
                job_id: JOB.into(),
                attempt: 1,
                kind: Some(task::Kind::Delete(DeleteTask {
                    locations: vec![PointLocation {
                        datastore_url: format!("file://{}", datastore.path().display()),
                        prefix: "prod/instance/point".into(),
                    }],
                })),
            },
        );
    });
    let server = Server::start(fake.clone()).await;
    let agent = Agent::start(options(&server.endpoint(), 1));
    fake.until(Duration::from_secs(10), "a hello", |s| !s.hellos.is_empty())
        .await;
    // Garbage first: a message of no kind, a task naming no job.
    assert!(fake.send_raw(CoordinatorMessage { kind: None }));
    let garbage = TaskEnvelope {
        job_id: "not-a-job".into(),
        attempt: 1,
        trace_context: HashMap::new(),
    };
    assert!(fake.send(coordinator_message::Kind::Task(garbage)));
    fake.offer_until_claimed(JOB).await;
    fake.until(Duration::from_secs(20), "the task's completion", |s| {
        s.completed.contains_key(JOB)
    })
    .await;
    let completed = fake.with(|s| s.completed[JOB].clone());
    match completed.result {
        Some(complete_task_request::Result::Lifecycle(result)) => {
            assert_eq!(result.objects, 2, "{result:?}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!point.join("manifest.json").exists());
    // A status listed the job while it ran (the fake held the completion
    // until one did); one after it lists nothing.
    let done = Instant::now();
    fake.until(Duration::from_secs(10), "a status after the task", |s| {
        s.statuses
            .iter()
            .any(|(at, status)| *at > done && status.running_job_ids.is_empty())
    })
    .await;
    assert!(fake.with(|s| s.failed.is_empty()));
    assert_eq!(
        fake.with(|s| s.hellos.len()),
        1,
        "garbage did not cost the stream"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_are_answered_with_what_the_server_says() {
    let cluster = cluster();
    let admin = cluster.connect("postgres").await.expect("connect");
    admin
        .batch_execute("CREATE ROLE reader LOGIN PASSWORD 'reader-pw'")
        .await
        .unwrap();
    admin.batch_execute("CREATE DATABASE shop").await.unwrap();
    let shop = cluster.connect("shop").await.expect("connect to shop");
    shop.batch_execute("CREATE TABLE public.orders (id int)")
        .await
        .unwrap();
    let superuser = spec(&cluster, "postgres", cluster.user(), cluster.password());
    let probes = [
        (
            "list",
            superuser.clone(),
            probe::Kind::ListDatabases(ListDatabasesProbe {}),
        ),
        (
            "ready",
            spec(&cluster, "shop", "reader", "reader-pw"),
            probe::Kind::Readiness(ReadinessProbe {}),
        ),
        (
            "denied",
            spec(&cluster, "postgres", "reader", "not-the-password"),
            probe::Kind::ListDatabases(ListDatabasesProbe {}),
        ),
    ];
    let fake = Fake::default();
    fake.with(|s| {
        for (id, connection, kind) in probes.clone() {
            s.probes.insert(
                id.into(),
                Probe {
                    probe_id: id.into(),
                    connection: Some(connection),
                    kind: Some(kind),
                },
            );
        }
    });
    let server = Server::start(fake.clone()).await;
    let agent = Agent::start(options(&server.endpoint(), 1));
    fake.until(Duration::from_secs(10), "a hello", |s| !s.hellos.is_empty())
        .await;
    for (id, _, _) in &probes {
        let offer = ProbeOffer {
            probe_id: (*id).into(),
        };
        assert!(fake.send(coordinator_message::Kind::Probe(offer)));
    }
    fake.until(Duration::from_secs(30), "three answers", |s| {
        s.answers.len() == 3
    })
    .await;
    let (answers, claims, instance) = fake.with(|s| {
        (
            s.answers.clone(),
            s.probe_claims.clone(),
            s.hellos[0].instance_id.clone(),
        )
    });
    assert!(claims.iter().all(|(_, by)| *by == instance), "{claims:?}");
    match &answers["list"].result {
        Some(complete_probe_request::Result::Databases(list)) => {
            for name in ["postgres", "shop", "template1"] {
                assert!(list.databases.iter().any(|d| d == name), "{list:?}");
            }
            assert!(!list.databases.iter().any(|d| d == "template0"), "{list:?}");
        }
        other => panic!("{other:?}"),
    }
    match &answers["ready"].result {
        Some(complete_probe_request::Result::Readiness(ready)) => {
            let missing = ready.missing.clone().unwrap_or_default();
            assert_eq!(
                (missing.user.as_str(), missing.database.as_str()),
                ("reader", "shop")
            );
            let relations: Vec<(&str, &str, &str)> = missing
                .relations
                .iter()
                .map(|r| (r.schema.as_str(), r.name.as_str(), r.owner.as_str()))
                .collect();
            assert_eq!(relations, vec![("public", "orders", "postgres")]);
            assert!(ready.server_version_num >= 90_000, "{ready:?}");
        }
        other => panic!("{other:?}"),
    }
    match &answers["denied"].result {
        Some(complete_probe_request::Result::Error(error)) => {
            assert_eq!(error.code, "UserErrorDBUserAuthFailed", "{error:?}");
            assert_eq!(
                error.recommended_action,
                pgvault_errors::ErrorCode::UserErrorDBUserAuthFailed.recommended_action()
            );
            assert!(!error.message.contains("not-the-password"), "{error:?}");
        }
        other => panic!("{other:?}"),
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reconnects_after_a_dropped_stream_and_a_coordinator_restart() {
    let fake = Fake::default();
    let mut server = Server::start(fake.clone()).await;
    let agent = Agent::start(options(&server.endpoint(), 1));
    fake.until(Duration::from_secs(10), "a hello", |s| s.hellos.len() == 1)
        .await;
    fake.drop_stream();
    fake.until(Duration::from_secs(10), "a hello after the drop", |s| {
        s.hellos.len() == 2
    })
    .await;
    server.restart(Duration::from_secs(2)).await;
    fake.until(Duration::from_secs(30), "a hello after the restart", |s| {
        s.hellos.len() == 3
    })
    .await;
    let restarted = Instant::now();
    fake.until(Duration::from_secs(10), "statuses after the restart", |s| {
        s.statuses.iter().filter(|(at, _)| *at > restarted).count() >= 2
    })
    .await;
    let instances: Vec<String> =
        fake.with(|s| s.hellos.iter().map(|h| h.instance_id.clone()).collect());
    assert!(
        instances.iter().all(|i| *i == instances[0]),
        "one process, one instance id: {instances:?}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_keeps_running_while_its_stream_is_down_and_through_a_restart() {
    let cluster = cluster();
    let admin = cluster.connect("postgres").await.expect("connect");
    admin.batch_execute("CREATE DATABASE shop").await.unwrap();
    let shop = cluster.connect("shop").await.expect("connect to shop");
    shop.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, note text);
         INSERT INTO orders SELECT i, 'order ' || i FROM generate_series(1, 1000) i",
    )
    .await
    .unwrap();
    // The backup waits for this lock until the test lets it go.
    let holder = cluster.connect("shop").await.expect("connect to shop");
    holder
        .batch_execute("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let datastore = tempfile::tempdir().unwrap();
    let fake = Fake::default();
    fake.with(|s| {
        s.jobs.insert(
            JOB.into(),
            Task {
                job_id: JOB.into(),
                attempt: 1,
                kind: Some(task::Kind::Backup(BackupTask {
                    source: Some(spec(&cluster, "shop", cluster.user(), cluster.password())),
                    datastore_url: format!("file://{}", datastore.path().display()),
                    prefix: "prod/instance/point".into(),
                })),
            },
        );
    });
    let mut server = Server::start(fake.clone()).await;
    let mut options = options(&server.endpoint(), 1);
    options.engine.lock_timeout = Duration::from_secs(300);
    options.engine.pg_bin_dir = Some(cluster.bin_dir().to_path_buf());
    let agent = Agent::start(options);
    fake.until(Duration::from_secs(10), "a hello", |s| !s.hellos.is_empty())
        .await;
    fake.offer_until_claimed(JOB).await;
    fake.until(Duration::from_secs(10), "a heartbeat", |s| {
        !s.heartbeats.is_empty()
    })
    .await;

    // The stream drops and the coordinator refuses new ones for a while.
    let beats = fake.with(|s| {
        s.refuse = Some(tonic::Status::unavailable("coordinator busy"));
        s.heartbeats.len()
    });
    let connects = fake.with(|s| s.connects);
    fake.drop_stream();
    fake.until(
        Duration::from_secs(15),
        "heartbeats while the stream is down",
        |s| s.heartbeats.len() >= beats + 2 && s.connects > connects,
    )
    .await;
    fake.with(|s| s.refuse = None);
    fake.until(
        Duration::from_secs(30),
        "the agent back, reporting the task",
        |s| {
            s.hellos.len() >= 2
                && s.statuses
                    .last()
                    .is_some_and(|(_, st)| st.running_job_ids == [JOB.to_string()])
        },
    )
    .await;

    // The coordinator restarts; the task's heartbeats resume afterwards.
    server.restart(Duration::from_secs(2)).await;
    let beats = fake.with(|s| s.heartbeats.len());
    fake.until(
        Duration::from_secs(30),
        "heartbeats after the restart",
        |s| s.heartbeats.len() >= beats + 2,
    )
    .await;

    holder.batch_execute("COMMIT").await.unwrap();
    fake.until(Duration::from_secs(60), "the backup's completion", |s| {
        s.completed.contains_key(JOB) || s.failed.contains_key(JOB)
    })
    .await;
    let (completed, failed) =
        fake.with(|s| (s.completed.get(JOB).cloned(), s.failed.get(JOB).cloned()));
    assert!(failed.is_none(), "the backup failed: {failed:?}");
    match completed.and_then(|c| c.result) {
        Some(complete_task_request::Result::Backup(backup)) => {
            assert!(backup.chunk_count >= 1, "{backup:?}");
            assert!(!backup.manifest_sha256.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert!(
        datastore
            .path()
            .join("prod/instance/point/manifest.json")
            .is_file()
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_agent_retries_slowly_instead_of_spinning() {
    let fake = Fake::default();
    fake.with(|s| {
        s.refuse = Some(tonic::Status::failed_precondition(
            "agent protocol 1 is not spoken by this coordinator (it speaks 2); upgrade pgvault-agent",
        ))
    });
    let server = Server::start(fake.clone()).await;
    let agent = Agent::start(options(&server.endpoint(), 1));
    fake.until(Duration::from_secs(10), "a connection attempt", |s| {
        s.connects == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        fake.with(|s| s.connects),
        1,
        "no second attempt within 5 s of a refusal"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_and_nothing_else_is_tried() {
    let fake = Fake::default();
    let server = Server::start(fake.clone()).await;
    let mut options = options(&server.endpoint(), 1);
    options.token = "not-the-agent-token".into();
    let agent = Agent::start(options);
    fake.until(Duration::from_secs(10), "a refused attempt", |s| {
        s.unauthenticated == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        fake.with(|s| s.unauthenticated),
        1,
        "no second attempt within 4 s"
    );
    assert!(fake.with(|s| s.hellos.is_empty()));
    agent.stop().await;
}

#[test]
fn the_binary_documents_every_flag() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pgvault-agent"))
        .arg("--help")
        .output()
        .expect("pgvault-agent --help");
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--coordinator",
        "--token",
        "--token-file",
        "--name",
        "--ca-cert",
        "--concurrency",
        "--connections",
        "--pg-bin-dir",
        "--log-format",
        "PGVAULT_AGENT_TOKEN",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}
