//! Whole collections the pages show or pick from (vaults, instances,
//! policies, servers, secrets), read page by page up to a bound, and how
//! an instance is named on a page ("shop on pg1").

use std::collections::HashMap;

use pgvault_proto::v1 as pb;

use crate::api::Api;
use crate::error::ConsoleError;
use crate::format::id_of;

/// Most rows a page lists from one collection.
pub const LIMIT: usize = 1000;

pub async fn vaults(api: &Api) -> Result<Vec<pb::Vault>, ConsoleError> {
    api.all_pages(LIMIT, |page_token| async move {
        let r = api
            .vaults()
            .list_vaults(pb::ListVaultsRequest {
                page_size: 1000,
                page_token,
            })
            .await?
            .into_inner();
        Ok((r.vaults, r.next_page_token))
    })
    .await
}

/// Instances of `parent` (`vaults/{v}`, or `vaults/-` for every vault).
pub async fn instances(api: &Api, parent: &str) -> Result<Vec<pb::BackupInstance>, ConsoleError> {
    api.all_pages(LIMIT, |page_token| async move {
        let r = api
            .instances()
            .list_backup_instances(pb::ListBackupInstancesRequest {
                parent: parent.to_string(),
                page_size: 1000,
                page_token,
            })
            .await?
            .into_inner();
        Ok((r.backup_instances, r.next_page_token))
    })
    .await
}

pub async fn policies(api: &Api, vault: &str) -> Result<Vec<pb::Policy>, ConsoleError> {
    api.all_pages(LIMIT, |page_token| async move {
        let r = api
            .policies()
            .list_policies(pb::ListPoliciesRequest {
                parent: format!("vaults/{vault}"),
                page_size: 1000,
                page_token,
            })
            .await?
            .into_inner();
        Ok((r.policies, r.next_page_token))
    })
    .await
}

pub async fn servers(api: &Api) -> Result<Vec<pb::Server>, ConsoleError> {
    api.all_pages(LIMIT, |page_token| async move {
        let r = api
            .servers()
            .list_servers(pb::ListServersRequest {
                page_size: 1000,
                page_token,
            })
            .await?
            .into_inner();
        Ok((r.servers, r.next_page_token))
    })
    .await
}

pub async fn secrets(api: &Api) -> Result<Vec<pb::Secret>, ConsoleError> {
    api.all_pages(LIMIT, |page_token| async move {
        let r = api
            .secrets()
            .list_secrets(pb::ListSecretsRequest {
                page_size: 1000,
                page_token,
            })
            .await?
            .into_inner();
        Ok((r.secrets, r.next_page_token))
    })
    .await
}

/// Every vault's policies by name (`vaults/{v}/policies/{p}`).
pub async fn policies_by_name(
    api: &Api,
    vaults: &[pb::Vault],
) -> Result<HashMap<String, pb::Policy>, ConsoleError> {
    let mut by_name = HashMap::new();
    for vault in vaults {
        for policy in policies(api, id_of(&vault.name)).await? {
            by_name.insert(policy.name.clone(), policy);
        }
    }
    Ok(by_name)
}

/// "shop on pg1": the database and the server's id.
pub fn instance_label(instance: &pb::BackupInstance) -> String {
    format!("{} on {}", instance.database, id_of(&instance.server))
}

/// A list call that the token may not make reads as empty, with a flag.
pub fn or_denied<T>(result: Result<Vec<T>, ConsoleError>) -> Result<(Vec<T>, bool), ConsoleError> {
    match result {
        Ok(items) => Ok((items, false)),
        Err(ConsoleError::Forbidden(_)) => Ok((Vec::new(), true)),
        Err(other) => Err(other),
    }
}
