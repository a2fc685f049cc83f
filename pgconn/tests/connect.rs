//! `connect` against a real PostgreSQL: each TLS mode a plain server allows,
//! and each failure classified into the code users see.

use pgvault_localpg::TempCluster;
use pgvault_pgconn::{ConnParams, ConnectFailure, ConnectOptions, connect, parse};

const PASSWORD: &str = "conn-Test-pw";

fn params(cluster: &TempCluster, extra: &str) -> ConnParams {
    parse(&format!(
        "Server=127.0.0.1;Port={};Database=postgres;User Id=postgres;Password={PASSWORD};{extra}",
        cluster.port()
    ))
    .expect("valid connection string")
}

async fn failure(p: &ConnParams) -> pgvault_pgconn::ConnectError {
    match connect(p, &ConnectOptions::default()).await {
        Ok(_) => panic!("connecting with {p:?} should fail"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn connects_and_classifies_failures() {
    let cluster = tokio::task::spawn_blocking(|| TempCluster::start(PASSWORD))
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("cannot start PostgreSQL (install postgresql-15): {e}"));

    for mode in ["Disable", "Allow", "Prefer"] {
        let conn = connect(
            &params(&cluster, &format!("Ssl Mode={mode}")),
            &ConnectOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("sslmode {mode}: {e}"));
        let row = conn
            .client
            .query_one("SELECT 1::int4", &[])
            .await
            .expect("query");
        assert_eq!(row.get::<_, i32>(0), 1);
    }

    let mut wrong = params(&cluster, "");
    wrong.password = Some(pgvault_pgconn::Password::new("not-the-password"));
    let e = failure(&wrong).await;
    assert_eq!(
        (e.failure, e.code().as_str()),
        (ConnectFailure::AuthFailed, "UserErrorDBUserAuthFailed")
    );
    assert!(!e.to_string().contains("not-the-password"), "{e}");

    let missing = params(&cluster, "").with_target("127.0.0.1", cluster.port(), "no_such_db");
    let e = failure(&missing).await;
    assert_eq!(
        (e.failure, e.code().as_str()),
        (ConnectFailure::DatabaseNotFound, "UserErrorDBNotFound")
    );

    // This server has no TLS: demanding it fails as a closed connection.
    let e = failure(&params(&cluster, "Ssl Mode=Require")).await;
    assert_eq!(e.failure, ConnectFailure::ConnectionClosed, "{e}");
    assert!(!e.to_string().contains(PASSWORD));

    let port = pgvault_localpg::free_port().expect("free port");
    let closed = params(&cluster, "").with_target("127.0.0.1", port, "postgres");
    let e = failure(&closed).await;
    assert_eq!(
        (e.failure, e.code().as_str()),
        (
            ConnectFailure::ConnectionClosed,
            "UserErrorServerConnectionClosed"
        )
    );

    let e = failure(&parse("host=127.0.0.1 password=x").unwrap()).await;
    assert_eq!(e.failure, ConnectFailure::InvalidParams);
}
