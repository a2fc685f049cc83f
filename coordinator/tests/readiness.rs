//! Configure-time readiness against a real server: a low-privileged user
//! fails with UserErrorMissingDBPermissions and a grant script, and the row
//! is kept as a not-protected instance; running the script's SQL as the
//! administrator makes re-validation protect it. Wrong passwords and
//! missing databases fail with their own codes, never echoing the password.

use crate::common;

use common::Harness;
use pgvault_proto::v1 as pb;

const LOW_PASSWORD: &str = "Low-priv-pw-4711";

async fn configure(h: &Harness, database: &str, secret: &str) -> pb::ConfigureBackupResult {
    h.instances()
        .configure_backup(pb::ConfigureBackupRequest {
            parent: "vaults/v".into(),
            policy: "vaults/v/policies/daily".into(),
            rows: vec![pb::ConfigureBackupRow {
                server: "servers/pg1".into(),
                database: database.into(),
                secret: format!("secrets/{secret}"),
            }],
            default_secret: String::new(),
            assign_missing_permissions: true,
            all_databases_of: String::new(),
            role_passwords: false,
        })
        .await
        .expect("configure answers")
        .into_inner()
        .results
        .remove(0)
}

async fn put_secret(h: &Harness, id: &str, value: String) {
    h.secrets()
        .put_secret(pb::PutSecretRequest {
            secret_id: id.into(),
            value,
        })
        .await
        .expect("put secret");
}

#[tokio::test]
async fn missing_privileges_come_with_a_script_that_fixes_them() {
    let h = Harness::start().await;
    h.fixture().await;
    let admin = h.cluster.connect("app").await.expect("connect app");
    admin
        .batch_execute(&format!(
            "CREATE ROLE lowpriv LOGIN PASSWORD '{LOW_PASSWORD}';
             CREATE SCHEMA \"we\"\"ird sch.ema\";
             CREATE TABLE \"we\"\"ird sch.ema\".\"Odd \"\"t\"\"\" (id serial PRIMARY KEY, v text);
             INSERT INTO \"we\"\"ird sch.ema\".\"Odd \"\"t\"\"\" (v) VALUES ('a');
             CREATE TABLE public.secured (id int);
             ALTER TABLE public.secured ENABLE ROW LEVEL SECURITY;
             SELECT lo_from_bytea(0, 'blob');"
        ))
        .await
        .expect("set up database");
    let port = h.cluster.port();
    put_secret(
        &h,
        "low",
        format!(
            "Server=127.0.0.1;Port={port};User Id=lowpriv;Password={LOW_PASSWORD};Ssl Mode=Disable"
        ),
    )
    .await;

    let result = configure(&h, "app", "low").await;
    assert_eq!(result.readiness, pb::Readiness::FailedValidation as i32);
    let error = result.error.expect("error");
    assert_eq!(
        error.code, "UserErrorMissingDBPermissions",
        "{}",
        error.message
    );
    assert!(error.message.contains("schema"), "{}", error.message);
    assert!(error.message.contains("BYPASSRLS"), "{}", error.message);
    assert!(error.message.contains("large object"), "{}", error.message);
    let script = result.grant_script.expect("a grant script");
    assert!(
        script.sql.contains("\"we\"\"ird sch.ema\""),
        "{}",
        script.sql
    );
    assert!(script.psql.contains("psql -v ON_ERROR_STOP=1"));
    assert!(script.powershell.contains("$LASTEXITCODE"));
    assert!(!format!("{error:?}{script:?}").contains(LOW_PASSWORD));

    let kept = result.backup_instance.expect("the failed row is kept");
    assert_eq!(
        kept.protection_state,
        pb::ProtectionState::ValidationFailed as i32
    );
    assert_eq!(
        kept.last_error.expect("last error").code,
        "UserErrorMissingDBPermissions"
    );

    admin
        .batch_execute(&script.sql)
        .await
        .expect("the script runs as is");
    let result = h
        .instances()
        .revalidate_backup_instance(pb::RevalidateBackupInstanceRequest {
            name: kept.name.clone(),
            assign_missing_permissions: false,
        })
        .await
        .expect("revalidate answers")
        .into_inner();
    assert_eq!(
        result.readiness,
        pb::Readiness::Success as i32,
        "{:?}",
        result.error
    );
    let protected = result.backup_instance.expect("instance");
    assert_eq!(protected.name, kept.name, "the kept row is protected");
    assert_eq!(
        protected.protection_state,
        pb::ProtectionState::Configured as i32
    );
    assert!(protected.last_error.is_none());
    h.stop().await;
}

#[tokio::test]
async fn connection_failures_are_classified_and_never_echo_the_password() {
    let h = Harness::start().await;
    h.fixture().await;
    let port = h.cluster.port();
    put_secret(
        &h,
        "wrong",
        format!("host=127.0.0.1 port={port} user=postgres password=Wrong-pw-0815 sslmode=disable"),
    )
    .await;
    let result = configure(&h, "app", "wrong").await;
    let error = result.error.expect("error");
    assert_eq!(error.code, "UserErrorDBUserAuthFailed", "{}", error.message);
    assert!(!error.message.contains("Wrong-pw-0815"));

    let result = configure(&h, "no_such_db", "pg1-admin").await;
    assert_eq!(result.error.expect("error").code, "UserErrorDBNotFound");

    let refused = h
        .secrets()
        .put_secret(pb::PutSecretRequest {
            secret_id: "bad".into(),
            value: "Server=h;Password=\"Leaky-pw;Port=1".into(),
        })
        .await
        .expect_err("malformed");
    assert!(
        refused
            .message()
            .contains("UserErrorSecretValueInUnsupportedFormat")
    );
    assert!(
        refused.message().contains("Password"),
        "{}",
        refused.message()
    );
    assert!(!refused.message().contains("Leaky-pw"));
    h.stop().await;
}
