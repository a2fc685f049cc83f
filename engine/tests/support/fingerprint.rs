//! Fingerprints that prove two databases identical: the schema as
//! `pg_dump --schema-only` prints it, and per-relation checksums of table
//! and materialized view rows, sequence values and large objects.

use std::process::Command;

use pgvault_localpg::TempCluster;

/// Asserts that `database` on `cluster` and `copy` on `copy_cluster` have
/// the same schema text and the same data fingerprint; returns the latter.
pub async fn assert_identical(
    cluster: &TempCluster,
    database: &str,
    copy_cluster: &TempCluster,
    copy: &str,
) -> Vec<String> {
    assert_eq!(
        schema_text(cluster, database),
        schema_text(copy_cluster, copy)
    );
    let fingerprint = data_fingerprint(cluster, database).await;
    assert_eq!(fingerprint, data_fingerprint(copy_cluster, copy).await);
    fingerprint
}

/// `pg_dump --schema-only` as plain text, without comments and the
/// `\restrict` lines that carry a random key.
pub fn schema_text(cluster: &TempCluster, database: &str) -> String {
    let output = Command::new(cluster.bin_dir().join("pg_dump"))
        .env("PGPASSWORD", cluster.password())
        .args([
            "-h",
            cluster.host(),
            "-p",
            &cluster.port().to_string(),
            "-U",
            cluster.user(),
            "--schema-only",
        ])
        .arg(format!("--dbname=dbname='{database}'"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|l| {
            !l.starts_with("--") && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Per-relation checksums of every table and materialized view, sequence
/// values and large objects: equal fingerprints mean equal data.
pub async fn data_fingerprint(cluster: &TempCluster, database: &str) -> Vec<String> {
    let client = cluster.connect(database).await.unwrap();
    let relations = client
        .query(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relkind::text, c.relispopulated FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'm', 'S', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    for row in relations {
        let (name, kind, populated): (String, String, bool) = (row.get(0), row.get(1), row.get(2));
        if !populated {
            out.push(format!("{name} not populated"));
            continue;
        }
        let sql = if kind == "S" {
            format!("SELECT last_value::text || '/' || is_called::text FROM {name}")
        } else {
            format!(
                "SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '-') FROM ONLY {name} t"
            )
        };
        let value: String = client
            .query_one(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
            .get(0);
        out.push(format!("{name} {value}"));
    }
    for row in client
        .query(
            "SELECT oid::text || ' ' || md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY oid",
            &[],
        )
        .await
        .unwrap()
    {
        out.push(format!("lo {}", row.get::<_, String>(0)));
    }
    out
}
