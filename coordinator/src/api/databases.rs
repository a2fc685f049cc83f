//! The databases of a server that can be protected: asked of the server
//! (directly or through its agent, [`crate::server_probe`]) and filtered
//! by the one rule of what may be protected
//! ([`crate::validation::unprotectable_reason`]: templates and the
//! configured maintenance databases are never offered). `ListDatabases`,
//! `ConfigureBackup` with `all_databases_of` and the scheduler's
//! auto-include all list through here, so they cannot disagree.

use crate::api::ApiContext;
use crate::error::Result;
use crate::model::Server;
use crate::secret_ref::SecretRef;
use crate::secrets::ConnParams;
use crate::server_probe::{ProbeTarget, Probed};
use crate::validation::unprotectable_reason;

/// The protectable databases of `server`, in name order, connecting with
/// `credentials` (resolved from `secret`) to their own database, or
/// `postgres` when they name none.
pub async fn protectable(
    ctx: &ApiContext,
    server: &Server,
    secret: &SecretRef,
    credentials: &ConnParams,
    vault: Option<&str>,
) -> Result<Probed<Vec<String>>> {
    let database = credentials
        .database
        .clone()
        .unwrap_or_else(|| "postgres".to_string());
    let target = ProbeTarget {
        server,
        database: &database,
        secret,
        credentials,
        vault,
    };
    let listed = ctx
        .probes
        .for_server(server)
        .list_databases(&target)
        .await?;
    Ok(listed.map(|names| only_protectable(names, &ctx.maintenance_databases)))
}

/// `names` without the databases that may not be protected, sorted.
pub fn only_protectable(names: Vec<String>, maintenance: &[String]) -> Vec<String> {
    let mut kept: Vec<String> = names
        .into_iter()
        .filter(|name| unprotectable_reason(name, maintenance).is_none())
        .collect();
    kept.sort();
    kept.dedup();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_and_maintenance_databases_are_never_protectable() {
        let listed = [
            "orders",
            "template0",
            "postgres",
            "template1",
            "billing",
            "rdsadmin",
        ]
        .map(String::from)
        .to_vec();
        let kept = only_protectable(listed, &["rdsadmin".to_string()]);
        assert_eq!(kept, ["billing", "orders", "postgres"]);
    }
}
