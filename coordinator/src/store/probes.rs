//! Probes: the mailbox between an API handler that must ask a server only
//! an agent reaches and the agent's instances, which may be connected to
//! any coordinator. The handler writes a row and polls it; a dispatcher
//! holding a stream of the agent offers it (again when `not_before` passes
//! unclaimed); one instance claims it and answers; the handler reads the
//! answer and deletes the row. Answers are stored as small JSON documents
//! of this module's own shape (never a secret: the row holds the secret's
//! reference, resolved anew for the claimer).

use std::time::Duration;

use pgvault_probe::{Missing, Relation};
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::{CoordinatorError, Result};
use crate::model::{JobError, ProbeAnswer, ProbeKind, ProbeRequest};
use crate::secret_ref::SecretRef;
use crate::store::parse_enum;

/// Writes a probe, due for an offer at once. Returns its id.
pub async fn insert(db: impl PgExecutor<'_>, probe: &ProbeRequest) -> Result<Uuid> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO probes (id, agent_id, kind, server_id, database, secret_ref, vault_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(&probe.agent_id)
    .bind(probe.kind.as_str())
    .bind(&probe.server_id)
    .bind(&probe.database)
    .bind(probe.secret.to_string())
    .bind(&probe.vault_id)
    .execute(db)
    .await?;
    Ok(id)
}

/// Unclaimed probes of `agents` due for an offer, locked for this
/// transaction: (probe id, agent id).
pub async fn lock_due(
    db: impl PgExecutor<'_>,
    agents: &[String],
    limit: i64,
) -> Result<Vec<(Uuid, String)>> {
    Ok(sqlx::query_as(
        "SELECT id, agent_id FROM probes
         WHERE agent_id = ANY($1) AND claimed_by IS NULL AND not_before <= now()
         ORDER BY create_time LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(agents)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Offers made: offer the probes `ids` again only after `delay`.
pub async fn postpone(db: impl PgExecutor<'_>, ids: &[Uuid], delay: Duration) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE probes SET not_before = now() + make_interval(secs => $2) WHERE id = ANY($1)",
    )
    .bind(ids)
    .bind(delay.as_secs_f64())
    .execute(db)
    .await?;
    Ok(())
}

/// Takes an unclaimed, unanswered probe of `agent` for `instance`; `None`
/// when there is no such probe (another instance took it, it was answered
/// or it is gone).
pub async fn claim(
    db: impl PgExecutor<'_>,
    id: Uuid,
    agent: &str,
    instance: Uuid,
) -> Result<Option<ProbeRequest>> {
    let row: Option<(String, String, String, String, String, Option<String>)> = sqlx::query_as(
        "UPDATE probes SET claimed_by = $3, claim_time = now()
         WHERE id = $1 AND agent_id = $2 AND claimed_by IS NULL AND answer IS NULL
         RETURNING agent_id, kind, server_id, database, secret_ref, vault_id",
    )
    .bind(id)
    .bind(agent)
    .bind(instance)
    .fetch_optional(db)
    .await?;
    row.map(|(agent_id, kind, server_id, database, secret, vault_id)| {
        Ok(ProbeRequest {
            agent_id,
            kind: parse_enum(&kind, "probes.kind", ProbeKind::parse)?,
            server_id,
            database,
            secret: SecretRef::parse("probes.secret_ref", &secret).map_err(|_| {
                CoordinatorError::internal(format!(
                    "probe {id} has a secret reference in no known form"
                ))
            })?,
            vault_id,
        })
    })
    .transpose()
}

/// Records the answer of a probe of `agent` (of kind `kind`, when given)
/// that was claimed and not yet answered. False when there is no such
/// probe.
pub async fn answer(
    db: impl PgExecutor<'_>,
    id: Uuid,
    agent: &str,
    answer: &ProbeAnswer,
    kind: Option<ProbeKind>,
) -> Result<bool> {
    let json = serde_json::to_value(Stored::from(answer))
        .map_err(|e| CoordinatorError::internal(format!("cannot encode a probe answer: {e}")))?;
    let done = sqlx::query(
        "UPDATE probes SET answer = $3, answer_time = now()
         WHERE id = $1 AND agent_id = $2 AND claimed_by IS NOT NULL AND answer IS NULL
           AND ($4::text IS NULL OR kind = $4)",
    )
    .bind(id)
    .bind(agent)
    .bind(json)
    .bind(kind.map(ProbeKind::as_str))
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The probe's answer, once given.
pub async fn read_answer(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<ProbeAnswer>> {
    let row: Option<(Option<serde_json::Value>,)> =
        sqlx::query_as("SELECT answer FROM probes WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?;
    let Some((Some(json),)) = row else {
        return Ok(None);
    };
    let stored: Stored = serde_json::from_value(json).map_err(|e| {
        CoordinatorError::internal(format!("probe {id} has an unreadable answer: {e}"))
    })?;
    Ok(Some(stored.into()))
}

/// Whether the probe was claimed (by an instance that may still answer).
pub async fn is_claimed(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool> {
    let row: Option<(bool,)> =
        sqlx::query_as("SELECT claimed_by IS NOT NULL FROM probes WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?;
    Ok(row.is_some_and(|(claimed,)| claimed))
}

pub async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> Result<()> {
    sqlx::query("DELETE FROM probes WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Deletes probes left behind by handlers that stopped (older than
/// `older_than`). Returns how many.
pub async fn sweep(db: impl PgExecutor<'_>, older_than: Duration) -> Result<u64> {
    let done =
        sqlx::query("DELETE FROM probes WHERE create_time < now() - make_interval(secs => $1)")
            .bind(older_than.as_secs_f64())
            .execute(db)
            .await?;
    Ok(done.rows_affected())
}

/// The stored shape of an answer.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Stored {
    Databases(Vec<String>),
    Readiness {
        missing: StoredMissing,
        server_version_num: u32,
    },
    Error {
        code: String,
        message: String,
        action: String,
    },
}

#[derive(Serialize, Deserialize)]
struct StoredMissing {
    user: String,
    database: String,
    connect: bool,
    schemas: Vec<String>,
    /// (schema, name, owner, is_sequence)
    relations: Vec<(String, String, String, bool)>,
    large_objects: Vec<u32>,
    bypass_rls: bool,
}

impl From<&ProbeAnswer> for Stored {
    fn from(answer: &ProbeAnswer) -> Self {
        match answer {
            ProbeAnswer::Databases(names) => Stored::Databases(names.clone()),
            ProbeAnswer::Readiness {
                missing: m,
                server_version_num,
            } => Stored::Readiness {
                missing: StoredMissing {
                    user: m.user.clone(),
                    database: m.database.clone(),
                    connect: m.connect,
                    schemas: m.schemas.clone(),
                    relations: m
                        .relations
                        .iter()
                        .map(|r| {
                            (
                                r.schema.clone(),
                                r.name.clone(),
                                r.owner.clone(),
                                r.is_sequence,
                            )
                        })
                        .collect(),
                    large_objects: m.large_objects.clone(),
                    bypass_rls: m.bypass_rls,
                },
                server_version_num: *server_version_num,
            },
            ProbeAnswer::Error(e) => Stored::Error {
                code: e.code.clone(),
                message: e.message.clone(),
                action: e.recommended_action.clone(),
            },
        }
    }
}

impl From<Stored> for ProbeAnswer {
    fn from(stored: Stored) -> Self {
        match stored {
            Stored::Databases(names) => ProbeAnswer::Databases(names),
            Stored::Readiness {
                missing: m,
                server_version_num,
            } => ProbeAnswer::Readiness {
                missing: Missing {
                    user: m.user,
                    database: m.database,
                    connect: m.connect,
                    schemas: m.schemas,
                    relations: m
                        .relations
                        .into_iter()
                        .map(|(schema, name, owner, is_sequence)| Relation {
                            schema,
                            name,
                            owner,
                            is_sequence,
                        })
                        .collect(),
                    large_objects: m.large_objects,
                    bypass_rls: m.bypass_rls,
                },
                server_version_num,
            },
            Stored::Error {
                code,
                message,
                action,
            } => ProbeAnswer::Error(JobError {
                code,
                message,
                recommended_action: action,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_survives_its_stored_form() {
        let answers = [
            ProbeAnswer::Databases(vec!["app".into(), "Shop DB".into()]),
            ProbeAnswer::Readiness {
                missing: Missing {
                    user: "backup".into(),
                    database: "app".into(),
                    connect: true,
                    schemas: vec!["sales".into()],
                    relations: vec![Relation {
                        schema: "sales".into(),
                        name: "orders \"2024\"".into(),
                        owner: "app".into(),
                        is_sequence: true,
                    }],
                    large_objects: vec![16_400],
                    bypass_rls: true,
                },
                server_version_num: 150_008,
            },
            ProbeAnswer::Error(JobError::new(
                pgvault_errors::ErrorCode::UserErrorDBUserAuthFailed,
                "password authentication failed",
            )),
        ];
        for answer in answers {
            let json = serde_json::to_value(Stored::from(&answer)).unwrap();
            let back: Stored = serde_json::from_value(json).unwrap();
            assert_eq!(ProbeAnswer::from(back), answer);
        }
    }
}
