//! `AccessService`: API tokens (created with a random value shown once,
//! stored as a hash, revoked by deletion) and role assignments, globally
//! (`api_tokens.role`) or per vault (`vault_role_assignments`). Every call
//! needs the `Grant` permission globally, which only `Owner` grants (the
//! access gate checks it), except `TestPermissions`: any caller that may
//! read the vault it names asks which RPCs its own roles allow there.
//! Agents' tokens are made and revoked with their agent (`AgentService`):
//! their role is not assignable, and they are not changed or revoked here.

use std::sync::Arc;

use pgvault_proto::v1 as pb;
use pgvault_proto::v1::access_service_server::AccessService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::access::{self, Role, Rpc, vault_scope};
use crate::api::ApiContext;
use crate::api::convert::timestamp;
use crate::auth::{generate_token, hash_token};
use crate::error::{CoordinatorError, Result};
use crate::names;
use crate::store::{agents, roles, tokens, vaults};

pub struct AccessApi {
    ctx: Arc<ApiContext>,
}

/// "" → global; "vaults/{vault}" → that vault (which must exist).
async fn parse_scope(ctx: &ApiContext, field: &str, scope: &str) -> Result<Option<String>> {
    if scope.trim().is_empty() {
        return Ok(None);
    }
    let vault = names::parse_vault(field, scope.trim())?;
    vaults::get(ctx.store.pool(), &vault).await?;
    Ok(Some(vault))
}

/// Refuses `change` on the token of an agent: its one role is `Agent`, and
/// it is revoked by deleting the agent.
async fn not_an_agents(ctx: &ApiContext, id: Uuid, change: &str) -> Result<()> {
    match agents::find_by_token(ctx.store.pool(), id).await? {
        Some(agent) => Err(CoordinatorError::precondition(format!(
            "{} is the token of agent \"{}\" and keeps the Agent role alone, so it cannot be {change}; delete the agent (pgvault agent delete {}) to revoke it",
            names::token_name(id),
            agent.id,
            agent.id
        ))),
        None => Ok(()),
    }
}

fn scope_name(vault: Option<&str>) -> String {
    vault.map(names::vault_name).unwrap_or_default()
}

fn to_pb(t: tokens::TokenInfo) -> pb::ApiToken {
    pb::ApiToken {
        name: names::token_name(t.id),
        display_name: t.name,
        create_time: Some(timestamp(t.create_time)),
    }
}

impl AccessApi {
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        AccessApi { ctx }
    }

    async fn create(&self, req: pb::CreateTokenRequest) -> Result<pb::CreateTokenResponse> {
        let display = req.display_name.trim();
        if display.is_empty() || display.len() > 100 || display.chars().any(char::is_control) {
            return Err(CoordinatorError::invalid(
                "display_name",
                "1-100 printable characters are required",
            ));
        }
        let role = match req.role.trim() {
            "" => None,
            r => Some(r.parse::<Role>()?),
        };
        let scope = parse_scope(&self.ctx, "scope", &req.scope).await?;
        if scope.is_some() && role.is_none() {
            return Err(CoordinatorError::invalid(
                "role",
                "is required with a scope",
            ));
        }
        let secret = generate_token();
        let id = Uuid::new_v4();
        let global = if scope.is_none() {
            role.map(Role::as_str).unwrap_or("")
        } else {
            ""
        };
        let mut tx = self.ctx.store.begin().await?;
        let info = tokens::insert(&mut *tx, id, display, &hash_token(&secret), global).await?;
        if let (Some(vault), Some(role)) = (&scope, role) {
            roles::assign(&mut *tx, id, vault, role.as_str()).await?;
        }
        tx.commit().await?;
        tracing::info!(token = %id, role = role.map(Role::as_str).unwrap_or(""), vault = scope.as_deref().unwrap_or(""), "api token created");
        Ok(pb::CreateTokenResponse {
            token: Some(to_pb(info)),
            secret,
        })
    }

    async fn assign(&self, assignment: pb::RoleAssignment) -> Result<pb::RoleAssignment> {
        let id = names::parse_token("assignment.principal", &assignment.principal)?;
        let role: Role = assignment.role.parse()?;
        let scope = parse_scope(&self.ctx, "assignment.scope", &assignment.scope).await?;
        if tokens::find(self.ctx.store.pool(), id).await?.is_none() {
            return Err(CoordinatorError::not_found("token", names::token_name(id)));
        }
        not_an_agents(&self.ctx, id, "given other roles").await?;
        match &scope {
            None => {
                tokens::set_global_role(self.ctx.store.pool(), id, role.as_str()).await?;
            }
            Some(vault) => roles::assign(self.ctx.store.pool(), id, vault, role.as_str()).await?,
        }
        tracing::info!(token = %id, role = role.as_str(), vault = scope.as_deref().unwrap_or(""), "role assigned");
        Ok(pb::RoleAssignment {
            principal: names::token_name(id),
            role: role.as_str().to_string(),
            scope: scope_name(scope.as_deref()),
        })
    }

    async fn list_roles(&self, principal: &str) -> Result<Vec<pb::RoleAssignment>> {
        let filter = match principal.trim() {
            "" => None,
            p => Some(names::parse_token("principal", p)?),
        };
        let pool = self.ctx.store.pool();
        let mut out = Vec::new();
        for t in tokens::list(pool).await? {
            if filter.is_some_and(|f| f != t.id) || t.role.is_empty() {
                continue;
            }
            out.push(pb::RoleAssignment {
                principal: names::token_name(t.id),
                role: t.role,
                scope: String::new(),
            });
        }
        for r in roles::list(pool, filter).await? {
            out.push(pb::RoleAssignment {
                principal: names::token_name(r.token_id),
                role: r.role,
                scope: names::vault_name(&r.vault_id),
            });
        }
        Ok(out)
    }

    async fn remove(&self, req: pb::RemoveRoleRequest) -> Result<()> {
        let id = names::parse_token("principal", &req.principal)?;
        not_an_agents(&self.ctx, id, "stripped of its role").await?;
        let removed = match parse_scope(&self.ctx, "scope", &req.scope).await? {
            None => match tokens::find(self.ctx.store.pool(), id).await? {
                Some(t) if !t.role.is_empty() => {
                    tokens::set_global_role(self.ctx.store.pool(), id, "").await?
                }
                _ => false,
            },
            Some(vault) => roles::remove(self.ctx.store.pool(), id, &vault).await?,
        };
        if !removed {
            return Err(CoordinatorError::not_found(
                "role assignment",
                format!("{} {}", names::token_name(id), req.scope.trim())
                    .trim()
                    .to_string(),
            ));
        }
        tracing::info!(token = %id, scope = %req.scope.trim(), "role removed");
        Ok(())
    }
}

#[tonic::async_trait]
impl AccessService for AccessApi {
    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        Ok(Response::new(self.create(request.into_inner()).await?))
    }

    async fn list_tokens(
        &self,
        _request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let tokens = tokens::list(self.ctx.store.pool()).await?;
        Ok(Response::new(pb::ListTokensResponse {
            tokens: tokens.into_iter().map(to_pb).collect(),
        }))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let caller = access::caller(&request)?;
        let id = names::parse_token("name", &request.get_ref().name)?;
        if id == caller.token_id() {
            return Err(CoordinatorError::precondition(
                "a token cannot revoke itself; revoke it with another Owner token",
            )
            .into());
        }
        not_an_agents(&self.ctx, id, "revoked on its own").await?;
        if !tokens::delete(self.ctx.store.pool(), id).await? {
            return Err(CoordinatorError::not_found("token", names::token_name(id)).into());
        }
        tracing::info!(token = %id, "api token revoked");
        Ok(Response::new(pb::RevokeTokenResponse {}))
    }

    async fn assign_role(
        &self,
        request: Request<pb::AssignRoleRequest>,
    ) -> Result<Response<pb::RoleAssignment>, Status> {
        let assignment = request
            .into_inner()
            .assignment
            .ok_or_else(|| CoordinatorError::invalid("assignment", "is required"))?;
        Ok(Response::new(self.assign(assignment).await?))
    }

    async fn list_roles(
        &self,
        request: Request<pb::ListRolesRequest>,
    ) -> Result<Response<pb::ListRolesResponse>, Status> {
        let assignments = self.list_roles(&request.get_ref().principal).await?;
        Ok(Response::new(pb::ListRolesResponse { assignments }))
    }

    async fn remove_role(
        &self,
        request: Request<pb::RemoveRoleRequest>,
    ) -> Result<Response<pb::RemoveRoleResponse>, Status> {
        self.remove(request.into_inner()).await?;
        Ok(Response::new(pb::RemoveRoleResponse {}))
    }

    async fn test_permissions(
        &self,
        request: Request<pb::TestPermissionsRequest>,
    ) -> Result<Response<pb::TestPermissionsResponse>, Status> {
        let resource = request.get_ref().resource.trim().to_string();
        if !resource.is_empty() && !resource.starts_with("vaults/") {
            return Err(CoordinatorError::invalid(
                "resource",
                "must be empty or name a vault (\"vaults/{vault}\") or a resource in one",
            )
            .into());
        }
        let vault = vault_scope(&resource);
        let caller = access::in_vault(&request, vault.as_deref())?;
        let rpcs = request
            .get_ref()
            .permissions
            .iter()
            .enumerate()
            .map(|(i, name)| {
                Rpc::from_name(name.trim()).ok_or_else(|| {
                    CoordinatorError::invalid(
                        format!("permissions[{i}]"),
                        "is not an RPC of the API: give a method name such as \"BackupNow\"",
                    )
                })
            })
            .collect::<Result<Vec<Rpc>>>()?;
        let allowed = access::allowed(&caller, &self.ctx.store, &rpcs, vault.as_deref()).await?;
        Ok(Response::new(pb::TestPermissionsResponse {
            permissions: allowed.iter().map(|rpc| format!("{rpc:?}")).collect(),
            principal: names::token_name(caller.token_id()),
            display_name: caller.token_name().to_string(),
        }))
    }
}
