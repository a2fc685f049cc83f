//! Signing a body: `X-Pgvault-Signature: sha256=<hex>` is the HMAC-SHA256,
//! keyed with the channel's signing secret, of `"{timestamp}.{body}"`,
//! where `timestamp` is the `X-Pgvault-Timestamp` header (Unix seconds at
//! sending). A receiver recomputes it over the raw body, compares in
//! constant time and refuses timestamps more than a few minutes old, so a
//! captured request cannot be replayed later. Each retry is signed afresh.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The header holding the signature.
pub const SIGNATURE_HEADER: &str = "X-Pgvault-Signature";
/// The header holding the signed timestamp (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "X-Pgvault-Timestamp";

/// `sha256=<hex>` of `"{timestamp}.{body}"` under `key`.
pub fn sign(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(key, timestamp, body)))
}

/// True when `header` is the signature of `body` at `timestamp` under `key`
/// (what a receiver checks; compared in constant time).
pub fn verify(key: &[u8], timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(given) = header
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let expected = mac(key, timestamp, body);
    given.len() == expected.len() && bool::from(given.ct_eq(&expected))
}

fn mac(key: &[u8], timestamp: i64, body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("hmac accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently:
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac key
        let header = sign(b"key", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            header,
            "sha256=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
        );
        assert!(verify(b"key", 1_700_000_000, br#"{"a":1}"#, &header));
    }

    #[test]
    fn a_changed_body_timestamp_or_key_fails_verification() {
        let header = sign(b"key", 1_700_000_000, b"{}");
        assert!(!verify(b"key", 1_700_000_000, b"{ }", &header));
        assert!(
            !verify(b"key", 1_700_000_001, b"{}", &header),
            "a replayed body with a new timestamp"
        );
        assert!(!verify(b"other", 1_700_000_000, b"{}", &header));
        assert!(!verify(b"key", 1_700_000_000, b"{}", "sha256=zz"));
        assert!(!verify(b"key", 1_700_000_000, b"{}", "md5=00"));
    }
}
