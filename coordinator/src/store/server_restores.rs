//! Whole-server restores: the point set a point belongs to (the points of
//! the same scheduled run of every database of its server in its vault,
//! and the databases of the run without one, with why), and which restore
//! job also restores the globals (and whether without tablespaces).

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::Result;

/// One point of a set.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SetPoint {
    pub instance_id: Uuid,
    pub point_id: Uuid,
    pub database: String,
}

/// One database of a scheduled run of a server: the run's point of it,
/// or why it has none.
#[derive(Debug, Clone, PartialEq)]
pub struct RunMember {
    pub instance_id: Uuid,
    pub database: String,
    /// Its recovery point of the run (not deleted).
    pub point_id: Option<Uuid>,
    /// Why it has none, e.g. "its backup failed (UserErrorDBNotFound)";
    /// empty when it has one.
    pub why_none: String,
}

impl RunMember {
    /// The point of the set, when it has one.
    pub fn set_point(&self) -> Option<SetPoint> {
        Some(SetPoint {
            instance_id: self.instance_id,
            point_id: self.point_id?,
            database: self.database.clone(),
        })
    }
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    instance_id: Uuid,
    database: String,
    point_id: Option<Uuid>,
    status: String,
    reason: String,
    job_state: Option<String>,
    error_code: Option<String>,
    had_point: bool,
}

/// The slot of the scheduled run that produced `point_id`, if it was one.
pub async fn slot_of(db: impl PgExecutor<'_>, point_id: Uuid) -> Result<Option<DateTime<Utc>>> {
    let slot: Option<(DateTime<Utc>,)> = sqlx::query_as(
        "SELECT r.slot_time FROM recovery_points p
           JOIN schedule_runs r ON r.job_id = p.job_id AND r.backup_instance_id = p.backup_instance_id
          WHERE p.id = $1",
    )
    .bind(point_id)
    .fetch_optional(db)
    .await?;
    Ok(slot.map(|(s,)| s))
}

/// The newest point (not deleted) of `instance_id` taken by a scheduled
/// run, newest snapshot first: what `restore server --latest` names.
pub async fn latest_scheduled_points(
    db: impl PgExecutor<'_>,
    instance_id: Uuid,
) -> Result<Vec<Uuid>> {
    let points: Vec<(Uuid,)> = sqlx::query_as(
        "SELECT p.id FROM recovery_points p
           JOIN schedule_runs r ON r.job_id = p.job_id AND r.backup_instance_id = p.backup_instance_id
          WHERE p.backup_instance_id = $1 AND p.delete_time IS NULL
          ORDER BY p.snapshot_time DESC, p.create_time DESC
          LIMIT 20",
    )
    .bind(instance_id)
    .fetch_all(db)
    .await?;
    Ok(points.into_iter().map(|(p,)| p).collect())
}

/// Every database of `vault_id` on `server_id` that the scheduled run of
/// `slot` took (or skipped), by database: its point, or why it has none.
pub async fn run_members(
    db: impl PgExecutor<'_>,
    vault_id: &str,
    server_id: &str,
    slot: DateTime<Utc>,
) -> Result<Vec<RunMember>> {
    let rows: Vec<MemberRow> = sqlx::query_as(
        "SELECT i.id AS instance_id, i.database, p.id AS point_id, r.status, r.reason,
                j.state AS job_state, j.error_code,
                EXISTS (SELECT 1 FROM recovery_points d
                         WHERE d.job_id = r.job_id AND d.backup_instance_id = i.id) AS had_point
           FROM schedule_runs r
           JOIN backup_instances i ON i.id = r.backup_instance_id
           LEFT JOIN jobs j ON j.id = r.job_id
           LEFT JOIN recovery_points p ON p.job_id = r.job_id AND p.backup_instance_id = i.id
                                      AND p.delete_time IS NULL
          WHERE r.slot_time = $3 AND i.vault_id = $1 AND i.server_id = $2
          ORDER BY i.database",
    )
    .bind(vault_id)
    .bind(server_id)
    .bind(slot)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| RunMember {
            why_none: if r.point_id.is_some() {
                String::new()
            } else {
                why_none(
                    &r.status,
                    &r.reason,
                    r.job_state.as_deref(),
                    r.error_code.as_deref(),
                    r.had_point,
                )
            },
            instance_id: r.instance_id,
            database: r.database,
            point_id: r.point_id,
        })
        .collect())
}

/// Why a database of a run has no point in it, in words.
fn why_none(
    status: &str,
    reason: &str,
    job_state: Option<&str>,
    error_code: Option<&str>,
    had_point: bool,
) -> String {
    if had_point {
        return "its recovery point of this run was deleted".to_string();
    }
    if status == "SKIPPED" {
        return if reason.is_empty() {
            "its backup was skipped".to_string()
        } else {
            format!("its backup was skipped: {reason}")
        };
    }
    match job_state {
        Some("FAILED") => match error_code {
            Some(code) if !code.is_empty() => format!("its backup failed ({code})"),
            _ => "its backup failed".to_string(),
        },
        Some("CANCELLED") => "its backup was cancelled".to_string(),
        Some("QUEUED" | "IN_PROGRESS" | "CANCELLING") => {
            "its backup has not completed yet".to_string()
        }
        _ => "it has no recovery point in this run".to_string(),
    }
}

/// Records that restore job `job_id` restores the point's globals first,
/// without their tablespace definitions when `skip_tablespaces`.
pub async fn mark_globals(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    skip_tablespaces: bool,
) -> Result<()> {
    sqlx::query("INSERT INTO restore_globals (job_id, skip_tablespaces) VALUES ($1, $2)")
        .bind(job_id)
        .bind(skip_tablespaces)
        .execute(db)
        .await?;
    Ok(())
}

/// How restore job `job_id` restores the point's globals first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalsRestore {
    /// Without the tablespace definitions.
    pub skip_tablespaces: bool,
}

/// Whether (and how) restore job `job_id` restores the point's globals first.
pub async fn restores_globals(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
) -> Result<Option<GlobalsRestore>> {
    let found: Option<(bool,)> =
        sqlx::query_as("SELECT skip_tablespaces FROM restore_globals WHERE job_id = $1")
            .bind(job_id)
            .fetch_optional(db)
            .await?;
    Ok(found.map(|(skip_tablespaces,)| GlobalsRestore { skip_tablespaces }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_without_a_point_says_why() {
        assert_eq!(
            why_none(
                "QUEUED",
                "",
                Some("FAILED"),
                Some("UserErrorDBNotFound"),
                false
            ),
            "its backup failed (UserErrorDBNotFound)"
        );
        assert_eq!(
            why_none("SKIPPED", "slot was missed", None, None, false),
            "its backup was skipped: slot was missed"
        );
        assert_eq!(
            why_none("QUEUED", "", Some("IN_PROGRESS"), None, false),
            "its backup has not completed yet"
        );
        assert_eq!(
            why_none("QUEUED", "", Some("COMPLETED"), None, true),
            "its recovery point of this run was deleted"
        );
        assert_eq!(
            why_none("QUEUED", "", Some("CANCELLED"), None, false),
            "its backup was cancelled"
        );
    }
}
