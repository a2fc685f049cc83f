//! Servers: registered PostgreSQL endpoints.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::error::{CoordinatorError, Result, is_any_unique_violation};
use crate::model::Server;

#[derive(sqlx::FromRow)]
struct ServerRow {
    id: String,
    host: String,
    port: i32,
    region: String,
    agent: String,
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
            create_time: r.create_time,
        })
    }
}

const COLUMNS: &str = "id, host, port, region, agent, create_time";

pub async fn insert(db: impl PgExecutor<'_>, server: &Server) -> Result<Server> {
    let sql = format!(
        "INSERT INTO servers (id, host, port, region, agent) VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    );
    let row = sqlx::query_as::<_, ServerRow>(&sql)
        .bind(&server.id)
        .bind(&server.host)
        .bind(i32::from(server.port))
        .bind(&server.region)
        .bind(&server.agent)
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
    let sql = format!("SELECT {COLUMNS} FROM servers WHERE id = $1");
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
