//! The agent's stream against a fake coordinator on a loopback port (see
//! `support`): what its hello says and how often it reports status;
//! reconnection after the stream drops and after the coordinator restarts
//! on the same port; refusals (protocol, token) that are retried slowly,
//! not spun; TLS verified against the private CA it is given (and only
//! then); and the binary's documented flags.

use crate::support;

use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use support::{Agent, Fake, Server, options, pg_dump_major};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hello_announces_the_agent_and_statuses_follow_the_interval() {
    let fake = Fake::default();
    let server = Server::start(fake.clone()).await;
    let agent = Agent::start(options(&server.endpoint(), 2));
    fake.until(Duration::from_secs(10), "a hello", |s| !s.hellos.is_empty())
        .await;
    let hello = fake.with(|s| s.hellos[0].clone());
    assert_eq!(hello.agent_id, "dc1");
    assert!(
        uuid::Uuid::parse_str(&hello.instance_id).is_ok(),
        "{hello:?}"
    );
    assert_eq!(hello.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        hello.protocol_version,
        pgvault_proto::AGENT_PROTOCOL_VERSION
    );
    assert_eq!(hello.hostname, pgvault_agent::identity::hostname());
    assert_eq!(hello.pg_tool_majors, vec![pg_dump_major()]);
    assert_eq!(hello.concurrency, 2);
    // The fake's welcome asks for a status every second.
    fake.until(Duration::from_secs(30), "five statuses", |s| {
        s.statuses.len() >= 5
    })
    .await;
    let statuses = fake.with(|s| s.statuses.clone());
    // On the interval asked for: about a second apart on average (one late
    // tick on a busy machine is made up by the next), never a burst.
    for pair in statuses.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap > Duration::from_millis(300) && gap < Duration::from_secs(4),
            "statuses {gap:?} apart"
        );
    }
    let span = statuses[statuses.len() - 1].0 - statuses[0].0;
    let average = span / u32::try_from(statuses.len() - 1).expect("a few statuses");
    assert!(
        average > Duration::from_millis(700) && average < Duration::from_millis(1600),
        "statuses {average:?} apart on average"
    );
    assert!(statuses.iter().all(|(_, s)| s.running_job_ids.is_empty()));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reconnects_after_a_dropped_stream_and_a_coordinator_restart() {
    let fake = Fake::default();
    let mut server = Server::start(fake.clone()).await;
    let agent = Agent::start(options(&server.endpoint(), 1));
    fake.until(Duration::from_secs(10), "a hello", |s| s.hellos.len() == 1)
        .await;
    fake.drop_stream();
    fake.until(Duration::from_secs(10), "a hello after the drop", |s| {
        s.hellos.len() == 2
    })
    .await;
    server.restart(Duration::from_secs(2)).await;
    fake.until(Duration::from_secs(30), "a hello after the restart", |s| {
        s.hellos.len() == 3
    })
    .await;
    let restarted = Instant::now();
    fake.until(Duration::from_secs(10), "statuses after the restart", |s| {
        s.statuses.iter().filter(|(at, _)| *at > restarted).count() >= 2
    })
    .await;
    let instances: Vec<String> =
        fake.with(|s| s.hellos.iter().map(|h| h.instance_id.clone()).collect());
    assert!(
        instances.iter().all(|i| *i == instances[0]),
        "one process, one instance id: {instances:?}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_agent_retries_slowly_instead_of_spinning() {
    let fake = Fake::default();
    fake.with(|s| {
        s.refuse = Some(tonic::Status::failed_precondition(
            "agent protocol 1 is not spoken by this coordinator (it speaks 2); upgrade pgvault-agent",
        ))
    });
    let server = Server::start(fake.clone()).await;
    let agent = Agent::start(options(&server.endpoint(), 1));
    fake.until(Duration::from_secs(10), "a connection attempt", |s| {
        s.connects == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        fake.with(|s| s.connects),
        1,
        "no second attempt within 5 s of a refusal"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_and_nothing_else_is_tried() {
    let fake = Fake::default();
    let server = Server::start(fake.clone()).await;
    let mut options = options(&server.endpoint(), 1);
    options.token = "not-the-agent-token".into();
    let agent = Agent::start(options);
    fake.until(Duration::from_secs(10), "a refused attempt", |s| {
        s.unauthenticated == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        fake.with(|s| s.unauthenticated),
        1,
        "no second attempt within 4 s"
    );
    assert!(fake.with(|s| s.hellos.is_empty()));
    agent.stop().await;
}

#[test]
fn the_binary_documents_every_flag() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pgvault-agent"))
        .arg("--help")
        .output()
        .expect("pgvault-agent --help");
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--coordinator",
        "--token",
        "--token-file",
        "--name",
        "--ca-cert",
        "--concurrency",
        "--connections",
        "--pg-bin-dir",
        "--log-format",
        "--otlp-endpoint",
        "PGVAULT_AGENT_TOKEN",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn the_binary_refuses_a_misspelt_variable_before_connecting() {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pgvault-agent"));
    // Only the variables of this test: the test process may have its own.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PGVAULT_") {
            command.env_remove(name);
        }
    }
    let output = command
        .env("PGVAULT_AGENT__NAEM", "dc1")
        .env("PGVAULT_AGENT_TOKEN", "t0ken")
        .args(["--name", "dc1", "--coordinator", "http://127.0.0.1:9"])
        .output()
        .expect("pgvault-agent");
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: unknown environment variable PGVAULT_AGENT__NAEM: pgvault-agent reads PGVAULT_AGENT_TOKEN, "),
        "{stderr}"
    );
    assert!(!stderr.contains("t0ken"), "{stderr}");
}

/// A throwaway CA (PEM) and a certificate for 127.0.0.1 it signed (PEM
/// certificate, PEM key); no key is ever committed.
fn private_ca() -> (String, String, String) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "pgvault agent test CA");
    let ca = ca.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("server params");
    server
        .distinguished_name
        .push(DnType::CommonName, "pgvault coordinator");
    let server = server
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    (ca.pem(), server.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_agent_trusts_the_private_ca_it_is_given_and_nothing_else() {
    let (ca, certificate, key) = private_ca();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let fake = Fake::default();
    let server = Server::start_tls(fake.clone(), &certificate, &key).await;
    assert!(server.endpoint().starts_with("https://"));
    // The system's roots do not know the private CA: no stream, ever.
    let untrusting = Agent::start(options(&server.endpoint(), 1));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fake.with(|s| s.hellos.len()), 0);
    untrusting.stop().await;
    let mut trusting = options(&server.endpoint(), 1);
    trusting.ca_cert = Some(ca_file);
    let agent = Agent::start(trusting);
    fake.until(Duration::from_secs(10), "a hello over TLS", |s| {
        s.hellos.len() == 1 && !s.statuses.is_empty()
    })
    .await;
    agent.stop().await;
}
