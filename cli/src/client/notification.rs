//! `pgvault notification channel add|list|remove`, `notification test` and
//! `notification list`: a vault's webhook channels (told when a job fails,
//! a scheduled slot is missed, or — when subscribed — a job succeeds) and
//! the deliveries made to them with their attempts. A webhook URL may hold a
//! token: it can be read from an environment variable instead of argv, and
//! is shown as scheme and host only.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{ArgGroup, Subcommand, ValueEnum};
use pgvault_proto::v1::{
    CreateNotificationChannelRequest, DeleteNotificationChannelRequest,
    ListNotificationChannelsRequest, ListNotificationDeliveriesRequest, NotificationChannel,
    NotificationDelivery, NotificationDeliveryState, NotificationFormat,
    TestNotificationChannelRequest,
};

use super::connect::{Api, Reply};
use super::names;
use super::output::{local_time, or_dash, print_details, print_json, print_list};

#[derive(Debug, Subcommand)]
pub enum NotificationCommand {
    /// Add, list and remove a vault's notification channels (webhooks).
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Deliveries and their attempts, newest first.
    #[command(after_help = "Examples:\n  pgvault notification list --vault prod\n  \
        pgvault notification list --vault prod --state failed")]
    List {
        /// Only this vault's deliveries (all vaults needs a global role).
        #[arg(long)]
        vault: Option<String>,
        /// Only deliveries in this state.
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// At most this many (default 100, at most 1000).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Send a test event to a channel now (it appears in `notification list`).
    #[command(after_help = "Example:\n  pgvault notification test ops --vault prod")]
    Test {
        /// Channel name.
        channel: String,
        /// Vault of the channel.
        #[arg(long)]
        vault: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Add a webhook channel to a vault (Configure on the vault).
    #[command(
        group(ArgGroup::new("target").required(true).args(["url", "url_from_env"])),
        after_help = "Bodies are signed with the signing secret: header X-Pgvault-Signature is\n\
            sha256=HEX(HMAC-SHA256(key, TIMESTAMP + \".\" + BODY)), TIMESTAMP being header\n\
            X-Pgvault-Timestamp. Store the key first with pgvault secret put NAME --signing-key\n\
            and grant it to the vault with pgvault secret grant NAME --vault VAULT.\n\n\
            Examples:\n  \
            pgvault notification channel add ops --vault prod --url https://hooks.example.com/pgvault \\\n    \
            --events failed,missed --signing-secret hook-key\n  \
            SLACK_URL=https://hooks.slack.com/services/… pgvault notification channel add team \\\n    \
            --vault prod --url-from-env SLACK_URL --format slack --events failed,missed,succeeded \\\n    \
            --signing-secret hook-key"
    )]
    Add {
        /// Channel name (short id, unique in the vault).
        name: String,
        /// Vault of the channel.
        #[arg(long)]
        vault: String,
        /// Webhook URL (https://, or http:// on a trusted network).
        #[arg(long)]
        url: Option<String>,
        /// Read the webhook URL from this environment variable (keeps a
        /// token in the URL out of the process list).
        #[arg(long, value_name = "VAR")]
        url_from_env: Option<String>,
        /// Body format.
        #[arg(long, value_enum, default_value_t = FormatArg::Generic)]
        format: FormatArg,
        /// Events to send, comma-separated: failed, missed, succeeded.
        #[arg(long, value_delimiter = ',', default_value = "failed,missed")]
        events: Vec<String>,
        /// Stored secret (a signing key the vault is granted) signing each body.
        #[arg(long, value_name = "SECRET")]
        signing_secret: Option<String>,
    },
    /// List a vault's channels (URLs as scheme and host only).
    List {
        /// Vault of the channel.
        #[arg(long)]
        vault: String,
    },
    /// Remove a channel and its deliveries.
    Remove {
        /// Channel name.
        name: String,
        /// Vault of the channel.
        #[arg(long)]
        vault: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// The full JSON event.
    Generic,
    /// {"text": "…"} for Slack-compatible incoming webhooks.
    Slack,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    Pending,
    Delivered,
    Failed,
}

pub async fn run(api: &Api, command: NotificationCommand) -> anyhow::Result<ExitCode> {
    match command {
        NotificationCommand::Channel(command) => channel(api, command).await,
        NotificationCommand::List {
            vault,
            state,
            limit,
        } => {
            let request = ListNotificationDeliveriesRequest {
                vault: vault
                    .as_deref()
                    .map(names::vault)
                    .transpose()?
                    .unwrap_or_default(),
                state: state.map_or(NotificationDeliveryState::Unspecified, state_to_pb) as i32,
                page_size: limit.unwrap_or(0),
            };
            let page = api
                .notifications()
                .list_notification_deliveries(request)
                .await
                .reply(api)?;
            if api.json() {
                print_json(&serde_json::json!({
                    "deliveries": page.deliveries.iter().map(delivery_json).collect::<Vec<_>>()
                }));
            } else {
                print_list(
                    &[
                        "DELIVERY",
                        "CREATED",
                        "EVENT",
                        "JOB",
                        "CHANNEL",
                        "STATE",
                        "ATTEMPTS",
                        "LAST ERROR",
                        "NEXT ATTEMPT",
                    ],
                    page.deliveries.iter().map(delivery_row).collect(),
                    "no notification deliveries",
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        NotificationCommand::Test { channel, vault } => {
            let name = channel_name(&vault, &channel)?;
            let delivery = api
                .notifications()
                .test_notification_channel(TestNotificationChannelRequest { name })
                .await
                .reply(api)?;
            if api.json() {
                print_json(&delivery_json(&delivery));
            } else {
                println!(
                    "test notification {} queued; follow it with pgvault notification list --vault {vault}",
                    names::short(&delivery.name)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn channel(api: &Api, command: ChannelCommand) -> anyhow::Result<ExitCode> {
    match command {
        ChannelCommand::Add {
            name,
            vault,
            url,
            url_from_env,
            format,
            events,
            signing_secret,
        } => {
            let url = match (url, url_from_env) {
                (Some(url), _) => url,
                (None, Some(var)) => std::env::var(&var)
                    .with_context(|| format!("environment variable {var} is not set"))?,
                (None, None) => bail!("give the webhook URL with --url or --url-from-env"),
            };
            let request = CreateNotificationChannelRequest {
                vault: names::vault(&vault)?,
                channel_id: name,
                url,
                format: match format {
                    FormatArg::Generic => NotificationFormat::Generic,
                    FormatArg::Slack => NotificationFormat::Slack,
                } as i32,
                events: events.iter().map(|e| e.trim().to_owned()).collect(),
                signing_secret: signing_secret
                    .as_deref()
                    .map(names::secret)
                    .transpose()?
                    .unwrap_or_default(),
            };
            let created = api
                .notifications()
                .create_notification_channel(request)
                .await
                .reply(api)?;
            show_channel(api, &created);
        }
        ChannelCommand::List { vault } => {
            let page = api
                .notifications()
                .list_notification_channels(ListNotificationChannelsRequest {
                    vault: names::vault(&vault)?,
                })
                .await
                .reply(api)?;
            if api.json() {
                print_json(&serde_json::json!({
                    "channels": page.channels.iter().map(channel_json).collect::<Vec<_>>()
                }));
            } else {
                print_list(
                    &[
                        "CHANNEL",
                        "URL",
                        "FORMAT",
                        "EVENTS",
                        "SIGNING SECRET",
                        "CREATED",
                    ],
                    page.channels.iter().map(channel_row).collect(),
                    "no notification channels",
                );
            }
        }
        ChannelCommand::Remove { name, vault } => {
            let name = channel_name(&vault, &name)?;
            api.notifications()
                .delete_notification_channel(DeleteNotificationChannelRequest {
                    name: name.clone(),
                })
                .await
                .reply(api)?;
            if api.json() {
                print_json(&serde_json::json!({ "name": name }));
            } else {
                println!("removed {name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn channel_name(vault: &str, channel: &str) -> anyhow::Result<String> {
    Ok(format!(
        "{}/notificationChannels/{channel}",
        names::vault(vault)?
    ))
}

fn format_text(format: i32) -> &'static str {
    match NotificationFormat::try_from(format) {
        Ok(NotificationFormat::Generic) => "generic",
        Ok(NotificationFormat::Slack) => "slack",
        _ => "-",
    }
}

fn state_to_pb(state: StateArg) -> NotificationDeliveryState {
    match state {
        StateArg::Pending => NotificationDeliveryState::Pending,
        StateArg::Delivered => NotificationDeliveryState::Delivered,
        StateArg::Failed => NotificationDeliveryState::Failed,
    }
}

fn state_text(state: i32) -> &'static str {
    match NotificationDeliveryState::try_from(state) {
        Ok(NotificationDeliveryState::Pending) => "pending",
        Ok(NotificationDeliveryState::Delivered) => "delivered",
        Ok(NotificationDeliveryState::Failed) => "failed",
        _ => "-",
    }
}

fn show_channel(api: &Api, c: &NotificationChannel) {
    if api.json() {
        print_json(&channel_json(c));
    } else {
        let row = channel_row(c);
        print_details(&[
            ("NAME", row[0].clone()),
            ("URL", row[1].clone()),
            ("FORMAT", row[2].clone()),
            ("EVENTS", row[3].clone()),
            ("SIGNING SECRET", row[4].clone()),
        ]);
    }
}

fn channel_row(c: &NotificationChannel) -> Vec<String> {
    vec![
        names::short(&c.name).to_owned(),
        c.url_host.clone(),
        format_text(c.format).to_owned(),
        c.events.join(","),
        or_dash(names::short(&c.signing_secret)),
        local_time(c.create_time.as_ref()),
    ]
}

fn channel_json(c: &NotificationChannel) -> serde_json::Value {
    serde_json::json!({
        "name": c.name,
        "url_host": c.url_host,
        "format": format_text(c.format),
        "events": c.events,
        "signing_secret": c.signing_secret,
    })
}

fn delivery_row(d: &NotificationDelivery) -> Vec<String> {
    vec![
        names::short(&d.name).to_owned(),
        local_time(d.create_time.as_ref()),
        d.event.clone(),
        or_dash(names::short(&d.job)),
        names::short(&d.channel).to_owned(),
        state_text(d.state).to_owned(),
        d.attempts.to_string(),
        or_dash(&d.last_error),
        local_time(d.next_attempt_time.as_ref()),
    ]
}

fn delivery_json(d: &NotificationDelivery) -> serde_json::Value {
    let time =
        |t: Option<&prost_types::Timestamp>| super::output::to_utc(t).map(|t| t.to_rfc3339());
    serde_json::json!({
        "name": d.name,
        "channel": d.channel,
        "event": d.event,
        "job": d.job,
        "state": state_text(d.state),
        "attempts": d.attempts,
        "last_error": d.last_error,
        "next_attempt_time": time(d.next_attempt_time.as_ref()),
        "create_time": time(d.create_time.as_ref()),
        "update_time": time(d.update_time.as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: NotificationCommand,
    }

    fn parse(args: &[&str]) -> Result<NotificationCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("notification").chain(args.iter().copied()))
            .map(|cli| cli.command)
    }

    #[test]
    fn a_channel_takes_its_url_from_one_place_and_events_as_a_list() {
        let add = parse(&[
            "channel",
            "add",
            "ops",
            "--vault",
            "prod",
            "--url",
            "https://h/x",
            "--format",
            "slack",
            "--events",
            "failed,succeeded",
            "--signing-secret",
            "hook-key",
        ])
        .expect("parses");
        match add {
            NotificationCommand::Channel(ChannelCommand::Add {
                format,
                events,
                signing_secret,
                ..
            }) => {
                assert_eq!(format, FormatArg::Slack);
                assert_eq!(events, ["failed", "succeeded"]);
                assert_eq!(signing_secret.as_deref(), Some("hook-key"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let defaults = parse(&[
            "channel",
            "add",
            "ops",
            "--vault",
            "prod",
            "--url-from-env",
            "U",
        ])
        .expect("parses");
        match defaults {
            NotificationCommand::Channel(ChannelCommand::Add { format, events, .. }) => {
                assert_eq!(format, FormatArg::Generic);
                assert_eq!(events, ["failed", "missed"]);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            parse(&["channel", "add", "ops", "--vault", "prod"]).is_err(),
            "no url"
        );
        assert!(
            parse(&[
                "channel",
                "add",
                "ops",
                "--vault",
                "prod",
                "--url",
                "https://h/x",
                "--url-from-env",
                "U",
            ])
            .is_err(),
            "two urls"
        );
        assert!(parse(&["list", "--state", "failed"]).is_ok());
        assert!(parse(&["list", "--state", "lost"]).is_err());
    }

    #[test]
    fn a_delivery_row_shows_its_attempts_and_last_error() {
        let row = delivery_row(&NotificationDelivery {
            name: "vaults/prod/notificationDeliveries/d1".into(),
            channel: "vaults/prod/notificationChannels/ops".into(),
            event: "failed".into(),
            job: "jobs/j1".into(),
            state: NotificationDeliveryState::Pending as i32,
            attempts: 2,
            last_error: "the receiver answered HTTP 503".into(),
            ..Default::default()
        });
        assert_eq!(
            &row[2..8],
            [
                "failed",
                "j1",
                "ops",
                "pending",
                "2",
                "the receiver answered HTTP 503"
            ]
        );
        assert_eq!(row[8], "-", "no next attempt time given");
    }
}
