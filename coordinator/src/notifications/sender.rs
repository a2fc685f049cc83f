//! The sender: on the coordinator holding its advisory lock, every poll
//! interval, takes the pending deliveries that are due, renders and signs
//! each body, POSTs it with a timeout (redirects not followed) and records
//! the attempt: delivered on a 2xx answer, else tried again after the
//! retry policy's backoff until its attempts are used up. Log lines and
//! recorded errors name the channel and the URL's scheme and host only.

use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use sqlx::postgres::PgConnectOptions;
use tokio_util::sync::CancellationToken;

use super::channel::Channel;
use super::delivery::{Delivery, RetryPolicy};
use super::payload::{Notice, render};
use super::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use crate::error::Result;
use crate::leader::Leadership;
use crate::secrets::{Cipher, Redacted, secret_aad};
use crate::store::notifications::{self as queries, Outcome};
use crate::store::{Store, secret_grants, secrets};

/// Advisory lock key of the sender ("pgvnotf" in ASCII).
const SENDER_LOCK: i64 = 0x0070_6776_6e6f_7466;
/// Deliveries taken per pass.
const BATCH: i64 = 100;
/// Deliveries sent at once.
const CONCURRENCY: usize = 8;

/// What the sender needs.
pub struct SenderSettings {
    pub connect: PgConnectOptions,
    pub options: super::NotificationOptions,
}

/// Runs until `cancel` fires.
pub async fn run(
    store: Store,
    cipher: Cipher,
    settings: SenderSettings,
    cancel: CancellationToken,
) {
    let client = match client(settings.options.timeout) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(error = %error, "notifications: cannot build the HTTP client; no notification is sent");
            return;
        }
    };
    let mut leadership =
        Leadership::new(settings.connect.clone(), SENDER_LOCK, "notification sender");
    loop {
        if leadership.check().await
            && let Err(error) = pass(&store, &cipher, &client, settings.options.retry).await
        {
            tracing::warn!(error = %error, "notification pass failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(settings.options.poll_interval) => {}
        }
    }
    leadership.release().await;
}

/// An HTTP client with a whole-request timeout that follows no redirect
/// (a redirect could carry the body elsewhere).
pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("pgvault/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// One pass over the due deliveries. Returns how many were attempted.
pub async fn pass(
    store: &Store,
    cipher: &Cipher,
    client: &reqwest::Client,
    retry: RetryPolicy,
) -> Result<usize> {
    let due = queries::due(store.pool(), cipher, BATCH).await?;
    let count = due.len();
    futures::stream::iter(due)
        .for_each_concurrent(CONCURRENCY, |(delivery, channel)| async move {
            let outcome = match &channel {
                Ok(channel) => {
                    let outcome = attempt(store, cipher, client, retry, &delivery, channel).await;
                    log(&delivery, channel, &outcome);
                    outcome
                }
                Err(unreadable) => {
                    tracing::warn!(
                        delivery = %delivery.id, vault = %delivery.vault_id, channel = %delivery.channel,
                        error = %unreadable, "notification not sent: its channel cannot be read"
                    );
                    next(retry, &delivery, unreadable.to_string())
                }
            };
            if let Err(error) = queries::record_attempt(store.pool(), delivery.id, &outcome).await {
                tracing::warn!(delivery = %delivery.id, error = %error, "cannot record a notification attempt");
            }
        })
        .await;
    Ok(count)
}

/// Sends one delivery once and says what comes next.
async fn attempt(
    store: &Store,
    cipher: &Cipher,
    client: &reqwest::Client,
    retry: RetryPolicy,
    delivery: &Delivery,
    channel: &Channel,
) -> Outcome {
    let result = match signing_key(store, cipher, channel).await {
        Ok(key) => post(client, delivery, channel, key.as_ref()).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => Outcome::Delivered,
        Err(error) => next(retry, delivery, error),
    }
}

/// What follows a failed attempt: another after the policy's backoff, or
/// none when the attempts are used up.
fn next(retry: RetryPolicy, delivery: &Delivery, error: String) -> Outcome {
    match retry.next_delay(delivery.attempts + 1) {
        Some(delay) => Outcome::Retry {
            error,
            after_seconds: delay.as_secs_f64(),
        },
        None => Outcome::GiveUp { error },
    }
}

/// The latest value of the channel's signing secret, when it has one and
/// its vault is still granted it.
async fn signing_key(
    store: &Store,
    cipher: &Cipher,
    channel: &Channel,
) -> std::result::Result<Option<Redacted<String>>, String> {
    let Some(secret) = &channel.signing_secret else {
        return Ok(None);
    };
    let unreadable = |why: String| format!("signing secret \"{secret}\" cannot be read: {why}");
    let granted = secret_grants::is_granted(store.pool(), &channel.vault_id, secret)
        .await
        .map_err(|e| unreadable(e.to_string()))?;
    if !granted {
        return Err(format!(
            "vault \"{}\" is no longer granted signing secret \"{secret}\"; grant it again with pgvault secret grant",
            channel.vault_id
        ));
    }
    let (version, sealed) = secrets::latest_sealed(store.pool(), secret)
        .await
        .map_err(|e| unreadable(e.to_string()))?;
    cipher
        .open(&sealed, &secret_aad(secret, version))
        .map(Some)
        .map_err(|e| unreadable(e.to_string()))
}

/// POSTs the rendered, signed body; `Err` says why it was not delivered.
async fn post(
    client: &reqwest::Client,
    delivery: &Delivery,
    channel: &Channel,
    key: Option<&Redacted<String>>,
) -> std::result::Result<(), String> {
    let notice = Notice {
        delivery_id: delivery.id,
        event: delivery.event,
        vault_id: delivery.vault_id.clone(),
        facts: delivery.facts.clone(),
        occurred_at: delivery.create_time,
    };
    let body = render(channel.format, &notice);
    let timestamp = Utc::now().timestamp();
    let mut request = client
        .post(channel.url.expose())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Pgvault-Event", delivery.event.as_str())
        .header("X-Pgvault-Delivery", delivery.id.to_string())
        .header(TIMESTAMP_HEADER, timestamp.to_string());
    if let Some(key) = key {
        request = request.header(
            SIGNATURE_HEADER,
            sign(key.expose().as_bytes(), timestamp, &body),
        );
    }
    let response = request.body(body).send().await.map_err(describe)?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered HTTP {status}"))
    }
}

/// A transport error without the URL (it may hold a token), with its causes.
fn describe(error: reqwest::Error) -> String {
    if error.is_timeout() {
        return "the receiver did not answer in time".into();
    }
    pgvault_datastore::redact::transport_error(error)
}

fn log(delivery: &Delivery, channel: &Channel, outcome: &Outcome) {
    let attempt = delivery.attempts + 1;
    let url = channel.display_url();
    match outcome {
        Outcome::Delivered => tracing::info!(
            delivery = %delivery.id, vault = %delivery.vault_id, channel = %channel.name,
            event = %delivery.event, attempt, url = %url, "notification delivered"
        ),
        Outcome::Retry {
            error,
            after_seconds,
        } => tracing::warn!(
            delivery = %delivery.id, vault = %delivery.vault_id, channel = %channel.name,
            event = %delivery.event, attempt, url = %url, error = %error,
            retry_in_s = after_seconds, "notification not delivered; will retry"
        ),
        Outcome::GiveUp { error } => tracing::warn!(
            delivery = %delivery.id, vault = %delivery.vault_id, channel = %channel.name,
            event = %delivery.event, attempt, url = %url, error = %error,
            "notification not delivered; no attempts left"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_delivery_names_the_cause_but_not_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind loopback")
            .port();
        let error = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{port}/hooks/PATHTOKEN?key=QUERYTOKEN"
            ))
            .send()
            .await
            .expect_err("nothing listens on the port");
        let text = describe(error);
        assert!(text.contains("Connection refused"), "{text}");
        for secret in ["PATHTOKEN", "QUERYTOKEN", "/hooks"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}
