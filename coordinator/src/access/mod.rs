//! Authorisation: what each role may do, what each RPC needs, and the one
//! check every handler makes ([`ApiContext::authorize`](crate::api::ApiContext::authorize)).
//!
//! A token has at most one global role (`api_tokens.role`) and at most one
//! role per vault (`vault_role_assignments`). A call is allowed when the
//! global role, or the role on the vault the call names, grants the
//! permission the RPC needs ([`Rpc::permission`], the one table).
//!
//! Workers and agents call the `WorkerService` with a token holding the
//! `Worker` role (or `Owner`): claiming hands out database credentials, so
//! no other role may.
//!
//! # Layout
//! - `roles`: [`Role`] and [`Permission`], and which role grants what.
//! - `rpc`: [`Rpc`], every RPC with the permission it needs.

mod roles;
mod rpc;

pub use roles::{Permission, Role};
pub use rpc::Rpc;

/// The vault a resource name lies in (`vaults/{vault}/…`), read leniently:
/// authorisation runs before the handler validates the name.
pub fn vault_scope(name: &str) -> Option<String> {
    let rest = name.trim().strip_prefix("vaults/")?;
    let id = rest.split('/').next().unwrap_or_default();
    (!id.is_empty() && id != "-").then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_is_the_named_vault() {
        assert_eq!(
            vault_scope("vaults/prod/backupInstances/x").as_deref(),
            Some("prod")
        );
        assert_eq!(vault_scope("vaults/prod").as_deref(), Some("prod"));
        assert_eq!(vault_scope("vaults/-"), None);
        assert_eq!(vault_scope("servers/a"), None);
    }
}
