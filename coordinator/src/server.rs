//! Starting and stopping a coordinator: connect to the state database,
//! migrate under an advisory lock, set up tokens, bind the listener, then run
//! the tonic server (every call through the access gate; reflection and
//! health open), the web console when configured (calling the same routes
//! through the same gate), the outbox dispatcher, the agent dispatcher and
//! sweeper, the scheduler, the lifecycle sweeper, the lease reaper and (when
//! given a dead-letter source) the dead-letter drain, the metrics feed and
//! (when configured) the metrics listener, and the notification sender
//! until shutdown. Shutdown ends agents' streams cleanly before the server
//! stops.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use futures::FutureExt;
use pgvault_proto::v1::access_service_server::AccessServiceServer;
use pgvault_proto::v1::agent_service_server::AgentServiceServer;
use pgvault_proto::v1::backup_instance_service_server::BackupInstanceServiceServer;
use pgvault_proto::v1::job_service_server::JobServiceServer;
use pgvault_proto::v1::notification_service_server::NotificationServiceServer;
use pgvault_proto::v1::policy_service_server::PolicyServiceServer;
use pgvault_proto::v1::recovery_point_service_server::RecoveryPointServiceServer;
use pgvault_proto::v1::restore_service_server::RestoreServiceServer;
use pgvault_proto::v1::secret_service_server::SecretServiceServer;
use pgvault_proto::v1::server_service_server::ServerServiceServer;
use pgvault_proto::v1::vault_service_server::VaultServiceServer;
use pgvault_proto::v1::worker_service_server::WorkerServiceServer;
use pgvault_queue::{DeadLetterSource, TaskPublisher};
use sqlx::postgres::PgConnectOptions;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, ServerTlsConfig};

use crate::access::AccessLayer;
use crate::agents::{AgentApi, Agents, HubSettings, SweepSettings};
use crate::api::ApiContext;
use crate::api::access::AccessApi;
use crate::api::instances::InstanceApi;
use crate::api::jobs::JobApi;
use crate::api::notifications::NotificationApi;
use crate::api::policies::PolicyApi;
use crate::api::recovery_points::RecoveryPointApi;
use crate::api::restores::RestoreApi;
use crate::api::secrets::SecretApi;
use crate::api::servers::ServerApi;
use crate::api::vaults::VaultApi;
use crate::auth;
use crate::config::{CoordinatorConfig, TlsFiles};
use crate::error::{CoordinatorError, Result};
use crate::reaper::{ReaperSettings, RetryPolicy};
use crate::scheduler::SchedulerSettings;
use crate::secrets::Cipher;
use crate::server_probe::{DirectProbe, Probes};
use crate::store::{Store, migrate};
use crate::worker_api::WorkerApi;
use crate::{dispatch, lifecycle, reaper, scheduler};

/// Entry point of the coordinator component.
pub struct Coordinator;

/// A running coordinator. Dropping it does not stop it; call `shutdown`.
pub struct CoordinatorHandle {
    local_addr: SocketAddr,
    console: Option<pgvault_console::ConsoleHandle>,
    metrics: Option<crate::metrics::MetricsHandle>,
    cancel: CancellationToken,
    server: Option<JoinHandle<std::result::Result<(), tonic::transport::Error>>>,
    background: Vec<JoinHandle<()>>,
}

impl Coordinator {
    /// Connects, migrates, binds `config.listen` and spawns the server and
    /// background tasks. Fails with one line naming what failed.
    pub async fn start(
        config: CoordinatorConfig,
        publisher: Arc<dyn TaskPublisher>,
    ) -> Result<CoordinatorHandle> {
        Self::start_with_dead_letters(config, publisher, None).await
    }

    /// [`Coordinator::start`], also draining the queue's dead letters into
    /// the state database (`ListDeadLetters`) when `dead_letters` is given.
    pub async fn start_with_dead_letters(
        config: CoordinatorConfig,
        publisher: Arc<dyn TaskPublisher>,
        dead_letters: Option<Box<dyn DeadLetterSource>>,
    ) -> Result<CoordinatorHandle> {
        validate(&config)?;
        let pool = migrate::connect(&config.database_url, config.database_max_connections).await?;
        let bootstrap_token = config.bootstrap_token.clone();
        let admin_token_file = config.admin_token_file.clone();
        let cipher = Cipher::new(&config.master_key);
        let sealing = cipher.clone();
        migrate::migrate_locked(&pool, move |conn| {
            async move {
                auth::bootstrap(
                    conn,
                    bootstrap_token.as_deref(),
                    admin_token_file.as_deref(),
                )
                .await?;
                let sealed = crate::store::notifications::seal_plain_urls(conn, &sealing).await?;
                if sealed > 0 {
                    tracing::info!(
                        channels = sealed,
                        "sealed the URLs of notification channels stored by an earlier version"
                    );
                }
                Ok(())
            }
            .boxed()
        })
        .await?;
        let store = Store::new(pool);
        if !publisher.is_durable() {
            // The queue lost its messages with the last process: publish queued jobs again.
            let republished = crate::store::outbox::republish_queued(store.pool()).await?;
            if republished > 0 {
                tracing::info!(
                    jobs = republished,
                    "re-publishing queued jobs to the in-process queue"
                );
            }
        }

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| {
                CoordinatorError::Unavailable(format!("cannot listen on {}: {e}", config.listen))
            })?;
        let local_addr = listener.local_addr().map_err(|e| {
            CoordinatorError::internal(format!("cannot read the listen address: {e}"))
        })?;
        let incoming = TcpIncoming::from_listener(listener, true, None).map_err(|e| {
            CoordinatorError::internal(format!("cannot listen on {local_addr}: {e}"))
        })?;

        let clock = config.clock.clone();
        let dispatch_wake = Arc::new(Notify::new());
        let cancel = CancellationToken::new();
        let agents = Agents::new(
            store.clone(),
            HubSettings {
                status_interval: config.agent_status_interval,
                coordinator: format!("{local_addr} (pid {})", std::process::id()),
            },
            cancel.clone(),
        );
        let metrics = crate::metrics::Metrics::with_queue(publisher.clone());
        let probes = Probes::new(Arc::new(DirectProbe), Arc::new(agents.probe()));
        let ctx = Arc::new(ApiContext {
            clock: clock.clone(),
            store: store.clone(),
            cipher: cipher.clone(),
            external_secrets: config.external_secrets.clone(),
            maintenance_databases: config.maintenance_databases.clone(),
            dispatch_wake: dispatch_wake.clone(),
            lease_ttl: config.lease_ttl,
            retry: retry_policy(&config),
            probes,
            worker_tools: Default::default(),
            metrics: metrics.clone(),
        });

        let (mut health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        health.set_serving::<VaultServiceServer<VaultApi>>().await;
        health.set_serving::<PolicyServiceServer<PolicyApi>>().await;
        health.set_serving::<ServerServiceServer<ServerApi>>().await;
        health.set_serving::<SecretServiceServer<SecretApi>>().await;
        health
            .set_serving::<BackupInstanceServiceServer<InstanceApi>>()
            .await;
        health
            .set_serving::<RecoveryPointServiceServer<RecoveryPointApi>>()
            .await;
        health
            .set_serving::<RestoreServiceServer<RestoreApi>>()
            .await;
        health.set_serving::<JobServiceServer<JobApi>>().await;
        health
            .set_serving::<NotificationServiceServer<NotificationApi>>()
            .await;
        health.set_serving::<WorkerServiceServer<WorkerApi>>().await;
        health.set_serving::<AccessServiceServer<AccessApi>>().await;
        health.set_serving::<AgentServiceServer<AgentApi>>().await;
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pgvault_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_error = |e: tonic_reflection::server::Error| {
            CoordinatorError::internal(format!("cannot build the reflection service: {e}"))
        };
        let reflection_v1 = reflection().build_v1().map_err(reflection_error)?;
        // Older clients (grpcurl before 1.9) only speak v1alpha.
        let reflection_v1alpha = reflection().build_v1alpha().map_err(reflection_error)?;

        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &config.tls {
            builder = builder.tls_config(server_tls(tls)?).map_err(|e| {
                CoordinatorError::invalid("tls", format!("cannot use the TLS certificate: {e}"))
            })?;
        }
        let routes = Routes::new(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(VaultServiceServer::new(VaultApi::new(ctx.clone())))
            .add_service(PolicyServiceServer::new(PolicyApi::new(ctx.clone())))
            .add_service(ServerServiceServer::new(ServerApi::new(ctx.clone())))
            .add_service(SecretServiceServer::new(SecretApi::new(ctx.clone())))
            .add_service(BackupInstanceServiceServer::new(InstanceApi::new(
                ctx.clone(),
            )))
            .add_service(RecoveryPointServiceServer::new(RecoveryPointApi::new(
                ctx.clone(),
            )))
            .add_service(RestoreServiceServer::new(RestoreApi::new(ctx.clone())))
            .add_service(JobServiceServer::new(JobApi::new(ctx.clone())))
            .add_service(NotificationServiceServer::new(NotificationApi::new(
                ctx.clone(),
            )))
            .add_service(WorkerServiceServer::new(WorkerApi::new(ctx.clone())))
            .add_service(AccessServiceServer::new(AccessApi::new(ctx.clone())))
            .add_service(agents.service(ctx.clone()));
        let console = match config.console.clone() {
            Some(options) => Some(
                crate::console::start(
                    options,
                    config.tls.as_ref(),
                    routes.clone(),
                    store.clone(),
                    cancel.clone(),
                )
                .await?,
            ),
            None => None,
        };
        let metrics_listener = match config.metrics {
            Some(options) => Some(
                crate::metrics::serve::start(
                    options,
                    metrics.clone(),
                    store.clone(),
                    cancel.clone(),
                )
                .await?,
            ),
            None => None,
        };
        // The gate authorises every call before any service sees it.
        let router = builder
            .layer(AccessLayer::new(store.clone()))
            .add_routes(routes);
        let stop = cancel.clone();
        let server = tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(incoming, async move { stop.cancelled().await })
                .await
        });

        let connect = PgConnectOptions::from_str(&config.database_url).map_err(|_| {
            CoordinatorError::invalid("database_url", "is not a valid postgresql:// URL")
        })?;
        let drain_store = store.clone();
        let mut background = agents.spawn(SweepSettings {
            connect: connect.clone(),
            interval: config.reaper_interval,
            wait: config.agent_wait,
        });
        background.extend([
            tokio::spawn(crate::metrics::feed::run(
                store.clone(),
                metrics,
                crate::metrics::feed::FeedSettings {
                    connect: connect.clone(),
                    interval: config.reaper_interval,
                },
                cancel.clone(),
            )),
            tokio::spawn(crate::notifications::sender::run(
                store.clone(),
                cipher.clone(),
                crate::notifications::sender::SenderSettings {
                    connect: connect.clone(),
                    options: config.notifications,
                },
                cancel.clone(),
            )),
            tokio::spawn(scheduler::run(
                ctx.clone(),
                clock.clone(),
                SchedulerSettings {
                    connect: connect.clone(),
                    interval: config.scheduler_interval,
                    max_lateness: config.schedule_max_lateness,
                },
                dispatch_wake.clone(),
                cancel.clone(),
            )),
            tokio::spawn(lifecycle::run(
                store.clone(),
                clock.clone(),
                lifecycle::SweeperSettings {
                    connect: connect.clone(),
                    interval: config.scheduler_interval,
                },
                dispatch_wake.clone(),
                cancel.clone(),
            )),
            tokio::spawn(dispatch::run(
                store.clone(),
                publisher,
                dispatch_wake.clone(),
                cancel.clone(),
            )),
            tokio::spawn(reaper::run(
                store,
                ReaperSettings {
                    connect,
                    interval: config.reaper_interval,
                    policy: retry_policy(&config),
                },
                dispatch_wake,
                cancel.clone(),
            )),
        ]);
        if let Some(source) = dead_letters {
            background.push(tokio::spawn(crate::dead_letters::drain::run(
                drain_store,
                source,
                cancel.clone(),
            )));
        }
        tracing::info!(address = %local_addr, tls = config.tls.is_some(), "coordinator listening");
        Ok(CoordinatorHandle {
            local_addr,
            console,
            metrics: metrics_listener,
            cancel,
            server: Some(server),
            background,
        })
    }
}

/// Superseded attempts' objects wait two lease periods: a fenced worker
/// learns of it at its next heartbeat and stops within that time.
fn retry_policy(config: &CoordinatorConfig) -> RetryPolicy {
    RetryPolicy {
        max_attempts: config.max_attempts,
        backoff: config.retry_backoff,
        garbage_grace: config.lease_ttl * 2,
    }
}

/// The listener's TLS identity, read from the configured PEM files.
fn server_tls(tls: &TlsFiles) -> Result<ServerTlsConfig> {
    pgvault_proto::tls::install_crypto_provider();
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            CoordinatorError::invalid(
                format!("coordinator.{key}"),
                format!("cannot read {}: {e}", path.display()),
            )
        })
    };
    let cert = read("tls_cert", &tls.cert)?;
    let key = read("tls_key", &tls.key)?;
    Ok(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
}

fn validate(config: &CoordinatorConfig) -> Result<()> {
    if config.max_attempts == 0 {
        return Err(CoordinatorError::invalid(
            "max_attempts",
            "must be at least 1",
        ));
    }
    if config.lease_ttl.as_secs_f64() < 1.0 {
        return Err(CoordinatorError::invalid(
            "lease_ttl",
            "must be at least 1 second",
        ));
    }
    if config.scheduler_interval.is_zero() {
        return Err(CoordinatorError::invalid(
            "scheduler_interval",
            "must be more than 0",
        ));
    }
    if config.reaper_interval.is_zero() {
        return Err(CoordinatorError::invalid(
            "reaper_interval",
            "must be more than 0",
        ));
    }
    if config.agent_wait.is_zero() {
        return Err(CoordinatorError::invalid(
            "agent_wait_seconds",
            "must be at least 1 second",
        ));
    }
    if config.agent_status_interval.as_secs() == 0
        || config.agent_status_interval.subsec_nanos() != 0
        || config.agent_status_interval > crate::config::MAX_AGENT_STATUS_INTERVAL
    {
        return Err(CoordinatorError::invalid(
            "agent_status_interval_seconds",
            format!(
                "must be a whole number of seconds, between 1 and {}",
                crate::config::MAX_AGENT_STATUS_INTERVAL.as_secs()
            ),
        ));
    }
    Ok(())
}

impl CoordinatorHandle {
    /// The address the gRPC server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The web console's URL, when it is served.
    pub fn console_url(&self) -> Option<&str> {
        self.console.as_ref().map(|c| c.url())
    }

    /// `http://…/metrics`, when metrics are served.
    pub fn metrics_url(&self) -> Option<&str> {
        self.metrics.as_ref().map(|m| m.url())
    }

    /// Waits until the gRPC server ends by itself (an error), or until
    /// `shutdown` is called from elsewhere.
    pub async fn wait(&mut self) -> Result<()> {
        match self.server.as_mut() {
            Some(server) => {
                let outcome = server.await;
                self.server = None;
                flatten(outcome)
            }
            None => Ok(()),
        }
    }

    /// Stops accepting calls, stops the background tasks and waits for them.
    pub async fn shutdown(mut self) -> Result<()> {
        self.cancel.cancel();
        let served = match self.server.take() {
            Some(server) => flatten(server.await),
            None => Ok(()),
        };
        for task in self.background.drain(..) {
            if let Err(error) = task.await {
                tracing::warn!(error = %error, "background task ended abnormally");
            }
        }
        if let Some(console) = self.console.take() {
            console.stopped().await;
        }
        if let Some(metrics) = self.metrics.take() {
            metrics.stopped().await;
        }
        tracing::info!(address = %self.local_addr, "coordinator stopped");
        served
    }
}

fn flatten(
    outcome: std::result::Result<
        std::result::Result<(), tonic::transport::Error>,
        tokio::task::JoinError,
    >,
) -> Result<()> {
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(CoordinatorError::Unavailable(format!(
            "gRPC server failed: {e}"
        ))),
        Err(e) => Err(CoordinatorError::internal(format!(
            "gRPC server task failed: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::validate;
    use crate::config::CoordinatorConfig;

    #[test]
    fn the_agent_status_interval_is_whole_seconds_between_1_and_an_hour() {
        let with = |interval: Duration| {
            let mut config = CoordinatorConfig::new("postgresql://localhost/pgvault", [0; 32]);
            config.agent_status_interval = interval;
            validate(&config)
        };
        for accepted in [1, 5, 3600] {
            assert!(with(Duration::from_secs(accepted)).is_ok(), "{accepted} s");
        }
        for refused in [
            Duration::ZERO,
            Duration::from_millis(1500),
            Duration::from_secs(3601),
        ] {
            let error = with(refused).expect_err("refused").to_string();
            assert!(
                error.contains("agent_status_interval_seconds")
                    && error.contains("between 1 and 3600"),
                "{refused:?}: {error}"
            );
        }
    }
}
