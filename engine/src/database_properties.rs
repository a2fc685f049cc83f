//! Database-level properties that `pg_dump` writes only with `--create`
//! (which pgvault does not use: the target database is created by the
//! restore, under a name of the user's choosing): `ALTER DATABASE … SET`
//! and `ALTER ROLE … IN DATABASE … SET` settings, the database's comment,
//! connection limit, privileges and owner. Captured in the backup's snapshot
//! into the manifest; turned back into statements for a named target
//! database or, in a SQL script, for whatever database it is loaded into.

use pgvault_manifest::{DatabaseGrant, DatabaseProperties, DatabaseSetting};
use tokio_postgres::Client;

use super::error::EngineError;
use super::ident::{dollar_quote, quote_ident, quote_literal};

/// Reads the current database's properties (inside the backup's snapshot;
/// the catalogs read here are shared, so they show the present state).
pub(crate) async fn capture(
    client: &Client,
    describe: &str,
) -> Result<DatabaseProperties, EngineError> {
    let pg = |e: tokio_postgres::Error| EngineError::from_pg(&e, describe);
    let row = client
        .query_one(
            "SELECT pg_catalog.pg_get_userbyid(d.datdba)::text, \
                    pg_catalog.shobj_description(d.oid, 'pg_database'), \
                    d.datconnlimit, d.datacl IS NULL \
             FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()",
            &[],
        )
        .await
        .map_err(pg)?;
    let limit: i32 = row.get(2);
    let default_acl: bool = row.get(3);
    let mut settings = Vec::new();
    for row in client
        .query(
            "SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_catalog.pg_get_userbyid(s.setrole)::text END, \
                    c.setting \
             FROM pg_catalog.pg_db_role_setting s \
             CROSS JOIN LATERAL pg_catalog.unnest(s.setconfig) WITH ORDINALITY AS c(setting, n) \
             WHERE s.setdatabase = (SELECT oid FROM pg_catalog.pg_database \
                                    WHERE datname = pg_catalog.current_database()) \
             ORDER BY s.setrole, c.n",
            &[],
        )
        .await
        .map_err(pg)?
    {
        let text: String = row.get(1);
        if let Some((name, value)) = text.split_once('=') {
            settings.push(DatabaseSetting {
                role: row.get(0),
                name: name.to_string(),
                value: value.to_string(),
            });
        }
    }
    let grants = if default_acl {
        None
    } else {
        let rows = client
            .query(
                "SELECT CASE WHEN a.grantee = 0 THEN NULL \
                        ELSE pg_catalog.pg_get_userbyid(a.grantee)::text END, \
                        a.privilege_type, a.is_grantable \
                 FROM pg_catalog.pg_database d, pg_catalog.aclexplode(d.datacl) a \
                 WHERE d.datname = pg_catalog.current_database() AND a.grantee <> d.datdba \
                 ORDER BY 1 NULLS FIRST, 2",
                &[],
            )
            .await
            .map_err(pg)?;
        Some(
            rows.iter()
                .map(|r| DatabaseGrant {
                    grantee: r.get(0),
                    privilege: r.get(1),
                    grantable: r.get(2),
                })
                .collect(),
        )
    };
    Ok(DatabaseProperties {
        owner: row.get(0),
        settings,
        comment: row.get(1),
        connection_limit: (limit >= 0).then_some(limit),
        grants,
    })
}

/// One statement naming the database once: `before`, the database, `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statement {
    before: String,
    after: String,
    /// What it restores, for warnings ("setting search_path for role app").
    pub what: String,
}

impl Statement {
    fn new(before: impl Into<String>, after: impl Into<String>, what: impl Into<String>) -> Self {
        Statement {
            before: before.into(),
            after: after.into(),
            what: what.into(),
        }
    }

    /// The statement for the database called `database`.
    pub(crate) fn for_database(&self, database: &str) -> String {
        format!("{}{}{}", self.before, quote_ident(database), self.after)
    }

    /// A `DO` block running the statement on whatever database the script
    /// is loaded into.
    pub(crate) fn for_current_database(&self) -> String {
        let template = format!(
            "{}%I{}",
            self.before.replace('%', "%%"),
            self.after.replace('%', "%%")
        );
        let body = format!(
            "BEGIN EXECUTE pg_catalog.format({}, pg_catalog.current_database()); END",
            quote_literal(&template)
        );
        format!("DO {};", dollar_quote(&body))
    }
}

/// The statements restoring `props`, in order. `with_owner`: also hand the
/// database to the source's owner (only a superuser restore can).
pub(crate) fn statements(props: &DatabaseProperties, with_owner: bool) -> Vec<Statement> {
    let mut out = Vec::new();
    if with_owner && let Some(owner) = &props.owner {
        out.push(Statement::new(
            "ALTER DATABASE ",
            format!(" OWNER TO {}", quote_ident(owner)),
            format!("owner {owner}"),
        ));
    }
    if let Some(comment) = &props.comment {
        out.push(Statement::new(
            "COMMENT ON DATABASE ",
            format!(" IS {}", quote_literal(comment)),
            "comment",
        ));
    }
    if let Some(limit) = props.connection_limit {
        out.push(Statement::new(
            "ALTER DATABASE ",
            format!(" CONNECTION LIMIT {limit}"),
            "connection limit",
        ));
    }
    if let Some(grants) = &props.grants {
        out.push(Statement::new(
            "REVOKE ALL ON DATABASE ",
            " FROM PUBLIC",
            "privileges of PUBLIC",
        ));
        for grant in grants {
            let grantee = grant
                .grantee
                .as_deref()
                .map_or_else(|| "PUBLIC".to_string(), quote_ident);
            let option = if grant.grantable {
                " WITH GRANT OPTION"
            } else {
                ""
            };
            out.push(Statement::new(
                format!("GRANT {} ON DATABASE ", grant.privilege),
                format!(" TO {grantee}{option}"),
                format!("{} privilege for {grantee}", grant.privilege),
            ));
        }
    }
    for setting in &props.settings {
        let assignment = format!(
            " SET {} TO {}",
            quote_ident(&setting.name),
            setting_value(&setting.name, &setting.value)
        );
        out.push(match &setting.role {
            None => Statement::new(
                "ALTER DATABASE ",
                assignment,
                format!("setting {}", setting.name),
            ),
            Some(role) => Statement::new(
                format!("ALTER ROLE {} IN DATABASE ", quote_ident(role)),
                assignment,
                format!("setting {} for role {role}", setting.name),
            ),
        });
    }
    out
}

/// Settings whose stored value is a list of quoted elements (as
/// `pg_dump`'s `variable_is_guc_list_quote`).
const LIST_SETTINGS: [&str; 6] = [
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
];

/// The value as SQL: one literal, or one literal per element for list
/// settings (`"$user", public` becomes `'$user', 'public'`).
fn setting_value(name: &str, value: &str) -> String {
    if LIST_SETTINGS.contains(&name.to_ascii_lowercase().as_str())
        && let Some(items) = split_guc_list(value)
    {
        if items.is_empty() {
            return "''".to_string();
        }
        return items
            .iter()
            .map(|i| quote_literal(i))
            .collect::<Vec<_>>()
            .join(", ");
    }
    quote_literal(value)
}

/// Splits a stored list setting into its elements, removing the double
/// quotes around an element (`""` inside one is a quote); `None` when the
/// text is not a well-formed list (then the value is kept as one literal).
fn split_guc_list(text: &str) -> Option<Vec<String>> {
    let mut items = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return items.is_empty().then_some(items);
        }
        let mut item = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next()? {
                    '"' if chars.next_if_eq(&'"').is_some() => item.push('"'),
                    '"' => break,
                    c => item.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                item.push(c);
            }
            item.truncate(item.trim_end().len());
            if item.is_empty() {
                return None;
            }
        }
        items.push(item);
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.next() {
            None => return Some(items),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props() -> DatabaseProperties {
        DatabaseProperties {
            owner: Some("App Owner".into()),
            settings: vec![
                DatabaseSetting {
                    role: None,
                    name: "search_path".into(),
                    value: "\"$user\", public, \"My \"\"Schema\"\"\"".into(),
                },
                DatabaseSetting {
                    role: Some("reporter".into()),
                    name: "work_mem".into(),
                    value: "64MB".into(),
                },
                DatabaseSetting {
                    role: None,
                    name: "application_name".into(),
                    value: "it's 100%".into(),
                },
            ],
            comment: Some("the shop's data".into()),
            connection_limit: Some(25),
            grants: Some(vec![
                DatabaseGrant {
                    grantee: None,
                    privilege: "CONNECT".into(),
                    grantable: false,
                },
                DatabaseGrant {
                    grantee: Some("reporter".into()),
                    privilege: "TEMPORARY".into(),
                    grantable: true,
                },
            ]),
        }
    }

    #[test]
    fn statements_restore_every_property_for_a_named_database() {
        let sql: Vec<String> = statements(&props(), true)
            .iter()
            .map(|s| s.for_database("copy"))
            .collect();
        assert_eq!(
            sql,
            vec![
                r#"ALTER DATABASE "copy" OWNER TO "App Owner""#,
                r#"COMMENT ON DATABASE "copy" IS 'the shop''s data'"#,
                r#"ALTER DATABASE "copy" CONNECTION LIMIT 25"#,
                r#"REVOKE ALL ON DATABASE "copy" FROM PUBLIC"#,
                r#"GRANT CONNECT ON DATABASE "copy" TO PUBLIC"#,
                r#"GRANT TEMPORARY ON DATABASE "copy" TO "reporter" WITH GRANT OPTION"#,
                r#"ALTER DATABASE "copy" SET "search_path" TO '$user', 'public', 'My "Schema"'"#,
                r#"ALTER ROLE "reporter" IN DATABASE "copy" SET "work_mem" TO '64MB'"#,
                r#"ALTER DATABASE "copy" SET "application_name" TO 'it''s 100%'"#,
            ]
        );
        assert!(
            statements(&props(), false)
                .iter()
                .all(|s| !s.what.starts_with("owner"))
        );
    }

    #[test]
    fn script_statements_name_the_current_database_and_escape_percent_signs() {
        let all = statements(&props(), false);
        let last = all.last().unwrap().for_current_database();
        assert_eq!(
            last,
            "DO $pgvault$BEGIN EXECUTE pg_catalog.format('ALTER DATABASE %I SET \"application_name\" TO ''it''''s 100%%''', pg_catalog.current_database()); END$pgvault$;"
        );
    }

    #[test]
    fn list_settings_split_like_pg_dump() {
        assert_eq!(
            split_guc_list(r#""$user", public"#),
            Some(vec!["$user".to_string(), "public".to_string()])
        );
        assert_eq!(split_guc_list(""), Some(vec![]));
        assert_eq!(split_guc_list(r#""unterminated"#), None);
        assert_eq!(split_guc_list("a,,b"), None);
        assert_eq!(setting_value("search_path", "\"\""), "''");
        assert_eq!(setting_value("search_path", "a, b"), "'a', 'b'");
        assert_eq!(setting_value("work_mem", "a, b"), "'a, b'");
    }

    #[test]
    fn roles_lists_owner_setting_roles_and_grantees() {
        let p = props();
        let roles: Vec<&str> = p.roles().collect();
        assert_eq!(roles, vec!["App Owner", "reporter", "reporter"]);
        assert_eq!(DatabaseProperties::default().roles().count(), 0);
    }
}
