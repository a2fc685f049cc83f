//! Probes offered on the agent's stream by a fake coordinator (see
//! `support`), answered with what a private PostgreSQL says: its
//! databases, what a low-privileged user lacks, and a refused login with
//! its catalogue code and no password in the message.

use crate::support;

use std::time::Duration;

use pgvault_proto::v1::{
    ListDatabasesProbe, Probe, ProbeOffer, ReadinessProbe, complete_probe_request,
    coordinator_message, probe,
};
use support::{Agent, Fake, Server, cluster, options, spec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_are_answered_with_what_the_server_says() {
    let cluster = cluster();
    let admin = cluster.connect("postgres").await.expect("connect");
    admin
        .batch_execute("CREATE ROLE reader LOGIN PASSWORD 'reader-pw'")
        .await
        .unwrap();
    admin.batch_execute("CREATE DATABASE shop").await.unwrap();
    let shop = cluster.connect("shop").await.expect("connect to shop");
    shop.batch_execute("CREATE TABLE public.orders (id int)")
        .await
        .unwrap();
    let superuser = spec(&cluster, "postgres", cluster.user(), cluster.password());
    let probes = [
        (
            "list",
            superuser.clone(),
            probe::Kind::ListDatabases(ListDatabasesProbe {}),
        ),
        (
            "ready",
            spec(&cluster, "shop", "reader", "reader-pw"),
            probe::Kind::Readiness(ReadinessProbe {}),
        ),
        (
            "denied",
            spec(&cluster, "postgres", "reader", "not-the-password"),
            probe::Kind::ListDatabases(ListDatabasesProbe {}),
        ),
    ];
    let fake = Fake::default();
    fake.with(|s| {
        for (id, connection, kind) in probes.clone() {
            s.probes.insert(
                id.into(),
                Probe {
                    probe_id: id.into(),
                    connection: Some(connection),
                    kind: Some(kind),
                },
            );
        }
    });
    let server = Server::start(fake.clone()).await;
    let agent = Agent::start(options(&server.endpoint(), 1));
    fake.until(Duration::from_secs(10), "a hello", |s| !s.hellos.is_empty())
        .await;
    for (id, _, _) in &probes {
        let offer = ProbeOffer {
            probe_id: (*id).into(),
        };
        assert!(fake.send(coordinator_message::Kind::Probe(offer)));
    }
    fake.until(Duration::from_secs(30), "three answers", |s| {
        s.answers.len() == 3
    })
    .await;
    let (answers, claims, instance) = fake.with(|s| {
        (
            s.answers.clone(),
            s.probe_claims.clone(),
            s.hellos[0].instance_id.clone(),
        )
    });
    assert!(claims.iter().all(|(_, by)| *by == instance), "{claims:?}");
    match &answers["list"].result {
        Some(complete_probe_request::Result::Databases(list)) => {
            for name in ["postgres", "shop", "template1"] {
                assert!(list.databases.iter().any(|d| d == name), "{list:?}");
            }
            assert!(!list.databases.iter().any(|d| d == "template0"), "{list:?}");
        }
        other => panic!("{other:?}"),
    }
    match &answers["ready"].result {
        Some(complete_probe_request::Result::Readiness(ready)) => {
            let missing = ready.missing.clone().unwrap_or_default();
            assert_eq!(
                (missing.user.as_str(), missing.database.as_str()),
                ("reader", "shop")
            );
            let relations: Vec<(&str, &str, &str)> = missing
                .relations
                .iter()
                .map(|r| (r.schema.as_str(), r.name.as_str(), r.owner.as_str()))
                .collect();
            assert_eq!(relations, vec![("public", "orders", "postgres")]);
            assert!(ready.server_version_num >= 90_000, "{ready:?}");
        }
        other => panic!("{other:?}"),
    }
    match &answers["denied"].result {
        Some(complete_probe_request::Result::Error(error)) => {
            assert_eq!(error.code, "UserErrorDBUserAuthFailed", "{error:?}");
            assert_eq!(
                error.recommended_action,
                pgvault_errors::ErrorCode::UserErrorDBUserAuthFailed.recommended_action()
            );
            assert!(!error.message.contains("not-the-password"), "{error:?}");
        }
        other => panic!("{other:?}"),
    }
    agent.stop().await;
}
