//! Selective restores at the API edge: the schemas and tables a restore
//! request names, cleaned up and checked against the recovery point's
//! `manifest.json` before a job is queued, so a misspelt name is an
//! `InvalidArgument` naming it (and listing valid names) rather than a
//! failed job. Whether a name exists is decided by
//! [`pgvault_manifest::Selection::check`], the rule the engine applies too.

use pgvault_datastore::Datastore;
use pgvault_manifest::{MANIFEST_FILE, Manifest, Selection};
use pgvault_seal::PointKey;
use sha2::{Digest, Sha256};

use crate::api::ApiContext;
use crate::encryption;
use crate::error::{CoordinatorError, Result};
use crate::model::RecoveryPoint;

/// Most names one request may select.
const MAX_NAMES: usize = 1000;

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
/// empty (everything) needs no check and reads nothing. An encrypted
/// point's manifest is opened with its data key (`crate::encryption`).
pub async fn check(
    ctx: &ApiContext,
    point: &RecoveryPoint,
    schemas: &[String],
    tables: &[String],
) -> Result<()> {
    if schemas.is_empty() && tables.is_empty() {
        return Ok(());
    }
    let key = {
        let mut conn = ctx.store.pool().acquire().await?;
        encryption::existing_point_key(&mut conn, &ctx.cipher, &point.vault_id, point.id).await?
    };
    let manifest = read_manifest(point, key.as_ref()).await?;
    check_names(&manifest, schemas, tables)
}

fn check_names(manifest: &Manifest, schemas: &[String], tables: &[String]) -> Result<()> {
    let selection = Selection {
        schemas: schemas.to_vec(),
        tables: tables.to_vec(),
    };
    selection
        .check(manifest)
        .map(|_| ())
        .map_err(|e| CoordinatorError::invalid(e.field(), e.to_string()))
}

/// Reads the point's manifest and checks it against the recorded SHA-256.
async fn read_manifest(point: &RecoveryPoint, key: Option<&PointKey>) -> Result<Manifest> {
    let unavailable = |e: &dyn std::error::Error| {
        CoordinatorError::Unavailable(format!(
            "cannot read the manifest of recovery point {} to check the selection: {}",
            point.id,
            pgvault_datastore::redact::error_text(e)
        ))
    };
    let store = Datastore::open(&point.datastore_url).map_err(|e| unavailable(&e))?;
    let path = store.path(&format!("{}/{MANIFEST_FILE}", point.prefix));
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
    let bytes = match key {
        None => bytes.to_vec(),
        Some(key) => pgvault_seal::open_whole(key, MANIFEST_FILE, &bytes).map_err(|e| {
            CoordinatorError::precondition(format!(
                "the manifest of recovery point {} failed authentication ({e}); restore from another recovery point",
                point.id
            ))
        })?,
    };
    Manifest::from_json(&bytes, MANIFEST_FILE).map_err(|e| {
        CoordinatorError::precondition(format!(
            "the manifest of recovery point {} cannot be read ({e}); restore from another recovery point",
            point.id
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_are_invalid_arguments_of_their_field() {
        let json = serde_json::json!({
            "format_version": 1, "tool": "pgvault", "tool_version": "0", "server_version": "15",
            "server_version_num": 150000, "snapshot_time": "2024-01-01T00:00:00Z", "database": "d",
            "encoding": "UTF8", "collate": "C", "ctype": "C",
            "schema": {"path": "schema.dump", "size": 0, "sha256": ""},
            "roles": [], "sequences": [], "materialized_views": [], "large_objects": null,
            "tables": [{"oid": 1, "schema": "sales", "name": "orders", "columns": [], "chunks": []}]
        });
        let manifest: Manifest = serde_json::from_value(json).unwrap();
        check_names(&manifest, &[], &["sales.orders".into()]).expect("known");
        match check_names(&manifest, &[], &["sales.nope".into()]) {
            Err(CoordinatorError::InvalidArgument { field, message }) => {
                assert_eq!(field, "tables");
                assert!(
                    message.contains("sales.nope") && message.contains("sales.orders"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        match check_names(&manifest, &["hr".into()], &[]) {
            Err(CoordinatorError::InvalidArgument { field, .. }) => assert_eq!(field, "schemas"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn clean_trims_dedupes_and_refuses_empty_names() {
        let names = vec![" a.b ".to_string(), "a.b".to_string(), "c".to_string()];
        assert_eq!(clean("tables", &names).expect("ok"), vec!["a.b", "c"]);
        assert!(clean("tables", &[" ".to_string()]).is_err());
    }
}
