//! Start-up: an unreachable state database is a one-line error naming the
//! redacted URL; several coordinators migrate the same database at once; an
//! admin token is generated (0600) when none exists.

use crate::common;

use std::sync::Arc;

use common::{DB_PASSWORD, RecordingPublisher, config};
use pgvault_coordinator::{Coordinator, CoordinatorConfig};
use pgvault_localpg::TempCluster;
use pgvault_proto::v1 as pb;
use pgvault_proto::v1::vault_service_client::VaultServiceClient;

#[tokio::test]
async fn unreachable_state_database_is_a_one_line_error_without_password() {
    let port = pgvault_localpg::free_port().expect("free port");
    let url = format!("postgresql://pgvault:Sup3rSecret@127.0.0.1:{port}/state");
    let mut config = CoordinatorConfig::new(url, [1u8; 32]);
    config.listen = "127.0.0.1:0".parse().unwrap();
    let err = match Coordinator::start(config, Arc::new(RecordingPublisher::default())).await {
        Ok(_) => panic!("start must fail"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.starts_with(&format!(
            "cannot connect to state database postgresql://pgvault@127.0.0.1:{port}/state: "
        )),
        "{err}"
    );
    assert!(!err.contains("Sup3rSecret") && !err.contains('\n'), "{err}");
}

#[tokio::test]
async fn concurrent_starts_migrate_once_and_admin_token_is_generated() {
    let cluster = tokio::task::spawn_blocking(|| TempCluster::start(DB_PASSWORD))
        .await
        .unwrap()
        .expect("postgres");
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    let make = |cluster: &TempCluster| {
        let mut c = config(cluster);
        c.bootstrap_token = None;
        c.admin_token_file = Some(token_file.clone());
        c
    };
    let publisher = Arc::new(RecordingPublisher::default());
    let (a, b, c) = tokio::join!(
        Coordinator::start(make(&cluster), publisher.clone()),
        Coordinator::start(make(&cluster), publisher.clone()),
        Coordinator::start(make(&cluster), publisher.clone()),
    );
    let (a, b, c) = (a.expect("first"), b.expect("second"), c.expect("third"));

    let token = std::fs::read_to_string(&token_file)
        .expect("token file")
        .trim()
        .to_string();
    assert!(token.starts_with("pgv_"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let client = cluster.connect("postgres").await.unwrap();
    let tokens: i64 = client
        .query_one("SELECT count(*) FROM api_tokens", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        tokens, 1,
        "exactly one admin token even with three coordinators"
    );

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", b.local_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut vaults = VaultServiceClient::new(channel);
    let mut request = tonic::Request::new(pb::ListVaultsRequest::default());
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    vaults
        .list_vaults(request)
        .await
        .expect("generated token works");

    // Debug output of the configuration never shows the password or key.
    let shown = format!("{:?}", make(&cluster));
    assert!(!shown.contains(DB_PASSWORD), "{shown}");

    for handle in [a, b, c] {
        handle.shutdown().await.expect("shutdown");
    }
}
