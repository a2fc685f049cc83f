//! What a consistent dump reads, checked as the secret's own user on the
//! database: CONNECT, USAGE on every schema, SELECT on every table,
//! materialized view and sequence (or membership in `pg_read_all_data`),
//! SELECT on every large object, and BYPASSRLS where tables have row-level
//! security (a dump must see every row). Superusers have all of it.

use tokio_postgres::Client;

use crate::ProbeError;

/// A table or sequence the user cannot read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub schema: String,
    pub name: String,
    pub owner: String,
    pub is_sequence: bool,
}

/// Everything missing; empty means ready.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Missing {
    pub user: String,
    pub database: String,
    pub connect: bool,
    pub schemas: Vec<String>,
    pub relations: Vec<Relation>,
    pub large_objects: Vec<u32>,
    /// Tables with row-level security exist and the user cannot bypass it.
    pub bypass_rls: bool,
}

impl Missing {
    pub fn is_empty(&self) -> bool {
        !self.connect
            && self.schemas.is_empty()
            && self.relations.is_empty()
            && self.large_objects.is_empty()
            && !self.bypass_rls
    }

    /// One line naming what is missing, by count.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if self.connect {
            parts.push("CONNECT on the database".to_string());
        }
        if !self.schemas.is_empty() {
            parts.push(format!("USAGE on {} schema(s)", self.schemas.len()));
        }
        let sequences = self.relations.iter().filter(|r| r.is_sequence).count();
        let tables = self.relations.len() - sequences;
        if tables > 0 {
            parts.push(format!("SELECT on {tables} table(s)"));
        }
        if sequences > 0 {
            parts.push(format!("SELECT on {sequences} sequence(s)"));
        }
        if !self.large_objects.is_empty() {
            parts.push(format!(
                "SELECT on {} large object(s)",
                self.large_objects.len()
            ));
        }
        if self.bypass_rls {
            parts.push("BYPASSRLS (tables use row-level security)".to_string());
        }
        format!(
            "user \"{}\" lacks what a consistent dump of database \"{}\" needs: {}",
            self.user,
            self.database,
            parts.join(", ")
        )
    }
}

const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

fn failed(e: tokio_postgres::Error) -> ProbeError {
    ProbeError::new("check privileges", &e)
}

/// Checks as the connected user. Fails only when the catalog cannot be read.
pub async fn check(client: &Client) -> Result<Missing, ProbeError> {
    let row = client
        .query_one(
            "SELECT current_user::text, current_database()::text, r.rolsuper, r.rolbypassrls,
                    has_database_privilege(current_database(), 'CONNECT'),
                    CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pg_read_all_data')
                         THEN pg_has_role('pg_read_all_data', 'USAGE') ELSE false END
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await
        .map_err(failed)?;
    let (user, database): (String, String) = (row.get(0), row.get(1));
    let (superuser, bypass, connect, read_all): (bool, bool, bool, bool) =
        (row.get(2), row.get(3), row.get(4), row.get(5));
    let mut missing = Missing {
        user,
        database,
        connect: !connect,
        ..Missing::default()
    };
    if superuser {
        return Ok(Missing::default());
    }
    if !read_all {
        let schemas = client
            .query(
                &format!(
                    "SELECT n.nspname::text FROM pg_namespace n
                     WHERE {USER_SCHEMAS} AND NOT has_schema_privilege(n.oid, 'USAGE')
                     ORDER BY 1"
                ),
                &[],
            )
            .await
            .map_err(failed)?;
        missing.schemas = schemas.iter().map(|r| r.get(0)).collect();
        let relations = client
            .query(
                &format!(
                    "SELECT n.nspname::text, c.relname::text, pg_get_userbyid(c.relowner)::text, c.relkind = 'S'
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE {USER_SCHEMAS} AND c.relkind IN ('r', 'p', 'm', 'S')
                       AND NOT CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'SELECT')
                                    ELSE has_table_privilege(c.oid, 'SELECT') END
                     ORDER BY 1, 2"
                ),
                &[],
            )
            .await
            .map_err(failed)?;
        missing.relations = relations
            .iter()
            .map(|r| Relation {
                schema: r.get(0),
                name: r.get(1),
                owner: r.get(2),
                is_sequence: r.get(3),
            })
            .collect();
    }
    let large_objects = client
        .query(
            "SELECT m.oid FROM pg_largeobject_metadata m
             WHERE NOT pg_has_role(m.lomowner, 'USAGE')
               AND NOT EXISTS (
                 SELECT 1 FROM aclexplode(coalesce(m.lomacl, acldefault('L', m.lomowner))) a
                 WHERE a.privilege_type = 'SELECT'
                   AND (a.grantee = 0 OR pg_has_role(a.grantee, 'USAGE')))
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(failed)?;
    missing.large_objects = large_objects.iter().map(|r| r.get::<_, u32>(0)).collect();
    if !bypass {
        let rls: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_class c
                   WHERE c.relrowsecurity AND c.relkind IN ('r', 'p')
                     AND NOT pg_has_role(c.relowner, 'USAGE'))",
                &[],
            )
            .await
            .map_err(failed)?
            .get(0);
        missing.bypass_rls = rls;
    }
    Ok(missing)
}
