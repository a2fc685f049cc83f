//! [`JobFailure`]: what a job or configure row reports when it fails — a
//! catalogue code and a message about this failure. The recommended action
//! comes with the code, so no caller writes one.

use std::fmt;

use crate::catalogue::ErrorCode;

/// A code and a message. The message says what happened to *this* job and
/// anything particular to it (names, the exact command to run); it holds no
/// secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    pub code: ErrorCode,
    pub message: String,
}

impl JobFailure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        JobFailure {
            code,
            message: message.into(),
        }
    }

    /// The code's text, as stored and sent.
    pub fn code_str(&self) -> &'static str {
        self.code.as_str()
    }

    /// The catalogue's action for the code.
    pub fn recommended_action(&self) -> &'static str {
        self.code.recommended_action()
    }
}

/// `CODE: message`.
impl fmt::Display for JobFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for JobFailure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_takes_its_action_from_the_catalogue() {
        let failure = JobFailure::new(ErrorCode::TaskDeadLettered, "no worker claimed it");
        assert_eq!(failure.code_str(), "TaskDeadLettered");
        assert_eq!(
            failure.recommended_action(),
            ErrorCode::TaskDeadLettered.recommended_action()
        );
        assert_eq!(
            failure.to_string(),
            "TaskDeadLettered: no worker claimed it"
        );
    }
}
