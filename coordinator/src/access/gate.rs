//! The access gate: a tower layer in front of every gRPC service. For each
//! call it maps the path to its [`Rpc`] and decides before any handler
//! runs:
//!
//! - health and reflection pass untouched;
//! - a path with no row in the RPC table is refused (`UNIMPLEMENTED`), so
//!   an RPC without a permission can never be served;
//! - no valid token → `UNAUTHENTICATED`;
//! - a token holding the RPC's permission neither globally nor (for calls
//!   scoped to a vault) on any vault → `PERMISSION_DENIED`;
//! - otherwise the call goes on with an [`Admitted`] in its extensions: the
//!   only way a handler gets at the caller, and how it checks the vault
//!   the request names ([`crate::access::in_vault`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response};
use tonic::Status;
use tonic::body::BoxBody;
use tower_layer::Layer;
use tower_service::Service;

use super::caller::{self, Caller};
use super::rpc::{self, Rpc, Scope};
use crate::error::{CoordinatorError, Result};
use crate::store::Store;

/// What the gate let through: the caller, for one RPC. Only the gate makes
/// one; handlers read it from the request's extensions.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub(super) caller: Caller,
    pub(super) rpc: Rpc,
}

/// Installs [`AccessGate`] around a service (the whole router).
#[derive(Debug, Clone)]
pub struct AccessLayer {
    store: Store,
}

impl AccessLayer {
    pub fn new(store: Store) -> Self {
        AccessLayer { store }
    }
}

impl<S> Layer<S> for AccessLayer {
    type Service = AccessGate<S>;

    fn layer(&self, inner: S) -> AccessGate<S> {
        AccessGate {
            inner,
            store: self.store.clone(),
        }
    }
}

/// The service [`AccessLayer`] wraps around the router.
#[derive(Debug, Clone)]
pub struct AccessGate<S> {
    inner: S,
    store: Store,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> Service<Request<B>> for AccessGate<S>
where
    S: Service<Request<B>, Response = Response<BoxBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<BoxBody>;
    type Error = S::Error;
    type Future = BoxFuture<std::result::Result<Response<BoxBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let store = self.store.clone();
        Box::pin(async move {
            match admit(&store, request.uri().path(), request.headers()).await {
                Ok(Some(admitted)) => {
                    request.extensions_mut().insert(admitted);
                    inner.call(request).await
                }
                Ok(None) => inner.call(request).await,
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

/// The gate's decision for one call: `None` for open services, the
/// admitted caller, or the status refusing the call.
async fn admit(
    store: &Store,
    path: &str,
    headers: &HeaderMap,
) -> std::result::Result<Option<Admitted>, Status> {
    if rpc::is_open(path) {
        return Ok(None);
    }
    let Some(rpc) = Rpc::from_path(path) else {
        tracing::warn!(path, "call to a path without a permission refused");
        return Err(Status::unimplemented(format!(
            "{} is not served: it has no permission in the coordinator's access table",
            printable(path)
        )));
    };
    let mut caller = caller::authenticate(store, headers).await?;
    if !caller.holds_globally(rpc.permission()) && rpc.scope() == Scope::Vault {
        caller.load_vault_roles(store).await?;
    }
    Ok(Some(decide(caller, rpc)?))
}

/// Admits `caller` to `rpc` when it holds the permission globally, or (for
/// calls scoped to a vault) on some vault; the handler checks which vault.
fn decide(caller: Caller, rpc: Rpc) -> Result<Admitted> {
    let permission = rpc.permission();
    let admitted = caller.holds_globally(permission)
        || (rpc.scope() == Scope::Vault && caller.holds_on_some_vault(permission));
    if admitted {
        Ok(Admitted { caller, rpc })
    } else {
        Err(denied(&caller, rpc, None))
    }
}

/// `PERMISSION_DENIED` for `caller` on `rpc`, saying what an Owner can run.
pub(super) fn denied(caller: &Caller, rpc: Rpc, vault: Option<&str>) -> CoordinatorError {
    let permission = rpc.permission();
    tracing::info!(token = %caller.token_id(), rpc = ?rpc, vault = vault.unwrap_or(""), "permission denied");
    let on = vault
        .map(|v| format!(" on vault \"{v}\""))
        .unwrap_or_default();
    CoordinatorError::PermissionDenied(format!(
        "token \"{}\" may not call {rpc:?}{on}: it needs the {permission:?} permission, which its roles do not grant; an Owner can run: pgvault role assign tokens/{} <role>{}",
        caller.token_name(),
        caller.token_id(),
        vault.map(|v| format!(" --vault {v}")).unwrap_or_default()
    ))
}

/// `path` shortened and stripped of control characters, for messages.
fn printable(path: &str) -> String {
    path.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::HeaderValue;
    use tonic::Code;

    use super::super::Role;
    use super::*;

    /// A store whose pool never connects: enough for calls the gate
    /// decides before reading the state database.
    fn offline_store() -> Store {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgresql://nobody@127.0.0.1:1/none")
            .expect("a lazy pool");
        Store::new(pool)
    }

    /// The handler behind the gate: answers OK and says whether it saw an
    /// admitted caller.
    #[derive(Clone)]
    struct Handler;

    impl Service<Request<()>> for Handler {
        type Response = Response<BoxBody>;
        type Error = Infallible;
        type Future = BoxFuture<std::result::Result<Response<BoxBody>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::result::Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<()>) -> Self::Future {
            let admitted = request.extensions().get::<Admitted>().is_some();
            Box::pin(async move {
                let mut response = Status::ok("").into_http();
                response.headers_mut().insert(
                    "x-admitted",
                    HeaderValue::from_static(if admitted { "yes" } else { "no" }),
                );
                Ok(response)
            })
        }
    }

    async fn send(path: &str, token: Option<&str>) -> Response<BoxBody> {
        let mut gate = AccessLayer::new(offline_store()).layer(Handler);
        let mut request = Request::builder().uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        gate.call(request.body(()).expect("request"))
            .await
            .expect("infallible")
    }

    fn code(response: &Response<BoxBody>) -> Code {
        Status::from_header_map(response.headers())
            .map(|s| s.code())
            .unwrap_or(Code::Ok)
    }

    #[tokio::test]
    async fn paths_without_a_permission_are_refused_before_any_handler() {
        let response = send("/pgvault.v1.VaultService/MakeVault", Some("t")).await;
        assert_eq!(code(&response), Code::Unimplemented);
        assert!(response.headers().get("x-admitted").is_none());
        let response = send("/pgvault.v2.Other/Thing", None).await;
        assert_eq!(code(&response), Code::Unimplemented);
    }

    #[tokio::test]
    async fn calls_without_a_token_are_unauthenticated_before_any_handler() {
        for rpc in Rpc::ALL {
            let response = send(&rpc.path(), None).await;
            assert_eq!(code(&response), Code::Unauthenticated, "{rpc:?}");
            assert!(response.headers().get("x-admitted").is_none());
        }
    }

    #[tokio::test]
    async fn health_and_reflection_need_no_token() {
        for path in [
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            let response = send(path, None).await;
            assert_eq!(code(&response), Code::Ok, "{path}");
            assert_eq!(response.headers()["x-admitted"], "no");
        }
    }

    #[test]
    fn global_calls_need_the_permission_globally() {
        let vault_owner = Caller::for_test(None, &[("v", Role::Owner)]);
        let error = decide(vault_owner, Rpc::ListVaults).unwrap_err();
        assert!(matches!(error, CoordinatorError::PermissionDenied(_)));
        assert!(error.to_string().contains("pgvault role assign"), "{error}");
        let reader = Caller::for_test(Some(Role::BackupReader), &[]);
        assert!(decide(reader.clone(), Rpc::ListVaults).is_ok());
        assert!(decide(reader, Rpc::CreateVault).is_err());
    }

    #[test]
    fn vault_calls_admit_a_permission_held_on_some_vault() {
        let operator = Caller::for_test(Some(Role::BackupReader), &[("v", Role::BackupOperator)]);
        assert!(decide(operator.clone(), Rpc::BackupNow).is_ok());
        assert!(decide(operator.clone(), Rpc::GetJob).is_ok());
        assert!(decide(operator.clone(), Rpc::CreatePolicy).is_err());
        assert!(decide(operator, Rpc::DeleteVault).is_err());
        let nobody = Caller::for_test(None, &[]);
        assert!(decide(nobody, Rpc::GetVault).is_err());
    }
}
