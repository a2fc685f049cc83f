//! Servers: registered PostgreSQL endpoints and their connection budgets.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::error::{CoordinatorError, Result, is_any_unique_violation};
use crate::model::Server;
use crate::store::{to_i32, to_u32};

#[derive(sqlx::FromRow)]
struct ServerRow {
    id: String,
    host: String,
    port: i32,
    region: String,
    agent: String,
    max_connections: i32,
    create_time: DateTime<Utc>,
}

impl TryFrom<ServerRow> for Server {
    type Error = CoordinatorError;
    fn try_from(r: ServerRow) -> Result<Self> {
        Ok(Server {
            port: u16::try_from(r.port)
                .map_err(|_| CoordinatorError::internal("stored server port out of range"))?,
            id: r.id,
            host: r.host,
            region: r.region,
            agent: r.agent,
            max_connections: to_u32(r.max_connections, "servers.max_connections")?,
            create_time: r.create_time,
        })
    }
}

const COLUMNS: &str = "id, host, port, region, agent, max_connections, create_time";

pub async fn insert(db: impl PgExecutor<'_>, server: &Server) -> Result<Server> {
    let sql = format!(
        "INSERT INTO servers (id, host, port, region, agent, max_connections)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    );
    let row = sqlx::query_as::<_, ServerRow>(&sql)
        .bind(&server.id)
        .bind(&server.host)
        .bind(i32::from(server.port))
        .bind(&server.region)
        .bind(&server.agent)
        .bind(to_i32(server.max_connections))
        .fetch_one(db)
        .await
        .map_err(|e| {
            if is_any_unique_violation(&e) {
                CoordinatorError::AlreadyExists(format!("server \"{}\" already exists", server.id))
            } else {
                e.into()
            }
        })?;
    row.try_into()
}

pub async fn find(db: impl PgExecutor<'_>, id: &str) -> Result<Option<Server>> {
    select_one(db, id, "").await
}

/// The server, its row locked against other writers until the transaction
/// ends (a rebind or a budget change in progress; rows referencing it may
/// still be written, as under `connection_slots`); `None` when there is no
/// such server.
pub async fn hold(db: impl PgExecutor<'_>, id: &str) -> Result<Option<Server>> {
    select_one(db, id, " FOR NO KEY UPDATE").await
}

async fn select_one(db: impl PgExecutor<'_>, id: &str, lock: &str) -> Result<Option<Server>> {
    let sql = format!("SELECT {COLUMNS} FROM servers WHERE id = $1{lock}");
    sqlx::query_as::<_, ServerRow>(&sql)
        .bind(id)
        .fetch_optional(db)
        .await?
        .map(Server::try_from)
        .transpose()
}

pub async fn get(db: impl PgExecutor<'_>, id: &str) -> Result<Server> {
    find(db, id)
        .await?
        .ok_or_else(|| CoordinatorError::not_found("server", id))
}

pub async fn list(db: impl PgExecutor<'_>, after: Option<&str>, limit: i64) -> Result<Vec<Server>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM servers WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2"
    );
    let rows = sqlx::query_as::<_, ServerRow>(&sql)
        .bind(after)
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.into_iter().map(Server::try_from).collect()
}

/// Binds the server to `agent` ("": to no agent, the workers reach it).
pub async fn set_agent(db: impl PgExecutor<'_>, id: &str, agent: &str) -> Result<Server> {
    let sql = format!("UPDATE servers SET agent = $2 WHERE id = $1 RETURNING {COLUMNS}");
    sqlx::query_as::<_, ServerRow>(&sql)
        .bind(id)
        .bind(agent)
        .fetch_one(db)
        .await?
        .try_into()
}

/// Sets the server's connection budget; `None` when there is no such server.
pub async fn set_max_connections(
    db: impl PgExecutor<'_>,
    id: &str,
    max_connections: u32,
) -> Result<Option<Server>> {
    let sql = format!("UPDATE servers SET max_connections = $2 WHERE id = $1 RETURNING {COLUMNS}");
    sqlx::query_as::<_, ServerRow>(&sql)
        .bind(id)
        .bind(to_i32(max_connections))
        .fetch_optional(db)
        .await?
        .map(Server::try_from)
        .transpose()
}
