//! Restore targets: the facts only a restore job has, one row per restore
//! (`jobs.operation = 'RESTORE'`; a restore drill's scratch database is one
//! too, `DRILL`): whether it writes a database (server,
//! database, secret) or a SQL file (datastore URL, file name), the
//! selection it restores, and on completion the file written and what a
//! selective restore left out. `store::jobs` reads them, joined to the job
//! row (which holds the point restored), into the job's [`RestoreSpec`].

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::{CoordinatorError, Result};
use crate::model::{
    DrillSpec, FileOutput, RestoreKind, RestoreSpec, RestoreTarget, drill_database,
};
use crate::secret_ref::SecretRef;
use crate::store::{parse_enum, to_i64, to_u64};

/// A restore's own facts, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetFacts {
    pub target: RestoreTarget,
    pub schemas: Vec<String>,
    pub tables: Vec<String>,
    pub warnings: Vec<String>,
    /// The copy datastore read instead of the point's own location.
    pub copy_datastore: Option<String>,
}

/// The columns of a job's restore target, read beside the job row
/// (`store::jobs` left-joins the table as `t`): all NULL for other jobs.
#[derive(Default, sqlx::FromRow)]
pub(crate) struct JoinedTarget {
    kind: Option<String>,
    target_server_id: Option<String>,
    target_database: Option<String>,
    target_secret_id: Option<String>,
    target_secret_ref: Option<String>,
    target_url: Option<String>,
    target_file: Option<String>,
    schemas: Option<Vec<String>>,
    tables: Option<Vec<String>>,
    output_size: Option<i64>,
    output_sha256: Option<String>,
    warnings: Option<Vec<String>>,
    copy_datastore: Option<String>,
}

/// The columns of [`JoinedTarget`], from `restore_targets t`.
pub(crate) const JOINED_COLUMNS: &str = "t.kind, t.target_server_id, t.target_database, t.target_secret_id, \
     t.target_secret_ref, t.target_url, t.target_file, t.schemas, t.tables, t.output_size, t.output_sha256, \
     t.warnings, t.copy_datastore";

/// Joins a job (`j`) to its restore target (`t`) by the target's primary
/// key: at most one row per job.
pub(crate) const JOIN: &str = "LEFT JOIN restore_targets t ON t.job_id = j.id";

impl JoinedTarget {
    /// The facts of restore job `job`; `None` when it has no target row.
    pub(crate) fn facts(self, job: Uuid) -> Result<Option<TargetFacts>> {
        let Some(kind) = self.kind else {
            return Ok(None);
        };
        let broken = |what: &str| CoordinatorError::internal(format!("restore job {job} {what}"));
        let target = match parse_enum(&kind, "restore_targets.kind", RestoreKind::parse)? {
            RestoreKind::Database => {
                let secret = match (self.target_secret_ref, self.target_secret_id) {
                    (Some(reference), _) => {
                        SecretRef::parse("restore_targets.target_secret_ref", &reference)
                            .map_err(|_| broken("has a target secret reference in no known form"))?
                    }
                    (None, Some(id)) => SecretRef::Stored { id, version: None },
                    (None, None) => return Err(broken("has no target secret")),
                };
                RestoreTarget::Database {
                    server_id: self
                        .target_server_id
                        .ok_or_else(|| broken("has no target server"))?,
                    database: self
                        .target_database
                        .ok_or_else(|| broken("has no target database"))?,
                    secret,
                }
            }
            RestoreKind::Files => RestoreTarget::Files {
                url: self.target_url.ok_or_else(|| broken("has no target url"))?,
                file: self
                    .target_file
                    .ok_or_else(|| broken("has no target file"))?,
                output: match (self.output_size, self.output_sha256) {
                    (Some(size), Some(sha256)) => Some(FileOutput {
                        size: to_u64(size, "restore_targets.output_size")?,
                        sha256,
                    }),
                    _ => None,
                },
            },
        };
        Ok(Some(TargetFacts {
            target,
            schemas: self.schemas.unwrap_or_default(),
            tables: self.tables.unwrap_or_default(),
            warnings: self.warnings.unwrap_or_default(),
            copy_datastore: self.copy_datastore,
        }))
    }
}

/// The secret columns of a database target: the stored secret's id (its
/// latest version needs nothing more) and the reference when it is not that.
fn secret_columns(secret: &SecretRef) -> (Option<String>, Option<String>) {
    match secret {
        SecretRef::Stored { id, version: None } => (Some(id.clone()), None),
        SecretRef::Stored { id, .. } => (Some(id.clone()), Some(secret.to_string())),
        external => (None, Some(external.to_string())),
    }
}

/// Writes the restore's own facts (called by `store::jobs::insert`).
pub(crate) async fn insert(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    spec: &RestoreSpec,
) -> Result<()> {
    let (server, database, secret, url, file) = match &spec.target {
        RestoreTarget::Database {
            server_id,
            database,
            secret,
        } => (
            Some(server_id.as_str()),
            Some(database.as_str()),
            secret_columns(secret),
            None,
            None,
        ),
        RestoreTarget::Files { url, file, .. } => (
            None,
            None,
            (None, None),
            Some(url.as_str()),
            Some(file.as_str()),
        ),
    };
    sqlx::query(
        "INSERT INTO restore_targets (job_id, kind, target_server_id, target_database, target_secret_id,
                                      target_secret_ref, target_url, target_file, schemas, tables,
                                      copy_datastore)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(job_id)
    .bind(spec.target.kind().as_str())
    .bind(server)
    .bind(database)
    .bind(secret.0)
    .bind(secret.1)
    .bind(url)
    .bind(file)
    .bind(&spec.schemas)
    .bind(&spec.tables)
    .bind(spec.copy_datastore.as_deref())
    .execute(db)
    .await?;
    Ok(())
}

/// Writes a drill's target: the drill server, the scratch database
/// ([`drill_database`] of the job) and the secret (called by
/// `store::jobs::insert`).
pub(crate) async fn insert_drill(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    drill: &DrillSpec,
) -> Result<()> {
    let secret = secret_columns(&drill.secret);
    sqlx::query(
        "INSERT INTO restore_targets (job_id, kind, target_server_id, target_database, target_secret_id,
                                      target_secret_ref)
         VALUES ($1, 'DATABASE', $2, $3, $4, $5)",
    )
    .bind(job_id)
    .bind(&drill.server_id)
    .bind(drill_database(job_id))
    .bind(secret.0)
    .bind(secret.1)
    .execute(db)
    .await?;
    Ok(())
}

/// Records what a completed restore produced: the file (restores as files)
/// and the objects it left out.
pub async fn record_result(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    output: Option<&FileOutput>,
    warnings: &[String],
) -> Result<()> {
    sqlx::query(
        "UPDATE restore_targets SET output_size = $2, output_sha256 = $3, warnings = $4 WHERE job_id = $1",
    )
    .bind(job_id)
    .bind(output.map(|o| to_i64(o.size)))
    .bind(output.map(|o| o.sha256.as_str()))
    .bind(warnings)
    .execute(db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_stored_as_its_id_and_a_reference_only_when_not_the_latest() {
        let latest = SecretRef::Stored {
            id: "db".into(),
            version: None,
        };
        assert_eq!(secret_columns(&latest), (Some("db".into()), None));
        let pinned = SecretRef::Stored {
            id: "db".into(),
            version: Some(3),
        };
        assert_eq!(
            secret_columns(&pinned),
            (Some("db".into()), Some("secret://db/3".into()))
        );
        let env = SecretRef::Env("PGVAULT_SECRET_DB".into());
        assert_eq!(
            secret_columns(&env),
            (None, Some("env://PGVAULT_SECRET_DB".into()))
        );
    }
}
