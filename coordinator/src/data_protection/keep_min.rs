//! The floor under retention: a policy's `keep_min`, how many of an
//! instance's newest live recovery points expiry never removes, so backups
//! failing for longer than the retention period do not eat every point.
//! At least 1 (a floor of 0 would be no floor); 0 in a request asks for the
//! default.

use crate::error::{CoordinatorError, Result};

/// The floor when a policy does not choose one.
pub const DEFAULT_KEEP_MIN: u32 = 3;
/// The largest floor accepted (a larger one is a typo, not a policy).
pub const MAX_KEEP_MIN: u32 = 1000;

/// The floor asked for in `field` (0: the default), checked.
pub fn keep_min(field: &str, requested: u32) -> Result<u32> {
    match requested {
        0 => Ok(DEFAULT_KEEP_MIN),
        n if n <= MAX_KEEP_MIN => Ok(n),
        n => Err(CoordinatorError::invalid(
            field,
            format!(
                "must be between 1 and {MAX_KEEP_MIN} recovery points (default {DEFAULT_KEEP_MIN}), got {n}"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_asks_for_the_default_and_large_floors_are_refused_with_the_range() {
        assert_eq!(keep_min("policy.keep_min", 0).unwrap(), DEFAULT_KEEP_MIN);
        assert_eq!(keep_min("policy.keep_min", 1).unwrap(), 1);
        assert_eq!(
            keep_min("policy.keep_min", MAX_KEEP_MIN).unwrap(),
            MAX_KEEP_MIN
        );
        let error = keep_min("policy.keep_min", MAX_KEEP_MIN + 1).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("policy.keep_min: must be between 1 and 1000"),
            "{error}"
        );
    }
}
