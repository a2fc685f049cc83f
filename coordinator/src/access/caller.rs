//! Who is calling: the bearer token of a request, checked against the
//! state database. Only the access gate authenticates; handlers receive
//! the [`Caller`] it admitted (see [`crate::access::in_vault`]).
//!
//! Tokens are stored as SHA-256 hashes in `api_tokens` and compared in
//! constant time.

use std::sync::Arc;

use http::HeaderMap;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::roles::{Permission, Role};
use crate::auth::hash_token;
use crate::error::{CoordinatorError, Result};
use crate::store::{Store, roles, tokens};

const HOW_TO: &str = "pass an API token in the `authorization` metadata as \"Bearer <token>\" \
                      (the CLI reads --token or PGVAULT_TOKEN)";

/// An authenticated caller. Built only here, from a valid token.
#[derive(Debug, Clone)]
pub struct Caller {
    token_id: Uuid,
    token_name: String,
    /// The token's global role, if it has one.
    global_role: Option<Role>,
    /// The token's roles on single vaults, when the gate needed them (the
    /// global role did not grant the call's permission).
    vault_roles: Option<Arc<[(String, Role)]>>,
}

impl Caller {
    pub fn token_id(&self) -> Uuid {
        self.token_id
    }

    /// The token's display name (never its value).
    pub fn token_name(&self) -> &str {
        &self.token_name
    }

    /// Whether this is an agent's token (role `Agent`); which agent is
    /// `store::agents::find_by_token`'s answer.
    pub fn is_agent(&self) -> bool {
        self.global_role == Some(Role::Agent)
    }

    /// Whether the global role grants `permission`.
    pub fn holds_globally(&self, permission: Permission) -> bool {
        self.global_role.is_some_and(|r| r.grants(permission))
    }

    /// Whether the token's global role, or its role on `vault`, grants
    /// `permission` (e.g. whether a configure caller may grant secret access).
    pub async fn permits(
        &self,
        store: &Store,
        permission: Permission,
        vault: Option<&str>,
    ) -> Result<bool> {
        if self.holds_globally(permission) {
            return Ok(true);
        }
        let Some(vault) = vault else {
            return Ok(false);
        };
        if let Some(known) = &self.vault_roles {
            return Ok(on_vault(known, vault).is_some_and(|r| r.grants(permission)));
        }
        let role = roles::on_vault(store.pool(), self.token_id, vault).await?;
        Ok(role
            .and_then(|r| r.parse::<Role>().ok())
            .is_some_and(|r| r.grants(permission)))
    }

    /// Whether the role on `vault` (loaded by the gate) grants `permission`.
    pub(super) fn holds_on(&self, permission: Permission, vault: &str) -> bool {
        self.vault_roles
            .as_deref()
            .and_then(|known| on_vault(known, vault))
            .is_some_and(|r| r.grants(permission))
    }

    /// Whether some vault role (loaded by the gate) grants `permission`.
    pub(super) fn holds_on_some_vault(&self, permission: Permission) -> bool {
        self.vault_roles
            .as_deref()
            .is_some_and(|known| known.iter().any(|(_, r)| r.grants(permission)))
    }

    /// Reads the token's vault roles, once.
    pub(super) async fn load_vault_roles(&mut self, store: &Store) -> Result<()> {
        if self.vault_roles.is_none() {
            let rows = roles::list(store.pool(), Some(self.token_id)).await?;
            let known: Vec<(String, Role)> = rows
                .into_iter()
                .filter_map(|row| Some((row.vault_id, row.role.parse().ok()?)))
                .collect();
            self.vault_roles = Some(known.into());
        }
        Ok(())
    }

    #[cfg(test)]
    pub(super) fn for_test(global_role: Option<Role>, vault_roles: &[(&str, Role)]) -> Caller {
        Caller {
            token_id: Uuid::nil(),
            token_name: "test".into(),
            global_role,
            vault_roles: Some(
                vault_roles
                    .iter()
                    .map(|(v, r)| (v.to_string(), *r))
                    .collect(),
            ),
        }
    }
}

fn on_vault(known: &[(String, Role)], vault: &str) -> Option<Role> {
    known.iter().find(|(v, _)| v == vault).map(|(_, r)| *r)
}

/// The caller behind the request's `authorization: Bearer <token>`.
pub(super) async fn authenticate(store: &Store, headers: &HeaderMap) -> Result<Caller> {
    let header = headers.get("authorization").ok_or_else(|| {
        CoordinatorError::Unauthenticated(format!("no API token given: {HOW_TO}"))
    })?;
    let malformed =
        || CoordinatorError::Unauthenticated(format!("malformed authorization metadata: {HOW_TO}"));
    let value = header.to_str().map_err(|_| malformed())?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(malformed)?;
    let hash = hash_token(token);
    let invalid =
        || CoordinatorError::Unauthenticated(format!("the API token is not valid: {HOW_TO}"));
    let row = tokens::find_by_hash(store.pool(), &hash)
        .await?
        .ok_or_else(invalid)?;
    if !bool::from(row.token_sha256.as_slice().ct_eq(hash.as_slice())) {
        return Err(invalid());
    }
    Ok(Caller {
        token_id: row.id,
        token_name: row.name,
        global_role: Role::from_stored(&row.role),
        vault_roles: None,
    })
}
