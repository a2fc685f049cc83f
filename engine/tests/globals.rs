//! A backup asked to capture the server's globals stores `globals.sql`
//! next to the point's objects, named by the manifest with its size and
//! SHA-256: roles with their attributes and memberships, role settings and
//! tablespaces — never a password. A backup not asked stores none.

use crate::support;

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

/// The stored password (hash) of `role` on `pg`.
async fn stored_password(pg: &pgvault_localpg::TempCluster, role: &str) -> Option<String> {
    pg.connect("postgres")
        .await
        .unwrap()
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap_or_else(|e| panic!("role {role}: {e}"))
        .get(0)
}

#[tokio::test]
async fn role_passwords_travel_when_asked_and_roles_the_target_has_keep_theirs() {
    let pg = source("shop", "CREATE TABLE t (id int);").await;
    execute(
        &pg,
        "postgres",
        "CREATE ROLE app_user LOGIN PASSWORD 'SuperSecret-42';",
    )
    .await;
    let source_hash = stored_password(&pg, "app_user").await.expect("a password");
    let opts = pgvault_engine::EngineOptions {
        capture_globals: true,
        capture_role_passwords: true,
        ..options(&pg)
    };
    let point = back_up(&pg, "shop", &opts).await;
    let manifest = point.manifest();
    assert!(manifest.globals_role_passwords);
    let sql = std::fs::read_to_string(point.object_path("globals.sql")).unwrap();
    assert!(sql.contains(&source_hash), "the hash is captured: {sql}");
    assert!(!sql.contains("SuperSecret-42"), "never the clear text");

    let fresh = cluster();
    let superuser = fresh.user().to_string();
    let own_before = stored_password(&fresh, &superuser).await;
    pgvault_engine::restore_globals(
        &target(&fresh, "postgres"),
        &point.store,
        &point.prefix,
        Some(&point.summary.manifest_sha256),
        &options(&fresh),
    )
    .await
    .expect("restore globals");
    assert_eq!(
        stored_password(&fresh, "app_user").await,
        Some(source_hash),
        "the role the restore created has its password"
    );
    assert_eq!(
        stored_password(&fresh, &superuser).await,
        own_before,
        "the target's own superuser keeps its password"
    );
    // The restore's own connection still works with the target's secret.
    fresh.connect("postgres").await.expect("connect as before");
}

/// Hands `path` to the test servers' OS user (`postgres` when run as root).
fn give_to_servers(path: &std::path::Path) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let user = std::env::var("PGVAULT_PG_OS_USER").unwrap_or_else(|_| "postgres".into());
    let status = std::process::Command::new("chown")
        .arg(format!("{user}:"))
        .arg(path)
        .status()
        .expect("run chown");
    assert!(status.success(), "chown {user} {}", path.display());
}

#[tokio::test]
async fn a_tablespace_whose_directory_the_target_lacks_is_named_and_can_be_left_out() {
    let pg = source("shop", "SELECT 1;").await;
    let dir = tempfile::tempdir().unwrap();
    give_to_servers(dir.path());
    let location = dir.path().join("fast");
    std::fs::create_dir(&location).unwrap();
    give_to_servers(&location);
    // One statement per call: CREATE TABLESPACE refuses a transaction block.
    for sql in [
        "CREATE ROLE app_user NOLOGIN".to_string(),
        format!("CREATE TABLESPACE fast LOCATION '{}'", location.display()),
        "COMMENT ON TABLESPACE fast IS 'the ssd'".to_string(),
        "GRANT CREATE ON TABLESPACE fast TO app_user".to_string(),
    ] {
        execute(&pg, "postgres", &sql).await;
    }
    execute(
        &pg,
        "shop",
        "CREATE TABLE hot (id int) TABLESPACE fast; INSERT INTO hot VALUES (1), (2);",
    )
    .await;
    let opts = pgvault_engine::EngineOptions {
        capture_globals: true,
        ..options(&pg)
    };
    let point = back_up(&pg, "shop", &opts).await;
    // The directory is gone (the target runs on this machine too).
    execute(&pg, "shop", "DROP TABLE hot;").await;
    execute(&pg, "postgres", "DROP TABLESPACE fast;").await;
    std::fs::remove_dir_all(&location).unwrap();

    let fresh = cluster();
    let restore = |skip_tablespaces: bool| {
        let options = pgvault_engine::EngineOptions {
            skip_tablespaces,
            ..options(&fresh)
        };
        let target = target(&fresh, "postgres");
        let (store, prefix) = (point.store.clone(), point.prefix.clone());
        async move { pgvault_engine::restore_globals(&target, &store, &prefix, None, &options).await }
    };
    let error = restore(false).await.expect_err("no directory for fast");
    assert_eq!(
        error.code,
        pgvault_engine::ErrorCode::UserErrorTablespaceLocationMissing
    );
    let named = format!(
        "tablespace \"fast\" cannot be created on {} at its location {}",
        target(&fresh, "postgres").describe(),
        location.display()
    );
    assert!(error.message.contains(&named), "{}", error.message);
    assert!(
        error.message.contains("owned by the operating-system user"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("--no-tablespaces"),
        "{}",
        error.message
    );

    restore(true)
        .await
        .expect("without tablespaces the globals restore");
    let client = fresh.connect("postgres").await.unwrap();
    let spaces: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tablespace WHERE spcname = 'fast'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(spaces, 0);
    // The table that lived in it is restored into the default tablespace.
    point
        .restore(&fresh, "shop", None, &options(&fresh))
        .await
        .expect("restore shop");
    let shop = fresh.connect("shop").await.unwrap();
    let row = shop
        .query_one(
            "SELECT count(*), (SELECT reltablespace FROM pg_class WHERE relname = 'hot') FROM hot",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
    assert_eq!(row.get::<_, u32>(1), 0, "the default tablespace");
}
