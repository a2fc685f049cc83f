//! Authorisation: what each role may do, what each RPC needs, and the one
//! layer that enforces it before any handler runs ([`AccessLayer`]).
//!
//! A token has at most one global role (`api_tokens.role`) and at most one
//! role per vault (`vault_role_assignments`). A call is allowed when the
//! global role, or the role on the vault the call names, grants the
//! permission the RPC needs ([`Rpc::permission`], the one table).
//!
//! The gate authenticates every call (health and reflection excepted),
//! refuses paths without a row in the table, and refuses tokens that hold
//! the permission nowhere. Calls scoped to a vault ([`Scope::Vault`]) that
//! the gate admitted through a vault role still need that vault to be the
//! one the request names: their handlers read it from the request and call
//! [`in_vault`]. Handlers get at the caller only through the gate's
//! [`Admitted`] ([`in_vault`], [`caller`]); nothing else authenticates.
//!
//! Workers call the `WorkerService` with a token holding the `Worker` role
//! (or `Owner`): claiming hands out database credentials, so no other role
//! may. Agents hold a token of their own with the `Agent` role, made by
//! `CreateAgent` and never assignable: it grants `Work` (claims limited to
//! the agent's own jobs by `ClaimTask`) and `AgentConnect` (the agent's
//! stream and probes, which check the token is that agent's), nothing else.
//!
//! # Layout
//! - `roles`: [`Role`] and [`Permission`], and which role grants what.
//! - `rpc`: [`Rpc`], every RPC with its path, permission and [`Scope`].
//! - `caller`: [`Caller`], authenticated from the bearer token.
//! - `gate`: [`AccessLayer`], the tower layer deciding each call.

mod caller;
mod gate;
mod roles;
mod rpc;

use tonic::Request;

pub use caller::Caller;
pub use gate::{AccessGate, AccessLayer, Admitted};
pub use roles::{Permission, Role};
pub use rpc::{Rpc, Scope};

use crate::error::{CoordinatorError, Result};
use crate::store::Store;

/// The gate's decision on `request`; an error (never a pass) when the gate
/// did not run.
fn admitted<T>(request: &Request<T>) -> Result<&Admitted> {
    request.extensions().get::<Admitted>().ok_or_else(|| {
        CoordinatorError::internal("the call reached its handler without passing the access gate")
    })
}

/// The caller of a call the gate decided alone: an RPC of [`Scope::Global`],
/// or one whose permission the caller holds globally. For a call scoped to
/// a vault and admitted through a vault role, use [`in_vault`].
pub fn caller<T>(request: &Request<T>) -> Result<Caller> {
    let admitted = admitted(request)?;
    if admitted.caller.holds_globally(admitted.rpc.permission()) {
        Ok(admitted.caller.clone())
    } else {
        Err(CoordinatorError::internal(format!(
            "{:?} is scoped to a vault: its handler must check the vault",
            admitted.rpc
        )))
    }
}

/// The caller of `request`, once its global role or its role on `vault`
/// (the vault the request names; `None` when it names none) grants what
/// the call's RPC needs. Handlers of [`Scope::Vault`] RPCs call this first.
pub fn in_vault<T>(request: &Request<T>, vault: Option<&str>) -> Result<Caller> {
    let Admitted { caller, rpc } = admitted(request)?;
    let permission = rpc.permission();
    let allowed =
        caller.holds_globally(permission) || vault.is_some_and(|v| caller.holds_on(permission, v));
    if allowed {
        Ok(caller.clone())
    } else {
        Err(gate::denied(caller, *rpc, vault))
    }
}

/// Which of `rpcs` `caller` may call with `vault` named (`None`: no vault,
/// so only the global role counts), by the rule the gate and [`in_vault`]
/// apply: global RPCs need the permission globally, vault-scoped ones
/// globally or on `vault`. What `TestPermissions` answers.
pub async fn allowed(
    caller: &Caller,
    store: &Store,
    rpcs: &[Rpc],
    vault: Option<&str>,
) -> Result<Vec<Rpc>> {
    let mut caller = caller.clone();
    caller.load_vault_roles(store).await?;
    Ok(rpcs
        .iter()
        .copied()
        .filter(|rpc| {
            let permission = rpc.permission();
            caller.holds_globally(permission)
                || (rpc.scope() == Scope::Vault
                    && vault.is_some_and(|v| caller.holds_on(permission, v)))
        })
        .collect())
}

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

    fn request(caller: Caller, rpc: Rpc) -> Request<()> {
        let mut request = Request::new(());
        request.extensions_mut().insert(Admitted { caller, rpc });
        request
    }

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

    #[test]
    fn handlers_without_the_gate_get_no_caller() {
        let bare = Request::new(());
        assert!(matches!(caller(&bare), Err(CoordinatorError::Internal(_))));
        assert!(matches!(
            in_vault(&bare, Some("v")),
            Err(CoordinatorError::Internal(_))
        ));
    }

    #[test]
    fn a_vault_role_reaches_its_vault_only() {
        let operator = Caller::for_test(None, &[("v", Role::BackupOperator)]);
        let call = request(operator, Rpc::BackupNow);
        assert!(in_vault(&call, Some("v")).is_ok());
        let error = in_vault(&call, Some("w")).unwrap_err();
        assert!(matches!(error, CoordinatorError::PermissionDenied(_)));
        assert!(error.to_string().contains("on vault \"w\""), "{error}");
        assert!(error.to_string().contains("--vault w"), "{error}");
        assert!(in_vault(&call, None).is_err());
        // A vault-scoped call admitted through a vault role has no caller
        // until its vault is checked.
        assert!(matches!(caller(&call), Err(CoordinatorError::Internal(_))));
    }

    #[tokio::test]
    async fn allowed_applies_the_scope_of_each_rpc() {
        let operator = Caller::for_test(Some(Role::BackupReader), &[("v", Role::BackupOperator)]);
        let asked = [
            Rpc::BackupNow,
            Rpc::RestoreAsDatabase,
            Rpc::StopProtection,
            Rpc::ListServers,
            Rpc::RegisterServer,
        ];
        // The vault roles are loaded already, so the store is never read.
        let store = Store::new(
            sqlx::postgres::PgPoolOptions::new()
                .connect_lazy("postgresql://nobody@127.0.0.1:1/none")
                .expect("a lazy pool"),
        );
        let on_v = allowed(&operator, &store, &asked, Some("v"))
            .await
            .expect("allowed");
        assert_eq!(
            on_v,
            [Rpc::BackupNow, Rpc::RestoreAsDatabase, Rpc::ListServers]
        );
        let on_w = allowed(&operator, &store, &asked, Some("w"))
            .await
            .expect("allowed");
        assert_eq!(on_w, [Rpc::ListServers]);
        let nowhere = allowed(&operator, &store, &asked, None)
            .await
            .expect("allowed");
        assert_eq!(nowhere, [Rpc::ListServers]);
    }

    #[test]
    fn a_global_role_reaches_every_vault() {
        let contributor = Caller::for_test(Some(Role::BackupContributor), &[]);
        let call = request(contributor, Rpc::CreatePolicy);
        assert!(in_vault(&call, Some("v")).is_ok());
        assert!(in_vault(&call, None).is_ok());
        assert!(caller(&call).is_ok());
    }
}
