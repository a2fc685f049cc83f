//! The auto-include pass the scheduler runs before queueing a tick's jobs:
//! for each whole-server protection whose slot is due (the same decision
//! as an instance's, [`crate::scheduler::decide`]), claim the slot's pass,
//! list the server's protectable databases, and protect every one the
//! vault does not protect yet through the row pipeline, with its schedule
//! counting from the slot — so the scheduler queues its backup in that
//! slot with the others. Rows kept after a failed validation are validated
//! again at each slot. What the pass did is recorded with the slot
//! (`server_protection_runs`): included databases, refused ones with
//! their error, databases gone from the server, or why the server could
//! not be listed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::api::ApiContext;
use crate::api::configure::{Protect, configure_database};
use crate::api::databases;
use crate::error::Result;
use crate::model::BackupInstance;
use crate::scheduler::{Decision, decide};
use crate::server_probe::Unanswered;
use crate::store::schedule_runs::Scheduled;
use crate::store::server_protections::{self, RunRecord, ServerProtection};
use crate::store::{instances, policies, servers, vaults};

/// One pass over every whole-server protection at `now`. Returns how many
/// databases it protected.
pub async fn pass(ctx: &ApiContext, now: DateTime<Utc>, max_lateness: Duration) -> Result<usize> {
    let mut included = 0;
    for due in server_protections::all(ctx.store.pool()).await? {
        let item = Scheduled {
            instance_id: Uuid::nil(),
            vault_id: due.protection.vault_id.clone(),
            schedule: due.schedule.clone(),
            since: due.protection.since,
            last_slot: due.last_slot,
        };
        let server_id = due.protection.server_id.as_str();
        let (slot, skipped) = match decide(&item, now, max_lateness) {
            Decision::Nothing => continue,
            Decision::Run(slot) => (slot, None),
            Decision::Skip(slot, reason) => (slot, Some(reason)),
        };
        if !server_protections::claim_run(ctx.store.pool(), server_id, slot).await? {
            continue;
        }
        let record = match skipped {
            Some(reason) => RunRecord {
                error: reason,
                ..RunRecord::default()
            },
            None => run_slot(ctx, &due.protection, slot).await?,
        };
        for database in &record.included {
            tracing::info!(server = %server_id, vault = %due.protection.vault_id, slot = %slot, database = %database, "auto-included database {database}");
        }
        for refused in &record.refused {
            tracing::warn!(server = %server_id, slot = %slot, refused = %refused, "a new database of a server protected whole failed validation; it is kept and validated again at the next slot");
        }
        for database in &record.missing {
            tracing::warn!(server = %server_id, slot = %slot, database = %database, "a protected database is gone from its server; its instance and points are kept and its backups fail with UserErrorDBNotFound");
        }
        if !record.error.is_empty() {
            tracing::warn!(server = %server_id, slot = %slot, error = %record.error, "auto-include pass of a server protected whole found nothing");
        }
        server_protections::record_run(ctx.store.pool(), server_id, slot, &record).await?;
        included += record.included.len();
    }
    Ok(included)
}

/// Lists the server and protects what is new; errors of the server (not
/// of the state database) end up in the record.
async fn run_slot(
    ctx: &ApiContext,
    protection: &ServerProtection,
    slot: DateTime<Utc>,
) -> Result<RunRecord> {
    let pool = ctx.store.pool();
    let vault_id = protection.vault_id.as_str();
    let failed = |error: String| RunRecord {
        error,
        ..RunRecord::default()
    };
    let Some(server) = servers::find(pool, &protection.server_id).await? else {
        return Ok(failed(format!(
            "server \"{}\" no longer exists",
            protection.server_id
        )));
    };
    let credentials = match super::credentials(ctx, vault_id, &protection.secret).await? {
        Ok(credentials) => credentials,
        Err(error) => return Ok(failed(format!("{}: {}", error.code, error.message))),
    };
    let listed = databases::protectable(
        ctx,
        &server,
        &protection.secret,
        &credentials,
        Some(vault_id),
    )
    .await?;
    let names = match listed {
        Ok(names) => names,
        Err(Unanswered::Connect(error) | Unanswered::Agent(error)) => {
            return Ok(failed(format!("{}: {}", error.code, error.message)));
        }
        Err(Unanswered::Query(message)) => return Ok(failed(message)),
    };
    let existing = instances::on_server(pool, vault_id, &server.id).await?;
    let vault = vaults::get(pool, vault_id).await?;
    let policy = policies::get(pool, vault_id, &protection.policy_id).await?;
    let how = Protect {
        caller: None,
        vault: &vault,
        policy: &policy,
        assign: false,
        since: slot,
    };
    let mut record = RunRecord {
        missing: missing(&existing, &names),
        ..RunRecord::default()
    };
    for database in new_databases(&existing, &names) {
        let (instance, refused) =
            configure_database(ctx, &how, &server.id, &database, protection.secret.clone()).await?;
        match refused {
            None if instance.is_some() => record.included.push(database),
            None => {}
            Some(r) if super::protected_elsewhere(&r.error) => {}
            Some(r) => record
                .refused
                .push(format!("{database}: {}: {}", r.error.code, r.error.message)),
        }
    }
    Ok(record)
}

/// Listed databases the vault does not protect yet (kept failed rows
/// included: they are validated again).
fn new_databases(existing: &[BackupInstance], listed: &[String]) -> Vec<String> {
    listed
        .iter()
        .filter(|name| {
            !existing
                .iter()
                .any(|i| &i.database == *name && i.protection_state.is_protected())
        })
        .cloned()
        .collect()
}

/// Protected databases the server no longer lists.
fn missing(existing: &[BackupInstance], listed: &[String]) -> Vec<String> {
    let mut gone: Vec<String> = existing
        .iter()
        .filter(|i| i.protection_state.is_protected() && !listed.contains(&i.database))
        .map(|i| i.database.clone())
        .collect();
    gone.sort();
    gone.dedup();
    gone
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ProtectionState;
    use crate::secret_ref::SecretRef;

    fn instance(database: &str, state: ProtectionState) -> BackupInstance {
        BackupInstance {
            id: Uuid::new_v4(),
            vault_id: "v".into(),
            server_id: "db1".into(),
            database: database.into(),
            short_name: format!("db1-{database}"),
            policy_id: "p".into(),
            secret: SecretRef::Stored {
                id: "s".into(),
                version: None,
            },
            protection_state: state,
            last_error: None,
            create_time: Utc::now(),
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn new_databases_and_failed_rows_are_included_protected_ones_are_not() {
        let existing = [
            instance("orders", ProtectionState::Configured),
            instance("billing", ProtectionState::Stopped),
            instance("audit", ProtectionState::ValidationFailed),
        ];
        let listed = names(&["audit", "billing", "orders", "reports"]);
        assert_eq!(
            new_databases(&existing, &listed),
            names(&["audit", "reports"])
        );
    }

    #[test]
    fn a_protected_database_gone_from_the_server_is_reported_missing() {
        let existing = [
            instance("orders", ProtectionState::Configured),
            instance("old", ProtectionState::Configured),
            instance("never", ProtectionState::ValidationFailed),
        ];
        let listed = names(&["orders"]);
        assert_eq!(missing(&existing, &listed), names(&["old"]));
    }
}
