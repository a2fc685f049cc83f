//! Short names of backup instances: the readable name people type
//! (`prod/db1-billing`) instead of the instance's UUID. An instance is
//! named `<server>-<database>` when it is created, sanitised to the short
//! id rule (`pgvault_proto::names::validate_short_id`), and suffixed `-2`,
//! `-3`, … when that name is taken in its vault. A short name never parses
//! as a UUID, so a name segment is either an id or a short name, never both.
//!
//! [`short_name_for`] is the one place a name is derived; the store keeps it
//! unique per vault (`migrations/0015_instance_short_names.sql`, which names
//! the instances created before short names the same way).

use uuid::Uuid;

/// Longest short name (the short id rule).
pub const MAX_LEN: usize = 63;

/// `text` lowercased, every run of characters outside `[a-z0-9]` one '-',
/// no leading or trailing '-'.
fn sanitise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// The default name before any suffix: `<server>-<database>` sanitised,
/// starting with a letter, at most [`MAX_LEN`] characters.
pub fn base_name(server: &str, database: &str) -> String {
    let server = sanitise(server);
    let database = sanitise(database);
    let joined = match (server.is_empty(), database.is_empty()) {
        (false, false) => format!("{server}-{database}"),
        (false, true) => format!("{server}-db"),
        (true, false) => database,
        (true, true) => "db".to_owned(),
    };
    let named = if joined.starts_with(|c: char| c.is_ascii_lowercase()) {
        joined
    } else {
        format!("db-{joined}")
    };
    truncate(&named, MAX_LEN)
}

/// A prefix every name [`short_name_for`] could give an instance on
/// `server` starts with (what the store reads to know the names taken).
pub fn collision_prefix(server: &str) -> String {
    sanitise(server).chars().take(8).collect()
}

/// At most `len` characters, without a trailing '-'.
fn truncate(name: &str, len: usize) -> String {
    let mut cut: String = name.chars().take(len).collect();
    while cut.ends_with('-') {
        cut.pop();
    }
    cut
}

/// The short name a new instance of `database` on `server` gets in a vault
/// where `taken(name)` says which names already exist: the base name, or
/// the first of `base-2`, `base-3`, … that is free (the base shortened so
/// the suffix fits). Names parsing as a UUID are skipped.
pub fn short_name_for(server: &str, database: &str, taken: impl Fn(&str) -> bool) -> String {
    let base = base_name(server, database);
    let free = |name: &str| !taken(name) && Uuid::parse_str(name).is_err();
    if free(&base) {
        return base;
    }
    (2u64..)
        .map(|n| {
            let suffix = format!("-{n}");
            format!("{}{suffix}", truncate(&base, MAX_LEN - suffix.len()))
        })
        .find(|name| free(name))
        .expect("some suffix is free")
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use pgvault_proto::names::validate_short_id;

    use super::*;

    fn none(_: &str) -> bool {
        false
    }

    #[test]
    fn default_name_is_server_dash_database() {
        assert_eq!(short_name_for("db1", "billing", none), "db1-billing");
        assert_eq!(
            short_name_for("shop-server", "shop", none),
            "shop-server-shop"
        );
    }

    #[test]
    fn names_are_sanitised_to_the_short_id_rule() {
        assert_eq!(
            short_name_for("db1", "Billing_EU 2024", none),
            "db1-billing-eu-2024"
        );
        assert_eq!(short_name_for("db1", "__ünï__", none), "db1-n");
        assert_eq!(short_name_for("db1", "!!!", none), "db1-db");
        assert_eq!(base_name("", "2024"), "db-2024");
        let long = short_name_for("pg", &"x".repeat(200), none);
        assert_eq!(long.len(), MAX_LEN);
        for name in [
            long,
            short_name_for("db1", "a--b", none),
            base_name("", ""),
            short_name_for("db1", "trailing-", none),
        ] {
            validate_short_id(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!name.contains("--"), "{name}");
        }
    }

    #[test]
    fn collisions_get_the_first_free_suffix() {
        let taken: HashSet<&str> = ["db1-billing", "db1-billing-2"].into();
        assert_eq!(
            short_name_for("db1", "billing", |n| taken.contains(n)),
            "db1-billing-3"
        );
        // "Billing" and "billing" sanitise alike: the second is suffixed.
        let taken: HashSet<&str> = ["db1-billing"].into();
        assert_eq!(
            short_name_for("db1", "Billing", |n| taken.contains(n)),
            "db1-billing-2"
        );
    }

    #[test]
    fn suffixed_long_names_still_fit() {
        let base = base_name("pg", &"y".repeat(100));
        let name = short_name_for("pg", &"y".repeat(100), |n| n == base);
        assert_eq!(name.len(), MAX_LEN);
        assert!(name.ends_with("-2"), "{name}");
        validate_short_id(&name).unwrap();
    }

    #[test]
    fn every_name_starts_with_the_collision_prefix() {
        for (server, database) in [("db1", "billing"), ("a-very-long-server", "x"), ("pg", "")] {
            let prefix = collision_prefix(server);
            let taken = |n: &str| n == base_name(server, database);
            assert!(short_name_for(server, database, none).starts_with(&prefix));
            assert!(short_name_for(server, database, taken).starts_with(&prefix));
        }
    }

    #[test]
    fn a_name_never_parses_as_a_uuid() {
        let server = "a1b2c3d4";
        let database = "e5f6-1234-1234-123456789abc";
        let base = base_name(server, database);
        assert!(Uuid::parse_str(&base).is_ok(), "{base}");
        let name = short_name_for(server, database, none);
        assert_eq!(name, format!("{base}-2"));
        assert!(Uuid::parse_str(&name).is_err());
    }
}
