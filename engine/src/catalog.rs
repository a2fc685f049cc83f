//! Catalog queries a backup runs inside its snapshot: the database's
//! identity, the tables (leaf partitions, not partitioned parents; no views
//! or foreign tables; extensions' configuration tables with their dump
//! condition) with sizes, COPY columns and integer primary key, sequences, populated
//! materialized views and every role the schema archive will mention.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::error::EngineError;
use super::ident::qualified;
use super::manifest::{RelationEntry, RelationKind, RelationName, SequenceEntry};

/// The source database's identity.
pub(crate) struct DatabaseInfo {
    pub server_version: String,
    pub server_version_num: i32,
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
}

/// A table to dump.
pub(crate) struct TableInfo {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub columns: Vec<String>,
    /// Main fork size (bytes) and block size: what ctid ranges are cut from.
    pub bytes: u64,
    pub block_size: u64,
    /// An extension's configuration table (`pg_extension_config_dump`): the
    /// extension's script creates it, the rows its condition selects (e.g.
    /// `WHERE NOT system`; empty: all) are user data, dumped as pg_dump does.
    pub extension_filter: Option<String>,
    /// The primary key's column when it is a single `smallint`, `integer`
    /// or `bigint` column: what tables are split by where ctid ranges are
    /// slow (before PostgreSQL 14).
    pub int_key: Option<String>,
}

/// The single integer primary key column of `c`, as a select-list item.
const INT_KEY: &str = "(SELECT a.attname::text FROM pg_catalog.pg_index i      JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]      WHERE i.indrelid = c.oid AND i.indisprimary AND i.indnkeyatts = 1        AND a.atttypid IN ('pg_catalog.int2'::pg_catalog.regtype, 'pg_catalog.int4'::pg_catalog.regtype, 'pg_catalog.int8'::pg_catalog.regtype))";

/// Schemas never dumped.
const USER_NAMESPACES: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

/// Excludes objects that belong to an extension (the extension recreates them).
const NOT_EXTENSION_MEMBER: &str = "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
     WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')";

/// Relations an extension marked as configuration (`c`, with the dump
/// condition `x.cond`), as a FROM clause.
const EXTENSION_CONFIG: &str = "pg_catalog.pg_extension e \
     CROSS JOIN LATERAL ROWS FROM (pg_catalog.unnest(e.extconfig), pg_catalog.unnest(e.extcondition)) AS x(reloid, cond) \
     JOIN pg_catalog.pg_class c ON c.oid = x.reloid \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace";

pub(crate) async fn database_info(
    client: &Client,
    describe: &str,
) -> Result<DatabaseInfo, EngineError> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int4, \
                    pg_catalog.pg_encoding_to_char(d.encoding), d.datcollate::text, d.datctype::text \
             FROM pg_catalog.pg_database d WHERE d.datname = current_database()",
            &[],
        )
        .await
        .map_err(|e| EngineError::from_pg(&e, describe))?;
    Ok(DatabaseInfo {
        server_version: row.get(0),
        server_version_num: row.get(1),
        encoding: row.get(2),
        collate: row.get(3),
        ctype: row.get(4),
    })
}

pub(crate) async fn tables(
    client: &Client,
    describe: &str,
    version_num: i32,
) -> Result<Vec<TableInfo>, EngineError> {
    let sql = format!(
        "SELECT c.oid, n.nspname::text, c.relname::text, pg_catalog.pg_relation_size(c.oid)::int8, \
                current_setting('block_size')::int8, NULL::text, {INT_KEY} \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND c.relpersistence IN ('p', 'u') AND {USER_NAMESPACES} AND {NOT_EXTENSION_MEMBER} \
         UNION ALL \
         SELECT c.oid, n.nspname::text, c.relname::text, pg_catalog.pg_relation_size(c.oid)::int8, \
                current_setting('block_size')::int8, coalesce(x.cond, ''), NULL::text \
         FROM {EXTENSION_CONFIG} \
         WHERE c.relkind = 'r' \
         ORDER BY 2, 3"
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| EngineError::from_pg(&e, describe))?;
    let generated = if version_num >= 120000 {
        "AND a.attgenerated = ''"
    } else {
        ""
    };
    let column_sql = format!(
        "SELECT a.attrelid, a.attname::text FROM pg_catalog.pg_attribute a \
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND {USER_NAMESPACES} AND a.attnum > 0 AND NOT a.attisdropped {generated} \
         ORDER BY a.attrelid, a.attnum"
    );
    let mut columns: HashMap<u32, Vec<String>> = HashMap::new();
    for row in client
        .query(&column_sql, &[])
        .await
        .map_err(|e| EngineError::from_pg(&e, describe))?
    {
        columns.entry(row.get(0)).or_default().push(row.get(1));
    }
    Ok(rows
        .iter()
        .map(|row| {
            let oid: u32 = row.get(0);
            TableInfo {
                oid,
                schema: row.get(1),
                name: row.get(2),
                columns: columns.remove(&oid).unwrap_or_default(),
                bytes: row.get::<_, i64>(3).max(0) as u64,
                block_size: row.get::<_, i64>(4).max(1) as u64,
                extension_filter: row.get(5),
                int_key: row.get(6),
            }
        })
        .collect())
}

/// Sequence values as seen by this transaction.
pub(crate) async fn sequences(
    client: &Client,
    describe: &str,
) -> Result<Vec<SequenceEntry>, EngineError> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'S' AND {USER_NAMESPACES} AND {NOT_EXTENSION_MEMBER} \
         UNION SELECT n.nspname::text, c.relname::text FROM {EXTENSION_CONFIG} WHERE c.relkind = 'S' \
         ORDER BY 1, 2"
    );
    let mut out = Vec::new();
    for row in client
        .query(&sql, &[])
        .await
        .map_err(|e| EngineError::from_pg(&e, describe))?
    {
        let (schema, name): (String, String) = (row.get(0), row.get(1));
        let value = client
            .query_one(
                &format!(
                    "SELECT last_value, is_called FROM {}",
                    qualified(&schema, &name)
                ),
                &[],
            )
            .await
            .map_err(|e| {
                EngineError::from_pg(&e, describe)
                    .context(format!("reading sequence {schema}.{name}"))
            })?;
        out.push(SequenceEntry {
            schema,
            name,
            last_value: value.get(0),
            is_called: value.get(1),
        });
    }
    Ok(out)
}

/// Materialized views holding data (refreshed after restore).
pub(crate) async fn populated_matviews(
    client: &Client,
    describe: &str,
) -> Result<Vec<RelationName>, EngineError> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'm' AND c.relispopulated AND {USER_NAMESPACES} AND {NOT_EXTENSION_MEMBER} \
         ORDER BY c.oid"
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| EngineError::from_pg(&e, describe))?;
    Ok(rows
        .iter()
        .map(|r| RelationName {
            schema: r.get(0),
            name: r.get(1),
        })
        .collect())
}

/// Relations a selective restore may name: what `pg_dump` defines as a
/// TABLE, VIEW, MATERIALIZED VIEW or FOREIGN TABLE (partitioned tables and
/// partitions included; extensions' members excluded: their extension
/// creates them).
pub(crate) async fn selectable_relations(
    client: &Client,
    describe: &str,
) -> Result<Vec<RelationEntry>, EngineError> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, c.relkind::text FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {USER_NAMESPACES} AND {NOT_EXTENSION_MEMBER} \
         ORDER BY 1, 2"
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| EngineError::from_pg(&e, describe))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let relkind: String = r.get(2);
            Some(RelationEntry {
                schema: r.get(0),
                name: r.get(1),
                kind: RelationKind::from_relkind(relkind.chars().next()?)?,
            })
        })
        .collect())
}

/// Every schema of the database but the system ones and those an extension
/// creates.
pub(crate) async fn schemas(client: &Client, describe: &str) -> Result<Vec<String>, EngineError> {
    let sql = format!(
        "SELECT n.nspname::text FROM pg_catalog.pg_namespace n WHERE {USER_NAMESPACES} \
         AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
           WHERE d.classid = 'pg_catalog.pg_namespace'::regclass AND d.objid = n.oid AND d.deptype = 'e') \
         ORDER BY 1"
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| EngineError::from_pg(&e, describe))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Roles that own or are granted anything in this database (predefined
/// `pg_*` roles excluded: they exist everywhere).
pub(crate) async fn referenced_roles(
    client: &Client,
    describe: &str,
) -> Result<Vec<String>, EngineError> {
    let sql = format!(
        "WITH owners AS ( \
           SELECT d.refobjid AS role FROM pg_catalog.pg_shdepend d \
             WHERE d.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) \
               AND d.refclassid = 'pg_catalog.pg_authid'::regclass \
           UNION SELECT datdba FROM pg_catalog.pg_database WHERE datname = current_database() \
           UNION SELECT c.relowner FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE {USER_NAMESPACES} \
           UNION SELECT n.nspowner FROM pg_catalog.pg_namespace n WHERE {USER_NAMESPACES} \
           UNION SELECT p.proowner FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE {USER_NAMESPACES} \
           UNION SELECT t.typowner FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE {USER_NAMESPACES} \
         ) \
         SELECT DISTINCT r.rolname::text FROM owners o JOIN pg_catalog.pg_roles r ON r.oid = o.role \
         WHERE r.rolname NOT LIKE 'pg\\_%' ORDER BY 1"
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| EngineError::from_pg(&e, describe))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
