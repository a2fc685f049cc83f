//! Policies: a vault's weekly schedule and retention rules (rules as JSON),
//! keep-min, the copy datastore and its retention (empty: no copies), and
//! the restore drill's server, secret, frequency and weekly schedule
//! (empty: no drills).

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use sqlx::types::Json;

use crate::error::{CoordinatorError, Result, is_any_unique_violation};
use crate::model::{CopyRule, DrillRule, Policy, Schedule};
use crate::retention::RetentionRule;
use crate::secret_ref::SecretRef;

#[derive(sqlx::FromRow)]
struct PolicyRow {
    vault_id: String,
    id: String,
    weekdays: Vec<i16>,
    time_of_day: String,
    time_zone: String,
    retention_rules: Json<Vec<RetentionRule>>,
    keep_min: i32,
    copy_datastore: String,
    copy_retention: String,
    verify_weekdays: Option<Vec<i16>>,
    verify_time_of_day: Option<String>,
    verify_time_zone: Option<String>,
    drill_server: String,
    drill_secret: String,
    drill_every: i32,
    drill_weekdays: Option<Vec<i16>>,
    drill_time_of_day: Option<String>,
    drill_time_zone: Option<String>,
    create_time: DateTime<Utc>,
}

fn weekdays_of(days: Vec<i16>) -> Vec<u8> {
    days.into_iter()
        .filter_map(|d| u8::try_from(d).ok())
        .collect()
}

/// A weekly schedule from its three nullable columns (all set or none).
fn schedule_of(
    days: Option<Vec<i16>>,
    time_of_day: Option<String>,
    time_zone: Option<String>,
) -> Option<Schedule> {
    match (days, time_of_day, time_zone) {
        (Some(days), Some(time_of_day), Some(time_zone)) => Some(Schedule {
            weekdays: weekdays_of(days),
            time_of_day,
            time_zone,
        }),
        _ => None,
    }
}

/// A schedule's weekdays as stored.
fn stored_weekdays(schedule: Option<&Schedule>) -> Option<Vec<i16>> {
    schedule.map(|s| s.weekdays.iter().map(|d| i16::from(*d)).collect())
}

impl From<PolicyRow> for Policy {
    fn from(r: PolicyRow) -> Self {
        Policy {
            vault_id: r.vault_id,
            id: r.id,
            schedule: Schedule {
                weekdays: weekdays_of(r.weekdays),
                time_of_day: r.time_of_day,
                time_zone: r.time_zone,
            },
            retention_rules: r.retention_rules.0,
            keep_min: u32::try_from(r.keep_min).unwrap_or(1),
            copy: (!r.copy_datastore.is_empty()).then_some(CopyRule {
                datastore_url: r.copy_datastore,
                retention: r.copy_retention,
            }),
            verify_schedule: schedule_of(
                r.verify_weekdays,
                r.verify_time_of_day,
                r.verify_time_zone,
            ),
            // The secret was parsed when the policy was written.
            drill: (!r.drill_server.is_empty())
                .then(|| SecretRef::parse("drill_secret", &r.drill_secret).ok())
                .flatten()
                .map(|secret| DrillRule {
                    server_id: r.drill_server,
                    secret,
                    every: u32::try_from(r.drill_every).unwrap_or(0),
                    schedule: schedule_of(r.drill_weekdays, r.drill_time_of_day, r.drill_time_zone),
                }),
            create_time: r.create_time,
        }
    }
}

const COLUMNS: &str = "vault_id, id, weekdays, time_of_day, time_zone, retention_rules, keep_min, \
     copy_datastore, copy_retention, verify_weekdays, verify_time_of_day, verify_time_zone, \
     drill_server, drill_secret, drill_every, drill_weekdays, drill_time_of_day, drill_time_zone, \
     create_time";

pub async fn insert(db: impl PgExecutor<'_>, policy: &Policy) -> Result<Policy> {
    let sql = format!(
        "INSERT INTO policies (vault_id, id, weekdays, time_of_day, time_zone, retention_rules, keep_min,
                               copy_datastore, copy_retention,
                               verify_weekdays, verify_time_of_day, verify_time_zone,
                               drill_server, drill_secret, drill_every,
                               drill_weekdays, drill_time_of_day, drill_time_zone)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
         RETURNING {COLUMNS}"
    );
    let weekdays: Vec<i16> = policy
        .schedule
        .weekdays
        .iter()
        .map(|d| i16::from(*d))
        .collect();
    let drill_schedule = policy.drill.as_ref().and_then(|d| d.schedule.as_ref());
    sqlx::query_as::<_, PolicyRow>(&sql)
        .bind(&policy.vault_id)
        .bind(&policy.id)
        .bind(&weekdays)
        .bind(&policy.schedule.time_of_day)
        .bind(&policy.schedule.time_zone)
        .bind(Json(&policy.retention_rules))
        .bind(crate::store::to_i32(policy.keep_min))
        .bind(
            policy
                .copy
                .as_ref()
                .map_or("", |c| c.datastore_url.as_str()),
        )
        .bind(policy.copy.as_ref().map_or("", |c| c.retention.as_str()))
        .bind(stored_weekdays(policy.verify_schedule.as_ref()))
        .bind(policy.verify_schedule.as_ref().map(|s| &s.time_of_day))
        .bind(policy.verify_schedule.as_ref().map(|s| &s.time_zone))
        .bind(policy.drill.as_ref().map_or("", |d| d.server_id.as_str()))
        .bind(
            policy
                .drill
                .as_ref()
                .map_or(String::new(), |d| d.secret.to_string()),
        )
        .bind(
            policy
                .drill
                .as_ref()
                .map_or(0, |d| crate::store::to_i32(d.every)),
        )
        .bind(stored_weekdays(drill_schedule))
        .bind(drill_schedule.map(|s| &s.time_of_day))
        .bind(drill_schedule.map(|s| &s.time_zone))
        .fetch_one(db)
        .await
        .map(Policy::from)
        .map_err(|e| {
            if is_any_unique_violation(&e) {
                CoordinatorError::AlreadyExists(format!(
                    "policy \"{}\" already exists in vault \"{}\"",
                    policy.id, policy.vault_id
                ))
            } else {
                e.into()
            }
        })
}

pub async fn get(db: impl PgExecutor<'_>, vault_id: &str, id: &str) -> Result<Policy> {
    let sql = format!("SELECT {COLUMNS} FROM policies WHERE vault_id = $1 AND id = $2");
    sqlx::query_as::<_, PolicyRow>(&sql)
        .bind(vault_id)
        .bind(id)
        .fetch_optional(db)
        .await?
        .map(Policy::from)
        .ok_or_else(|| {
            CoordinatorError::not_found("policy", crate::names::policy_name(vault_id, id))
        })
}

pub async fn list(
    db: impl PgExecutor<'_>,
    vault_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Policy>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM policies WHERE vault_id = $1 AND ($2::text IS NULL OR id > $2) ORDER BY id LIMIT $3"
    );
    let rows = sqlx::query_as::<_, PolicyRow>(&sql)
        .bind(vault_id)
        .bind(after)
        .bind(limit)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(Policy::from).collect())
}

/// Every policy with a verify schedule, in every vault.
pub async fn with_verify_schedule(db: impl PgExecutor<'_>) -> Result<Vec<Policy>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM policies WHERE verify_weekdays IS NOT NULL ORDER BY vault_id, id"
    );
    let rows = sqlx::query_as::<_, PolicyRow>(&sql).fetch_all(db).await?;
    Ok(rows.into_iter().map(Policy::from).collect())
}

/// Every policy with a drill schedule, in every vault.
pub async fn with_drill_schedule(db: impl PgExecutor<'_>) -> Result<Vec<Policy>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM policies WHERE drill_weekdays IS NOT NULL ORDER BY vault_id, id"
    );
    let rows = sqlx::query_as::<_, PolicyRow>(&sql).fetch_all(db).await?;
    Ok(rows.into_iter().map(Policy::from).collect())
}
