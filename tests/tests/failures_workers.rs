//! Failures around the worker, with real processes (issue 6, failure tests
//! 1, 5 and 6): a worker SIGKILLed inside its dump, the source PostgreSQL
//! restarted inside a dump, and a datastore with no room left. A table lock
//! held by the test keeps each backup inside its dump (snapshot taken,
//! waiting for the lock) until the fault is injected, so nothing depends on
//! timing.

use pgvault_e2e::scenario::{Scenario, assert_manifest_objects_complete, files_under};
use pgvault_proto::v1::JobState;

#[tokio::test(flavor = "multi_thread")]
async fn backups_whose_worker_is_killed_mid_dump_complete_on_another_worker_and_restore_identical()
{
    let databases = ["kill_a", "kill_b", "kill_c"];
    let mut s = Scenario::start(&databases, 1, 3, None)
        .await
        .expect("start servers");
    // Three backups, each held inside its dump on its own worker.
    let mut locks = Vec::new();
    let mut running = Vec::new();
    for (db, instance) in s.instances.clone() {
        locks.push(s.hold_table_lock(&db).await.expect("lock a table"));
        let job = s.backup_now(&instance).await.expect("backup now");
        running.push(s.wait_in_progress(&job.name).await.expect("job runs"));
        s.wait_for_blocked_backup(&db)
            .await
            .expect("backup in its dump");
    }
    // Kill the three workers one after the other; two fresh ones take over.
    let mut killed = Vec::new();
    for job in &running {
        killed.push(
            s.cluster
                .kill_worker_holding(job)
                .expect("SIGKILL the worker"),
        );
    }
    for _ in 0..2 {
        s.cluster.add_worker().expect("replacement worker");
    }
    for lock in &locks {
        lock.batch_execute("COMMIT").await.expect("release lock");
    }
    for (job, killed) in running.iter().zip(&killed) {
        let done = s.wait_completed(&job.name).await.expect("job completes");
        assert_ne!(
            &done.worker, killed,
            "the job completed on another worker: {done:?}"
        );
        assert!(done.attempt >= 2, "the killed attempt counted: {done:?}");
    }
    for (db, instance) in s.instances.clone() {
        let points = s.points(&instance).await.expect("list points");
        assert_eq!(points.len(), 1, "one point per job: {points:?}");
        assert_manifest_objects_complete(&points[0])
            .await
            .expect("manifest objects complete");
        s.restore_and_compare(&points[0].name, &db, &format!("{db}_restored"))
            .await
            .expect("restore matches the source");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_whose_source_restarts_mid_dump_fails_that_attempt_and_the_retry_completes() {
    let mut s = Scenario::start(&["restarted"], 1, 1, None)
        .await
        .expect("start servers");
    let (db, instance) = s.instances[0].clone();
    let lock = s.hold_table_lock(&db).await.expect("lock a table");
    let job = s.backup_now(&instance).await.expect("backup now");
    s.wait_in_progress(&job.name).await.expect("job runs");
    s.wait_for_blocked_backup(&db)
        .await
        .expect("backup in its dump");
    // Fast shutdown ends every session, the backup's and the lock holder's.
    tokio::task::block_in_place(|| s.source.restart()).expect("restart source PostgreSQL");
    drop(lock);
    let done = s.wait_completed(&job.name).await.expect("retry completes");
    assert_eq!(done.attempt, 2, "the first attempt failed: {done:?}");
    let logs = s.cluster.logs();
    assert!(
        logs.contains("UserErrorServerConnectionClosed"),
        "the failed attempt is reported with its code:\n{logs}"
    );
    let points = s.points(&instance).await.expect("list points");
    assert_eq!(points.len(), 1, "{points:?}");
    assert_manifest_objects_complete(&points[0])
        .await
        .expect("manifest objects complete");
    s.restore_and_compare(&points[0].name, &db, "restarted_restored")
        .await
        .expect("restore matches the source");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_to_a_full_datastore_fails_with_datastore_full_and_leaves_no_recovery_point() {
    let store = tempfile::Builder::new()
        .prefix("pgvault-full-")
        .tempdir()
        .expect("datastore directory");
    let url = format!("file://{}", store.path().display());
    let mut s = Scenario::start(&["full"], 1, 0, Some(url))
        .await
        .expect("start servers");
    // Random text compresses poorly: its chunks are far above the limit.
    s.source
        .connect("full")
        .await
        .expect("connect")
        .batch_execute(
            "CREATE TABLE noise AS SELECT g AS id, md5(random()::text) || md5(random()::text) AS t \
             FROM generate_series(1, 50000) g",
        )
        .await
        .expect("create noise table");
    // No file the worker writes may grow past 16 KiB: the data chunks of
    // `noise` are larger, so their writes fail with EFBIG, the same way a
    // write on a full disk fails with ENOSPC.
    s.cluster
        .add_worker_with_file_size_limit(16 * 1024)
        .expect("start a worker with a file-size limit");
    let instance = s.instances[0].1.clone();
    let job = s.backup_now(&instance).await.expect("backup now");
    let ended = s
        .api
        .wait_for_job(&job.name, pgvault_e2e::scenario::JOB_TIMEOUT)
        .await
        .expect("job ends");
    assert_eq!(
        ended.state,
        JobState::Failed as i32,
        "{ended:?}\n{}",
        s.cluster.logs()
    );
    let error = ended.error.expect("a failed job carries an error");
    assert_eq!(error.code, "DatastoreFull", "{error:?}");
    assert!(
        error.message.contains("full") && !error.recommended_action.is_empty(),
        "{error:?}"
    );
    let points = s.points(&instance).await.expect("list points");
    assert!(points.is_empty(), "no recovery point: {points:?}");
    let files = files_under(store.path());
    assert!(
        !files.iter().any(|f| f.ends_with("manifest.json")),
        "no manifest was committed: {files:?}"
    );
}
