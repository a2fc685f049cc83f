//! Agent instances: one row per process of an agent, written by the
//! coordinator holding its stream — at hello (refusals included), on every
//! status and when the stream ends — and read by `agent list`, job reasons,
//! probes and the sweeper. Liveness is decided here, on the database's
//! clock: supported, stream not ended, and `live_until` (last status plus
//! three intervals of the coordinator holding the stream) not passed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::Result;
use crate::model::{AgentInstance, Hello, Presence};
use crate::store::{to_i32, to_u32};

/// SQL: whether the row `i` is a live instance now.
const LIVE: &str = "(i.supported AND i.disconnect_time IS NULL AND i.live_until > now())";

#[derive(sqlx::FromRow)]
struct InstanceRow {
    instance_id: Uuid,
    agent_id: String,
    coordinator: String,
    hostname: String,
    version: String,
    protocol_version: i32,
    supported: bool,
    refused_reason: String,
    pg_tool_majors: Vec<i32>,
    concurrency: i32,
    running_job_ids: Vec<Uuid>,
    connect_time: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    disconnect_time: Option<DateTime<Utc>>,
    live: bool,
}

impl TryFrom<InstanceRow> for AgentInstance {
    type Error = crate::error::CoordinatorError;
    fn try_from(r: InstanceRow) -> Result<Self> {
        Ok(AgentInstance {
            instance_id: r.instance_id,
            agent_id: r.agent_id,
            coordinator: r.coordinator,
            hostname: r.hostname,
            version: r.version,
            protocol_version: to_u32(r.protocol_version, "agent_instances.protocol_version")?,
            supported: r.supported,
            refused_reason: r.refused_reason,
            pg_tool_majors: r
                .pg_tool_majors
                .into_iter()
                .map(|m| to_u32(m, "agent_instances.pg_tool_majors"))
                .collect::<Result<_>>()?,
            concurrency: to_u32(r.concurrency, "agent_instances.concurrency")?,
            running_job_ids: r.running_job_ids,
            connect_time: r.connect_time,
            last_seen: r.last_seen,
            disconnect_time: r.disconnect_time,
            live: r.live,
        })
    }
}

/// Records an instance's hello on stream `stream`: connected now (or
/// refused, with why), heard from now, live for `live_for` unless it
/// reports again. False when the instance id is already an instance of
/// another agent (nothing written).
pub async fn record_hello(
    db: impl PgExecutor<'_>,
    hello: &Hello,
    stream: Uuid,
    coordinator: &str,
    refused_reason: Option<&str>,
    live_for: Duration,
) -> Result<bool> {
    let majors: Vec<i32> = hello.pg_tool_majors.iter().map(|m| to_i32(*m)).collect();
    let done = sqlx::query(
        "INSERT INTO agent_instances AS i (instance_id, agent_id, stream_id, coordinator, hostname, version,
                                           protocol_version, supported, refused_reason, pg_tool_majors, concurrency,
                                           running_job_ids, connect_time, last_seen, live_until, disconnect_time)
         VALUES ($1, $2, $12, $3, $4, $5, $6, $7, $8, $9, $10, '{}', now(), now(),
                 now() + make_interval(secs => $11), CASE WHEN $7 THEN NULL ELSE now() END)
         ON CONFLICT (instance_id) DO UPDATE SET stream_id = EXCLUDED.stream_id,
             coordinator = EXCLUDED.coordinator, hostname = EXCLUDED.hostname,
             version = EXCLUDED.version, protocol_version = EXCLUDED.protocol_version,
             supported = EXCLUDED.supported, refused_reason = EXCLUDED.refused_reason,
             pg_tool_majors = EXCLUDED.pg_tool_majors, concurrency = EXCLUDED.concurrency,
             running_job_ids = '{}', connect_time = now(), last_seen = now(),
             live_until = EXCLUDED.live_until, disconnect_time = EXCLUDED.disconnect_time
         WHERE i.agent_id = EXCLUDED.agent_id",
    )
    .bind(hello.instance_id)
    .bind(&hello.agent_id)
    .bind(coordinator)
    .bind(&hello.hostname)
    .bind(&hello.version)
    .bind(to_i32(hello.protocol_version))
    .bind(refused_reason.is_none())
    .bind(refused_reason.unwrap_or_default())
    .bind(&majors)
    .bind(to_i32(hello.concurrency))
    .bind(live_for.as_secs_f64())
    .bind(stream)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a status on the instance's current stream `stream`: heard from
/// now, running `running`, live for `live_for`.
pub async fn record_status(
    db: impl PgExecutor<'_>,
    instance_id: Uuid,
    stream: Uuid,
    running: &[Uuid],
    live_for: Duration,
) -> Result<()> {
    sqlx::query(
        "UPDATE agent_instances SET last_seen = now(), running_job_ids = $2,
             live_until = now() + make_interval(secs => $3)
         WHERE instance_id = $1 AND stream_id = $4 AND disconnect_time IS NULL",
    )
    .bind(instance_id)
    .bind(running)
    .bind(live_for.as_secs_f64())
    .bind(stream)
    .execute(db)
    .await?;
    Ok(())
}

/// Records that the instance's stream `stream` ended (unless a newer one
/// replaced it).
pub async fn record_disconnect(
    db: impl PgExecutor<'_>,
    instance_id: Uuid,
    stream: Uuid,
) -> Result<()> {
    sqlx::query(
        "UPDATE agent_instances SET disconnect_time = now()
         WHERE instance_id = $1 AND stream_id = $2 AND disconnect_time IS NULL",
    )
    .bind(instance_id)
    .bind(stream)
    .execute(db)
    .await?;
    Ok(())
}

/// Instances of `agents` seen in the last 24 hours (or still live), newest
/// first.
pub async fn recent(db: impl PgExecutor<'_>, agents: &[String]) -> Result<Vec<AgentInstance>> {
    let sql = format!(
        "SELECT i.instance_id, i.agent_id, i.coordinator, i.hostname, i.version, i.protocol_version, i.supported,
                i.refused_reason, i.pg_tool_majors, i.concurrency, i.running_job_ids, i.connect_time, i.last_seen,
                i.disconnect_time, {LIVE} AS live
         FROM agent_instances i
         WHERE i.agent_id = ANY($1) AND (i.last_seen > now() - interval '24 hours' OR {LIVE})
         ORDER BY i.last_seen DESC, i.instance_id"
    );
    let rows = sqlx::query_as::<_, InstanceRow>(&sql)
        .bind(agents)
        .fetch_all(db)
        .await?;
    rows.into_iter().map(AgentInstance::try_from).collect()
}

/// Whether `agent` has a live instance, and when any was last heard from.
pub async fn presence(db: impl PgExecutor<'_>, agent: &str) -> Result<Presence> {
    let sql = format!(
        "SELECT coalesce(bool_or({LIVE}), false), max(i.last_seen) FROM agent_instances i
         WHERE i.agent_id = $1 AND i.supported"
    );
    let (live, last_seen): (bool, Option<DateTime<Utc>>) =
        sqlx::query_as(&sql).bind(agent).fetch_one(db).await?;
    Ok(Presence {
        agent_id: agent.to_string(),
        live,
        last_seen,
    })
}

/// Deletes instance rows neither live nor heard from for 24 hours.
/// Returns how many.
pub async fn sweep(db: impl PgExecutor<'_>) -> Result<u64> {
    let sql = format!(
        "DELETE FROM agent_instances i WHERE NOT {LIVE} AND i.last_seen < now() - interval '24 hours'"
    );
    Ok(sqlx::query(&sql).execute(db).await?.rows_affected())
}
