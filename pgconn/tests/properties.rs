//! Property tests of the three parsers: every value survives formatting and
//! parsing in each form, arbitrary input never panics, and no error message
//! ever contains the password it was given.

use std::time::Duration;

use pgvault_pgconn::{ConnParams, Password, SslMode, parse};
use proptest::prelude::*;

/// Any text without NUL (PostgreSQL cannot take NUL in these values).
fn value() -> impl Strategy<Value = String> {
    prop_oneof!["[^\u{0}]{1,24}", "[ ;='\"\\\\a-z@:/?&%#\\[\\]]{1,16}",]
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z0-9-]{1,8}){0,3}",
        Just("::1".to_string()),
        Just("127.0.0.1".to_string()),
        Just("fe80::1:2".to_string()),
    ]
}

fn ssl_mode() -> impl Strategy<Value = SslMode> {
    prop_oneof![
        Just(SslMode::Disable),
        Just(SslMode::Allow),
        Just(SslMode::Prefer),
        Just(SslMode::Require),
        Just(SslMode::VerifyCa),
        Just(SslMode::VerifyFull),
    ]
}

prop_compose! {
    fn params()(
        host in proptest::option::of(host()),
        port in proptest::option::of(1u16..),
        database in proptest::option::of(value()),
        user in proptest::option::of(value()),
        password in proptest::option::of(value()),
        ssl_mode in ssl_mode(),
        trust in any::<bool>(),
        application_name in proptest::option::of(value()),
        timeout in proptest::option::of(1u64..3600),
    ) -> ConnParams {
        ConnParams {
            host,
            port,
            database,
            user,
            password: password.map(Password::new),
            trust_server_certificate: trust && !ssl_mode.verifies(),
            ssl_mode,
            ssl_root_cert: None,
            application_name,
            connect_timeout: timeout.map(Duration::from_secs),
        }
    }
}

/// What the libpq and URI forms can carry (no trust flag of their own).
fn without_trust(p: &ConnParams) -> ConnParams {
    ConnParams {
        trust_server_certificate: false,
        ..p.clone()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn ado_round_trips(p in params()) {
        let text = p.to_ado();
        prop_assert_eq!(parse(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?, p);
    }

    #[test]
    fn libpq_round_trips(p in params()) {
        let p = without_trust(&p);
        let text = p.to_libpq();
        prop_assert_eq!(parse(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?, p);
    }

    #[test]
    fn uri_round_trips(p in params()) {
        let p = without_trust(&p);
        let text = p.to_uri();
        prop_assert_eq!(parse(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?, p);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse(&text);
    }

    #[test]
    fn arbitrary_structured_text_never_panics(text in "[a-zA-Z =;'\"\\\\%@:/?&\\[\\]]{0,80}") {
        let _ = parse(&text);
        let _ = parse(&format!("postgresql://{text}"));
    }

    #[test]
    fn errors_and_debug_never_show_the_password(
        password in "[a-zA-Z0-9]{12,20}",
        junk in "[ ;='\"%a-z]{0,6}",
    ) {
        for text in [
            format!("Server=h;Password={password}{junk};Port=x"),
            format!("host=h password='{password}{junk} port=x"),
            format!("postgresql://u:{password}{junk}@h:x/db"),
            format!("host=h password={password} {junk}"),
            format!("Server=h;Password=\"{password}{junk}"),
        ] {
            match parse(&text) {
                Err(e) => prop_assert!(!e.to_string().contains(&password), "{}", e),
                Ok(p) => {
                    let debug = format!("{p:?}");
                    prop_assert!(!debug.contains(&password));
                    prop_assert!(!p.to_string().contains(&password));
                }
            }
        }
    }
}
