//! PostgreSQL errors → error codes, by SQLSTATE, in one place: the engine's
//! statements and pgconn's connection attempts (hence the coordinator's
//! readiness checks) classify through [`classify_sqlstate`].

use crate::catalogue::ErrorCode;

/// The code of a PostgreSQL error with SQLSTATE `sqlstate` and the server's
/// message `server_message` (only consulted to tell row-level security from
/// other missing privileges). Anything unclassified is `Internal`; callers
/// with a better fallback (a connection attempt) substitute it.
pub fn classify_sqlstate(sqlstate: &str, server_message: &str) -> ErrorCode {
    match sqlstate {
        // invalid_password, invalid_authorization_specification (pg_hba.conf)
        "28P01" | "28000" => ErrorCode::UserErrorDBUserAuthFailed,
        // invalid_catalog_name
        "3D000" => ErrorCode::UserErrorDBNotFound,
        // insufficient_privilege
        "42501" if server_message.contains("row-level security") => {
            ErrorCode::UserErrorRowLevelSecurity
        }
        "42501" => ErrorCode::UserErrorMissingDBPermissions,
        // lock_not_available
        "55P03" => ErrorCode::UserErrorLockTimeout,
        // duplicate_database
        "42P04" => ErrorCode::UserErrorDatabaseNameAlreadyInUse,
        // admin_shutdown, crash_shutdown, cannot_connect_now,
        // too_many_connections, and class 08 (connection exception)
        "57P01" | "57P02" | "57P03" | "53300" => ErrorCode::UserErrorServerConnectionClosed,
        s if s.starts_with("08") => ErrorCode::UserErrorServerConnectionClosed,
        // query_canceled
        "57014" => ErrorCode::Cancelled,
        _ => ErrorCode::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_the_codes_users_fix() {
        for (sqlstate, code) in [
            ("28P01", ErrorCode::UserErrorDBUserAuthFailed),
            ("28000", ErrorCode::UserErrorDBUserAuthFailed),
            ("3D000", ErrorCode::UserErrorDBNotFound),
            ("42501", ErrorCode::UserErrorMissingDBPermissions),
            ("55P03", ErrorCode::UserErrorLockTimeout),
            ("42P04", ErrorCode::UserErrorDatabaseNameAlreadyInUse),
            ("57P01", ErrorCode::UserErrorServerConnectionClosed),
            ("57P02", ErrorCode::UserErrorServerConnectionClosed),
            ("57P03", ErrorCode::UserErrorServerConnectionClosed),
            ("53300", ErrorCode::UserErrorServerConnectionClosed),
            ("08006", ErrorCode::UserErrorServerConnectionClosed),
            ("57014", ErrorCode::Cancelled),
            ("XX000", ErrorCode::Internal),
            ("", ErrorCode::Internal),
        ] {
            assert_eq!(
                classify_sqlstate(sqlstate, "some message"),
                code,
                "{sqlstate}"
            );
        }
    }

    #[test]
    fn a_privilege_error_naming_row_level_security_is_told_apart() {
        assert_eq!(
            classify_sqlstate(
                "42501",
                "query would be affected by row-level security policy for table \"t\""
            ),
            ErrorCode::UserErrorRowLevelSecurity
        );
        assert_eq!(
            classify_sqlstate("42501", "permission denied for table t"),
            ErrorCode::UserErrorMissingDBPermissions
        );
    }
}
