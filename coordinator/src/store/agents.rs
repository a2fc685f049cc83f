//! Agents: a name, a region and the API token their processes share. An
//! agent is deleted with its token, and only while no server is bound to
//! it (servers name their agent in `servers.agent`); registering a server
//! with an agent holds the agent's row so the two cannot cross.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::error::{CoordinatorError, Result, is_unique_violation};
use crate::model::Agent;

#[derive(sqlx::FromRow)]
struct AgentRow {
    id: String,
    region: String,
    token_id: Uuid,
    create_time: DateTime<Utc>,
}

impl From<AgentRow> for Agent {
    fn from(r: AgentRow) -> Self {
        Agent {
            id: r.id,
            region: r.region,
            token_id: r.token_id,
            create_time: r.create_time,
        }
    }
}

const COLUMNS: &str = "id, region, token_id, create_time";

/// Stores a new agent (its token row exists already, in the same
/// transaction).
pub async fn insert(
    db: impl PgExecutor<'_>,
    id: &str,
    region: &str,
    token_id: Uuid,
) -> Result<Agent> {
    let sql = format!(
        "INSERT INTO agents (id, region, token_id) VALUES ($1, $2, $3) RETURNING {COLUMNS}"
    );
    sqlx::query_as::<_, AgentRow>(&sql)
        .bind(id)
        .bind(region)
        .bind(token_id)
        .fetch_one(db)
        .await
        .map(Agent::from)
        .map_err(|e| {
            if is_unique_violation(&e, "agents_pkey") {
                CoordinatorError::AlreadyExists(format!("agent \"{id}\" already exists"))
            } else {
                e.into()
            }
        })
}

pub async fn find(db: impl PgExecutor<'_>, id: &str) -> Result<Option<Agent>> {
    let sql = format!("SELECT {COLUMNS} FROM agents WHERE id = $1");
    Ok(sqlx::query_as::<_, AgentRow>(&sql)
        .bind(id)
        .fetch_optional(db)
        .await?
        .map(Agent::from))
}

pub async fn get(db: impl PgExecutor<'_>, id: &str) -> Result<Agent> {
    find(db, id)
        .await?
        .ok_or_else(|| CoordinatorError::not_found("agent", id))
}

/// The agent whose token this is, if any.
pub async fn find_by_token(db: impl PgExecutor<'_>, token_id: Uuid) -> Result<Option<Agent>> {
    let sql = format!("SELECT {COLUMNS} FROM agents WHERE token_id = $1");
    Ok(sqlx::query_as::<_, AgentRow>(&sql)
        .bind(token_id)
        .fetch_optional(db)
        .await?
        .map(Agent::from))
}

/// Holds the agent's row for the rest of the transaction against deletion
/// (a server being bound to it). `None`: no such agent.
pub async fn hold(conn: &mut PgConnection, id: &str) -> Result<Option<Agent>> {
    let sql = format!("SELECT {COLUMNS} FROM agents WHERE id = $1 FOR SHARE");
    Ok(sqlx::query_as::<_, AgentRow>(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .map(Agent::from))
}

/// Agents by id, continuing after `after`.
pub async fn list(db: impl PgExecutor<'_>, after: Option<&str>, limit: i64) -> Result<Vec<Agent>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM agents WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2"
    );
    let rows = sqlx::query_as::<_, AgentRow>(&sql)
        .bind(after)
        .bind(limit)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(Agent::from).collect())
}

/// The servers bound to each of `agents`, by server id.
pub async fn servers_of(
    db: impl PgExecutor<'_>,
    agents: &[String],
) -> Result<Vec<(String, String)>> {
    Ok(
        sqlx::query_as("SELECT agent, id FROM servers WHERE agent = ANY($1) ORDER BY agent, id")
            .bind(agents)
            .fetch_all(db)
            .await?,
    )
}

/// Why an agent cannot be deleted now.
#[derive(Debug, Clone, PartialEq)]
pub enum Deleted {
    Done,
    NotFound,
    /// These servers are bound to it (the first few, by id).
    InUse(Vec<String>),
}

/// Deletes the agent and its token (its instance rows and probes go with
/// it), unless servers are bound to it.
pub async fn delete(conn: &mut PgConnection, id: &str) -> Result<Deleted> {
    let locked: Option<(Uuid,)> =
        sqlx::query_as("SELECT token_id FROM agents WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((token_id,)) = locked else {
        return Ok(Deleted::NotFound);
    };
    let bound: Vec<(String,)> =
        sqlx::query_as("SELECT id FROM servers WHERE agent = $1 ORDER BY id LIMIT 5")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
    if !bound.is_empty() {
        return Ok(Deleted::InUse(bound.into_iter().map(|(s,)| s).collect()));
    }
    sqlx::query("DELETE FROM agents WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM api_tokens WHERE id = $1")
        .bind(token_id)
        .execute(&mut *conn)
        .await?;
    Ok(Deleted::Done)
}
