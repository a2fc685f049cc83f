//! The engine over TLS against a server that refuses the backup role
//! without it: `verify-full` with the server's CA backs up (the engine's own
//! connections and pg_dump alike), `require` restores (pg_restore too), and a
//! wrong CA, an unreadable root certificate file or no TLS at all fail with
//! the code and message a user can act on — never showing the password.

use crate::support;

use std::path::{Path, PathBuf};

use pgvault_engine::{EngineError, EngineOptions, ErrorCode, PgTarget, restore_database};
use pgvault_localpg::TempCluster;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use support::*;
use tokio_util::sync::CancellationToken;

const TLS_ROLE: &str = "tls_backup";
const TLS_PASSWORD: &str = "tls-Secret-pw";

/// A CA, its PEM written to `dir/<name>-ca.pem`, and a server certificate
/// for 127.0.0.1 and localhost signed by it: (CA file, certificate PEM, key
/// PEM).
fn authority(dir: &Path, name: &str) -> (PathBuf, String, String) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("pgvault {name} CA"));
    let ca = ca.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params");
    server
        .distinguished_name
        .push(DnType::CommonName, "pgvault test server");
    let server = server
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    let ca_file = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&ca_file, ca.pem()).expect("write CA");
    (ca_file, server.pem(), key.serialize_pem())
}

fn tls_target(cluster: &TempCluster, database: &str, mode: &str, roots: Option<&Path>) -> PgTarget {
    PgTarget {
        user: TLS_ROLE.into(),
        password: TLS_PASSWORD.into(),
        ssl_mode: mode.into(),
        ssl_root_cert: roots.map(Path::to_path_buf),
        ..target(cluster, database)
    }
}

/// The error of a backup to `target` that must fail, which must not show
/// the password.
async fn refused(target: &PgTarget, opts: &EngineOptions) -> EngineError {
    let e = backup_error(target, opts).await;
    assert!(!e.message.contains(TLS_PASSWORD), "{e}");
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_and_restores_run_over_verified_tls_and_bad_tls_settings_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, certificate, key) = authority(dir.path(), "server");
    let (other_ca, _, _) = authority(dir.path(), "other");
    let cluster = TempCluster::start_with_tls("engine pw", &certificate, &key, &[TLS_ROLE]).expect(
        "start a private PostgreSQL with TLS (needs initdb/pg_ctl, e.g. apt install postgresql-15)",
    );
    execute(
        &cluster,
        "postgres",
        &format!("CREATE ROLE {TLS_ROLE} LOGIN SUPERUSER PASSWORD '{TLS_PASSWORD}'"),
    )
    .await;
    add_database(&cluster, "Shop DB", MIXED_FIXTURE).await;
    let opts = options(&cluster);

    // The server refuses the role without TLS: proof that what succeeds below used it.
    let e = refused(&tls_target(&cluster, "Shop DB", "disable", None), &opts).await;
    assert_eq!(e.code, ErrorCode::UserErrorDBUserAuthFailed, "{e}");

    let point = try_back_up(
        &tls_target(&cluster, "Shop DB", "verify-full", Some(&ca)),
        "rp",
        &opts,
    )
    .await
    .expect("backup over verify-full");
    // Spelled out: the restore connects with its own TLS target.
    restore_database(
        &tls_target(&cluster, "Shop copy", "require", None),
        &point.store,
        &point.prefix,
        Some(&point.summary.manifest_sha256),
        &opts,
        recorder(),
        CancellationToken::new(),
    )
    .await
    .expect("restore over require");
    assert_identical(&cluster, "Shop DB", &cluster, "Shop copy").await;

    // A certificate from another CA is refused, saying so.
    let e = refused(
        &tls_target(&cluster, "Shop DB", "verify-full", Some(&other_ca)),
        &opts,
    )
    .await;
    assert_eq!(e.code, ErrorCode::UserErrorServerConnectionClosed, "{e}");
    assert!(e.message.to_lowercase().contains("certificate"), "{e}");

    // A root certificate file the worker cannot read names the file.
    let missing = dir.path().join("no-such-ca.pem");
    let e = refused(
        &tls_target(&cluster, "Shop DB", "verify-ca", Some(&missing)),
        &opts,
    )
    .await;
    assert_eq!(e.code, ErrorCode::UserErrorInvalidConnectionSettings, "{e}");
    assert!(e.message.contains("no-such-ca.pem"), "{e}");
    assert!(e.code.recommended_action().contains("root certificate"));
}
