//! The database's own properties — `ALTER DATABASE … SET`, per-role
//! settings in the database, comment, connection limit, privileges and
//! owner — come back with a restore as a database (under another name, on a
//! fresh server) and with a SQL script loaded into any database.

use crate::support;

use support::*;

/// Properties of `database` in a form comparable across names: settings
/// (role or "*"), comment, connection limit, privileges (grantee,
/// privilege) and owner.
async fn properties(cluster: &pgvault_localpg::TempCluster, database: &str) -> Vec<String> {
    let client = cluster.connect("postgres").await.unwrap();
    let mut out = Vec::new();
    for row in client
        .query(
            "SELECT coalesce(r.rolname, '*')::text, c.setting \
             FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
             LEFT JOIN pg_roles r ON r.oid = s.setrole, unnest(s.setconfig) c(setting) \
             WHERE d.datname = $1 ORDER BY 1, 2",
            &[&database],
        )
        .await
        .unwrap()
    {
        out.push(format!(
            "setting {} {}",
            row.get::<_, String>(0),
            row.get::<_, String>(1)
        ));
    }
    let row = client
        .query_one(
            "SELECT coalesce(shobj_description(d.oid, 'pg_database'), '-'), d.datconnlimit, \
                    pg_get_userbyid(d.datdba)::text \
             FROM pg_database d WHERE d.datname = $1",
            &[&database],
        )
        .await
        .unwrap();
    out.push(format!("comment {}", row.get::<_, String>(0)));
    out.push(format!("limit {}", row.get::<_, i32>(1)));
    out.push(format!("owner {}", row.get::<_, String>(2)));
    for row in client
        .query(
            "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END, \
                    a.privilege_type, a.is_grantable \
             FROM pg_database d, aclexplode(d.datacl) a \
             WHERE d.datname = $1 AND a.grantee <> d.datdba ORDER BY 1, 2",
            &[&database],
        )
        .await
        .unwrap()
    {
        out.push(format!(
            "grant {} {} {}",
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, bool>(2)
        ));
    }
    out
}

const PROPERTIES: &str = r#"
CREATE ROLE "Shop Owner" NOLOGIN;
CREATE ROLE reporter NOLOGIN;
CREATE TABLE t (id int PRIMARY KEY);
INSERT INTO t VALUES (1), (2);
"#;

/// Run on the maintenance database: the properties of "Shop DB".
const DATABASE_PROPERTIES: &str = r#"
ALTER DATABASE "Shop DB" SET search_path TO "$user", public, "My ""Schema""";
ALTER DATABASE "Shop DB" SET work_mem TO '48MB';
ALTER DATABASE "Shop DB" SET application_name TO 'it''s 100% shop';
ALTER ROLE reporter IN DATABASE "Shop DB" SET statement_timeout TO '30s';
COMMENT ON DATABASE "Shop DB" IS 'the shop''s data';
ALTER DATABASE "Shop DB" CONNECTION LIMIT 40;
REVOKE ALL ON DATABASE "Shop DB" FROM PUBLIC;
GRANT CONNECT ON DATABASE "Shop DB" TO reporter;
GRANT TEMPORARY ON DATABASE "Shop DB" TO reporter WITH GRANT OPTION;
ALTER DATABASE "Shop DB" OWNER TO "Shop Owner";
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_settings_comment_privileges_and_owner_come_back() {
    let source = source("Shop DB", PROPERTIES).await;
    let destination = cluster();
    execute(&source, "postgres", DATABASE_PROPERTIES).await;
    let expected = properties(&source, "Shop DB").await;
    assert!(
        expected.contains(&"setting reporter statement_timeout=30s".to_string())
            && expected.contains(&"owner Shop Owner".to_string()),
        "{expected:?}"
    );

    let point = back_up(&source, "Shop DB", &options(&source)).await;

    // As a database under another name on a fresh server (the roles do not
    // exist there yet: they are created from the manifest).
    let restored = point
        .restore(
            &destination,
            "Shop copy",
            Some(&point.summary.manifest_sha256),
            &options(&destination),
        )
        .await
        .expect("restore");
    assert!(
        restored.skipped_objects.is_empty(),
        "{:?}",
        restored.skipped_objects
    );
    assert_eq!(properties(&destination, "Shop copy").await, expected);

    // As a SQL script loaded into an empty database: everything but the
    // owner (the script runs as whoever loads it and leaves ownership alone).
    point.load_as_script(&destination, "from script").await;
    let from_script = properties(&destination, "from script").await;
    let without_owner = |p: &[String]| -> Vec<String> {
        p.iter()
            .filter(|l| !l.starts_with("owner "))
            .cloned()
            .collect()
    };
    assert_eq!(without_owner(&from_script), without_owner(&expected));
}
