//! Agents over a real coordinator and state database, with a test agent
//! (`common::agent`) speaking `AgentService` and `WorkerService` as a real
//! one does: who may connect and claim, offers down the stream (and again
//! after a stream is lost), jobs waiting for an absent agent, and what a
//! failed attempt keeps. Probes and server binding: `agent_probes.rs`.

use crate::common;

use std::time::{Duration, Instant};

use common::agent::{Bearer, TestAgent, agent_client, hello, worker_client};
use common::agent_fixture::{
    OFFER_WAIT, assert_untouched_by_refused_claim, backup_result, create_agent, get_agent,
    outbox_rows, protected_through_agent, start, start_with, worker_token,
};
use common::{backup_now, get, job_id};
use pgvault_proto::v1 as pb;
use tonic::Code;

#[tokio::test]
async fn an_agent_token_connects_only_as_its_own_agent_and_a_worker_token_not_at_all() {
    let h = start().await;
    let token = create_agent(&h, "dc1", "local").await;
    create_agent(&h, "dc2", "local").await;

    let other = TestAgent::connect(&h.channel, &token, hello("dc2"))
        .await
        .err()
        .expect("another agent's name is refused");
    assert_eq!(other.code(), Code::PermissionDenied, "{other:?}");
    assert!(
        other.message().contains("belongs to agent \"dc1\""),
        "{}",
        other.message()
    );

    let worker = worker_token(&h).await;
    let refused = TestAgent::connect(&h.channel, &worker, hello("dc1"))
        .await
        .err()
        .expect("a worker token cannot connect");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let owner = TestAgent::connect(&h.channel, common::TOKEN, hello("dc1"))
        .await
        .err()
        .expect("an owner token is no agent's");
    assert_eq!(owner.code(), Code::FailedPrecondition, "{owner:?}");
    assert!(
        owner.message().contains("not an agent's token"),
        "{}",
        owner.message()
    );

    let agent = TestAgent::connect(&h.channel, &token, hello("dc1"))
        .await
        .expect("its own name is welcome");
    assert_eq!(agent.welcome.status_interval_seconds, 1);
    // The agent's token reaches nothing but its calls.
    let denied = h
        .servers()
        .list_servers(pb::ListServersRequest::default())
        .await
        .map(drop);
    assert!(denied.is_ok(), "the owner still lists");
    let status = pgvault_proto::v1::server_service_client::ServerServiceClient::with_interceptor(
        h.channel.clone(),
        Bearer::new(&token),
    )
    .list_servers(pb::ListServersRequest::default())
    .await
    .expect_err("an agent token cannot read servers");
    assert_eq!(status.code(), Code::PermissionDenied);

    // Shutdown ends the stream cleanly.
    h.stop().await;
    agent
        .ending(Duration::from_secs(5))
        .await
        .expect("a clean end at shutdown");
}

#[tokio::test]
async fn an_agent_may_say_hello_after_the_response_began() {
    let h = start().await;
    let token = create_agent(&h, "dc1", "local").await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut inbound = agent_client(&h.channel, &token)
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("the response begins before any hello")
        .into_inner();
    tx.send(pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Hello(hello("dc1"))),
    })
    .await
    .expect("send hello");
    let first = inbound
        .message()
        .await
        .expect("welcome")
        .expect("a message");
    assert!(
        matches!(first.kind, Some(pb::coordinator_message::Kind::Welcome(_))),
        "{first:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_hello_with_another_protocol_is_refused_and_flagged_on_the_agent() {
    let h = start().await;
    let token = create_agent(&h, "dc1", "local").await;
    let old = pb::AgentHello {
        protocol_version: 0,
        ..hello("dc1")
    };
    let refused = TestAgent::connect(&h.channel, &token, old.clone())
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("version 0")
            && refused
                .message()
                .contains(&format!("speaks {}", pgvault_proto::AGENT_PROTOCOL_VERSION))
            && refused.message().contains("upgrade pgvault-agent"),
        "{}",
        refused.message()
    );
    let agent = get_agent(&h, "dc1").await;
    assert!(!agent.connected);
    let instance = agent
        .instances
        .iter()
        .find(|i| i.instance_id == old.instance_id)
        .expect("the refused instance is listed");
    assert!(!instance.supported && !instance.connected);
    assert!(
        instance
            .refused_reason
            .starts_with("unsupported: protocol 0, coordinator speaks 1"),
        "{}",
        instance.refused_reason
    );

    // Garbage after hello ends the stream with a clear error.
    let agent = TestAgent::connect(&h.channel, &token, hello("dc1"))
        .await
        .expect("connects");
    agent.send(pb::AgentMessage { kind: None }).await;
    let ended = agent
        .ending(Duration::from_secs(5))
        .await
        .expect_err("garbage is refused");
    assert_eq!(ended.code(), Code::InvalidArgument);
    assert!(
        ended.message().contains("neither hello nor status"),
        "{}",
        ended.message()
    );
    h.stop().await;
}

#[tokio::test]
async fn an_agent_bound_backup_is_offered_on_the_stream_and_claimed_by_its_agent_only() {
    let h = start().await;
    let (token, mut agent, instance) = protected_through_agent(&h).await;
    let listed = get_agent(&h, "dc1").await;
    assert!(listed.connected);
    assert_eq!(listed.servers, vec!["servers/hidden".to_string()]);

    let job = backup_now(&h, &instance).await;
    assert_eq!(job.agent, "agents/dc1");
    let id = job_id(&job);
    let offer = agent.next_offer(OFFER_WAIT).await;
    assert_eq!((offer.job_id.as_str(), offer.attempt), (id.as_str(), 1));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        h.publisher.envelopes().iter().all(|(_, e)| e.job_id != id),
        "an agent's job reached the broker"
    );

    let claim = |token: String, id: String| {
        let channel = h.channel.clone();
        async move {
            worker_client(&channel, &token)
                .claim_task(pb::ClaimTaskRequest {
                    job_id: id,
                    worker_id: "w:1".into(),
                    pg_tool_majors: Vec::new(),
                    connections: 0,
                })
                .await
                .expect("claim")
                .into_inner()
        }
    };
    for other in [worker_token(&h).await, common::TOKEN.to_string()] {
        let refused = claim(other, id.clone()).await;
        assert!(!refused.claimed && refused.task.is_none());
        assert!(
            refused.reason.contains("agent \"dc1\""),
            "{}",
            refused.reason
        );
    }
    assert_untouched_by_refused_claim(&h, &id).await;
    assert_eq!(outbox_rows(&h, &id).await, 1, "kept until claimed");

    let claimed = claim(token.clone(), id.clone()).await;
    assert!(claimed.claimed, "{}", claimed.reason);
    let task = claimed.task.expect("task");
    let Some(pb::task::Kind::Backup(backup)) = task.kind else {
        panic!("a backup task");
    };
    assert_eq!(backup.source.expect("source").host, "127.0.0.1");
    assert_eq!(outbox_rows(&h, &id).await, 0, "a claim deletes the offers");

    let mut workers = worker_client(&h.channel, &token);
    workers
        .heartbeat(pb::HeartbeatRequest {
            job_id: id.clone(),
            lease_token: claimed.lease_token.clone(),
            ..Default::default()
        })
        .await
        .expect("heartbeat");
    workers
        .complete_task(pb::CompleteTaskRequest {
            job_id: id.clone(),
            lease_token: claimed.lease_token,
            result: Some(pb::complete_task_request::Result::Backup(backup_result())),
            ..Default::default()
        })
        .await
        .expect("complete");
    let done = get(&h, &job.name).await;
    assert_eq!(done.state, pb::JobState::Completed as i32);
    assert_eq!(done.attempts[0].agent, "agents/dc1");
    assert!(done.queued_reason.is_empty());

    // An agent's token claims nothing of the workers' jobs.
    h.protect("app").await;
    let direct = h
        .instances()
        .list_backup_instances(pb::ListBackupInstancesRequest {
            parent: "vaults/v".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .backup_instances
        .into_iter()
        .find(|i| i.server == "servers/pg1")
        .expect("pg1 instance");
    let worker_job = backup_now(&h, &direct.name).await;
    assert!(worker_job.agent.is_empty());
    let refused = claim(token, job_id(&worker_job)).await;
    assert!(!refused.claimed);
    assert!(
        refused.reason.contains("runs on the workers"),
        "{}",
        refused.reason
    );
    assert_untouched_by_refused_claim(&h, &job_id(&worker_job)).await;
    h.stop().await;
}

#[tokio::test]
async fn a_task_offered_to_a_dropped_stream_is_offered_to_another_instance() {
    let h = start().await;
    let (token, mut first, instance) = protected_through_agent(&h).await;
    let job = backup_now(&h, &instance).await;
    let offer = first.next_offer(OFFER_WAIT).await;
    assert_eq!(offer.job_id, job_id(&job));
    first.drop_stream();
    let mut second = TestAgent::connect(&h.channel, &token, hello("dc1"))
        .await
        .expect("a second instance");
    // Offered again at once, well before the periodic repeat.
    let again = second.next_offer(Duration::from_secs(8)).await;
    assert_eq!((again.job_id, again.attempt), (job_id(&job), 1));
    h.stop().await;
}

#[tokio::test]
async fn an_instance_that_reconnects_keeps_its_new_stream_when_the_old_one_ends() {
    let h = start().await;
    let (token, old, instance) = protected_through_agent(&h).await;
    let same = pb::AgentHello {
        instance_id: old.instance_id.clone(),
        ..hello("dc1")
    };
    // A network cut the coordinator has not noticed yet: the agent is back
    // on a new stream before the old one ends.
    let mut new = TestAgent::connect(&h.channel, &token, same)
        .await
        .expect("reconnects");
    old.drop_stream();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let agent = get_agent(&h, "dc1").await;
    assert!(agent.connected, "{agent:?}");
    assert_eq!(agent.instances.len(), 1, "{agent:?}");
    let job = backup_now(&h, &instance).await;
    let offer = new.next_offer(OFFER_WAIT).await;
    assert_eq!(offer.job_id, job_id(&job));
    assert!(get(&h, &job.name).await.queued_reason.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn without_a_live_instance_a_job_waits_with_its_reason_then_fails_with_agent_unavailable() {
    let h = start_with(|c| c.agent_wait = Duration::from_secs(4)).await;
    let (_token, agent, instance) = protected_through_agent(&h).await;
    agent.drop_stream();
    // The instance stops counting once its stream ended (recorded by the
    // stream's own task: wait until the coordinator says so).
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_agent(&h, "dc1").await.connected {
        assert!(Instant::now() < deadline, "the dropped stream still counts");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let job = backup_now(&h, &instance).await;
    let queued = get(&h, &job.name).await;
    assert_eq!(queued.state, pb::JobState::Queued as i32);
    assert!(
        queued
            .queued_reason
            .starts_with("waiting for agent dc1, last seen 20"),
        "{}",
        queued.queued_reason
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let failed = loop {
        let current = get(&h, &job.name).await;
        if current.state == pb::JobState::Failed as i32 {
            break current;
        }
        assert!(Instant::now() < deadline, "still {current:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let error = failed.error.expect("error");
    assert_eq!(error.code, "AgentUnavailable");
    assert!(error.message.contains("agent \"dc1\""), "{}", error.message);
    assert!(error.recommended_action.contains("pgvault-agent"));
    assert_eq!(outbox_rows(&h, &job_id(&job)).await, 0);
    h.stop().await;
}

/// A failed attempt of an agent's job records the agent and keeps the last
/// 50 of the log lines its runner sent with the failure.
#[tokio::test]
async fn a_failed_attempt_keeps_its_last_log_lines() {
    let h = start().await;
    let (token, mut agent, instance) = protected_through_agent(&h).await;
    let job = backup_now(&h, &instance).await;
    let id = agent.next_offer(OFFER_WAIT).await.job_id;
    let mut workers = worker_client(&h.channel, &token);
    let claimed = workers
        .claim_task(pb::ClaimTaskRequest {
            job_id: id.clone(),
            worker_id: "dc1:1".into(),
            pg_tool_majors: Vec::new(),
            connections: 0,
        })
        .await
        .expect("claim")
        .into_inner();
    assert!(claimed.claimed);
    workers
        .fail_task(pb::FailTaskRequest {
            job_id: id,
            lease_token: claimed.lease_token,
            error: Some(pb::JobError {
                code: "UserErrorDBNotFound".into(),
                message: "database \"app\" does not exist".into(),
                recommended_action: String::new(),
            }),
            retryable: false,
            log_tail: (0..60).map(|i| format!("line {i}")).collect(),
            ..Default::default()
        })
        .await
        .expect("fail");
    let failed = get(&h, &job.name).await;
    assert_eq!(failed.state, pb::JobState::Failed as i32);
    let attempt = &failed.attempts[0];
    assert_eq!(attempt.agent, "agents/dc1");
    assert_eq!(attempt.log_tail.len(), 50);
    assert_eq!(attempt.log_tail[0], "line 10");
    assert_eq!(attempt.log_tail[49], "line 59");
    h.stop().await;
}
