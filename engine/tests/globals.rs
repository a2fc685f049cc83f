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
