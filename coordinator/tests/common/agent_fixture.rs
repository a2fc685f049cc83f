//! Set-ups of the agent tests: a coordinator whose agents report every
//! second, agents created and servers bound through the API, and a
//! database protected through a connected test agent.

use std::time::Duration;

use pgvault_proto::v1 as pb;
use pgvault_proto::v1::access_service_client::AccessServiceClient;

use super::Harness;
use super::agent::{Bearer, TestAgent, agent_client, hello, worker_client};

/// How long a task offer may take to arrive.
pub const OFFER_WAIT: Duration = Duration::from_secs(5);

pub async fn start() -> Harness {
    start_with(|_| {}).await
}

pub async fn start_with(
    adjust: impl FnOnce(&mut pgvault_coordinator::CoordinatorConfig),
) -> Harness {
    Harness::start_with(|c| {
        c.agent_status_interval = Duration::from_secs(1);
        adjust(c);
    })
    .await
}

/// Creates agent `id` in `region`; returns its token.
pub async fn create_agent(h: &Harness, id: &str, region: &str) -> String {
    let created = agent_client(&h.channel, super::TOKEN)
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

pub async fn get_agent(h: &Harness, id: &str) -> pb::Agent {
    agent_client(&h.channel, super::TOKEN)
        .get_agent(pb::GetAgentRequest {
            name: format!("agents/{id}"),
        })
        .await
        .expect("get agent")
        .into_inner()
}

/// Registers server `id` (this cluster) in region local, bound to `agent`.
pub async fn register(h: &Harness, id: &str, agent: &str) -> Result<pb::Server, tonic::Status> {
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
pub async fn configure(
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
            all_databases_of: String::new(),
            role_passwords: false,
        })
        .await
        .expect("configure backup")
        .into_inner()
        .results
        .remove(0)
}

/// Fixture, agent dc1 with a connected instance, server "hidden" bound to
/// it and database app protected through it; returns (token, agent, instance).
pub async fn protected_through_agent(h: &Harness) -> (String, TestAgent, String) {
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

pub async fn outbox_rows(h: &Harness, job: &str) -> i64 {
    let client = h.cluster.connect("postgres").await.expect("connect");
    let id: uuid::Uuid = job.parse().expect("uuid");
    client
        .query_one("SELECT count(*) FROM outbox WHERE job_id = $1", &[&id])
        .await
        .expect("count")
        .get(0)
}

pub async fn worker_token(h: &Harness) -> String {
    AccessServiceClient::with_interceptor(h.channel.clone(), Bearer::new(super::TOKEN))
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

/// Asserts a refused claim left job `job` as it was: still QUEUED, no lease
/// taken, no attempt row started and no connection slot held.
pub async fn assert_untouched_by_refused_claim(h: &Harness, job: &str) {
    let client = h.cluster.connect("postgres").await.expect("connect");
    let id: uuid::Uuid = job.parse().expect("uuid");
    let row = client
        .query_one(
            "SELECT state, lease_token IS NULL, lease_owner IS NULL,
                    (SELECT count(*) FROM job_attempts a WHERE a.job_id = j.id),
                    (SELECT count(*) FROM connection_slots s WHERE s.job_id = j.id)
               FROM jobs j WHERE j.id = $1",
            &[&id],
        )
        .await
        .expect("read job");
    let (state, no_token, no_owner): (String, bool, bool) = (row.get(0), row.get(1), row.get(2));
    let (attempts, slots): (i64, i64) = (row.get(3), row.get(4));
    assert_eq!(state, "QUEUED", "a refused claim leaves the job queued");
    assert!(no_token && no_owner, "a refused claim takes no lease");
    assert_eq!(attempts, 0, "a refused claim starts no attempt");
    assert_eq!(slots, 0, "a refused claim holds no connection slot");
}

/// `ClaimTask` of job `job` with `token` (an agent's, a worker's or the
/// owner's).
pub async fn claim_with(h: &Harness, token: &str, job: &str) -> pb::ClaimTaskResponse {
    worker_client(&h.channel, token)
        .claim_task(pb::ClaimTaskRequest {
            job_id: job.into(),
            worker_id: "dc1:1".into(),
            pg_tool_majors: Vec::new(),
            connections: 0,
        })
        .await
        .expect("claim")
        .into_inner()
}

/// What a backup reports on completion (a point of 1234 bytes in 3 chunks).
pub fn backup_result() -> pb::BackupResult {
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
        stage_split: None,
    }
}
