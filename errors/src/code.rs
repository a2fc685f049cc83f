//! What an [`ErrorCode`] answers (its text, summary, action, retry default
//! and [`Category`]), parsing codes from text, and comparing a code with
//! the text of a stored or reported one.

use std::fmt;
use std::str::FromStr;

use crate::catalogue::ErrorCode;

/// Who fixes a failure, roughly: a console groups and colours by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// Credentials, permissions, names, settings: the user fixes them.
    User,
    /// pgvault and what it runs on (workers, queue, datastores, tools);
    /// often transient.
    System,
    /// A recovery point is damaged or incomplete.
    Integrity,
    /// The job was stopped on purpose.
    Cancelled,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::User => "user",
            Category::System => "system",
            Category::Integrity => "integrity",
            Category::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One catalogue entry (built by the `catalogue!` macro).
pub(crate) struct Entry {
    pub name: &'static str,
    pub category: Category,
    pub retryable: bool,
    pub summary: &'static str,
    pub action: &'static str,
}

impl ErrorCode {
    /// The code's text, as stored on jobs and shown by every client.
    pub const fn as_str(self) -> &'static str {
        self.entry().name
    }

    /// What the code means, in one lowercase line without a trailing period.
    pub const fn summary(self) -> &'static str {
        self.entry().summary
    }

    /// The one thing to do about it, as a sentence.
    pub const fn recommended_action(self) -> &'static str {
        self.entry().action
    }

    /// Whether a failure with this code is worth another attempt, unless
    /// whoever reports it knows better.
    pub const fn retryable(self) -> bool {
        self.entry().retryable
    }

    pub const fn category(self) -> Category {
        self.entry().category
    }

    /// The code named `text`, compared ignoring ASCII case (for people
    /// typing a code; stored codes are always exact).
    pub fn lookup(text: &str) -> Option<ErrorCode> {
        let text = text.trim();
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_str().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A code this build of pgvault does not know. Stored and reported codes
/// stay text, so this only tells a caller to keep the text as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCode(pub String);

impl fmt::Display for UnknownCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown error code \"{}\": see `pgvault errors` for the codes this version knows",
            self.0
        )
    }
}

impl std::error::Error for UnknownCode {}

impl FromStr for ErrorCode {
    type Err = UnknownCode;

    /// Exact match on the code's text.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == text)
            .ok_or_else(|| UnknownCode(text.to_string()))
    }
}

// Stored and reported codes are strings: let them be compared with a code
// directly (`job_error.code == ErrorCode::Cancelled`).
impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for ErrorCode {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<ErrorCode> for str {
    fn eq(&self, other: &ErrorCode) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<ErrorCode> for &str {
    fn eq(&self, other: &ErrorCode) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<ErrorCode> for String {
    fn eq(&self, other: &ErrorCode) -> bool {
        self == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_code_parses_back_from_its_text_and_names_are_unique() {
        let mut seen = HashSet::new();
        for &code in ErrorCode::ALL {
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
            assert_eq!(format!("{code:?}"), code.as_str(), "variant and text agree");
            assert!(seen.insert(code.as_str()), "{code} twice");
        }
    }

    #[test]
    fn every_code_has_a_summary_and_one_sentence_of_action() {
        for &code in ErrorCode::ALL {
            let (summary, action) = (code.summary(), code.recommended_action());
            assert!(!summary.is_empty(), "{code} has no summary");
            assert!(
                summary.starts_with(|c: char| c.is_lowercase()) && !summary.ends_with('.'),
                "{code}: a summary is lowercase without a trailing period: {summary}"
            );
            assert!(
                action.starts_with(|c: char| c.is_uppercase()) && action.ends_with('.'),
                "{code}: an action is a sentence: {action}"
            );
            for text in [summary, action] {
                assert!(
                    !text.contains('|') && !text.contains('\n'),
                    "{code}: fits one table cell: {text}"
                );
            }
        }
    }

    #[test]
    fn codes_keep_the_text_jobs_already_store() {
        // Jobs store codes as text: these must never change.
        for (code, text) in [
            (
                ErrorCode::UserErrorDBUserAuthFailed,
                "UserErrorDBUserAuthFailed",
            ),
            (ErrorCode::UserCannotAssignRoles, "UserCannotAssignRoles"),
            (
                ErrorCode::SystemErrorLeaseExpired,
                "SystemErrorLeaseExpired",
            ),
            (ErrorCode::TaskDeadLettered, "TaskDeadLettered"),
            (ErrorCode::Cancelled, "Cancelled"),
            (ErrorCode::Internal, "Internal"),
        ] {
            assert_eq!(code.as_str(), text);
        }
    }

    #[test]
    fn an_unknown_code_fails_only_parsing_and_says_where_to_look() {
        let error = "SystemErrorFromTheFuture".parse::<ErrorCode>().unwrap_err();
        assert_eq!(error.0, "SystemErrorFromTheFuture");
        assert!(error.to_string().contains("pgvault errors"), "{error}");
        assert_eq!(ErrorCode::lookup("systemerrorfromthefuture"), None);
        assert_eq!(
            ErrorCode::lookup(" taskdeadlettered "),
            Some(ErrorCode::TaskDeadLettered)
        );
        assert!("Cancelled".parse::<ErrorCode>().is_ok());
        assert!(
            "cancelled".parse::<ErrorCode>().is_err(),
            "stored codes are exact"
        );
    }

    #[test]
    fn stored_code_text_compares_with_a_code() {
        let stored = String::from("Cancelled");
        assert!(stored == ErrorCode::Cancelled);
        assert!(ErrorCode::Cancelled == "Cancelled");
        assert!(stored != ErrorCode::Internal);
    }

    #[test]
    fn retry_defaults_follow_who_can_fix_it() {
        assert!(ErrorCode::UserErrorServerConnectionClosed.retryable());
        assert!(ErrorCode::DatastoreFull.retryable());
        assert!(!ErrorCode::ChecksumMismatch.retryable());
        assert!(!ErrorCode::Cancelled.retryable());
        assert_eq!(ErrorCode::ChecksumMismatch.category(), Category::Integrity);
    }
}
