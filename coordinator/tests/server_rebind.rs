//! Rebinding a server to another agent, or to none, over a real
//! coordinator and state database: the new agent must exist in the
//! server's region; a rebind waits until no backup, restore, verify or
//! drill routed through the server is queued or running (each keeps the
//! agent it was created with) and names those jobs; jobs created after it
//! go the new way, and the old agent, no longer bound, can be deleted.

use crate::common;

use common::agent::agent_client;
use common::agent_fixture::{create_agent, get_agent, start};
use common::{Harness, backup_now, completed_backup_at, job_id};
use pgvault_proto::v1 as pb;
use tonic::Code;

async fn rebind(h: &Harness, agent: &str) -> Result<pb::Server, tonic::Status> {
    h.servers()
        .update_server(pb::UpdateServerRequest {
            name: "servers/pg1".into(),
            agent: Some(agent.into()),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn cancel(h: &Harness, job: &pb::Job) {
    let cancelled = h
        .jobs()
        .cancel_job(pb::CancelJobRequest {
            name: job.name.clone(),
        })
        .await
        .expect("cancel")
        .into_inner();
    assert_eq!(cancelled.state, pb::JobState::Cancelled as i32);
}

/// The refusal of a rebind names the job in its way and what to do.
fn assert_blocked_by(refused: &tonic::Status, job: &pb::Job, route: &str) {
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let message = refused.message();
    assert!(message.contains(&job_id(job)), "{message}");
    assert!(message.contains(route), "{message}");
    assert!(message.contains("pgvault job cancel"), "{message}");
}

#[tokio::test]
async fn a_server_is_rebound_once_no_job_runs_through_it_and_new_jobs_take_the_new_route() {
    let h = start().await;
    h.fixture().await;
    let instance = h.protect("app").await;
    let point = completed_backup_at(&h, &instance, chrono::Utc::now()).await;
    create_agent(&h, "dc1", "local").await;
    create_agent(&h, "dc2", "local").await;
    create_agent(&h, "far", "elsewhere").await;

    // The agent must exist, in the server's region, and be a short id.
    let unknown = rebind(&h, "dc9").await.expect_err("unknown agent");
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(
        unknown.message(),
        "agent \"dc9\" not found; create it with pgvault agent create dc9 --region local, then update the server again"
    );
    let far = rebind(&h, "far").await.expect_err("another region");
    assert_eq!(far.code(), Code::InvalidArgument);
    assert!(far.message().contains("region \"elsewhere\""), "{far:?}");
    let malformed = rebind(&h, "Not An Id").await.expect_err("malformed");
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert!(malformed.message().starts_with("agent: "), "{malformed:?}");

    // A queued restore into the server, then a queued backup of it, each
    // keep the rebind waiting; the server is left as it was.
    let restore = h
        .restores()
        .restore_as_database(pb::RestoreAsDatabaseRequest {
            recovery_point: point,
            target_database: "app_restored".into(),
            ..Default::default()
        })
        .await
        .expect("restore")
        .into_inner();
    assert_blocked_by(
        &rebind(&h, "dc1").await.expect_err("a restore is queued"),
        &restore,
        "through the workers",
    );
    cancel(&h, &restore).await;
    let backup = backup_now(&h, &instance).await;
    assert_blocked_by(
        &rebind(&h, "dc1").await.expect_err("a backup is queued"),
        &backup,
        "through the workers",
    );
    let unchanged = h
        .servers()
        .get_server(pb::GetServerRequest {
            name: "servers/pg1".into(),
        })
        .await
        .expect("get")
        .into_inner();
    assert!(unchanged.agent.is_empty(), "{unchanged:?}");
    cancel(&h, &backup).await;

    // Rebound, with a new budget in the same call; new jobs go through dc1.
    let bound = h
        .servers()
        .update_server(pb::UpdateServerRequest {
            name: "servers/pg1".into(),
            max_connections: 5,
            agent: Some(" dc1 ".into()),
        })
        .await
        .expect("rebind to dc1")
        .into_inner();
    assert_eq!((bound.agent.as_str(), bound.max_connections), ("dc1", 5));
    assert_eq!(get_agent(&h, "dc1").await.servers, vec!["servers/pg1"]);
    let through_dc1 = backup_now(&h, &instance).await;
    assert_eq!(through_dc1.agent, "agents/dc1");
    assert_blocked_by(
        &rebind(&h, "dc2").await.expect_err("a backup waits for dc1"),
        &through_dc1,
        "through agent \"dc1\"",
    );
    // Naming the agent it has changes nothing and is not refused.
    assert_eq!(rebind(&h, "dc1").await.expect("same agent").agent, "dc1");
    cancel(&h, &through_dc1).await;

    // The agent's host is replaced: dc2 takes the server, dc1 can go.
    assert_eq!(rebind(&h, "dc2").await.expect("rebind").agent, "dc2");
    assert!(get_agent(&h, "dc1").await.servers.is_empty());
    assert_eq!(get_agent(&h, "dc2").await.servers, vec!["servers/pg1"]);
    agent_client(&h.channel, common::TOKEN)
        .delete_agent(pb::DeleteAgentRequest {
            name: "agents/dc1".into(),
        })
        .await
        .expect("an agent no server is bound to is deleted");
    let through_dc2 = backup_now(&h, &instance).await;
    assert_eq!(through_dc2.agent, "agents/dc2");
    cancel(&h, &through_dc2).await;

    // Unbound: the workers reach it again.
    let direct = rebind(&h, "").await.expect("unbind");
    assert!(direct.agent.is_empty());
    assert_eq!(direct.max_connections, 5, "the budget stays");
    let on_workers = backup_now(&h, &instance).await;
    assert!(on_workers.agent.is_empty(), "{on_workers:?}");
    h.stop().await;
}
