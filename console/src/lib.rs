//! pgvault's web console: server-rendered pages for operators, served by
//! the coordinator process on `coordinator.console_listen`.
//!
//! The console is a **client of the public gRPC API**, never a second way
//! into the state database: every page and action calls the coordinator's
//! own API (the same tonic services behind the same access gate, reached
//! in process through an [`ApiChannel`]) with the signed-in user's API
//! token. So every action is authorised exactly as the CLI's would be; the
//! console hides the buttons `AccessService.TestPermissions` says the token
//! may not use, and a forged form still fails with `PERMISSION_DENIED`
//! (a 403 page).
//!
//! Sign-in exchanges a token for a session: a random 256-bit id in an
//! HttpOnly, SameSite=Strict cookie (Secure over TLS); the token stays in
//! this process's memory ([`session`]) and never reaches a page or a log.
//! Every form carries the session's CSRF token and every POST is checked
//! against it and against `Origin`/`Sec-Fetch-Site` ([`guard`]).
//!
//! ```no_run
//! # async fn demo(api: pgvault_console::ApiChannel) -> Result<(), pgvault_console::ConsoleError> {
//! use pgvault_console::{Console, ConsoleOptions};
//! let options = ConsoleOptions::new("127.0.0.1:8080".parse().unwrap());
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let console = Console::start(options, api, cancel.clone()).await?;
//! println!("web console on {}", console.url());
//! cancel.cancel();
//! console.stopped().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`api`]: the gRPC channel and the per-user clients (bearer token).
//! - [`session`]: sessions kept in memory, with idle and absolute expiry.
//! - [`guard`]: the signed-in extractor, CSRF and origin checks, cookies.
//! - [`error`]: the one error type and the pages it renders.
//! - [`format`]: how values read (sizes, durations, times, states).
//! - [`assets`]: the stylesheet and script, embedded in the binary.
//! - [`pages`]: one module per page or flow, and the router.
//! - [`serve`]: binding (with `pgvault up`'s free-port fallback) and
//!   serving over HTTP or TLS until cancelled.

pub mod api;
pub mod assets;
pub mod error;
pub mod format;
pub mod guard;
pub mod pages;
pub mod serve;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use api::ApiChannel;
pub use error::ConsoleError;
pub use pages::router;
pub use serve::PortFallback;

/// How long a session lives without a request, by default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long a session lives at most, however busy.
pub const DEFAULT_ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(12 * 3600);

/// Where and how the console is served.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// What to do when `listen`'s port is taken (`pgvault up` moves on to
    /// a free port; a configured address fails instead).
    pub fallback: PortFallback,
    /// A session ends after this long without a request.
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, whatever happens.
    pub absolute_timeout: Duration,
    /// Serve over TLS with this certificate chain and key (PEM); cookies
    /// are then marked Secure.
    pub tls: Option<TlsPem>,
}

/// A PEM certificate chain and private key.
#[derive(Clone)]
pub struct TlsPem {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsPem { cert, key: <redacted> }")
    }
}

impl ConsoleOptions {
    /// Plain HTTP on exactly `listen`, default session timeouts.
    pub fn new(listen: SocketAddr) -> Self {
        ConsoleOptions {
            listen,
            fallback: PortFallback::Fail,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            absolute_timeout: DEFAULT_ABSOLUTE_TIMEOUT,
            tls: None,
        }
    }
}

/// Entry point of the console component.
pub struct Console;

/// A running console. Cancel the token given to [`Console::start`] to stop
/// it, then await [`ConsoleHandle::stopped`].
pub struct ConsoleHandle {
    local_addr: SocketAddr,
    url: String,
    task: JoinHandle<()>,
}

impl Console {
    /// Binds the listener and serves the console until `cancel`.
    pub async fn start(
        options: ConsoleOptions,
        api: ApiChannel,
        cancel: CancellationToken,
    ) -> Result<ConsoleHandle, ConsoleError> {
        let tls = options
            .tls
            .as_ref()
            .map(|pem| serve::tls_acceptor(&pem.cert, &pem.key))
            .transpose()?;
        let listener = serve::bind(options.listen, options.fallback).await?;
        let local_addr = listener.local_addr().map_err(|e| {
            ConsoleError::Unavailable(format!("cannot read the console's address: {e}"))
        })?;
        let state = pages::AppState::new(
            api,
            Arc::new(session::Sessions::new(
                options.idle_timeout,
                options.absolute_timeout,
            )),
            tls.is_some(),
        );
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}/", serve::browsable(local_addr));
        let task = tokio::spawn(serve::serve(listener, tls, router(state), cancel));
        tracing::info!(address = %local_addr, url = %url, "web console listening");
        Ok(ConsoleHandle {
            local_addr,
            url,
            task,
        })
    }
}

impl ConsoleHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL to open in a browser (`http://127.0.0.1:8080/`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Waits until the server has stopped (after its token was cancelled).
    pub async fn stopped(self) {
        if let Err(error) = self.task.await {
            tracing::warn!(error = %error, "web console task ended abnormally");
        }
    }
}
