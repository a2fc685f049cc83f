//! Every error code pgvault reports on a failed job or a refused configure
//! row, in one catalogue: the stable name (stored as text on jobs and shown
//! by every client), a one-line summary of what it means, the one
//! recommended action, whether a failure is retryable by default, and a
//! category. Coordinator, engine, runner and CLI all take codes, actions and
//! the SQLSTATE classification from here, so a code means the same thing
//! and comes with the same fix wherever it is produced.
//!
//! ```
//! use pgvault_errors::{ErrorCode, JobFailure};
//!
//! let failure = JobFailure::new(ErrorCode::UserErrorDBNotFound, "database \"shop\" does not exist");
//! assert_eq!(failure.code.as_str(), "UserErrorDBNotFound");
//! assert_eq!(failure.recommended_action(), ErrorCode::UserErrorDBNotFound.recommended_action());
//! assert_eq!("UserErrorDBNotFound".parse(), Ok(ErrorCode::UserErrorDBNotFound));
//! ```
//!
//! Codes are stored and sent as text. A code this build does not know (one
//! a newer worker reports) fails [`ErrorCode::from_str`](std::str::FromStr)
//! and nothing else: callers keep such codes as the strings they are.
//!
//! # Layout
//! - `catalogue`: the table itself, one entry per code.
//! - `code`: [`ErrorCode`]'s accessors, parsing and comparisons; [`Category`].
//! - `failure`: [`JobFailure`], a code with a message, its action implied.
//! - `sqlstate`: [`classify_sqlstate`], the one mapping of PostgreSQL errors.
//! - `readme`: the README's "Error codes" table, rendered and checked.

mod catalogue;
mod code;
mod failure;
mod readme;
mod sqlstate;

pub use catalogue::ErrorCode;
pub use code::{Category, UnknownCode};
pub use failure::JobFailure;
pub use readme::{README_SECTION, markdown_table};
pub use sqlstate::classify_sqlstate;
