//! TLS on the gRPC listener, end to end: a coordinator serving a
//! certificate generated here (signed by a throwaway CA; no key is ever
//! committed), a client given that CA with `--ca-cert` which connects, and
//! one without it which fails with a line saying what to pass.

use std::path::Path;

use pgvault_coordinator::{Coordinator, CoordinatorConfig, TlsFiles};
use pgvault_localpg::TempCluster;
use pgvault_proto::v1::ListVaultsRequest;
use pgvault_queue::memory::InProcessQueue;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use super::connect::{Api, Reply};
use super::{OutputFormat, describe};

const TOKEN: &str = "tls-test-admin-token";

/// Writes `ca.pem`, `server.pem` and `server.key` (for 127.0.0.1) into `dir`.
fn generate_certificates(dir: &Path) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "pgvault test CA");
    let ca = ca.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params");
    server
        .distinguished_name
        .push(DnType::CommonName, "pgvault coordinator");
    let server = server
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write CA");
    std::fs::write(dir.join("server.pem"), server.pem()).expect("write certificate");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_with_the_ca_connect_over_tls_and_clients_without_it_are_told_to_pass_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    generate_certificates(dir.path());
    let cluster = TempCluster::start("password").expect("start PostgreSQL (see localpg)");
    let mut config = CoordinatorConfig::new(cluster.url("postgres"), [5u8; 32]);
    config.listen = "127.0.0.1:0".parse().expect("address");
    config.bootstrap_token = Some(TOKEN.to_owned());
    config.tls = Some(TlsFiles {
        cert: dir.path().join("server.pem"),
        key: dir.path().join("server.key"),
    });
    let coordinator = Coordinator::start(config, InProcessQueue::new().publisher())
        .await
        .expect("start coordinator with TLS");
    let endpoint = format!("https://{}", coordinator.local_addr());

    let ca = dir.path().join("ca.pem");
    let trusted = Api::with_ca_cert(&endpoint, TOKEN, OutputFormat::Json, Some(&ca))
        .expect("client with the CA");
    trusted
        .vaults()
        .list_vaults(ListVaultsRequest::default())
        .await
        .reply(&trusted)
        .expect("a client with the CA connects");

    let untrusted = Api::with_ca_cert(&endpoint, TOKEN, OutputFormat::Json, None).expect("client");
    let error = untrusted
        .vaults()
        .list_vaults(ListVaultsRequest::default())
        .await
        .reply(&untrusted)
        .expect_err("the test CA is not among the system's roots");
    let line = describe(&error);
    assert!(line.contains("TLS handshake failed"), "{line}");
    assert!(line.contains("--ca-cert"), "{line}");
    assert!(!line.contains(TOKEN), "{line}");

    // Plain HTTP/2 to a TLS listener does not get through either.
    let plain = Api::with_ca_cert(
        &endpoint.replace("https://", "http://"),
        TOKEN,
        OutputFormat::Json,
        None,
    )
    .expect("client");
    assert!(
        plain
            .vaults()
            .list_vaults(ListVaultsRequest::default())
            .await
            .is_err()
    );
    coordinator.shutdown().await.expect("clean shutdown");
}
