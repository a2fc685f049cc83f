//! A backup asked to capture the server's globals stores `globals.sql`
//! next to the point's objects, named by the manifest with its size and
//! SHA-256: roles with their attributes and memberships, role settings and
//! tablespaces — never a password. A backup not asked stores none.

mod support;

use sha2::{Digest, Sha256};
use support::*;

#[tokio::test]
async fn globals_carry_roles_memberships_and_settings_but_no_password() {
    let pg = source(
        "shop",
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);",
    )
    .await;
    execute(
        &pg,
        "postgres",
        "CREATE ROLE readers NOLOGIN;
         CREATE ROLE app_user LOGIN CREATEDB CONNECTION LIMIT 7 PASSWORD 'SuperSecret-42';
         GRANT readers TO app_user;
         ALTER ROLE app_user SET work_mem = '12MB';",
    )
    .await;
    let opts = pgvault_engine::EngineOptions {
        capture_globals: true,
        ..options(&pg)
    };
    let point = back_up(&pg, "shop", &opts).await;
    let manifest = point.manifest();
    let globals = manifest
        .globals
        .clone()
        .expect("the manifest names the globals");
    assert_eq!(globals.path, "globals.sql");
    let bytes = std::fs::read(point.object_path(&globals.path)).unwrap();
    assert_eq!(globals.size, bytes.len() as u64);
    assert_eq!(globals.sha256, hex::encode(Sha256::digest(&bytes)));
    assert!(manifest.objects().iter().any(|o| o.path == "globals.sql"));
    let sql = String::from_utf8(bytes).unwrap();
    assert!(sql.contains("CREATE ROLE app_user"), "{sql}");
    assert!(sql.contains("CREATEDB"), "{sql}");
    assert!(sql.contains("CONNECTION LIMIT 7"), "{sql}");
    assert!(sql.contains("GRANT readers TO app_user"), "{sql}");
    assert!(sql.contains("work_mem"), "{sql}");
    assert!(!sql.contains("SuperSecret-42"), "{sql}");
    assert!(!sql.to_uppercase().contains("PASSWORD '"), "{sql}");

    let plain = back_up(&pg, "shop", &options(&pg)).await;
    assert_eq!(plain.manifest().globals, None);
    assert!(!plain.object_path("globals.sql").exists());
}

#[tokio::test]
async fn globals_restore_onto_a_fresh_server_before_its_databases_and_grants_follow() {
    let pg = source(
        "shop",
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);",
    )
    .await;
    execute(
        &pg,
        "postgres",
        "CREATE ROLE readers NOLOGIN;
         CREATE ROLE app_user LOGIN CREATEDB PASSWORD 'SuperSecret-42' IN ROLE readers;
         ALTER ROLE app_user SET work_mem = '12MB';",
    )
    .await;
    execute(&pg, "shop", "GRANT SELECT ON t TO app_user;").await;
    let opts = pgvault_engine::EngineOptions {
        capture_globals: true,
        ..options(&pg)
    };
    let point = back_up(&pg, "shop", &opts).await;

    let fresh = cluster();
    let restored = pgvault_engine::restore_globals(
        &target(&fresh, "postgres"),
        &point.store,
        &point.prefix,
        Some(&point.summary.manifest_sha256),
        &options(&fresh),
    )
    .await
    .expect("restore globals");
    // The fresh server's own superuser already exists: a warning, not a failure.
    let superuser = format!("role \"{}\" already exists", fresh.user());
    assert!(
        restored.warnings.contains(&superuser),
        "{:?}",
        restored.warnings
    );
    let client = fresh.connect("postgres").await.unwrap();
    let row = client
        .query_one(
            "SELECT r.rolcreatedb, r.rolcanlogin,
                    pg_has_role('app_user', 'readers', 'MEMBER'),
                    (SELECT array_to_string(s.setconfig, ',') FROM pg_db_role_setting s
                      WHERE s.setrole = r.oid AND s.setdatabase = 0)
               FROM pg_roles r WHERE r.rolname = 'app_user'",
            &[],
        )
        .await
        .expect("app_user exists on the fresh server");
    assert!(row.get::<_, bool>(0) && row.get::<_, bool>(1) && row.get::<_, bool>(2));
    assert_eq!(row.get::<_, String>(3), "work_mem=12MB");
    let password: Option<String> = client
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'app_user'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(password, None, "no password travels with the globals");

    // The database restored after its globals keeps its grants.
    point
        .restore(&fresh, "shop", None, &options(&fresh))
        .await
        .expect("restore shop");
    let shop = fresh.connect("shop").await.unwrap();
    let granted: bool = shop
        .query_one("SELECT has_table_privilege('app_user', 't', 'SELECT')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(granted, "the grant to app_user restored");
}
