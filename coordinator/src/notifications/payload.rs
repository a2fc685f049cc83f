//! The body a channel receives, rendered from a delivery's facts (fixed
//! when the event happened, so every retry sends the same body): the
//! generic JSON event, or a Slack-compatible `{"text": …}` summary.
//! Bodies carry names, ids, states and the job's error (code, message,
//! recommended action): never a connection string, secret or URL.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::channel::{Event, Format};

/// What happened, as the trigger that wrote the delivery recorded it
/// (`migrations/0018_notifications.sql`). Missing fields are absent facts
/// (a missed slot has no job; a lifecycle job has no database).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Facts {
    pub job_id: Option<Uuid>,
    /// SCHEDULED_BACKUP, ON_DEMAND_BACKUP, RESTORE, TIER_MOVE, REHYDRATE, DELETE.
    pub operation: Option<String>,
    /// The job's final state, or SKIPPED for a missed slot.
    pub state: Option<String>,
    pub attempt: Option<i64>,
    pub instance_id: Option<Uuid>,
    pub server: Option<String>,
    pub database: Option<String>,
    pub error_code: Option<String>,
    pub message: Option<String>,
    pub recommended_action: Option<String>,
    pub slot_time: Option<DateTime<Utc>>,
    pub create_time: Option<DateTime<Utc>>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
}

/// One notification to render.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub delivery_id: Uuid,
    pub event: Event,
    pub vault_id: String,
    pub facts: Facts,
    /// When the event was recorded.
    pub occurred_at: DateTime<Utc>,
}

/// The body for `format`, as sent (and signed).
pub fn render(format: Format, notice: &Notice) -> Vec<u8> {
    let value = match format {
        Format::Generic => generic(notice),
        Format::Slack => json!({ "text": summary(notice) }),
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// The generic event: one flat object, absent facts as `null`.
pub fn generic(notice: &Notice) -> serde_json::Value {
    let f = &notice.facts;
    json!({
        "event": notice.event.as_str(),
        "delivery_id": notice.delivery_id,
        "vault": notice.vault_id,
        "instance_id": f.instance_id,
        "server": f.server,
        "database": f.database,
        "job_id": f.job_id,
        "operation": f.operation,
        "state": f.state,
        "attempt": f.attempt,
        "error_code": f.error_code,
        "message": f.message,
        "recommended_action": f.recommended_action,
        "slot_time": f.slot_time,
        "create_time": f.create_time,
        "start_time": f.start_time,
        "end_time": f.end_time,
        "occurred_at": notice.occurred_at,
        "summary": summary(notice),
    })
}

/// One readable paragraph: what, where, why and what to do.
pub fn summary(notice: &Notice) -> String {
    let f = &notice.facts;
    let target = match (&f.server, &f.database) {
        (Some(server), Some(database)) => format!("{database} on {server}"),
        _ => f
            .instance_id
            .map(|id| format!("instance {id}"))
            .unwrap_or_else(|| "the vault".into()),
    };
    let operation = f
        .operation
        .as_deref()
        .map(|op| op.to_lowercase().replace('_', " "))
        .unwrap_or_else(|| "job".into());
    let job = f
        .job_id
        .map(|id| format!(" (job {id})"))
        .unwrap_or_default();
    let mut text = match notice.event {
        Event::Failed => format!(
            "pgvault: {operation} of {target} in vault {} failed{job}",
            notice.vault_id
        ),
        Event::Succeeded => format!(
            "pgvault: {operation} of {target} in vault {} succeeded{job}",
            notice.vault_id
        ),
        Event::Missed => format!(
            "pgvault: the scheduled backup of {target} in vault {} was missed{}",
            notice.vault_id,
            f.slot_time
                .map(|t| format!(" (slot {})", t.to_rfc3339()))
                .unwrap_or_default()
        ),
        Event::Test => format!("pgvault: test notification for vault {}", notice.vault_id),
    };
    if let Some(code) = f.error_code.as_deref().filter(|c| !c.is_empty()) {
        text.push_str(&format!("\nerror: {code}"));
    }
    if let Some(message) = f.message.as_deref().filter(|m| !m.is_empty()) {
        text.push_str(&format!("\n{message}"));
    }
    if let Some(action) = f.recommended_action.as_deref().filter(|a| !a.is_empty()) {
        text.push_str(&format!("\nwhat to do: {action}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> Notice {
        Notice {
            delivery_id: Uuid::nil(),
            event: Event::Failed,
            vault_id: "prod".into(),
            facts: Facts {
                job_id: Some(Uuid::from_u128(7)),
                operation: Some("ON_DEMAND_BACKUP".into()),
                state: Some("FAILED".into()),
                attempt: Some(3),
                instance_id: Some(Uuid::from_u128(9)),
                server: Some("db1".into()),
                database: Some("orders".into()),
                error_code: Some("UserErrorDBUserAuthFailed".into()),
                message: Some("password authentication failed".into()),
                recommended_action: Some("update the secret".into()),
                ..Facts::default()
            },
            occurred_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        }
    }

    #[test]
    fn the_generic_body_carries_the_job_its_place_and_its_error() {
        let body: serde_json::Value =
            serde_json::from_slice(&render(Format::Generic, &failed())).unwrap();
        assert_eq!(body["event"], "failed");
        assert_eq!(body["vault"], "prod");
        assert_eq!(body["server"], "db1");
        assert_eq!(body["database"], "orders");
        assert_eq!(body["job_id"], Uuid::from_u128(7).to_string());
        assert_eq!(body["operation"], "ON_DEMAND_BACKUP");
        assert_eq!(body["state"], "FAILED");
        assert_eq!(body["error_code"], "UserErrorDBUserAuthFailed");
        assert_eq!(body["recommended_action"], "update the secret");
        assert_eq!(body["occurred_at"], "2023-11-14T22:13:20Z");
        assert!(body["slot_time"].is_null());
    }

    #[test]
    fn the_slack_body_is_one_readable_text() {
        let body: serde_json::Value =
            serde_json::from_slice(&render(Format::Slack, &failed())).unwrap();
        let object = body.as_object().unwrap();
        assert_eq!(object.len(), 1, "{body}");
        let text = body["text"].as_str().unwrap();
        assert!(
            text.starts_with("pgvault: on demand backup of orders on db1 in vault prod failed"),
            "{text}"
        );
        assert!(text.contains("error: UserErrorDBUserAuthFailed"), "{text}");
        assert!(text.contains("what to do: update the secret"), "{text}");
    }

    #[test]
    fn a_missed_slot_names_the_slot_and_facts_read_from_the_trigger_json() {
        let facts: Facts = serde_json::from_value(serde_json::json!({
            "instance_id": Uuid::from_u128(9), "server": "db1", "database": "orders",
            "state": "SKIPPED", "slot_time": "2026-01-05T02:30:00+00:00",
            "message": "slot was missed", "unknown_later_field": 1
        }))
        .unwrap();
        let notice = Notice {
            event: Event::Missed,
            facts,
            ..failed()
        };
        let text = summary(&notice);
        assert!(text.contains("scheduled backup of orders on db1 in vault prod was missed (slot 2026-01-05T02:30:00+00:00)"), "{text}");
    }
}
