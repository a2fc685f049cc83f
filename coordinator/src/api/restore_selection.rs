//! Selective restores at the API edge: the schemas and tables a restore
//! request names, cleaned up and checked against the recovery point's
//! `manifest.json` before a job is queued, so a misspelt name is an
//! `InvalidArgument` naming it (and listing valid names) rather than a
//! failed job. The manifest lists the relations that hold data: tables,
//! leaf partitions and populated materialized views.

use std::collections::BTreeSet;

use pgvault_datastore::Datastore;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{CoordinatorError, Result};
use crate::model::RecoveryPoint;

/// Most names one request may select.
const MAX_NAMES: usize = 1000;
/// Valid names quoted in an error message.
const NAMES_SHOWN: usize = 20;

/// The part of `manifest.json` this check reads (other fields are ignored).
#[derive(Deserialize)]
struct ManifestNames {
    #[serde(default)]
    tables: Vec<Relation>,
    #[serde(default)]
    sequences: Vec<Relation>,
    #[serde(default)]
    materialized_views: Vec<Relation>,
}

#[derive(Deserialize)]
struct Relation {
    schema: String,
    name: String,
}

/// Trims the names of `field`, drops repeats, and refuses empty ones.
pub fn clean(field: &str, names: &[String]) -> Result<Vec<String>> {
    if names.len() > MAX_NAMES {
        return Err(CoordinatorError::invalid(
            field,
            format!("at most {MAX_NAMES} names can be selected; select whole schemas instead"),
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let name = name.trim();
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(CoordinatorError::invalid(
                field,
                "names must be non-empty and hold no control characters",
            ));
        }
        if !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// Checks every selected schema and table exists in `point`. Both lists
/// empty (everything) needs no check and reads nothing.
pub async fn check(point: &RecoveryPoint, schemas: &[String], tables: &[String]) -> Result<()> {
    if schemas.is_empty() && tables.is_empty() {
        return Ok(());
    }
    let manifest = read_manifest(point).await?;
    check_names(&manifest, schemas, tables)
}

fn check_names(manifest: &ManifestNames, schemas: &[String], tables: &[String]) -> Result<()> {
    let relations = || manifest.tables.iter().chain(&manifest.materialized_views);
    let unknown: Vec<&str> = tables
        .iter()
        .filter(|spec| !relations().any(|r| names_relation(spec, r)))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let valid: BTreeSet<String> = relations()
            .map(|r| format!("{}.{}", r.schema, r.name))
            .collect();
        return Err(CoordinatorError::invalid(
            "tables",
            format!(
                "the recovery point has no table named {} (write tables as schema.table; {})",
                unknown.join(", "),
                listing("tables", &valid)
            ),
        ));
    }
    let known: BTreeSet<String> = relations()
        .chain(&manifest.sequences)
        .map(|r| r.schema.clone())
        .collect();
    let unknown: Vec<&str> = schemas
        .iter()
        .filter(|s| !known.contains(s.as_str()))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(CoordinatorError::invalid(
            "schemas",
            format!(
                "the recovery point has no schema named {} ({})",
                unknown.join(", "),
                listing("schemas", &known)
            ),
        ));
    }
    Ok(())
}

/// `spec` names `r` as `schema.name` or `"schema"."name"`.
fn names_relation(spec: &str, r: &Relation) -> bool {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    spec == format!("{}.{}", r.schema, r.name)
        || spec == format!("{}.{}", quote(&r.schema), quote(&r.name))
}

/// "its tables are: a.b, c.d" (the first few, with the count when cut).
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

/// Reads the point's manifest and checks it against the recorded SHA-256.
async fn read_manifest(point: &RecoveryPoint) -> Result<ManifestNames> {
    let unavailable = |e: &dyn std::fmt::Display| {
        CoordinatorError::Unavailable(format!(
            "cannot read the manifest of recovery point {} to check the selection: {e}",
            point.id
        ))
    };
    let store = Datastore::open(&point.datastore_url).map_err(|e| unavailable(&e))?;
    let path = store.path(&format!("{}/manifest.json", point.prefix));
    let bytes = store
        .object_store()
        .get(&path)
        .await
        .map_err(|e| unavailable(&e))?
        .bytes()
        .await
        .map_err(|e| unavailable(&e))?;
    let sha = hex::encode(Sha256::digest(&bytes));
    if !sha.eq_ignore_ascii_case(&point.manifest_sha256) {
        return Err(CoordinatorError::precondition(format!(
            "the manifest of recovery point {} does not match its recorded checksum; \
             the point is corrupted, restore from another recovery point",
            point.id
        )));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        CoordinatorError::precondition(format!(
            "the manifest of recovery point {} cannot be read ({e}); restore from another recovery point",
            point.id
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> ManifestNames {
        let rel = |schema: &str, name: &str| Relation {
            schema: schema.into(),
            name: name.into(),
        };
        ManifestNames {
            tables: vec![rel("sales", "orders"), rel("My Schema", "Odd \"T\"")],
            sequences: vec![rel("ids", "seq")],
            materialized_views: vec![rel("sales", "totals")],
        }
    }

    #[test]
    fn known_tables_match_plain_and_quoted() {
        let tables = vec![
            "sales.orders".to_string(),
            "sales.totals".to_string(),
            r#""My Schema"."Odd ""T""""#.to_string(),
        ];
        check_names(&manifest(), &["ids".into()], &tables).expect("all known");
    }

    #[test]
    fn unknown_table_is_named_with_the_valid_ones() {
        let error = check_names(&manifest(), &[], &["sales.nope".into()]).expect_err("unknown");
        let text = error.to_string();
        assert!(matches!(error, CoordinatorError::InvalidArgument { .. }));
        assert!(text.contains("no table named sales.nope"), "{text}");
        assert!(text.contains("sales.orders"), "{text}");
    }

    #[test]
    fn unknown_schema_is_named() {
        let error = check_names(&manifest(), &["hr".into()], &[]).expect_err("unknown");
        assert!(error.to_string().contains("no schema named hr"), "{error}");
    }

    #[test]
    fn clean_trims_dedupes_and_refuses_empty_names() {
        let names = vec![" a.b ".to_string(), "a.b".to_string(), "c".to_string()];
        assert_eq!(clean("tables", &names).expect("ok"), vec!["a.b", "c"]);
        assert!(clean("tables", &[" ".to_string()]).is_err());
    }
}
