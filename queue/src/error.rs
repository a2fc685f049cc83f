//! The one error type of the queue crate.

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The broker could not be reached; the URL is shown without credentials.
    #[error("cannot connect to message broker {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The broker refused (nacked) a published message.
    #[error("message broker refused message {message_id}")]
    Nacked { message_id: String },
    /// A broker call failed after connecting.
    #[error("message broker error: {0}")]
    Broker(String),
    /// The queue was shut down.
    #[error("task queue is closed")]
    Closed,
}

impl From<lapin::Error> for QueueError {
    fn from(e: lapin::Error) -> Self {
        QueueError::Broker(e.to_string())
    }
}
