//! Opaque page tokens for keyset pagination: the key of the last row of a
//! page, base64url-encoded. Lists order by a short id, or newest first by
//! `(create_time, id)`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{CoordinatorError, Result};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Requested page size, defaulted and capped; one more row is fetched to
/// know whether a next page exists.
pub fn page_size(requested: u32) -> i64 {
    let size = if requested == 0 {
        DEFAULT_PAGE_SIZE
    } else {
        requested.min(MAX_PAGE_SIZE)
    };
    i64::from(size)
}

fn bad_token() -> CoordinatorError {
    CoordinatorError::invalid("page_token", "is not a token returned by a previous call")
}

fn decode(token: &str) -> Result<String> {
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad_token())?;
    String::from_utf8(bytes).map_err(|_| bad_token())
}

fn encode(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

/// Token after a page ordered by text id: the last id.
pub fn id_token(last_id: &str) -> String {
    encode(&format!("i:{last_id}"))
}

/// The id a text-id page starts after (empty token: the beginning).
pub fn after_id(token: &str) -> Result<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    decode(token)?
        .strip_prefix("i:")
        .map(|s| Some(s.to_string()))
        .ok_or_else(bad_token)
}

/// Token after a page ordered by `(create_time, id)`.
pub fn time_token(create_time: DateTime<Utc>, id: Uuid) -> String {
    encode(&format!("t:{}:{id}", create_time.timestamp_micros()))
}

/// The `(create_time, id)` key a time-ordered page continues from.
pub fn after_time(token: &str) -> Result<Option<(DateTime<Utc>, Uuid)>> {
    if token.is_empty() {
        return Ok(None);
    }
    let text = decode(token)?;
    let rest = text.strip_prefix("t:").ok_or_else(bad_token)?;
    let (micros, id) = rest.split_once(':').ok_or_else(bad_token)?;
    let micros: i64 = micros.parse().map_err(|_| bad_token())?;
    let time = DateTime::from_timestamp_micros(micros).ok_or_else(bad_token)?;
    let id = Uuid::parse_str(id).map_err(|_| bad_token())?;
    Ok(Some((time, id)))
}

/// Splits off the look-ahead row: returns the page and whether more exist.
pub fn split_page<T>(mut rows: Vec<T>, size: i64) -> (Vec<T>, bool) {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let more = rows.len() > size;
    rows.truncate(size);
    (rows, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        assert_eq!(
            after_id(&id_token("prod")).unwrap().as_deref(),
            Some("prod")
        );
        let id = Uuid::new_v4();
        let time = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        assert_eq!(after_time(&time_token(time, id)).unwrap(), Some((time, id)));
        assert!(after_id("!!").is_err());
        assert!(after_time(&id_token("x")).is_err());
        assert_eq!(page_size(0), 50);
        assert_eq!(page_size(5000), 1000);
    }
}
