//! Probes through an agent over a real coordinator and state database:
//! the test agent answers them by asking the real cluster with
//! `pgvault-probe`, and the answers must equal a direct server's; with no
//! live instance they fail at once. Also which agents servers may name, and
//! that a bound agent and an agent's token stay.

use crate::common;

use std::time::{Duration, Instant};

use common::Harness;
use common::agent::{Bearer, TestAgent, agent_client, hello};
use common::agent_fixture::{configure, create_agent, register, start};
use pgvault_proto::v1 as pb;
use pgvault_proto::v1::access_service_client::AccessServiceClient;
use tonic::Code;

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
    let tokens =
        AccessServiceClient::with_interceptor(h.channel.clone(), Bearer::new(common::TOKEN))
            .list_tokens(pb::ListTokensRequest {})
            .await
            .expect("tokens")
            .into_inner()
            .tokens;
    let far = tokens
        .iter()
        .find(|t| t.display_name == "agent far")
        .expect("the agent's token is listed");
    let revoke =
        AccessServiceClient::with_interceptor(h.channel.clone(), Bearer::new(common::TOKEN))
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
