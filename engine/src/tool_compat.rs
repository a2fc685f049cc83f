//! Restoring with a `pg_restore` newer than the target server. A server
//! whose own major's tools are not installed is served by a newer set
//! (the lowest major at least its own), and `pg_restore` then opens every
//! session with settings of its own major — `SET transaction_timeout = 0`
//! from 17 on — that an older server does not know. Those session
//! settings, and nothing else, are left out for such targets: from the
//! post-data preamble the engine runs itself, and as the one tolerated
//! error of the pre-data `pg_restore` (which then runs without
//! `--exit-on-error`, every other error still failing the restore).

/// Session settings `pg_restore` writes that servers before a major lack.
const SESSION_SETTINGS: &[(&str, i32)] = &[("transaction_timeout", 170000)];

/// Settings `pg_restore` of `tools_major` writes that a server of
/// `version_num` does not know (none when the tools are not newer).
pub(crate) fn unknown_settings(tools_major: u32, version_num: i32) -> Vec<&'static str> {
    let tools = i32::try_from(tools_major)
        .unwrap_or(i32::MAX)
        .saturating_mul(10_000);
    SESSION_SETTINGS
        .iter()
        .filter(|(_, since)| tools >= *since && version_num < *since)
        .map(|(name, _)| *name)
        .collect()
}

/// `script` without the `SET` lines of `unknown` settings.
pub(crate) fn without_settings(script: &str, unknown: &[&str]) -> String {
    script
        .lines()
        .filter(|line| !unknown.iter().any(|name| is_set_of(line, name)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_set_of(line: &str, name: &str) -> bool {
    line.trim()
        .strip_prefix("SET ")
        .and_then(|rest| rest.trim_start().strip_prefix(name))
        .is_some_and(|rest| {
            rest.trim_start().starts_with(['=', ' ']) || rest.trim_start().starts_with("TO")
        })
}

/// Whether every error `pg_restore` reported (run without
/// `--exit-on-error`) is about one of the `unknown` settings.
pub(crate) fn only_unknown_settings_failed(stderr: &str, unknown: &[&str]) -> bool {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR:")).collect();
    !errors.is_empty()
        && errors.iter().all(|line| {
            unknown.iter().any(|name| {
                line.contains(&format!("unrecognized configuration parameter \"{name}\""))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_before_17_lack_the_transaction_timeout_of_newer_tools() {
        assert_eq!(unknown_settings(18, 160_014), vec!["transaction_timeout"]);
        assert_eq!(unknown_settings(17, 120_022), vec!["transaction_timeout"]);
        assert!(unknown_settings(16, 160_014).is_empty());
        assert!(unknown_settings(15, 120_022).is_empty());
        assert!(unknown_settings(18, 170_000).is_empty());
    }

    #[test]
    fn only_the_unknown_settings_lines_are_left_out() {
        let preamble =
            "SET statement_timeout = 0;\nSET transaction_timeout = 0;\nSET lock_timeout = 0;";
        assert_eq!(
            without_settings(preamble, &["transaction_timeout"]),
            "SET statement_timeout = 0;\nSET lock_timeout = 0;"
        );
        assert_eq!(without_settings(preamble, &[]), preamble);
    }

    #[test]
    fn a_restore_whose_only_errors_are_unknown_settings_is_recognised() {
        let unknown = ["transaction_timeout"];
        let tolerated = "pg_restore: error: could not execute query: ERROR:  unrecognized configuration parameter \"transaction_timeout\"\nCommand was: SET transaction_timeout = 0;\npg_restore: warning: errors ignored on restore: 1\n";
        assert!(only_unknown_settings_failed(tolerated, &unknown));
        let real = format!(
            "{tolerated}pg_restore: error: could not execute query: ERROR:  relation \"x\" already exists\n"
        );
        assert!(!only_unknown_settings_failed(&real, &unknown));
        assert!(!only_unknown_settings_failed("", &unknown));
    }
}
