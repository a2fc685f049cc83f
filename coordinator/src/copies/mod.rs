//! Copies of recovery points to a second datastore (3-2-1). A policy may
//! name a copy datastore and a copy retention ([`crate::model::CopyRule`]);
//! then every completed backup under it gets a COPY job, created in the
//! transaction that records the point, which copies every object and the
//! manifest to the same prefix there with the tier move's verified copy
//! (`engine::lifecycle::copy_point`). When it completes the copy is recorded
//! (`store::copies`), restorable on its own; each copy then expires by its
//! own retention through the lifecycle sweeper (a DELETE job of that copy
//! only), never one of the instance's newest `keep_min` copied points, never
//! a soft-deleted point's (its purge removes the copies with it).
//!
//! # Layout
//! - this file: validating a policy's copy rule;
//! - `decide`: the pure decisions (copy due, copy expiry), unit-tested;
//! - `queue`: creating COPY jobs and the DELETE jobs of expired copies.

pub mod decide;
pub mod queue;

use pgvault_datastore::Datastore;

use crate::error::{CoordinatorError, Result};
use crate::model::{CopyRule, RecoveryPoint};
use crate::names;
use crate::store::copies::{self, PointCopy};

/// The copy rule of a policy request: both fields empty means none; a URL
/// is checked like a vault's datastores (and its directory, bucket or
/// container created), the retention against the standard range.
pub async fn validate_rule(datastore: &str, retention: &str) -> Result<Option<CopyRule>> {
    let (datastore, retention) = (datastore.trim(), retention.trim());
    match (datastore.is_empty(), retention.is_empty()) {
        (true, true) => return Ok(None),
        (false, true) => {
            return Err(CoordinatorError::invalid(
                "policy.copy_retention",
                "is required with a copy datastore: how long copies are kept, e.g. P30D (7 days to 10 years)",
            ));
        }
        (true, false) => {
            return Err(CoordinatorError::invalid(
                "policy.copy_datastore",
                "is required with a copy retention: the URL of the datastore to copy points to",
            ));
        }
        (false, false) => {}
    }
    let retention = crate::retention::copy_retention(retention)
        .map_err(|e| CoordinatorError::invalid("policy.copy_retention", e))?;
    let store = Datastore::open(datastore)
        .map_err(|e| CoordinatorError::invalid("policy.copy_datastore", e.to_string()))?;
    store.ensure_exists().await.map_err(|e| {
        CoordinatorError::precondition(format!(
            "policy.copy_datastore: cannot prepare datastore {}: {e}",
            store.redacted_url()
        ))
    })?;
    Ok(Some(CopyRule {
        datastore_url: datastore.to_string(),
        retention: retention.to_string(),
    }))
}

/// The refusal of a restore from a copy the point does not have (live).
pub fn no_copy(point_name: &str, datastore: &str) -> CoordinatorError {
    CoordinatorError::invalid(
        "copy_datastore",
        format!(
            "recovery point {point_name} has no copy in {datastore}; list its copies with pgvault recovery-point get {point_name}, or leave the copy out to restore the point itself"
        ),
    )
}

/// The refusal of a restore of a point whose own objects expired, read
/// from the point itself: only its copies are left.
pub fn copies_only(point_name: &str) -> CoordinatorError {
    CoordinatorError::precondition(format!(
        "recovery point {point_name} expired from the vault's datastore; only its copies are left (they follow their own retention): restore from one with --from-copy URL (the copies are listed by pgvault recovery-point get {point_name})"
    ))
}

/// The copy a restore asked to read (`requested`: a datastore URL; empty:
/// none), which must be a live copy of `point`. A point whose own objects
/// expired restores only from a copy.
pub async fn restore_copy(
    db: impl sqlx::PgExecutor<'_>,
    point: &RecoveryPoint,
    requested: &str,
) -> Result<Option<PointCopy>> {
    let requested = requested.trim();
    if requested.is_empty() {
        if point.copies_only {
            return Err(copies_only(&names::recovery_point_name(
                &point.vault_id,
                point.backup_instance_id,
                point.id,
            )));
        }
        return Ok(None);
    }
    match copies::live(db, point.id, requested).await? {
        Some(copy) => Ok(Some(copy)),
        None => Err(no_copy(
            &names::recovery_point_name(&point.vault_id, point.backup_instance_id, point.id),
            requested,
        )),
    }
}

/// The point as read from `copy` (its location swapped), or itself.
pub fn read_from(point: &RecoveryPoint, copy: Option<&PointCopy>) -> RecoveryPoint {
    let mut read = point.clone();
    if let Some(copy) = copy {
        read.datastore_url = copy.datastore_url.clone();
        read.prefix = copy.prefix.clone();
    }
    read
}

/// Where a restore from the copy in `datastore` reads (datastore, prefix).
pub async fn copy_location(
    conn: &mut sqlx::PgConnection,
    point: &RecoveryPoint,
    datastore: &str,
) -> Result<(String, String)> {
    let name = names::recovery_point_name(&point.vault_id, point.backup_instance_id, point.id);
    let copy = copies::live(&mut *conn, point.id, datastore)
        .await?
        .ok_or_else(|| no_copy(&name, datastore))?;
    Ok((copy.datastore_url, copy.prefix))
}
