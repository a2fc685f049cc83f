//! The agent crate's one error: why it cannot start. Once running, it never
//! gives up: every failure after start is logged and retried.

use pgvault_worker::runner::ChannelError;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A setting or flag is missing or invalid; the message names it.
    #[error("{0}")]
    Options(String),
    /// The channel to the coordinator cannot be set up (endpoint, CA
    /// certificate, token).
    #[error(transparent)]
    Channel(#[from] ChannelError),
}
