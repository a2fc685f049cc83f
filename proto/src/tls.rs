//! The one TLS crypto provider of every gRPC endpoint pgvault opens.
//!
//! tonic builds its rustls configurations from the process-wide default
//! provider, and rustls can only pick one by itself when exactly one of its
//! `ring`/`aws-lc-rs` features is on. A dependency that turns the other one
//! on (feature unification in a workspace build) would make every TLS
//! channel panic at the first handshake, so each place that configures TLS
//! for tonic calls [`install_crypto_provider`] first: ring, the provider the
//! rest of pgvault (pgconn, the console) names explicitly.

use std::sync::Once;

/// Makes ring the process's rustls provider unless one is installed already;
/// cheap and idempotent.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Another provider installed first (by an embedding program) is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_provider_is_installed_and_a_second_call_is_harmless() {
        super::install_crypto_provider();
        super::install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
