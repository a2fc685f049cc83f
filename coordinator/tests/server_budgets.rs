//! Per-server connection budgets through the API: a server's budget is set
//! at register and changed by UpdateServer; claims of one server share it
//! (each takes what it wants up to what is free), a claim that finds too
//! few free leaves the job queued, offered again and saying why it waits;
//! a failed attempt and an expired lease free their slots.

use crate::common;

use std::time::Duration;

use common::{Harness, backup_now, get, job_id};
use pgvault_proto::v1 as pb;
use tonic::Code;

/// `ClaimTask` of `job_id` by a worker with `connections` data connections.
async fn claim_with(h: &Harness, job_id: &str, connections: u32) -> pb::ClaimTaskResponse {
    h.workers()
        .claim_task(pb::ClaimTaskRequest {
            job_id: job_id.into(),
            worker_id: format!("w-{job_id}"),
            pg_tool_majors: Vec::new(),
            connections,
        })
        .await
        .expect("claim")
        .into_inner()
}

/// The connections the claimed backup task may open.
fn granted(claim: &pb::ClaimTaskResponse) -> u32 {
    match claim.task.as_ref().and_then(|t| t.kind.as_ref()) {
        Some(pb::task::Kind::Backup(backup)) => backup.max_server_connections,
        other => panic!("a backup task expected, got {other:?}"),
    }
}

async fn set_budget(h: &Harness, max: u32) -> pb::Server {
    h.servers()
        .update_server(pb::UpdateServerRequest {
            name: "servers/pg1".into(),
            max_connections: max,
            ..Default::default()
        })
        .await
        .expect("update server")
        .into_inner()
}

async fn server(h: &Harness) -> pb::Server {
    h.servers()
        .get_server(pb::GetServerRequest {
            name: "servers/pg1".into(),
        })
        .await
        .expect("get server")
        .into_inner()
}

/// Protects `databases` (created here) on pg1 and queues a backup of each;
/// returns the job ids.
async fn queue_backups(h: &Harness, databases: &[&str]) -> Vec<String> {
    let client = h.cluster.connect("postgres").await.expect("connect");
    let mut ids = Vec::new();
    for database in databases {
        if *database != "app" {
            client
                .batch_execute(&format!("CREATE DATABASE {database}"))
                .await
                .expect("create database");
        }
        let instance = h.protect(database).await;
        ids.push(job_id(&backup_now(h, &instance).await));
    }
    ids
}

async fn heartbeat(h: &Harness, id: &str, lease_token: &str) {
    h.workers()
        .heartbeat(pb::HeartbeatRequest {
            job_id: id.into(),
            lease_token: lease_token.into(),
            ..Default::default()
        })
        .await
        .expect("heartbeat");
}

async fn fail(h: &Harness, id: &str, lease_token: &str) {
    h.workers()
        .fail_task(pb::FailTaskRequest {
            job_id: id.into(),
            lease_token: lease_token.into(),
            error: Some(pb::JobError {
                code: "UserErrorSourceUnreachable".into(),
                message: "gave up".into(),
                recommended_action: String::new(),
            }),
            retryable: false,
            tables: Vec::new(),
            log_tail: Vec::new(),
        })
        .await
        .expect("fail task");
}

#[tokio::test]
async fn the_budget_is_set_at_register_changed_by_update_and_validated() {
    let h = Harness::start().await;
    h.fixture().await;
    let shown = server(&h).await;
    assert_eq!((shown.max_connections, shown.connections_in_use), (8, 0));
    assert_eq!(set_budget(&h, 3).await.max_connections, 3);
    assert_eq!(server(&h).await.max_connections, 3);
    // 0 leaves it unchanged.
    assert_eq!(set_budget(&h, 0).await.max_connections, 3);
    for bad in [1, 1001] {
        let error = h
            .servers()
            .update_server(pb::UpdateServerRequest {
                name: "servers/pg1".into(),
                max_connections: bad,
                ..Default::default()
            })
            .await
            .expect_err("out of range");
        assert_eq!(error.code(), Code::InvalidArgument);
        assert!(error.message().contains("2-1000"), "{}", error.message());
    }
    let error = h
        .servers()
        .register_server(pb::RegisterServerRequest {
            server_id: "pg2".into(),
            server: Some(pb::Server {
                host: "127.0.0.1".into(),
                region: "local".into(),
                max_connections: 1,
                ..Default::default()
            }),
        })
        .await
        .expect_err("a budget of 1 cannot run a backup");
    assert_eq!(error.code(), Code::InvalidArgument);
    let registered = h
        .servers()
        .register_server(pb::RegisterServerRequest {
            server_id: "pg3".into(),
            server: Some(pb::Server {
                host: "127.0.0.1".into(),
                region: "local".into(),
                max_connections: 4,
                ..Default::default()
            }),
        })
        .await
        .expect("register with a budget")
        .into_inner();
    assert_eq!(registered.max_connections, 4);
    h.stop().await;
}

#[tokio::test]
async fn claims_share_the_budget_and_a_third_waits_for_a_release() {
    // Leases that outlast the test's steps on a busy machine: nothing here
    // waits for one to expire.
    let h = Harness::start_with(|c| c.lease_ttl = Duration::from_secs(30)).await;
    h.fixture().await;
    set_budget(&h, 5).await;
    let ids = queue_backups(&h, &["app", "b", "c"]).await;
    for id in &ids {
        h.publisher.wait_for(id, 1).await;
    }
    // One data connection each: a backup wants 3 (holder and pg_dump too).
    let first = claim_with(&h, &ids[0], 1).await;
    assert!(first.claimed, "{}", first.reason);
    assert_eq!(granted(&first), 3);
    let second = claim_with(&h, &ids[1], 1).await;
    assert!(second.claimed, "{}", second.reason);
    assert_eq!(granted(&second), 2, "what is left, the backup's floor");
    assert_eq!(server(&h).await.connections_in_use, 5);

    let third = claim_with(&h, &ids[2], 1).await;
    assert!(!third.claimed);
    let waiting = "waiting for a connection slot on server pg1 (5 of 5 in use)";
    assert_eq!(third.reason, waiting);
    let job = get(&h, &format!("jobs/{}", ids[2])).await;
    assert_eq!(job.state, pb::JobState::Queued as i32);
    assert_eq!(job.queued_reason, waiting);
    assert!(
        job.attempts.is_empty(),
        "a deferred claim starts no attempt"
    );
    // It is offered again shortly.
    let offered = || {
        h.publisher
            .envelopes()
            .iter()
            .filter(|(_, e)| e.job_id == ids[2])
            .count()
    };
    for _ in 0..100 {
        if offered() >= 2 {
            break;
        }
        // The leases stay alive meanwhile.
        heartbeat(&h, &ids[0], &first.lease_token).await;
        heartbeat(&h, &ids[1], &second.lease_token).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(offered() >= 2, "the waiting job is published again");

    // A failed attempt frees its slots in the same call.
    fail(&h, &ids[0], &first.lease_token).await;
    assert_eq!(server(&h).await.connections_in_use, 2);
    assert_eq!(get(&h, &format!("jobs/{}", ids[2])).await.queued_reason, "");
    let third = claim_with(&h, &ids[2], 1).await;
    assert!(third.claimed, "{}", third.reason);
    assert_eq!(granted(&third), 3);
    assert_eq!(server(&h).await.connections_in_use, 5);
    h.stop().await;
}

#[tokio::test]
async fn an_expired_lease_frees_its_slots() {
    // 5 s: the second claim must come while the first lease still lives.
    let h = Harness::start_with(|c| c.lease_ttl = Duration::from_secs(5)).await;
    h.fixture().await;
    set_budget(&h, 2).await;
    let ids = queue_backups(&h, &["app", "b"]).await;
    let first = claim_with(&h, &ids[0], 4).await;
    assert!(first.claimed, "{}", first.reason);
    assert_eq!(granted(&first), 2);
    let second = claim_with(&h, &ids[1], 4).await;
    assert!(!second.claimed);
    assert!(
        second.reason.contains("(2 of 2 in use)"),
        "{}",
        second.reason
    );
    // No heartbeat: the lease expires and its slots stop counting.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    assert_eq!(server(&h).await.connections_in_use, 0);
    let second = claim_with(&h, &ids[1], 4).await;
    assert!(second.claimed, "{}", second.reason);
    assert_eq!(granted(&second), 2);
    h.stop().await;
}
