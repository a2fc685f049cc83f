//! The agent when things go wrong (issue 12), with real processes: a
//! pgbench source inside a private network that only agents reach, a
//! coordinator on the host and no worker at all.
//! - Two instances of one agent: the one running a backup is SIGKILLed; the
//!   lease expires and the other instance completes the backup, and the
//!   point restores identical.
//! - An instance stopped with SIGTERM releases its backup: the other
//!   instance takes it over at once, not after the lease.
//! - The coordinator restarts while the agent runs a backup: the agent
//!   reconnects by itself, its heartbeats keep the lease for longer than
//!   a lease lasts, and the same attempt completes.
//! - The agent is offline: its job stays QUEUED saying what it waits for,
//!   fails with AgentUnavailable after `coordinator.agent_wait_seconds`,
//!   and a job queued while it is away runs once it is back.
//!
//! A table lock held by the test keeps each backup inside its dump until
//! the fault is injected, so nothing depends on timing (the set-up and
//! steps: `pgvault_e2e::agent_scenario`). Needs root (network
//! namespaces), PostgreSQL and RabbitMQ.

use std::time::{Duration, Instant};

use pgvault_e2e::agent_scenario::{JOB_TIMEOUT, start};
use pgvault_proto::v1::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_whose_agent_instance_is_killed_completes_on_another_instance_and_restores_identical()
 {
    let mut s = start(2, &[]).await;
    let lock = s.hold_table_lock().await.expect("lock a table");
    let job = s.backup_now().await.expect("backup now");
    let running = s.wait_running(&job.name).await.expect("the backup runs");
    s.wait_for_blocked_backup()
        .await
        .expect("the backup is inside its dump");
    let holder = s
        .agents
        .iter()
        .position(|a| a.is_worker(&running.worker))
        .unwrap_or_else(|| {
            panic!(
                "no agent process ran the backup ({}):\n{}",
                running.worker,
                s.logs()
            )
        });
    assert_eq!(running.agent, "agents/dc1", "{running:?}");
    s.agents[holder]
        .kill()
        .expect("SIGKILL the agent holding the lease");
    lock.batch_execute("COMMIT")
        .await
        .expect("release the lock");

    let done = s
        .wait_completed(&job.name)
        .await
        .expect("the other instance completes the backup");
    let survivor = &s.agents[1 - holder];
    assert!(
        survivor.is_worker(&done.worker),
        "the surviving instance completed it: {done:?}"
    );
    assert!(done.attempt >= 2, "the killed attempt counted: {done:?}");
    let first = &done.attempts[0];
    assert!(
        s.agents[holder].is_worker(&first.worker)
            && matches!(
                AttemptOutcome::try_from(first.outcome),
                Ok(AttemptOutcome::LeaseExpired | AttemptOutcome::Fenced)
            ),
        "the killed instance's attempt ended with its lease: {done:?}"
    );
    assert!(
        done.attempts.iter().all(|a| a.agent == "agents/dc1"),
        "every attempt ran on the agent: {done:?}"
    );
    s.restore_the_point_and_compare("bank_restored")
        .await
        .expect("the point restores identical");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_instance_stopped_mid_backup_releases_it_to_another_instance_at_once() {
    // A long lease: a takeover well within it cannot be the lease expiring.
    let lease = Duration::from_secs(30);
    let mut s = start(
        2,
        &[(
            "PGVAULT_COORDINATOR__LEASE_TTL_SECONDS",
            &lease.as_secs().to_string(),
        )],
    )
    .await;
    let lock = s.hold_table_lock().await.expect("lock a table");
    let job = s.backup_now().await.expect("backup now");
    let running = s.wait_running(&job.name).await.expect("the backup runs");
    s.wait_for_blocked_backup()
        .await
        .expect("the backup is inside its dump");
    let holder = s
        .agents
        .iter()
        .position(|a| a.is_worker(&running.worker))
        .unwrap_or_else(|| panic!("no agent process ran the backup:\n{}", s.logs()));
    let stopped_at = Instant::now();
    let status = s.agents[holder]
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("the agent stops on SIGTERM: {e:#}\n{}", s.logs()));
    assert!(status.success(), "a clean exit: {status}");
    // Released, not abandoned: the other instance takes it over without
    // waiting for the lease to expire.
    let retried = s.wait_running_attempt(&job.name, 2).await;
    assert!(
        stopped_at.elapsed() < lease,
        "taken over before the lease could expire ({:?})",
        stopped_at.elapsed()
    );
    assert!(
        s.agents[1 - holder].is_worker(&retried.worker),
        "{retried:?}"
    );
    lock.batch_execute("COMMIT")
        .await
        .expect("release the lock");
    let done = s
        .wait_completed(&job.name)
        .await
        .expect("the backup completes");
    let first = &done.attempts[0];
    assert_eq!(
        first.error.as_ref().map(|e| e.code.as_str()),
        Some("SystemErrorWorkerShutdown"),
        "{done:?}"
    );
    s.restore_the_point_and_compare("bank_restored")
        .await
        .expect("the point restores identical");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_coordinator_restart_does_not_fail_the_backup_an_agent_is_running() {
    // Long enough to span the restart and the agent's redial on a busy
    // machine (heartbeats every lease/3), short enough to wait one out.
    let lease = Duration::from_secs(15);
    let mut s = start(
        1,
        &[(
            "PGVAULT_COORDINATOR__LEASE_TTL_SECONDS",
            &lease.as_secs().to_string(),
        )],
    )
    .await;
    let lock = s.hold_table_lock().await.expect("lock a table");
    let job = s.backup_now().await.expect("backup now");
    let running = s.wait_running(&job.name).await.expect("the backup runs");
    s.wait_for_blocked_backup()
        .await
        .expect("the backup is inside its dump");
    assert!(s.agents[0].is_worker(&running.worker), "{running:?}");

    let connected_at = |agent: &Agent| {
        agent
            .instances
            .iter()
            .filter(|i| i.connected)
            .filter_map(|i| i.connect_time.as_ref().map(|t| (t.seconds, t.nanos)))
            .max()
    };
    let before = s.wait_connected(1).await.expect("the agent is connected");
    let first_connect = connected_at(&before).expect("a connect time");
    tokio::task::block_in_place(|| s.cluster.restart_coordinator())
        .expect("restart the coordinator");
    // The agent dials the new coordinator by itself (same instance, a new
    // stream and connect time).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        s.agents[0]
            .ensure_running()
            .expect("the agent keeps running");
        let agent = s.wait_connected(1).await.expect("an instance is connected");
        if connected_at(&agent) > Some(first_connect) {
            assert_eq!(agent.instances.len(), 1, "{agent:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not reconnect after the restart: {agent:?}\n{}",
            s.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Longer than a lease: only heartbeats reaching the new coordinator
    // keep the attempt alive meanwhile.
    tokio::time::sleep(lease + Duration::from_secs(2)).await;
    lock.batch_execute("COMMIT")
        .await
        .expect("release the lock");

    let done = s
        .wait_completed(&job.name)
        .await
        .expect("the backup completes");
    assert_eq!(
        (done.attempt, done.attempts.len()),
        (1, 1),
        "the running attempt carried on: {done:?}\n{}",
        s.logs()
    );
    assert!(s.agents[0].is_worker(&done.worker), "{done:?}");
    s.restore_the_point_and_compare("bank_restored")
        .await
        .expect("the point restores identical");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_waits_for_an_offline_agent_then_fails_with_agent_unavailable() {
    let wait_seconds = 15;
    let mut s = start(
        1,
        &[(
            "PGVAULT_COORDINATOR__AGENT_WAIT_SECONDS",
            &wait_seconds.to_string(),
        )],
    )
    .await;
    s.agents[0].kill().expect("SIGKILL the only agent instance");
    s.wait_connected(0).await.expect("the agent is offline");

    // Queued, saying what it waits for (the API and `job show`).
    let queued_at = Instant::now();
    let job = s.backup_now().await.expect("backup now");
    let queued = s.get_job(&job.name).await.expect("get job");
    assert_eq!(queued.state, JobState::Queued as i32, "{queued:?}");
    assert_eq!(queued.agent, "agents/dc1", "{queued:?}");
    assert!(
        queued
            .queued_reason
            .starts_with("waiting for agent dc1, last seen "),
        "{queued:?}"
    );
    let shown = s
        .cluster
        .cli(&["job", "show", &job.name], None)
        .expect("run pgvault job show");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success() && text.contains("waiting for agent dc1, last seen"),
        "{text}{}",
        String::from_utf8_lossy(&shown.stderr)
    );

    // It fails with a stable code once it has waited agent_wait_seconds.
    let ended = s
        .api
        .wait_for_job(&job.name, JOB_TIMEOUT)
        .await
        .expect("the job ends");
    assert_eq!(ended.state, JobState::Failed as i32, "{ended:?}");
    let error = ended.error.clone().expect("a failed job has an error");
    assert_eq!(error.code, "AgentUnavailable", "{error:?}");
    assert!(
        error.message.contains("agent \"dc1\"") && !error.recommended_action.is_empty(),
        "{error:?}"
    );
    // (The state database's clock counts whole seconds here and there.)
    assert!(
        queued_at.elapsed() + Duration::from_secs(1) >= Duration::from_secs(wait_seconds),
        "failed only after waiting {wait_seconds} s ({:?})",
        queued_at.elapsed()
    );
    assert!(ended.attempts.is_empty(), "it never ran: {ended:?}");

    // A job queued while the agent is away runs once it is back.
    let job = s.backup_now().await.expect("backup now");
    s.start_agent().expect("start the agent again");
    let done = s
        .wait_completed(&job.name)
        .await
        .expect("the backup runs on the returning agent");
    assert!(s.agents[1].is_worker(&done.worker), "{done:?}");
    s.restore_the_point_and_compare("bank_restored")
        .await
        .expect("the point restores identical");
}
