//! Agents over a real coordinator and state database, with a test agent
//! (`common::agent`) speaking `AgentService` and `WorkerService` as a real
//! one does and answering probes against the real cluster.

mod common;

use std::time::{Duration, Instant};

use common::agent::{TestAgent, agent_client, hello, worker_client};
use common::{Harness, backup_now, get, job_id};
use pgvault_proto::v1 as pb;
use pgvault_proto::v1::access_service_client::AccessServiceClient;
use tonic::Code;

const OFFER_WAIT: Duration = Duration::from_secs(5);

async fn start() -> Harness {
    start_with(|_| {}).await
}

async fn start_with(adjust: impl FnOnce(&mut pgvault_coordinator::CoordinatorConfig)) -> Harness {
    Harness::start_with(|c| {
        c.agent_status_interval = Duration::from_secs(1);
        adjust(c);
    })
    .await
}

/// Creates agent `id` in `region`; returns its token.
async fn create_agent(h: &Harness, id: &str, region: &str) -> String {
    let created = agent_client(&h.channel, common::TOKEN)
        .create_agent(pb::CreateAgentRequest {
            agent_id: id.into(),
            agent: Some(pb::Agent {
                region: region.into(),
                ..Default::default()
            }),
        })
        .await
        .expect("create agent")
        .into_inner();
    assert_eq!(created.agent.expect("agent").name, format!("agents/{id}"));
    assert!(created.token.starts_with("pgv_"));
    created.token
}

async fn get_agent(h: &Harness, id: &str) -> pb::Agent {
    agent_client(&h.channel, common::TOKEN)
        .get_agent(pb::GetAgentRequest {
            name: format!("agents/{id}"),
        })
        .await
        .expect("get agent")
        .into_inner()
}

/// Registers server `id` (this cluster) in region local, bound to `agent`.
async fn register(h: &Harness, id: &str, agent: &str) -> Result<pb::Server, tonic::Status> {
    h.servers()
        .register_server(pb::RegisterServerRequest {
            server_id: id.into(),
            server: Some(pb::Server {
                host: "127.0.0.1".into(),
                port: u32::from(h.cluster.port()),
                region: "local".into(),
                agent: agent.into(),
                ..Default::default()
            }),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Configures `database` of `server` in vault v with `secret`.
async fn configure(
    h: &Harness,
    server: &str,
    database: &str,
    secret: &str,
) -> pb::ConfigureBackupResult {
    h.instances()
        .configure_backup(pb::ConfigureBackupRequest {
            parent: "vaults/v".into(),
            policy: "vaults/v/policies/daily".into(),
            rows: vec![pb::ConfigureBackupRow {
                server: format!("servers/{server}"),
                database: database.into(),
                secret: secret.into(),
            }],
            default_secret: String::new(),
            assign_missing_permissions: true,
        })
        .await
        .expect("configure backup")
        .into_inner()
        .results
        .remove(0)
}

/// Fixture, agent dc1 with a connected instance, server "hidden" bound to
/// it and database app protected through it; returns (token, agent, instance).
async fn protected_through_agent(h: &Harness) -> (String, TestAgent, String) {
    h.fixture().await;
    let token = create_agent(h, "dc1", "local").await;
    register(h, "hidden", "dc1").await.expect("register hidden");
    let agent = TestAgent::connect(&h.channel, &token, hello("dc1"))
        .await
        .expect("agent connects");
    let result = configure(h, "hidden", "app", "secrets/pg1-admin").await;
    assert_eq!(
        result.readiness,
        pb::Readiness::Success as i32,
        "{result:?}"
    );
    let instance = result.backup_instance.expect("instance").name;
    (token, agent, instance)
}

fn backup_result() -> pb::BackupResult {
    pb::BackupResult {
        snapshot_time: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        stored_bytes: 1234,
        raw_bytes: 5678,
        chunk_count: 3,
        manifest_sha256: "ab".repeat(32),
        server_version: "15.8".into(),
    }
}

async fn outbox_rows(h: &Harness, job: &str) -> i64 {
    let client = h.cluster.connect("postgres").await.expect("connect");
    let id: uuid::Uuid = job.parse().expect("uuid");
    client
        .query_one("SELECT count(*) FROM outbox WHERE job_id = $1", &[&id])
        .await
        .expect("count")
        .get(0)
}

async fn worker_token(h: &Harness) -> String {
    AccessServiceClient::with_interceptor(
        h.channel.clone(),
        common::agent::Bearer::new(common::TOKEN),
    )
    .create_token(pb::CreateTokenRequest {
        display_name: "a worker".into(),
        role: "Worker".into(),
        scope: String::new(),
    })
    .await
    .expect("create worker token")
    .into_inner()
    .secret
}

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
        common::agent::Bearer::new(&token),
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
    // The instance stops counting once its stream ended.
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

/// A login role without any privilege on app's table, and its secret.
async fn low_privileged_user(h: &Harness) {
    let app = h.cluster.connect("app").await.expect("connect app");
    app.batch_execute(
        "CREATE ROLE backup LOGIN PASSWORD 'backup-pw';
         CREATE SCHEMA sales;
         CREATE TABLE sales.orders (id int);",
    )
    .await
    .expect("set up");
    h.secrets()
        .put_secret(pb::PutSecretRequest {
            secret_id: "backup-cred".into(),
            value: format!(
                "host=127.0.0.1 port={} user=backup password=backup-pw sslmode=disable",
                h.cluster.port()
            ),
        })
        .await
        .expect("put secret");
}

#[tokio::test]
async fn probes_through_the_agent_answer_as_a_direct_server_does() {
    let h = start().await;
    h.fixture().await;
    let token = create_agent(&h, "dc1", "local").await;
    register(&h, "hidden", "dc1").await.expect("register");
    let agent = TestAgent::connect(&h.channel, &token, hello("dc1"))
        .await
        .expect("connects");
    low_privileged_user(&h).await;

    let list = |server: &'static str| {
        let mut servers = h.servers();
        async move {
            servers
                .list_databases(pb::ListDatabasesRequest {
                    name: format!("servers/{server}"),
                    secret: "secrets/pg1-admin".into(),
                })
                .await
                .expect("list databases")
                .into_inner()
                .databases
        }
    };
    let direct = list("pg1").await;
    assert!(direct.contains(&"app".to_string()), "{direct:?}");
    assert_eq!(list("hidden").await, direct);

    let direct = configure(&h, "pg1", "app", "secrets/backup-cred").await;
    let through = configure(&h, "hidden", "app", "secrets/backup-cred").await;
    assert_eq!(direct.readiness, pb::Readiness::FailedValidation as i32);
    assert_eq!(through.readiness, direct.readiness);
    let (d, t) = (direct.error.expect("error"), through.error.expect("error"));
    assert_eq!(d.code, "UserErrorMissingDBPermissions");
    assert_eq!(
        (&t.code, &t.message, &t.recommended_action),
        (&d.code, &d.message, &d.recommended_action)
    );
    let script = through
        .grant_script
        .expect("a grant script through the agent");
    assert!(
        script
            .sql
            .contains("GRANT USAGE ON SCHEMA \"sales\" TO \"backup\""),
        "{}",
        script.sql
    );
    assert_eq!(Some(script), direct.grant_script);
    assert!(
        agent.answered.lock().unwrap().len() >= 2,
        "the agent answered"
    );

    // Re-validation goes through the agent too.
    let revalidated = h
        .instances()
        .revalidate_backup_instance(pb::RevalidateBackupInstanceRequest {
            name: through.backup_instance.expect("kept").name,
            assign_missing_permissions: false,
        })
        .await
        .expect("revalidate")
        .into_inner();
    assert_eq!(
        revalidated.error.expect("error").code,
        "UserErrorMissingDBPermissions"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_probe_to_an_agent_without_a_live_instance_fails_at_once() {
    let h = start().await;
    h.fixture().await;
    create_agent(&h, "dc1", "local").await;
    register(&h, "hidden", "dc1").await.expect("register");
    let started = Instant::now();
    let status = h
        .servers()
        .list_databases(pb::ListDatabasesRequest {
            name: "servers/hidden".into(),
            secret: "secrets/pg1-admin".into(),
        })
        .await
        .expect_err("no agent");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status
            .message()
            .contains("no instance of agent \"dc1\" is connected (never connected)"),
        "{}",
        status.message()
    );
    let row = configure(&h, "hidden", "app", "secrets/pg1-admin").await;
    let error = row.error.expect("error");
    assert_eq!(error.code, "AgentUnavailable");
    assert_eq!(error.message, status.message());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    h.stop().await;
}

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

#[tokio::test]
async fn servers_name_an_existing_agent_of_their_region_and_bound_agents_stay() {
    let h = start().await;
    let unknown = register(&h, "hidden", "dc9")
        .await
        .expect_err("unknown agent");
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(
        unknown.message(),
        "agent \"dc9\" not found; create it with pgvault agent create dc9 --region local, then register the server again"
    );
    create_agent(&h, "far", "elsewhere").await;
    let mismatch = register(&h, "hidden", "far").await.expect_err("region");
    assert_eq!(mismatch.code(), Code::InvalidArgument);
    assert!(
        mismatch.message().contains("region \"elsewhere\""),
        "{}",
        mismatch.message()
    );

    let token = create_agent(&h, "dc1", "local").await;
    let server = register(&h, "hidden", "dc1").await.expect("register");
    assert_eq!(server.agent, "dc1");
    let mut admin = agent_client(&h.channel, common::TOKEN);
    let in_use = admin
        .delete_agent(pb::DeleteAgentRequest {
            name: "agents/dc1".into(),
        })
        .await
        .expect_err("bound");
    assert_eq!(in_use.code(), Code::FailedPrecondition);
    assert!(
        in_use.message().contains("\"hidden\""),
        "{}",
        in_use.message()
    );
    let duplicate = admin
        .create_agent(pb::CreateAgentRequest {
            agent_id: "dc1".into(),
            agent: None,
        })
        .await
        .expect_err("exists");
    assert_eq!(duplicate.code(), Code::AlreadyExists);

    // An agent's token is revoked with its agent, never on its own.
    let tokens = AccessServiceClient::with_interceptor(
        h.channel.clone(),
        common::agent::Bearer::new(common::TOKEN),
    )
    .list_tokens(pb::ListTokensRequest {})
    .await
    .expect("tokens")
    .into_inner()
    .tokens;
    let far = tokens
        .iter()
        .find(|t| t.display_name == "agent far")
        .expect("the agent's token is listed");
    let revoke = AccessServiceClient::with_interceptor(
        h.channel.clone(),
        common::agent::Bearer::new(common::TOKEN),
    )
    .revoke_token(pb::RevokeTokenRequest {
        name: far.name.clone(),
    })
    .await
    .expect_err("revoked with the agent");
    assert!(
        revoke.message().contains("pgvault agent delete far"),
        "{}",
        revoke.message()
    );
    let far_token = create_agent(&h, "far2", "elsewhere").await;
    admin
        .delete_agent(pb::DeleteAgentRequest {
            name: "agents/far2".into(),
        })
        .await
        .expect("an unbound agent is deleted");
    let gone = TestAgent::connect(&h.channel, &far_token, hello("far2"))
        .await
        .err()
        .expect("its token is revoked");
    assert_eq!(gone.code(), Code::Unauthenticated);
    let listed = admin
        .list_agents(pb::ListAgentsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .agents;
    let names: Vec<&str> = listed.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, vec!["agents/dc1", "agents/far"]);
    drop(token);
    h.stop().await;
}
