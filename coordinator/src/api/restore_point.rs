//! Which recovery point a restore request restores: the one it names
//! (`recovery_point`), or the newest restorable point of an instance
//! (`latest_of`, what `pgvault restore … --latest` sends). "Latest" is
//! decided here, on the coordinator, so every client gets the same answer:
//! the newest snapshot of the instance that no delete or tier-move job is
//! removing. An archive point qualifies: the restore rehydrates it first,
//! as for a point named explicitly.

use sqlx::PgPool;
use uuid::Uuid;

use crate::api::instance_lookup;
use crate::error::{CoordinatorError, Result};
use crate::model::RecoveryPoint;
use crate::store::{instances, lifecycle, recovery_points};

/// What a restore request says about its point, before any lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PointChoice<'a> {
    /// `recovery_point`: a point name.
    Named(&'a str),
    /// `latest_of`: an instance name.
    LatestOf(&'a str),
}

impl<'a> PointChoice<'a> {
    /// Exactly one of the two request fields, else InvalidArgument.
    pub fn from_request(recovery_point: &'a str, latest_of: &'a str) -> Result<Self> {
        match (recovery_point.is_empty(), latest_of.is_empty()) {
            (false, true) => Ok(PointChoice::Named(recovery_point)),
            (true, false) => Ok(PointChoice::LatestOf(latest_of)),
            (false, false) => Err(CoordinatorError::invalid(
                "latest_of",
                "give either recovery_point or latest_of, not both",
            )),
            (true, true) => Err(CoordinatorError::invalid(
                "recovery_point",
                "is required (\"vaults/{vault}/backupInstances/{instance}/recoveryPoints/{point}\"); or set latest_of to an instance to restore its newest recovery point",
            )),
        }
    }
}

/// The vault, instance id and point id the request restores.
pub async fn resolve(pool: &PgPool, choice: &PointChoice<'_>) -> Result<(String, Uuid, Uuid)> {
    match choice {
        PointChoice::Named(name) => {
            instance_lookup::recovery_point(pool, "recovery_point", name).await
        }
        PointChoice::LatestOf(name) => {
            let (vault, instance_id) = instance_lookup::instance(pool, "latest_of", name).await?;
            let point = latest(pool, &vault, instance_id).await?;
            Ok((vault, instance_id, point.id))
        }
    }
}

/// The newest restorable point of the instance, or FailedPrecondition
/// naming the instance and what to do.
async fn latest(pool: &PgPool, vault: &str, instance_id: Uuid) -> Result<RecoveryPoint> {
    let instance = instances::get(pool, vault, instance_id).await?;
    let typed = format!("{vault}/{}", instance.short_name);
    let mut points = recovery_points::all_of_instance(pool, instance_id).await?;
    if points.is_empty() {
        return Err(CoordinatorError::precondition(format!(
            "backup instance {typed} has no recovery point yet; back it up first with: pgvault backup now {typed} --wait"
        )));
    }
    points.sort_by_key(|p| std::cmp::Reverse((p.snapshot_time, p.create_time)));
    for point in points {
        if lifecycle::active_removal(pool, point.id).await?.is_none() {
            return Ok(point);
        }
    }
    Err(CoordinatorError::precondition(format!(
        "every recovery point of backup instance {typed} is being deleted or moved to the archive datastore; retry once those jobs complete (pgvault job list --instance {typed}), or back it up again with: pgvault backup now {typed} --wait"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_of_point_and_latest_of() {
        let point = "vaults/prod/backupInstances/db1-x/recoveryPoints/p";
        assert_eq!(
            PointChoice::from_request(point, "").unwrap(),
            PointChoice::Named(point)
        );
        assert_eq!(
            PointChoice::from_request("", "vaults/prod/backupInstances/db1-x").unwrap(),
            PointChoice::LatestOf("vaults/prod/backupInstances/db1-x")
        );
        let both = PointChoice::from_request(point, "vaults/prod/backupInstances/db1-x")
            .unwrap_err()
            .to_string();
        assert!(both.contains("not both"), "{both}");
        let neither = PointChoice::from_request("", "").unwrap_err().to_string();
        assert!(
            neither.starts_with("recovery_point: is required") && neither.contains("latest_of"),
            "{neither}"
        );
    }
}
