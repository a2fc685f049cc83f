//! Fuzz target: any bytes fed to the connection-string parser must yield a
//! value or an error, never a panic; a parsed value must re-format and
//! re-parse in all three forms, and errors must not quote the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match pgvault_pgconn::parse(text) {
        Ok(params) => {
            let again = pgvault_pgconn::parse(&params.to_ado()).expect("ADO.NET form re-parses");
            assert_eq!(again, params);
            let plain = pgvault_pgconn::ConnParams {
                trust_server_certificate: false,
                ..params
            };
            assert_eq!(
                pgvault_pgconn::parse(&plain.to_libpq()).expect("libpq form re-parses"),
                plain
            );
            assert_eq!(
                pgvault_pgconn::parse(&plain.to_uri()).expect("URI form re-parses"),
                plain
            );
        }
        Err(error) => {
            assert_eq!(error.code(), "UserErrorSecretValueInUnsupportedFormat");
        }
    }
});
