//! The agent's log never holds a secret: with every pgvault line at DEBUG
//! captured (and the log-tail layer installed, as the binary does), an
//! agent answers probes with a right and a wrong password and runs an
//! encrypted backup with a password, and neither password, its token nor
//! the point's data key (as hex or as a byte list) appears in what it
//! logged.

use crate::support;

use std::time::Duration;

use pgvault_proto::v1::{
    BackupTask, ListDatabasesProbe, PointKey, Probe, ProbeOffer, Task, coordinator_message, probe,
    task,
};
use pgvault_telemetry::capture::Captured;
use pgvault_worker::runner::LogTailLayer;
use support::{Agent, Fake, JOB, Server, TOKEN, cluster, options, spec};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;

/// The backup's data key: distinctive bytes 0xA0..0xBF.
const DATA_KEY: [u8; 32] = {
    let mut key = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        key[i] = 0xA0 + i as u8;
        i += 1;
    }
    key
};

// One thread: the subscriber set here is the one every task of the agent
// sees (and a blocking call in the agent would hang this test).
#[tokio::test(flavor = "current_thread")]
async fn no_password_or_token_reaches_the_agents_log() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::registry()
        .with(EnvFilter::new(
            "info,pgvault_agent=debug,pgvault_worker=debug,pgvault_engine=debug",
        ))
        .with(LogTailLayer)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone()),
        );
    pgvault_telemetry::capture::keep_interest_shared();
    let _logging = tracing::subscriber::set_default(subscriber);

    let cluster = cluster();
    let admin = cluster.connect("postgres").await.expect("connect");
    admin
        .batch_execute("CREATE TABLE t AS SELECT 1 AS id")
        .await
        .unwrap();
    let wrong = "wrong-secret-pw-2f9c";
    let fake = Fake::default();
    let datastore = tempfile::tempdir().unwrap();
    fake.with(|s| {
        for (id, password) in [("right", cluster.password()), ("wrong", wrong)] {
            s.probes.insert(
                id.into(),
                Probe {
                    probe_id: id.into(),
                    connection: Some(spec(&cluster, "postgres", cluster.user(), password)),
                    kind: Some(probe::Kind::ListDatabases(ListDatabasesProbe {})),
                },
            );
        }
        s.jobs.insert(
            JOB.into(),
            Task {
                job_id: JOB.into(),
                attempt: 1,
                instance_id: String::new(),
                trace_context: Default::default(),
                kind: Some(task::Kind::Backup(BackupTask {
                    source: Some(spec(
                        &cluster,
                        "postgres",
                        cluster.user(),
                        cluster.password(),
                    )),
                    datastore_url: format!("file://{}", datastore.path().display()),
                    prefix: "prod/instance/point".into(),
                    fanout_workers: 0,
                    capture_globals: false,
                    capture_role_passwords: false,
                    max_server_connections: 0,
                    point_key: Some(PointKey {
                        algorithm: "aes-256-gcm".into(),
                        key_id: "point".into(),
                        key: DATA_KEY.to_vec(),
                        ..Default::default()
                    }),
                })),
            },
        );
    });
    let server = Server::start(fake.clone()).await;
    let mut options = options(&server.endpoint(), 1);
    options.engine.pg_bin_dirs = vec![cluster.bin_dir().to_path_buf()];
    let agent = Agent::start(options);
    fake.until(Duration::from_secs(10), "a hello", |s| !s.hellos.is_empty())
        .await;
    for id in ["right", "wrong"] {
        let offer = ProbeOffer {
            probe_id: id.into(),
        };
        assert!(fake.send(coordinator_message::Kind::Probe(offer)));
    }
    fake.offer_until_claimed(JOB).await;
    fake.until(Duration::from_secs(60), "answers and the backup", |s| {
        s.answers.len() == 2 && (s.completed.contains_key(JOB) || s.failed.contains_key(JOB))
    })
    .await;
    assert!(
        fake.with(|s| s.completed.contains_key(JOB)),
        "the backup failed"
    );
    agent.stop().await;

    let log = captured.text();
    assert!(
        log.contains("probe answered") && log.contains("task completed"),
        "the capture saw the agent's work:\n{log}"
    );
    let key_hex: String = DATA_KEY.iter().map(|b| format!("{b:02x}")).collect();
    let key_list = format!("{:?}", &DATA_KEY[..4]);
    let key_list = key_list.trim_end_matches(']');
    for secret in [cluster.password(), wrong, TOKEN, &key_hex[..16], key_list] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
}
