//! `NotificationService`: a vault's notification channels (add, list,
//! remove, send a test event) and the deliveries made to them. Managing
//! channels needs Configure on the vault, like its other settings; listing
//! needs Read, like jobs. A channel's URL is write-only (only its scheme and
//! host come back; it is stored sealed) and its signing secret is named,
//! never read here.

use std::sync::Arc;

use pgvault_proto::v1 as pb;
use pgvault_proto::v1::notification_service_server::NotificationService;
use tonic::{Request, Response, Status};

use crate::access::{self, vault_scope};
use crate::api::ApiContext;
use crate::api::convert::timestamp;
use crate::error::{CoordinatorError, Result};
use crate::names;
use crate::notifications::channel::{Channel, Event, Format, normalise_events};
use crate::notifications::delivery::{Delivery, DeliveryState};
use crate::secrets::Redacted;
use crate::store::{notifications as store, paging, secret_grants, secrets, vaults};

/// The collection of a vault's channels in resource names.
const CHANNELS: &str = "notificationChannels";
/// The collection of a vault's deliveries in resource names.
const DELIVERIES: &str = "notificationDeliveries";

pub struct NotificationApi {
    ctx: Arc<ApiContext>,
}

impl NotificationApi {
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        NotificationApi { ctx }
    }

    async fn create(
        &self,
        req: pb::CreateNotificationChannelRequest,
    ) -> Result<pb::NotificationChannel> {
        let channel = Channel::try_from(req)?;
        channel.validate()?;
        let pool = self.ctx.store.pool();
        vaults::get(pool, &channel.vault_id).await?;
        if let Some(secret) = &channel.signing_secret {
            if secrets::find(pool, secret).await?.is_none() {
                return Err(CoordinatorError::not_found("secret", secret));
            }
            if !secret_grants::is_granted(pool, &channel.vault_id, secret).await? {
                return Err(CoordinatorError::precondition(format!(
                    "vault \"{}\" is not granted secret \"{secret}\"; grant it first with pgvault secret grant {secret} --vault {}",
                    channel.vault_id, channel.vault_id
                )));
            }
        }
        let stored = store::insert_channel(pool, &self.ctx.cipher, &channel).await?;
        tracing::info!(vault = %stored.vault_id, channel = %stored.name, url = %stored.display_url(), "notification channel added");
        Ok(stored.into())
    }
}

/// `vaults/{vault}/notificationChannels/{channel}` → (vault, channel).
pub fn parse_channel(field: &str, name: &str) -> Result<(String, String)> {
    let invalid = || {
        CoordinatorError::invalid(
            field,
            format!("must be vaults/{{vault}}/{CHANNELS}/{{channel}}"),
        )
    };
    let (vault, channel) = name
        .trim()
        .split_once(&format!("/{CHANNELS}/"))
        .ok_or_else(invalid)?;
    let vault = names::parse_vault(field, vault)?;
    names::validate_short_id(field, channel)?;
    Ok((vault, channel.to_owned()))
}

pub fn channel_name(vault: &str, channel: &str) -> String {
    format!("{}/{CHANNELS}/{channel}", names::vault_name(vault))
}

/// A secret named `secrets/{id}` or by its id alone.
fn secret_id(field: &str, name: &str) -> Result<String> {
    if name.starts_with("secrets/") {
        names::parse_secret(field, name)
    } else {
        names::validate_short_id(field, name)?;
        Ok(name.to_owned())
    }
}

impl TryFrom<pb::CreateNotificationChannelRequest> for Channel {
    type Error = CoordinatorError;
    fn try_from(req: pb::CreateNotificationChannelRequest) -> Result<Self> {
        let format = match pb::NotificationFormat::try_from(req.format) {
            Ok(pb::NotificationFormat::Generic) => Format::Generic,
            Ok(pb::NotificationFormat::Slack) => Format::Slack,
            _ => {
                return Err(CoordinatorError::invalid(
                    "format",
                    "must be GENERIC or SLACK",
                ));
            }
        };
        let events = req
            .events
            .iter()
            .map(|e| {
                Event::parse(e.trim())
                    .filter(|e| Event::SUBSCRIBABLE.contains(e))
                    .ok_or_else(|| {
                        CoordinatorError::invalid(
                            "events",
                            format!("unknown event \"{e}\"; use failed, missed or succeeded"),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let signing_secret = match req.signing_secret.trim() {
            "" => None,
            name => Some(secret_id("signing_secret", name)?),
        };
        Ok(Channel {
            vault_id: names::parse_vault("vault", &req.vault)?,
            name: req.channel_id,
            url: Redacted(req.url.trim().to_owned()),
            format,
            events: normalise_events(events),
            signing_secret,
            create_time: chrono::Utc::now(),
        })
    }
}

impl From<Channel> for pb::NotificationChannel {
    fn from(c: Channel) -> Self {
        pb::NotificationChannel {
            name: channel_name(&c.vault_id, &c.name),
            url_host: c.display_url(),
            format: match c.format {
                Format::Generic => pb::NotificationFormat::Generic,
                Format::Slack => pb::NotificationFormat::Slack,
            } as i32,
            events: c.events.iter().map(|e| e.as_str().to_owned()).collect(),
            signing_secret: c
                .signing_secret
                .as_deref()
                .map(names::secret_name)
                .unwrap_or_default(),
            create_time: Some(timestamp(c.create_time)),
        }
    }
}

impl From<Delivery> for pb::NotificationDelivery {
    fn from(d: Delivery) -> Self {
        pb::NotificationDelivery {
            name: format!("{}/{DELIVERIES}/{}", names::vault_name(&d.vault_id), d.id),
            channel: channel_name(&d.vault_id, &d.channel),
            event: d.event.as_str().to_owned(),
            job: d.job_id.map(names::job_name).unwrap_or_default(),
            state: state_to_pb(d.state) as i32,
            attempts: d.attempts,
            last_error: d.last_error,
            next_attempt_time: (d.state == DeliveryState::Pending)
                .then(|| timestamp(d.next_attempt_at)),
            create_time: Some(timestamp(d.create_time)),
            update_time: Some(timestamp(d.update_time)),
        }
    }
}

fn state_to_pb(state: DeliveryState) -> pb::NotificationDeliveryState {
    match state {
        DeliveryState::Pending => pb::NotificationDeliveryState::Pending,
        DeliveryState::Delivered => pb::NotificationDeliveryState::Delivered,
        DeliveryState::Failed => pb::NotificationDeliveryState::Failed,
    }
}

fn state_from_pb(state: i32) -> Result<Option<DeliveryState>> {
    match pb::NotificationDeliveryState::try_from(state) {
        Ok(pb::NotificationDeliveryState::Unspecified) => Ok(None),
        Ok(pb::NotificationDeliveryState::Pending) => Ok(Some(DeliveryState::Pending)),
        Ok(pb::NotificationDeliveryState::Delivered) => Ok(Some(DeliveryState::Delivered)),
        Ok(pb::NotificationDeliveryState::Failed) => Ok(Some(DeliveryState::Failed)),
        Err(_) => Err(CoordinatorError::invalid(
            "state",
            "is not a delivery state",
        )),
    }
}

#[tonic::async_trait]
impl NotificationService for NotificationApi {
    async fn create_notification_channel(
        &self,
        request: Request<pb::CreateNotificationChannelRequest>,
    ) -> Result<Response<pb::NotificationChannel>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().vault).as_deref())?;
        Ok(Response::new(self.create(request.into_inner()).await?))
    }

    async fn list_notification_channels(
        &self,
        request: Request<pb::ListNotificationChannelsRequest>,
    ) -> Result<Response<pb::ListNotificationChannelsResponse>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().vault).as_deref())?;
        let vault_id = names::parse_vault("vault", &request.get_ref().vault)?;
        let pool = self.ctx.store.pool();
        vaults::get(pool, &vault_id).await?;
        let channels = store::list_channels(pool, &self.ctx.cipher, &vault_id).await?;
        Ok(Response::new(pb::ListNotificationChannelsResponse {
            channels: channels.into_iter().map(Into::into).collect(),
        }))
    }

    async fn delete_notification_channel(
        &self,
        request: Request<pb::DeleteNotificationChannelRequest>,
    ) -> Result<Response<pb::DeleteNotificationChannelResponse>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().name).as_deref())?;
        let (vault_id, channel) = parse_channel("name", &request.get_ref().name)?;
        if !store::delete_channel(self.ctx.store.pool(), &vault_id, &channel).await? {
            return Err(CoordinatorError::not_found(
                "notification channel",
                channel_name(&vault_id, &channel),
            )
            .into());
        }
        tracing::info!(vault = %vault_id, channel = %channel, "notification channel removed");
        Ok(Response::new(pb::DeleteNotificationChannelResponse {}))
    }

    async fn test_notification_channel(
        &self,
        request: Request<pb::TestNotificationChannelRequest>,
    ) -> Result<Response<pb::NotificationDelivery>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().name).as_deref())?;
        let (vault_id, channel) = parse_channel("name", &request.get_ref().name)?;
        let pool = self.ctx.store.pool();
        store::get_channel(pool, &self.ctx.cipher, &vault_id, &channel).await?;
        let id = store::insert_test(pool, &vault_id, &channel).await?;
        tracing::info!(vault = %vault_id, channel = %channel, delivery = %id, "test notification queued");
        Ok(Response::new(store::get_delivery(pool, id).await?.into()))
    }

    async fn list_notification_deliveries(
        &self,
        request: Request<pb::ListNotificationDeliveriesRequest>,
    ) -> Result<Response<pb::ListNotificationDeliveriesResponse>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().vault).as_deref())?;
        let req = request.into_inner();
        let vault_id = match req.vault.trim() {
            "" => None,
            name => Some(names::parse_vault("vault", name)?),
        };
        let state = state_from_pb(req.state)?;
        let deliveries = store::list_deliveries(
            self.ctx.store.pool(),
            vault_id.as_deref(),
            state,
            paging::page_size(req.page_size),
        )
        .await?;
        Ok(Response::new(pb::ListNotificationDeliveriesResponse {
            deliveries: deliveries.into_iter().map(Into::into).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_read_back_as_written() {
        let name = channel_name("prod", "ops-slack");
        assert_eq!(name, "vaults/prod/notificationChannels/ops-slack");
        assert_eq!(
            parse_channel("name", &name).unwrap(),
            ("prod".to_owned(), "ops-slack".to_owned())
        );
        assert!(parse_channel("name", "vaults/prod/ops").is_err());
        assert!(parse_channel("name", "vaults/prod/notificationChannels/Bad Name").is_err());
    }

    #[test]
    fn a_request_becomes_a_channel_with_its_events_in_order() {
        let channel = Channel::try_from(pb::CreateNotificationChannelRequest {
            vault: "vaults/prod".into(),
            channel_id: "ops".into(),
            url: " https://hooks.example/T/B/secret ".into(),
            format: pb::NotificationFormat::Generic as i32,
            events: vec!["succeeded".into(), "failed".into()],
            signing_secret: "secrets/hook-key".into(),
        })
        .unwrap();
        assert_eq!(channel.events, vec![Event::Failed, Event::Succeeded]);
        assert_eq!(channel.signing_secret.as_deref(), Some("hook-key"));
        assert_eq!(channel.url.expose(), "https://hooks.example/T/B/secret");
        let listed = pb::NotificationChannel::from(channel);
        assert_eq!(listed.url_host, "https://hooks.example");
        assert_eq!(listed.signing_secret, "secrets/hook-key");
        let unknown = Channel::try_from(pb::CreateNotificationChannelRequest {
            vault: "vaults/prod".into(),
            channel_id: "ops".into(),
            url: "https://h/x".into(),
            format: pb::NotificationFormat::Slack as i32,
            events: vec!["test".into()],
            signing_secret: String::new(),
        });
        assert!(unknown.is_err(), "test is not subscribable");
    }
}
