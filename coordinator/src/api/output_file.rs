//! The name of the SQL file a restore as files writes: checked when given
//! (one file name, no directories: the directory is the destination URL),
//! else `<database>-<snapshot time>.sql`.

use chrono::{DateTime, Utc};

use crate::error::{CoordinatorError, Result};

/// Longest file name accepted (common file systems' limit).
const MAX_NAME: usize = 255;

/// `name` if it is a plain file name.
pub fn check_name(field: &str, name: &str) -> Result<String> {
    if name.len() > MAX_NAME {
        return Err(CoordinatorError::invalid(
            field,
            format!("a file name has at most {MAX_NAME} bytes"),
        ));
    }
    if name == "." || name == ".." || name.contains(['/', '\\']) {
        return Err(CoordinatorError::invalid(
            field,
            format!(
                "\"{name}\" is not a plain file name; put the directory in the destination URL and the name here"
            ),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(CoordinatorError::invalid(
            field,
            "a file name cannot hold control characters",
        ));
    }
    Ok(name.to_string())
}

/// `<database>-<YYYYMMDDTHHMMSSZ>.sql`, the database name reduced to
/// characters safe in any file system and object store.
pub fn default_name(database: &str, snapshot_time: DateTime<Utc>) -> String {
    let safe: String = database
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    format!("{safe}-{}.sql", snapshot_time.format("%Y%m%dT%H%M%SZ"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_name_holds_database_and_snapshot_time() {
        let time = DateTime::parse_from_rfc3339("2024-01-02T03:04:05Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(default_name("shop", time), "shop-20240102T030405Z.sql");
        assert_eq!(
            default_name("my db/x", time),
            "my_db_x-20240102T030405Z.sql"
        );
    }

    #[test]
    fn names_with_directories_are_refused() {
        assert!(check_name("file_name", "out.sql").is_ok());
        for bad in ["a/b.sql", "..", "a\\b", "x\ny"] {
            let error = check_name("file_name", bad).expect_err(bad);
            assert!(error.to_string().starts_with("file_name: "), "{error}");
        }
    }
}
