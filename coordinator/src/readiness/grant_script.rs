//! The fix for missing privileges, as SQL plus two wrappers that run it with
//! psql (POSIX shell and PowerShell). Every identifier is double-quoted
//! (embedded quotes doubled), so odd names such as `we"ird sch.ema` work;
//! shell arguments are quoted for each shell. Default privileges are set
//! for every table owner seen, so tables created later are readable too.

use std::collections::BTreeMap;

use super::privileges::Missing;

/// The script in three forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantScript {
    pub sql: String,
    pub psql: String,
    pub powershell: String,
}

/// `"name"` with embedded `"` doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

fn ps_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The SQL that grants everything in `missing`.
pub fn sql(missing: &Missing) -> String {
    let user = quote_ident(&missing.user);
    let mut out = format!(
        "-- pgvault: privileges user {user} needs to back up database {}.\n\
         -- Run as the database owner or a superuser, connected to that database.\n",
        quote_ident(&missing.database)
    );
    if missing.connect {
        out.push_str(&format!(
            "GRANT CONNECT ON DATABASE {} TO {user};\n",
            quote_ident(&missing.database)
        ));
    }
    // Schema → owners of the tables in it, for default privileges.
    let mut schemas: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in &missing.schemas {
        schemas.entry(s).or_default();
    }
    for r in &missing.relations {
        let owners = schemas.entry(&r.schema).or_default();
        if !owners.contains(&r.owner.as_str()) {
            owners.push(&r.owner);
        }
    }
    for (schema, owners) in &schemas {
        let s = quote_ident(schema);
        out.push_str(&format!("GRANT USAGE ON SCHEMA {s} TO {user};\n"));
        out.push_str(&format!(
            "GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {user};\n"
        ));
        out.push_str(&format!(
            "GRANT SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {user};\n"
        ));
        for owner in owners {
            let o = quote_ident(owner);
            out.push_str(&format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT SELECT ON TABLES TO {user};\n"
            ));
            out.push_str(&format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT SELECT ON SEQUENCES TO {user};\n"
            ));
        }
    }
    for oid in &missing.large_objects {
        out.push_str(&format!("GRANT SELECT ON LARGE OBJECT {oid} TO {user};\n"));
    }
    if missing.bypass_rls {
        out.push_str(&format!("ALTER ROLE {user} BYPASSRLS;\n"));
    }
    out
}

/// The script for `missing`, in all three forms.
pub fn generate(missing: &Missing) -> GrantScript {
    let sql = sql(missing);
    let psql = format!(
        "#!/bin/sh\n\
         # Grants user {user} what pgvault needs to back up database {db}.\n\
         # Run as the database owner or a superuser; set PGHOST, PGPORT, PGUSER as needed.\n\
         set -eu\n\
         psql -v ON_ERROR_STOP=1 --dbname {db} <<'PGVAULT_GRANTS'\n\
         {sql}PGVAULT_GRANTS\n",
        user = sh_quote(&missing.user),
        db = sh_quote(&missing.database),
    );
    let powershell = format!(
        "# Grants user {user} what pgvault needs to back up database {db}.\n\
         # Run as the database owner or a superuser; set $env:PGHOST, PGPORT, PGUSER as needed.\n\
         $ErrorActionPreference = 'Stop'\n\
         $sql = @'\n\
         {sql}'@\n\
         $sql | & psql -v ON_ERROR_STOP=1 --dbname {db}\n\
         if ($LASTEXITCODE -ne 0) {{ exit $LASTEXITCODE }}\n",
        user = ps_quote(&missing.user),
        db = ps_quote(&missing.database),
    );
    GrantScript {
        sql,
        psql,
        powershell,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readiness::privileges::Relation;

    #[test]
    fn every_identifier_is_quoted() {
        let missing = Missing {
            user: "bob\"s".into(),
            database: "d'b".into(),
            connect: true,
            schemas: vec!["we\"ird sch.ema".into()],
            relations: vec![Relation {
                schema: "we\"ird sch.ema".into(),
                name: "t".into(),
                owner: "own er".into(),
                is_sequence: false,
            }],
            large_objects: vec![16_400],
            bypass_rls: true,
        };
        let script = generate(&missing);
        assert!(
            script
                .sql
                .contains("GRANT USAGE ON SCHEMA \"we\"\"ird sch.ema\" TO \"bob\"\"s\";")
        );
        assert!(
            script
                .sql
                .contains("GRANT CONNECT ON DATABASE \"d'b\" TO \"bob\"\"s\";")
        );
        assert!(
            script
                .sql
                .contains("FOR ROLE \"own er\" IN SCHEMA \"we\"\"ird sch.ema\"")
        );
        assert!(script.sql.contains("GRANT SELECT ON LARGE OBJECT 16400"));
        assert!(script.sql.contains("ALTER ROLE \"bob\"\"s\" BYPASSRLS;"));
        assert!(script.psql.contains("--dbname 'd'\\''b'"));
        assert!(script.powershell.contains("--dbname 'd''b'"));
        assert!(script.psql.contains(&script.sql));
        assert!(script.powershell.contains(&script.sql));
    }
}
