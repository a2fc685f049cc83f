//! Which part of a recovery point a selective restore asks for, and the one
//! rule for whether the names it gives exist: the coordinator applies it
//! before queueing a job (so a misspelt name is refused at once, listing the
//! valid ones) and the engine applies it again before restoring, with the
//! same answer.

use std::collections::BTreeSet;

use crate::format::{Manifest, RelationEntry};
use crate::names::{readable, spec_names};

/// Valid names quoted in an error message.
const NAMES_SHOWN: usize = 20;

/// What to restore; both lists empty means everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Whole schemas, by name.
    pub schemas: Vec<String>,
    /// Tables, views, materialized views or foreign tables as
    /// `schema.table`; the quoted form `"my schema"."My Table"` is accepted
    /// too (see [`spec_names`]).
    pub tables: Vec<String>,
}

/// Names a selection gives that the recovery point does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("the recovery point has no table or view named {} (write them as schema.table; {})", .unknown.join(", "), listing("tables and views", .valid))]
    UnknownTables {
        unknown: Vec<String>,
        valid: BTreeSet<String>,
    },
    #[error("the recovery point has no schema named {} ({})", .unknown.join(", "), listing("schemas", .valid))]
    UnknownSchemas {
        unknown: Vec<String>,
        valid: BTreeSet<String>,
    },
}

impl SelectionError {
    /// The request field at fault: `tables` or `schemas`.
    pub fn field(&self) -> &'static str {
        match self {
            SelectionError::UnknownTables { .. } => "tables",
            SelectionError::UnknownSchemas { .. } => "schemas",
        }
    }
}

impl Selection {
    pub fn is_everything(&self) -> bool {
        self.schemas.is_empty() && self.tables.is_empty()
    }

    /// The relations of `manifest` each selected table names (a spec may
    /// name more than one only if the manifest holds duplicates), after
    /// checking every name exists.
    pub fn check(&self, manifest: &Manifest) -> Result<Vec<RelationEntry>, SelectionError> {
        let relations = manifest.selectable_relations();
        let mut unknown = Vec::new();
        let mut named = Vec::new();
        for spec in &self.tables {
            let matches: Vec<&RelationEntry> = relations
                .iter()
                .filter(|r| spec_names(spec, &r.schema, &r.name))
                .collect();
            if matches.is_empty() {
                unknown.push(spec.clone());
            }
            named.extend(matches.into_iter().cloned());
        }
        if !unknown.is_empty() {
            return Err(SelectionError::UnknownTables {
                unknown,
                valid: relations
                    .iter()
                    .map(|r| readable(&r.schema, &r.name))
                    .collect(),
            });
        }
        let schemas: BTreeSet<String> = manifest.selectable_schemas().into_iter().collect();
        let unknown: Vec<String> = self
            .schemas
            .iter()
            .filter(|s| !schemas.contains(s.as_str()))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(SelectionError::UnknownSchemas {
                unknown,
                valid: schemas,
            });
        }
        Ok(named)
    }
}

/// "its tables are a.b, c.d" (the first few, with the count when cut).
fn listing(what: &str, valid: &BTreeSet<String>) -> String {
    if valid.is_empty() {
        return format!("it holds no {what}");
    }
    let shown: Vec<&str> = valid.iter().take(NAMES_SHOWN).map(String::as_str).collect();
    if valid.len() > shown.len() {
        format!(
            "its {what} include {}, … ({} in all)",
            shown.join(", "),
            valid.len()
        )
    } else {
        format!("its {what} are {}", shown.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{ObjectEntry, RelationKind, RelationName, SequenceEntry, TableEntry};

    fn manifest(relations: Option<Vec<RelationEntry>>) -> Manifest {
        let rel = |schema: &str, name: &str| RelationName {
            schema: schema.into(),
            name: name.into(),
        };
        let table = |schema: &str, name: &str| TableEntry {
            oid: 1,
            schema: schema.into(),
            name: name.into(),
            columns: vec![],
            chunks: vec![],
            extension_config: false,
        };
        let object = ObjectEntry {
            path: "schema.dump".into(),
            size: 0,
            sha256: String::new(),
        };
        Manifest {
            format_version: crate::FORMAT_VERSION,
            tool: "pgvault".into(),
            tool_version: "0".into(),
            server_version: "15.8".into(),
            server_version_num: 150008,
            snapshot_time: chrono::Utc::now(),
            database: "db".into(),
            encoding: "UTF8".into(),
            collate: "C".into(),
            ctype: "C".into(),
            schema: object,
            roles: vec![],
            tables: vec![table("sales", "orders"), table("My Schema", "Odd \"T\"")],
            sequences: vec![SequenceEntry {
                schema: "ids".into(),
                name: "seq".into(),
                last_value: 1,
                is_called: false,
            }],
            materialized_views: vec![rel("sales", "totals")],
            large_objects: None,
            database_properties: Default::default(),
            schemas: relations.as_ref().map(|_| {
                vec![
                    "My Schema".to_string(),
                    "ids".into(),
                    "sales".into(),
                    "views_only".into(),
                ]
            }),
            relations,
            globals: None,
            globals_role_passwords: false,
            dump_tools_major: None,
            key_object: None,
        }
    }

    fn select(schemas: &[&str], tables: &[&str]) -> Selection {
        Selection {
            schemas: schemas.iter().map(|s| s.to_string()).collect(),
            tables: tables.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn known_tables_match_plain_and_quoted() {
        let tables = ["sales.orders", "sales.totals", r#""My Schema"."Odd ""T""""#];
        let named = select(&["ids"], &tables)
            .check(&manifest(None))
            .expect("all known");
        assert_eq!(named.len(), 3);
    }

    #[test]
    fn unknown_table_is_named_with_the_valid_ones() {
        let error = select(&[], &["sales.nope"])
            .check(&manifest(None))
            .expect_err("unknown");
        assert_eq!(error.field(), "tables");
        let text = error.to_string();
        assert!(text.contains("no table or view named sales.nope"), "{text}");
        assert!(text.contains("sales.orders"), "{text}");
    }

    #[test]
    fn unknown_schema_is_named() {
        let error = select(&["hr"], &[])
            .check(&manifest(None))
            .expect_err("unknown");
        assert_eq!(error.field(), "schemas");
        assert!(error.to_string().contains("no schema named hr"), "{error}");
    }

    #[test]
    fn recorded_relations_offer_views_partitioned_parents_and_foreign_tables() {
        let entry = |schema: &str, name: &str, kind| RelationEntry {
            schema: schema.into(),
            name: name.into(),
            kind,
        };
        let recorded = manifest(Some(vec![
            entry("sales", "orders", RelationKind::PartitionedTable),
            entry("sales", "orders_2024", RelationKind::Table),
            entry("sales", "v", RelationKind::View),
            entry("sales", "remote", RelationKind::ForeignTable),
            entry("sales", "empty_mv", RelationKind::MaterializedView),
        ]));
        let named = select(
            &["views_only"],
            &["sales.orders", "sales.v", "sales.remote", "sales.empty_mv"],
        )
        .check(&recorded)
        .expect("recorded relations are selectable");
        assert_eq!(named.len(), 4);
        // Without the record, only what holds data is offered.
        assert!(select(&[], &["sales.v"]).check(&manifest(None)).is_err());
    }

    #[test]
    fn many_valid_names_are_cut_with_the_count() {
        let valid: BTreeSet<String> = (0..25).map(|i| format!("s.t{i:02}")).collect();
        let text = listing("tables", &valid);
        assert!(text.ends_with("(25 in all)"), "{text}");
    }
}
