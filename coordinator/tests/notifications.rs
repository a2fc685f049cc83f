//! Notification deliveries as the state database records them: a job
//! ending FAILED, or COMPLETED then COMPLETED_WITH_WARNINGS in one
//! transaction, and a slot recorded SKIPPED each write one delivery per
//! channel subscribed to the event (none for a cancelled job or an
//! unsubscribed event); a receiver that never answers gets a bounded number
//! of attempts, then the delivery is FAILED with the reason recorded; a
//! test event is queued and tried on request; and removing a channel
//! removes its deliveries.

use crate::common;

use std::time::{Duration, Instant};

use common::{Harness, TOKEN};
use pgvault_coordinator::notifications::RetryPolicy;
use pgvault_proto::v1 as pb;
use pgvault_proto::v1::notification_service_client::NotificationServiceClient;
use tonic::Request;

type Client = NotificationServiceClient<common::Svc>;

// The signature is tonic's interceptor contract.
#[allow(clippy::result_large_err)]
fn with_token(mut request: Request<()>) -> Result<Request<()>, tonic::Status> {
    let value = format!("Bearer {TOKEN}").parse().expect("ascii");
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

fn client(h: &Harness) -> Client {
    NotificationServiceClient::with_interceptor(h.channel.clone(), with_token as common::Auth)
}

async fn add_channel(h: &Harness, name: &str, url: &str, events: &[&str]) {
    client(h)
        .create_notification_channel(pb::CreateNotificationChannelRequest {
            vault: "vaults/v".into(),
            channel_id: name.into(),
            url: url.into(),
            format: pb::NotificationFormat::Generic as i32,
            events: events.iter().map(|e| e.to_string()).collect(),
            signing_secret: String::new(),
        })
        .await
        .expect("add channel");
}

async fn deliveries(h: &Harness) -> Vec<pb::NotificationDelivery> {
    client(h)
        .list_notification_deliveries(pb::ListNotificationDeliveriesRequest {
            vault: "vaults/v".into(),
            ..Default::default()
        })
        .await
        .expect("list deliveries")
        .into_inner()
        .deliveries
}

fn events_of(list: &[pb::NotificationDelivery], channel: &str) -> Vec<String> {
    let name = format!("vaults/v/notificationChannels/{channel}");
    let mut events: Vec<String> = list
        .iter()
        .filter(|d| d.channel == name)
        .map(|d| d.event.clone())
        .collect();
    events.sort();
    events
}

#[tokio::test]
async fn ended_jobs_and_skipped_slots_are_delivered_to_subscribed_channels_with_bounded_retries() {
    let h = Harness::start_with(|c| {
        c.notifications.poll_interval = Duration::from_millis(200);
        c.notifications.retry = RetryPolicy {
            base: Duration::from_millis(200),
            max_delay: Duration::from_secs(1),
            max_attempts: 3,
        };
        c.notifications.timeout = Duration::from_secs(2);
    })
    .await;
    h.fixture().await;
    let instance = h.protect("app").await;
    let instance_id = instance.rsplit('/').next().unwrap().to_string();
    // Nothing listens there: every attempt fails to connect.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{closed}/hook/path-token");
    add_channel(&h, "fails", &url, &["failed"]).await;
    add_channel(&h, "all", &url, &["failed", "missed", "succeeded"]).await;

    let db = h.cluster.connect("postgres").await.expect("state database");
    let failed = common::job_id(&common::backup_now(&h, &instance).await);
    db.batch_execute(&format!(
        "UPDATE jobs SET state = 'FAILED', error_code = 'UserErrorDBUserAuthFailed',
                error_message = 'password authentication failed', end_time = now()
          WHERE id = '{failed}'"
    ))
    .await
    .expect("fail the job");
    let warned = common::job_id(&common::backup_now(&h, &instance).await);
    db.batch_execute(&format!(
        "BEGIN;
         UPDATE jobs SET state = 'COMPLETED', end_time = now() WHERE id = '{warned}';
         UPDATE jobs SET state = 'COMPLETED_WITH_WARNINGS' WHERE id = '{warned}';
         COMMIT;"
    ))
    .await
    .expect("complete the job with warnings");
    let cancelled = common::backup_now(&h, &instance).await;
    h.jobs()
        .cancel_job(pb::CancelJobRequest {
            name: cancelled.name.clone(),
        })
        .await
        .expect("cancel the queued job");
    db.batch_execute(&format!(
        "INSERT INTO schedule_runs (backup_instance_id, slot_time, status, reason)
         VALUES ('{instance_id}', now() - interval '1 day', 'SKIPPED', 'slot was missed')"
    ))
    .await
    .expect("skip a slot");

    let list = deliveries(&h).await;
    assert_eq!(events_of(&list, "fails"), ["failed"], "{list:#?}");
    assert_eq!(
        events_of(&list, "all"),
        ["failed", "missed", "succeeded"],
        "one succeeded delivery for COMPLETED then COMPLETED_WITH_WARNINGS: {list:#?}"
    );
    let failed_job = format!("jobs/{failed}");
    assert_eq!(list.iter().filter(|d| d.job == failed_job).count(), 2);

    // Every attempt fails; after three the deliveries are given up.
    let deadline = Instant::now() + Duration::from_secs(30);
    let list = loop {
        let list = deliveries(&h).await;
        let done = list
            .iter()
            .all(|d| d.state == pb::NotificationDeliveryState::Failed as i32);
        if done {
            break list;
        }
        assert!(Instant::now() < deadline, "not all given up: {list:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for d in &list {
        assert_eq!(d.attempts, 3, "{d:#?}");
        assert!(!d.last_error.is_empty(), "{d:#?}");
        assert!(!d.last_error.contains("path-token"), "{d:#?}");
        assert!(d.next_attempt_time.is_none(), "{d:#?}");
    }

    // A test event is queued on request, and tried like the others.
    let test = client(&h)
        .test_notification_channel(pb::TestNotificationChannelRequest {
            name: "vaults/v/notificationChannels/fails".into(),
        })
        .await
        .expect("test event")
        .into_inner();
    assert_eq!(test.event, "test");
    assert_eq!(
        test.state,
        pb::NotificationDeliveryState::Pending as i32,
        "{test:#?}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = deliveries(&h).await;
        let tried = list
            .iter()
            .find(|d| d.name == test.name)
            .is_some_and(|d| d.attempts >= 1 && !d.last_error.is_empty());
        if tried {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the test event was not tried: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    client(&h)
        .delete_notification_channel(pb::DeleteNotificationChannelRequest {
            name: "vaults/v/notificationChannels/all".into(),
        })
        .await
        .expect("remove channel");
    let list = deliveries(&h).await;
    assert_eq!(events_of(&list, "all"), Vec::<String>::new());
    assert_eq!(events_of(&list, "fails"), ["failed", "test"]);
    h.stop().await;
}
