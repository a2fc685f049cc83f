//! Jobs other than backups on agents, over a real coordinator and state
//! database with a test agent (`common::agent`): a verify of a point of an
//! agent-bound instance and a drill into an agent-bound drill server run on
//! that agent only (offered down its stream, refused to a worker's token,
//! claimed as their own tasks); a backup under a policy that drills into an
//! agent-bound server completes and leaves its drill to the agent; and a
//! job the agent runs is cancelled through its heartbeats. Backups, offers
//! and claims in general: `agents.rs`.

use crate::common;

use common::agent::{TestAgent, hello, worker_client};
use common::agent_fixture::{
    OFFER_WAIT, assert_untouched_by_refused_claim, backup_result, claim_with, create_agent,
    outbox_rows, protected_through_agent, register, start, worker_token,
};
use common::{Harness, backup_now, claim, get, job_id};
use pgvault_proto::v1 as pb;

/// A backup result taken now (an old snapshot would expire at once).
fn backup_now_result() -> pb::BackupResult {
    pb::BackupResult {
        snapshot_time: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp(),
            nanos: 0,
        }),
        ..backup_result()
    }
}

/// Runs a backup of `instance` on `agent` to completion; returns the name
/// of the recovery point it produced.
async fn point_through_agent(
    h: &Harness,
    token: &str,
    agent: &mut TestAgent,
    instance: &str,
) -> String {
    let job = backup_now(h, instance).await;
    let id = job_id(&job);
    agent.offer_of(&id, OFFER_WAIT).await;
    let claimed = claim_with(h, token, &id).await;
    assert!(claimed.claimed, "{}", claimed.reason);
    worker_client(&h.channel, token)
        .complete_task(pb::CompleteTaskRequest {
            job_id: id,
            lease_token: claimed.lease_token,
            result: Some(pb::complete_task_request::Result::Backup(
                backup_now_result(),
            )),
            ..Default::default()
        })
        .await
        .expect("complete backup");
    let done = get(h, &job.name).await;
    assert_eq!(done.state, pb::JobState::Completed as i32, "{done:?}");
    done.recovery_point
}

/// Checks job `job` is offered down `agent`'s stream, refused to a
/// worker's token without a trace, and claimed with the agent's `token`;
/// returns the lease token and the task.
async fn runs_on_agent_only(
    h: &Harness,
    token: &str,
    agent: &mut TestAgent,
    job: &pb::Job,
) -> (String, pb::Task) {
    assert_eq!(job.agent, "agents/dc1", "{job:?}");
    let id = job_id(job);
    let offer = agent.offer_of(&id, OFFER_WAIT).await;
    assert_eq!(offer.attempt, 1);
    let refused = claim_with(h, &worker_token(h).await, &id).await;
    assert!(!refused.claimed && refused.task.is_none(), "{refused:?}");
    assert!(
        refused.reason.contains("agent \"dc1\""),
        "{}",
        refused.reason
    );
    assert_untouched_by_refused_claim(h, &id).await;
    let claimed = claim_with(h, token, &id).await;
    assert!(claimed.claimed, "{}", claimed.reason);
    assert!(
        h.publisher.envelopes().iter().all(|(_, e)| e.job_id != id),
        "an agent's job reached the broker"
    );
    (claimed.lease_token, claimed.task.expect("a claimed task"))
}

/// Completes job `job` with `result` using the agent's `token`; checks the
/// job completed on the agent.
async fn complete_on_agent(
    h: &Harness,
    token: &str,
    job: &pb::Job,
    lease_token: String,
    result: pb::complete_task_request::Result,
) {
    worker_client(&h.channel, token)
        .complete_task(pb::CompleteTaskRequest {
            job_id: job_id(job),
            lease_token,
            result: Some(result),
            ..Default::default()
        })
        .await
        .expect("complete");
    let done = get(h, &job.name).await;
    assert_eq!(done.state, pb::JobState::Completed as i32, "{done:?}");
    assert_eq!(done.attempts[0].agent, "agents/dc1");
}

#[tokio::test]
async fn a_verify_and_a_drill_through_an_agent_bound_server_run_on_that_agent_only() {
    let h = start().await;
    let (token, mut agent, instance) = protected_through_agent(&h).await;
    let point = point_through_agent(&h, &token, &mut agent, &instance).await;

    // A verify reads the point through the agent of the instance's server.
    let verify = h
        .points()
        .verify_recovery_point(pb::VerifyRecoveryPointRequest {
            name: point.clone(),
        })
        .await
        .expect("verify a point of an agent-bound instance")
        .into_inner();
    assert_eq!(verify.operation, pb::Operation::Verify as i32);
    let (lease, task) = runs_on_agent_only(&h, &token, &mut agent, &verify).await;
    let Some(pb::task::Kind::Verify(verify_task)) = task.kind else {
        panic!("a verify job's task is a VerifyTask: {task:?}");
    };
    assert_eq!(verify_task.manifest_sha256, "ab".repeat(32));
    complete_on_agent(
        &h,
        &token,
        &verify,
        lease,
        pb::complete_task_request::Result::Verify(pb::VerifyResult {
            objects: 3,
            bytes: 1234,
            rows: 7,
        }),
    )
    .await;

    // A drill writes its scratch database through the drill server's agent.
    let drill = h
        .points()
        .drill_recovery_point(pb::DrillRecoveryPointRequest {
            name: point.clone(),
            server: "hidden".into(),
            secret: "pg1-admin".into(),
        })
        .await
        .expect("drill into an agent-bound server")
        .into_inner();
    assert_eq!(drill.operation, pb::Operation::Drill as i32);
    assert_eq!(drill.recovery_point, point);
    let (lease, task) = runs_on_agent_only(&h, &token, &mut agent, &drill).await;
    let Some(pb::task::Kind::Drill(drill_task)) = task.kind else {
        panic!("a drill job's task is a DrillTask: {task:?}");
    };
    let target = drill_task.target.expect("the drill server's connection");
    assert_eq!(target.host, "127.0.0.1");
    assert!(
        target.database.starts_with("pgvault_drill_"),
        "{}",
        target.database
    );
    complete_on_agent(
        &h,
        &token,
        &drill,
        lease,
        pb::complete_task_request::Result::Drill(pb::DrillResult {
            tables: 1,
            rows: 7,
            checksums: true,
        }),
    )
    .await;
    h.stop().await;
}

#[tokio::test]
async fn a_backup_drilled_into_an_agent_bound_server_completes_and_its_drill_goes_to_the_agent() {
    let h = start().await;
    h.fixture().await;
    let token = create_agent(&h, "dc1", "local").await;
    register(&h, "hidden", "dc1")
        .await
        .expect("register hidden");
    let mut agent = TestAgent::connect(&h.channel, &token, hello("dc1"))
        .await
        .expect("agent connects");
    h.secrets()
        .grant_secret_access(pb::GrantSecretAccessRequest {
            secret: "secrets/pg1-admin".into(),
            vault: "vaults/v".into(),
        })
        .await
        .expect("grant");
    h.policies()
        .create_policy(pb::CreatePolicyRequest {
            parent: "vaults/v".into(),
            policy_id: "drilled".into(),
            policy: Some(pb::Policy {
                schedule: Some(pb::Schedule {
                    weekdays: vec![pb::Weekday::Monday as i32],
                    time_of_day: "02:00".into(),
                    time_zone: "Europe/Berlin".into(),
                }),
                retention_rules: vec![pb::RetentionRule {
                    kind: pb::RetentionRuleKind::Weekly as i32,
                    standard_duration: "P8W".into(),
                    archive_duration: String::new(),
                }],
                drill_server: "hidden".into(),
                drill_secret: "pg1-admin".into(),
                drill_every: 1,
                ..Default::default()
            }),
        })
        .await
        .expect("a policy drilling into an agent-bound server");
    // The instance itself is reached directly, by the workers.
    let configured = h
        .instances()
        .configure_backup(pb::ConfigureBackupRequest {
            parent: "vaults/v".into(),
            policy: "vaults/v/policies/drilled".into(),
            rows: vec![pb::ConfigureBackupRow {
                server: "servers/pg1".into(),
                database: "app".into(),
                secret: String::new(),
            }],
            default_secret: "secrets/pg1-admin".into(),
            assign_missing_permissions: true,
            all_databases_of: String::new(),
            role_passwords: false,
        })
        .await
        .expect("configure backup")
        .into_inner()
        .results
        .remove(0);
    assert_eq!(
        configured.readiness,
        pb::Readiness::Success as i32,
        "{configured:?}"
    );
    let instance = configured.backup_instance.expect("instance").name;

    let backup = backup_now(&h, &instance).await;
    assert!(backup.agent.is_empty(), "{backup:?}");
    let claimed = claim(&h, &job_id(&backup), "w1").await;
    assert!(claimed.claimed, "{}", claimed.reason);
    // Its completion queues the drill, in the same transaction.
    h.workers()
        .complete_task(pb::CompleteTaskRequest {
            job_id: job_id(&backup),
            lease_token: claimed.lease_token,
            result: Some(pb::complete_task_request::Result::Backup(
                backup_now_result(),
            )),
            ..Default::default()
        })
        .await
        .expect("the backup completes");
    let backup = get(&h, &backup.name).await;
    assert_eq!(backup.state, pb::JobState::Completed as i32, "{backup:?}");

    let drills = h
        .jobs()
        .list_jobs(pb::ListJobsRequest {
            vault: "vaults/v".into(),
            operation: pb::Operation::Drill as i32,
            ..Default::default()
        })
        .await
        .expect("list drills")
        .into_inner()
        .jobs;
    assert_eq!(drills.len(), 1, "{drills:?}");
    let drill = &drills[0];
    assert_eq!(drill.recovery_point, backup.recovery_point);
    assert_eq!(drill.state, pb::JobState::Queued as i32);
    let (_, task) = runs_on_agent_only(&h, &token, &mut agent, drill).await;
    assert!(
        matches!(task.kind, Some(pb::task::Kind::Drill(_))),
        "{task:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_job_running_on_an_agent_is_cancelled_through_the_agents_heartbeat() {
    let h = start().await;
    let (token, mut agent, instance) = protected_through_agent(&h).await;
    let job = backup_now(&h, &instance).await;
    let id = job_id(&job);
    agent.offer_of(&id, OFFER_WAIT).await;
    let claimed = claim_with(&h, &token, &id).await;
    assert!(claimed.claimed, "{}", claimed.reason);
    agent.running.lock().unwrap().push(id.clone());

    let cancelling = h
        .jobs()
        .cancel_job(pb::CancelJobRequest {
            name: job.name.clone(),
        })
        .await
        .expect("cancel a job the agent holds")
        .into_inner();
    assert_eq!(cancelling.state, pb::JobState::Cancelling as i32);

    // The agent learns it from the answer to its next heartbeat…
    let mut calls = worker_client(&h.channel, &token);
    let beat = calls
        .heartbeat(pb::HeartbeatRequest {
            job_id: id.clone(),
            lease_token: claimed.lease_token.clone(),
            ..Default::default()
        })
        .await
        .expect("heartbeat")
        .into_inner();
    assert!(beat.cancel_requested, "the agent is told to cancel");

    // …stops, and reports the cancellation, which ends the job.
    calls
        .fail_task(pb::FailTaskRequest {
            job_id: id.clone(),
            lease_token: claimed.lease_token,
            error: Some(pb::JobError {
                code: "Cancelled".into(),
                message: "cancelled while running".into(),
                recommended_action: String::new(),
            }),
            retryable: false,
            ..Default::default()
        })
        .await
        .expect("report the cancellation");
    agent.running.lock().unwrap().clear();
    let ended = get(&h, &job.name).await;
    assert_eq!(ended.state, pb::JobState::Cancelled as i32, "{ended:?}");
    assert_eq!(ended.error.expect("reason").code, "Cancelled");
    let attempt = &ended.attempts[0];
    assert_eq!(attempt.agent, "agents/dc1");
    assert_eq!(attempt.outcome, pb::AttemptOutcome::Cancelled as i32);
    assert_eq!(outbox_rows(&h, &id).await, 0, "nothing is offered again");
    h.stop().await;
}
