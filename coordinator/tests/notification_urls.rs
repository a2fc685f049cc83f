//! A webhook's URL is often its credential, so the state database holds it
//! sealed with the master key, bound to its vault and channel: the row has
//! no plain URL and no trace of its token, a wrong master key or a sealed
//! value moved to another channel cannot be opened (and say so), and
//! channels stored by an earlier version are sealed when a coordinator of
//! this version starts.

use crate::common;

use std::sync::Arc;

use common::{Harness, RecordingPublisher, TOKEN, config};
use pgvault_coordinator::Coordinator;
use pgvault_coordinator::error::CoordinatorError;
use pgvault_coordinator::secrets::Cipher;
use pgvault_coordinator::store::notifications as store;
use pgvault_proto::v1 as pb;
use pgvault_proto::v1::notification_service_client::NotificationServiceClient;
use sqlx::PgPool;

/// The harness's master key (`common::config`).
const MASTER_KEY: [u8; 32] = [42u8; 32];
const TOKEN_IN_URL: &str = "T0K3N-8f1e2d";

async fn raw_row(pool: &PgPool, name: &str) -> (Option<String>, Option<Vec<u8>>) {
    sqlx::query_as("SELECT url, url_ciphertext FROM notification_channels WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .expect("channel row")
}

// The signature is tonic's interceptor contract.
#[allow(clippy::result_large_err)]
fn with_token(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let value = format!("Bearer {TOKEN}").parse().expect("ascii");
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

fn listed_urls(channels: &[pb::NotificationChannel]) -> Vec<(&str, &str)> {
    channels
        .iter()
        .map(|c| (c.name.as_str(), c.url_host.as_str()))
        .collect()
}

#[tokio::test]
async fn a_channel_url_is_stored_sealed_and_opens_only_with_its_key_and_its_row() {
    let h = Harness::start().await;
    h.fixture().await;
    let url = format!("http://127.0.0.1:9/hooks/{TOKEN_IN_URL}?sig=abc");
    let mut notifications =
        NotificationServiceClient::with_interceptor(h.channel.clone(), with_token as common::Auth);
    for name in ["ops", "other"] {
        notifications
            .create_notification_channel(pb::CreateNotificationChannelRequest {
                vault: "vaults/v".into(),
                channel_id: name.into(),
                url: url.clone(),
                format: pb::NotificationFormat::Generic as i32,
                events: vec!["failed".into()],
                signing_secret: String::new(),
            })
            .await
            .expect("add channel");
    }
    let pool = PgPool::connect(&h.cluster.url("postgres"))
        .await
        .expect("pool");
    let (plain, sealed) = raw_row(&pool, "ops").await;
    assert_eq!(plain, None, "no plain URL is stored");
    let sealed = sealed.expect("a sealed URL");
    assert!(
        !sealed
            .windows(TOKEN_IN_URL.len())
            .any(|w| w == TOKEN_IN_URL.as_bytes()),
        "the token is not in the row"
    );

    // The API lists scheme and host; the sender opens the whole URL.
    let listed = notifications
        .list_notification_channels(pb::ListNotificationChannelsRequest {
            vault: "vaults/v".into(),
        })
        .await
        .expect("list")
        .into_inner()
        .channels;
    assert_eq!(
        listed_urls(&listed),
        vec![
            ("vaults/v/notificationChannels/ops", "http://127.0.0.1:9"),
            ("vaults/v/notificationChannels/other", "http://127.0.0.1:9"),
        ]
    );
    let opened = store::get_channel(&pool, &Cipher::new(&MASTER_KEY), "v", "ops")
        .await
        .expect("open");
    assert_eq!(opened.url.expose(), &url);

    // Another master key cannot open it, and says which channel and why.
    let wrong = store::get_channel(&pool, &Cipher::new(&[7u8; 32]), "v", "ops")
        .await
        .expect_err("another key");
    let CoordinatorError::FailedPrecondition(message) = &wrong else {
        panic!("{wrong:?}");
    };
    assert!(
        message.contains("notification channel \"ops\" of vault \"v\"")
            && message.contains("master key"),
        "{message}"
    );
    assert!(!message.contains(TOKEN_IN_URL), "{message}");
    // A sealed URL is bound to its row: copied onto another channel, it
    // does not open there.
    sqlx::query(
        "UPDATE notification_channels o
            SET url_nonce = s.url_nonce, url_ciphertext = s.url_ciphertext
           FROM notification_channels s
          WHERE o.name = 'other' AND s.name = 'ops'",
    )
    .execute(&pool)
    .await
    .expect("move the sealed URL");
    store::get_channel(&pool, &Cipher::new(&MASTER_KEY), "v", "other")
        .await
        .expect_err("bound to its channel");
    h.stop().await;
}

#[tokio::test]
async fn channels_stored_by_an_earlier_version_are_sealed_when_a_coordinator_starts() {
    let (cluster, pool) = common::old_versions::state_database_at(30).await;
    let url = format!("https://hooks.example/services/{TOKEN_IN_URL}");
    sqlx::query("INSERT INTO vaults (id, standard_datastore) VALUES ('v', 'file:///tmp/x')")
        .execute(&pool)
        .await
        .expect("old vault");
    sqlx::query(
        "INSERT INTO notification_channels (vault_id, name, url, format, events)
         VALUES ('v', 'legacy', $1, 'GENERIC', ARRAY['failed'])",
    )
    .bind(&url)
    .execute(&pool)
    .await
    .expect("old channel");

    let coordinator = Coordinator::start(config(&cluster), Arc::new(RecordingPublisher::default()))
        .await
        .expect("start on the old state database");
    let (plain, sealed) = raw_row(&pool, "legacy").await;
    assert_eq!(plain, None, "the plain URL is gone");
    assert!(sealed.is_some(), "sealed at start");
    let opened = store::get_channel(&pool, &Cipher::new(&MASTER_KEY), "v", "legacy")
        .await
        .expect("open");
    assert_eq!(opened.url.expose(), &url);
    // A second start finds nothing left to seal and changes nothing.
    let second = Coordinator::start(config(&cluster), Arc::new(RecordingPublisher::default()))
        .await
        .expect("a second start");
    assert_eq!(raw_row(&pool, "legacy").await.1, Some(sealed.unwrap()));
    for handle in [coordinator, second] {
        handle.shutdown().await.expect("shutdown");
    }
}
