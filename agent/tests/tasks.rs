//! Tasks offered on the agent's stream by a fake coordinator (see
//! `support`): garbage is ignored, an offer is claimed, run by the
//! worker's runner and engine, and completed while statuses list it; a
//! backup keeps running (heartbeating) while its stream is down and through
//! a coordinator restart, and completes.

use crate::support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pgvault_proto::v1::{
    BackupTask, CoordinatorMessage, DeleteTask, PointLocation, Task, TaskEnvelope,
    complete_task_request, coordinator_message, task,
};
use support::{Agent, Fake, JOB, Server, cluster, options, spec};

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
                instance_id: String::new(),
                trace_context: Default::default(),
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
        chunk_invite: false,
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
                instance_id: String::new(),
                trace_context: Default::default(),
                kind: Some(task::Kind::Backup(BackupTask {
                    source: Some(spec(&cluster, "shop", cluster.user(), cluster.password())),
                    datastore_url: format!("file://{}", datastore.path().display()),
                    prefix: "prod/instance/point".into(),
                    fanout_workers: 0,
                    capture_globals: false,
                    capture_role_passwords: false,
                    max_server_connections: 0,
                    point_key: None,
                })),
            },
        );
    });
    let mut server = Server::start(fake.clone()).await;
    let mut options = options(&server.endpoint(), 1);
    options.engine.lock_timeout = Duration::from_secs(300);
    options.engine.pg_bin_dirs = vec![cluster.bin_dir().to_path_buf()];
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
