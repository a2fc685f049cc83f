//! Notification channels of a vault and the outbox of deliveries to them.
//! Deliveries of job and missed-slot events are written by the triggers of
//! migration 0018, in the transaction that ends the job or skips the slot;
//! this module adds test deliveries, hands the sender what is due and
//! records each attempt. A channel's URL is stored sealed with the master
//! key (migration 0031): sealed when written, opened when read, and rows
//! of earlier versions sealed at start ([`seal_plain_urls`]).

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use sqlx::types::Json;
use uuid::Uuid;

use crate::error::{CoordinatorError, Result};
use crate::notifications::channel::{Channel, Event, Format};
use crate::notifications::delivery::{Delivery, DeliveryState};
use crate::notifications::payload::Facts;
use crate::secrets::{Cipher, Redacted, Sealed};
use crate::store::{parse_enum, to_u32};

#[derive(sqlx::FromRow)]
struct ChannelRow {
    vault_id: String,
    name: String,
    /// Only in rows of versions before 0031 not sealed yet.
    url: Option<String>,
    url_nonce: Option<Vec<u8>>,
    url_ciphertext: Option<Vec<u8>>,
    format: String,
    events: Vec<String>,
    signing_secret: Option<String>,
    create_time: DateTime<Utc>,
}

/// Associated data of a channel's sealed URL: binds it to its row.
fn url_aad(vault_id: &str, channel: &str) -> String {
    format!("pgvault-webhook:{vault_id}:{channel}")
}

impl ChannelRow {
    /// The channel, its URL opened with `cipher`.
    fn open(self, cipher: &Cipher) -> Result<Channel> {
        let url = self.url(cipher)?;
        self.into_channel(url)
    }

    fn url(&self, cipher: &Cipher) -> Result<String> {
        match (&self.url_nonce, &self.url_ciphertext, &self.url) {
            (Some(nonce), Some(ciphertext), _) => {
                let sealed = Sealed {
                    nonce: nonce.clone(),
                    ciphertext: ciphertext.clone(),
                };
                let opened = cipher
                    .open(&sealed, &url_aad(&self.vault_id, &self.name))
                    .map_err(|e| match e {
                        CoordinatorError::FailedPrecondition(_) => CoordinatorError::FailedPrecondition(format!(
                            "cannot decrypt the URL of notification channel \"{}\" of vault \"{}\": the coordinator's master key is not the one it was stored with",
                            self.name, self.vault_id
                        )),
                        other => other,
                    })?;
                Ok(opened.0)
            }
            (_, _, Some(plain)) => Ok(plain.clone()),
            _ => Err(CoordinatorError::internal(
                "a notification channel row holds no URL",
            )),
        }
    }

    fn into_channel(self, url: String) -> Result<Channel> {
        Ok(Channel {
            vault_id: self.vault_id,
            name: self.name,
            url: Redacted(url),
            format: parse_enum(&self.format, "notification_channels.format", Format::parse)?,
            events: self
                .events
                .iter()
                .map(|e| parse_enum(e, "notification_channels.events", Event::parse))
                .collect::<Result<_>>()?,
            signing_secret: self.signing_secret,
            create_time: self.create_time,
        })
    }
}

const CHANNEL_COLUMNS: &str =
    "vault_id, name, url, url_nonce, url_ciphertext, format, events, signing_secret, create_time";

/// Adds a channel, its URL sealed (a unique violation when the vault has
/// one of that name).
pub async fn insert_channel(
    db: impl PgExecutor<'_>,
    cipher: &Cipher,
    channel: &Channel,
) -> Result<Channel> {
    let events: Vec<&str> = channel.events.iter().map(|e| e.as_str()).collect();
    let sealed = cipher.seal(
        channel.url.expose(),
        &url_aad(&channel.vault_id, &channel.name),
    )?;
    let sql = format!(
        "INSERT INTO notification_channels (vault_id, name, url_nonce, url_ciphertext, format, events, signing_secret)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {CHANNEL_COLUMNS}"
    );
    let row: ChannelRow = sqlx::query_as(&sql)
        .bind(&channel.vault_id)
        .bind(&channel.name)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(channel.format.as_str())
        .bind(&events)
        .bind(&channel.signing_secret)
        .fetch_one(db)
        .await?;
    // The URL just sealed is the one given: nothing to open.
    row.into_channel(channel.url.expose().clone())
}

/// One channel of a vault.
pub async fn get_channel(
    db: impl PgExecutor<'_>,
    cipher: &Cipher,
    vault_id: &str,
    name: &str,
) -> Result<Channel> {
    let sql = format!(
        "SELECT {CHANNEL_COLUMNS} FROM notification_channels WHERE vault_id = $1 AND name = $2"
    );
    let row: Option<ChannelRow> = sqlx::query_as(&sql)
        .bind(vault_id)
        .bind(name)
        .fetch_optional(db)
        .await?;
    row.ok_or_else(|| {
        CoordinatorError::not_found("notification channel", format!("{vault_id}/{name}"))
    })?
    .open(cipher)
}

/// A vault's channels by name.
pub async fn list_channels(
    db: impl PgExecutor<'_>,
    cipher: &Cipher,
    vault_id: &str,
) -> Result<Vec<Channel>> {
    let sql = format!(
        "SELECT {CHANNEL_COLUMNS} FROM notification_channels WHERE vault_id = $1 ORDER BY name"
    );
    let rows: Vec<ChannelRow> = sqlx::query_as(&sql).bind(vault_id).fetch_all(db).await?;
    rows.into_iter().map(|r| r.open(cipher)).collect()
}

/// Seals the URLs of channels written before migration 0031 (run at
/// start, under the migration lock); returns how many.
pub async fn seal_plain_urls(conn: &mut sqlx::PgConnection, cipher: &Cipher) -> Result<u64> {
    let plain: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT vault_id, name, url FROM notification_channels
          WHERE url IS NOT NULL AND url_ciphertext IS NULL",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut sealed_rows = 0;
    for (vault_id, name, url) in plain {
        let sealed = cipher.seal(&url, &url_aad(&vault_id, &name))?;
        sealed_rows += sqlx::query(
            "UPDATE notification_channels
                SET url = NULL, url_nonce = $3, url_ciphertext = $4
              WHERE vault_id = $1 AND name = $2 AND url_ciphertext IS NULL",
        )
        .bind(&vault_id)
        .bind(&name)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    Ok(sealed_rows)
}

/// Removes a channel and its deliveries; false when there is none.
pub async fn delete_channel(db: impl PgExecutor<'_>, vault_id: &str, name: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM notification_channels WHERE vault_id = $1 AND name = $2")
        .bind(vault_id)
        .bind(name)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Queues a test delivery to a channel; returns its id.
pub async fn insert_test(db: impl PgExecutor<'_>, vault_id: &str, channel: &str) -> Result<Uuid> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO notification_deliveries (id, vault_id, channel, event, subject, facts)
         VALUES ($1, $2, $3, 'test', 'test/' || $1::text, $4)",
    )
    .bind(id)
    .bind(vault_id)
    .bind(channel)
    .bind(Json(Facts {
        message: Some("a test notification sent with pgvault notification test".into()),
        ..Facts::default()
    }))
    .execute(db)
    .await?;
    Ok(id)
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: Uuid,
    vault_id: String,
    channel: String,
    event: String,
    job_id: Option<Uuid>,
    facts: Json<Facts>,
    state: String,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
    last_error: String,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = CoordinatorError;
    fn try_from(r: DeliveryRow) -> Result<Self> {
        Ok(Delivery {
            id: r.id,
            vault_id: r.vault_id,
            channel: r.channel,
            event: parse_enum(&r.event, "notification_deliveries.event", Event::parse)?,
            job_id: r.job_id,
            facts: r.facts.0,
            state: parse_enum(
                &r.state,
                "notification_deliveries.state",
                DeliveryState::parse,
            )?,
            attempts: to_u32(r.attempts, "notification_deliveries.attempts")?,
            next_attempt_at: r.next_attempt_at,
            last_error: r.last_error,
            create_time: r.create_time,
            update_time: r.update_time,
        })
    }
}

const DELIVERY_COLUMNS: &str = "d.id, d.vault_id, d.channel, d.event, d.job_id, d.facts, d.state, \
     d.attempts, d.next_attempt_at, d.last_error, d.create_time, d.update_time";

/// Deliveries newest first, of one vault (or all) and in one state (or any).
pub async fn list_deliveries(
    db: impl PgExecutor<'_>,
    vault_id: Option<&str>,
    state: Option<DeliveryState>,
    limit: i64,
) -> Result<Vec<Delivery>> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM notification_deliveries d
          WHERE ($1::text IS NULL OR d.vault_id = $1) AND ($2::text IS NULL OR d.state = $2)
          ORDER BY d.create_time DESC, d.id DESC LIMIT $3"
    );
    let rows: Vec<DeliveryRow> = sqlx::query_as(&sql)
        .bind(vault_id)
        .bind(state.map(DeliveryState::as_str))
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.into_iter().map(Delivery::try_from).collect()
}

/// Pending deliveries whose next attempt is due, oldest first, with their
/// channel — or why its URL cannot be opened (a master key that is not the
/// one it was sealed with), which fails that delivery and no other.
pub async fn due(
    db: impl PgExecutor<'_>,
    cipher: &Cipher,
    limit: i64,
) -> Result<Vec<(Delivery, Result<Channel>)>> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS}, c.url, c.url_nonce, c.url_ciphertext, c.format, c.events,
                c.signing_secret, c.create_time AS channel_create_time
           FROM notification_deliveries d
           JOIN notification_channels c ON c.vault_id = d.vault_id AND c.name = d.channel
          WHERE d.state = 'PENDING' AND d.next_attempt_at <= now()
          ORDER BY d.next_attempt_at LIMIT $1"
    );
    let rows: Vec<DueRow> = sqlx::query_as(&sql).bind(limit).fetch_all(db).await?;
    rows.into_iter()
        .map(|r| {
            let channel = ChannelRow {
                vault_id: r.delivery.vault_id.clone(),
                name: r.delivery.channel.clone(),
                url: r.url,
                url_nonce: r.url_nonce,
                url_ciphertext: r.url_ciphertext,
                format: r.format,
                events: r.events,
                signing_secret: r.signing_secret,
                create_time: r.channel_create_time,
            }
            .open(cipher);
            Ok((Delivery::try_from(r.delivery)?, channel))
        })
        .collect()
}

#[derive(sqlx::FromRow)]
struct DueRow {
    #[sqlx(flatten)]
    delivery: DeliveryRow,
    url: Option<String>,
    url_nonce: Option<Vec<u8>>,
    url_ciphertext: Option<Vec<u8>>,
    format: String,
    events: Vec<String>,
    signing_secret: Option<String>,
    channel_create_time: DateTime<Utc>,
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Failed; tried again after this many seconds.
    Retry {
        error: String,
        after_seconds: f64,
    },
    /// Failed, and it was the last attempt.
    GiveUp {
        error: String,
    },
}

/// Records one attempt of a pending delivery.
pub async fn record_attempt(db: impl PgExecutor<'_>, id: Uuid, outcome: &Outcome) -> Result<()> {
    let (state, error, after) = match outcome {
        Outcome::Delivered => (DeliveryState::Delivered, "", 0.0),
        Outcome::Retry {
            error,
            after_seconds,
        } => (DeliveryState::Pending, error.as_str(), *after_seconds),
        Outcome::GiveUp { error } => (DeliveryState::Failed, error.as_str(), 0.0),
    };
    sqlx::query(
        "UPDATE notification_deliveries
            SET attempts = attempts + 1, state = $2,
                last_error = CASE WHEN $2 = 'DELIVERED' THEN last_error ELSE $3 END,
                next_attempt_at = now() + make_interval(secs => $4), update_time = now()
          WHERE id = $1 AND state = 'PENDING'",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(error)
    .bind(after)
    .execute(db)
    .await?;
    Ok(())
}

/// One delivery.
pub async fn get_delivery(db: impl PgExecutor<'_>, id: Uuid) -> Result<Delivery> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM notification_deliveries d WHERE d.id = $1");
    let row: Option<DeliveryRow> = sqlx::query_as(&sql).bind(id).fetch_optional(db).await?;
    row.ok_or_else(|| CoordinatorError::not_found("notification delivery", id))?
        .try_into()
}
