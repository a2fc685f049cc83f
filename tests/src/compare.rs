//! Proves two databases hold the same thing: `pg_dump --schema-only` text,
//! per-table row counts and checksums over every row, and sequence states;
//! on any servers the test can reach ([`PgAccess`]).

use std::collections::BTreeMap;

use anyhow::{Context, bail};

use crate::pg_access::PgAccess;

/// Everything compared, in a form whose `Debug` diff is readable.
#[derive(Debug, PartialEq, Eq)]
pub struct Fingerprint {
    pub schema: String,
    /// "schema.table" → (rows, md5 over the sorted text of all rows).
    pub tables: BTreeMap<String, (i64, String)>,
    /// "schema.sequence" → (last_value, is_called).
    pub sequences: BTreeMap<String, (i64, bool)>,
}

/// `pg_dump --schema-only` output without the lines that differ between any
/// two dumps (version banner, `\restrict` keys).
pub fn schema_text(cluster: &impl PgAccess, database: &str) -> anyhow::Result<String> {
    let output = cluster
        .client_command("pg_dump")
        .arg("--schema-only")
        .arg("-d")
        .arg(database)
        .output()
        .context("run pg_dump")?;
    if !output.status.success() {
        bail!(
            "pg_dump --schema-only {database} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8(output.stdout)?;
    Ok(text
        .lines()
        .filter(|l| {
            !l.starts_with("\\restrict")
                && !l.starts_with("\\unrestrict")
                && !l.starts_with("-- Dumped")
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

pub async fn fingerprint(cluster: &impl PgAccess, database: &str) -> anyhow::Result<Fingerprint> {
    let schema = schema_text(cluster, database)?;
    let client = cluster.client(database).await?;
    let rows = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
            &[],
        )
        .await?;
    let mut tables = BTreeMap::new();
    for row in rows {
        let table: String = row.get(0);
        let sql = format!(
            "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM ONLY {table} t"
        );
        let r = client
            .query_one(&sql, &[])
            .await
            .with_context(|| format!("checksum {table}"))?;
        tables.insert(table, (r.get::<_, i64>(0), r.get::<_, String>(1)));
    }
    let mut sequences = BTreeMap::new();
    for row in client
        .query(
            "SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences ORDER BY 1",
            &[],
        )
        .await?
    {
        let seq: String = row.get(0);
        let r = client
            .query_one(&format!("SELECT last_value, is_called FROM {seq}"), &[])
            .await?;
        sequences.insert(seq, (r.get::<_, i64>(0), r.get::<_, bool>(1)));
    }
    Ok(Fingerprint {
        schema,
        tables,
        sequences,
    })
}

/// Fails with a readable diff unless the two databases are identical.
pub async fn assert_identical(
    source: &impl PgAccess,
    source_db: &str,
    target: &impl PgAccess,
    target_db: &str,
) -> anyhow::Result<()> {
    let a = fingerprint(source, source_db).await?;
    let b = fingerprint(target, target_db).await?;
    if a.tables.is_empty() {
        bail!("source database {source_db} has no tables: the comparison would prove nothing");
    }
    if a.schema != b.schema {
        let diff: Vec<String> = a
            .schema
            .lines()
            .zip(b.schema.lines())
            .filter(|(x, y)| x != y)
            .take(10)
            .map(|(x, y)| format!("- {x}\n+ {y}"))
            .collect();
        bail!(
            "schema of {target_db} differs from {source_db}:\n{}",
            diff.join("\n")
        );
    }
    if a.tables != b.tables {
        bail!(
            "table contents differ:\nsource {:#?}\ntarget {:#?}",
            a.tables,
            b.tables
        );
    }
    if a.sequences != b.sequences {
        bail!(
            "sequences differ:\nsource {:?}\ntarget {:?}",
            a.sequences,
            b.sequences
        );
    }
    Ok(())
}
