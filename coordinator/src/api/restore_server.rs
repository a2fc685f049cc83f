//! `RestoreServer`: every database of a whole server's point set onto
//! another server. The set is the points of the scheduled run (slot) that
//! produced the named point (or, with `latest_of`, the instance's newest
//! point of a scheduled run), for every database of its server in its
//! vault, less the databases the caller excludes. A database of the run
//! without a point in it (its backup failed, was skipped, still runs, or
//! its point was deleted) refuses the restore, naming each with why,
//! unless the caller accepts a partial restore (`allow_partial`: they are
//! left out and named in the response) or excludes them by name. Refused
//! before any job starts when the target server runs an
//! older major (`restore_version`, the cross-version rule of every
//! restore), when a database of the set already exists on the target (all
//! named), or when a point of the set is on the archive tier. Otherwise
//! one restore job per database, each under its own name, is written in
//! one transaction: the first also restores the globals (roles, role
//! settings, tablespaces unless `no_tablespaces`) and is queued; the
//! others wait for it, so roles
//! exist before the grants that name them.

use futures::FutureExt;
use pgvault_errors::ErrorCode;
use pgvault_proto::v1 as pb;
use uuid::Uuid;

use crate::api::restore_point::PointChoice;
use crate::api::restores::check_secret;
use crate::api::{ApiContext, instance_lookup, resolve, restore_version};
use crate::error::{CoordinatorError, Result};
use crate::model::{Job, JobSpec, RestoreSpec, RestoreTarget, Server, Tier};
use crate::names;
use crate::secret_ref::SecretRef;
use crate::server_probe::{ProbeTarget, Unanswered};
use crate::store::jobs::{self, NewJob};
use crate::store::server_restores::{self, RunMember, SetPoint};
use crate::store::{instances, lifecycle, outbox, recovery_points, servers};

pub async fn restore_server(
    ctx: &ApiContext,
    req: pb::RestoreServerRequest,
) -> Result<pb::RestoreServerResponse> {
    let pool = ctx.store.pool();
    let (vault_id, instance_id, point_id) = named_point(pool, &req).await?;
    if req.target_server.is_empty() {
        return Err(CoordinatorError::invalid(
            "target_server",
            "the server to restore onto is required",
        ));
    }
    let target_id = names::parse_server("target_server", &req.target_server)?;
    let point = recovery_points::get(pool, &vault_id, instance_id, point_id).await?;
    let instance = instances::get(pool, &vault_id, instance_id).await?;
    let Some(slot) = server_restores::slot_of(pool, point.id).await? else {
        return Err(CoordinatorError::precondition(format!(
            "{} was not taken by a scheduled run, so it belongs to no point set; name a point of a scheduled run of server \"{}\" (or --instance … --latest)",
            req.recovery_point, instance.server_id
        )));
    };
    let members = server_restores::run_members(pool, &vault_id, &instance.server_id, slot).await?;
    let (set, left_out) = chosen(members, &req.exclude_databases, req.allow_partial, slot)?;
    let server = servers::get(pool, &target_id).await?;
    let secret = if req.secret.is_empty() {
        instance.secret.clone()
    } else {
        SecretRef::parse("secret", &req.secret)?
    };
    check_secret(ctx, &vault_id, &secret).await?;
    restore_version::check(ctx, &vault_id, &point, &server, &secret).await?;
    let existing = target_databases(ctx, &vault_id, &server, &secret).await?;
    let taken = taken(&set, &existing);
    if !taken.is_empty() {
        return Err(CoordinatorError::precondition(format!(
            "{}: server \"{target_id}\" already has database {}; restore a point set onto a server without them: leave them out (--exclude-database, e.g. the postgres database every new server has) and restore their points under other names with pgvault restore database --target-database, or drop them first",
            ErrorCode::UserErrorDatabaseNameAlreadyInUse,
            taken.join(", ")
        )));
    }
    let jobs = queue(
        ctx,
        &vault_id,
        &set,
        &target_id,
        &secret,
        req.no_tablespaces,
    )
    .await?;
    for line in &left_out {
        tracing::warn!(server = %instance.server_id, slot = %slot, left_out = %line, "server restore leaves out a database of the run without a recovery point (allow_partial)");
    }
    tracing::info!(server = %instance.server_id, slot = %slot, target = %target_id, databases = set.len(), left_out = left_out.len(), "server restore queued");
    Ok(pb::RestoreServerResponse {
        jobs: jobs.into_iter().map(Into::into).collect(),
        left_out,
    })
}

/// The vault, instance and point the request names: `recovery_point`, or
/// with `latest_of` the instance's newest point of a scheduled run.
async fn named_point(
    pool: &sqlx::PgPool,
    req: &pb::RestoreServerRequest,
) -> Result<(String, Uuid, Uuid)> {
    match PointChoice::from_request(&req.recovery_point, &req.latest_of)? {
        PointChoice::Named(name) => {
            instance_lookup::recovery_point(pool, "recovery_point", name).await
        }
        PointChoice::LatestOf(name) => {
            let (vault, instance_id) = instance_lookup::instance(pool, "latest_of", name).await?;
            let candidates = server_restores::latest_scheduled_points(pool, instance_id).await?;
            let any = !candidates.is_empty();
            for point in candidates {
                if lifecycle::active_removal(pool, point).await?.is_none() {
                    return Ok((vault, instance_id, point));
                }
            }
            let typed = format!(
                "{vault}/{}",
                instances::get(pool, &vault, instance_id).await?.short_name
            );
            Err(CoordinatorError::precondition(if any {
                format!(
                    "every recent recovery point of a scheduled run of backup instance {typed} is being deleted or moved to the archive datastore; retry once those jobs complete (pgvault job list --instance {typed}), or name an older point of a scheduled run instead of --latest (pgvault recovery-point list {typed})"
                )
            } else {
                format!(
                    "backup instance {typed} has no recovery point of a scheduled run to restore (on-demand backups belong to no point set); wait for the next scheduled run of its policy"
                )
            }))
        }
    }
}

/// The points to restore and, with `allow_partial`, the databases of the
/// run left out for having none ("database: why"). The excluded
/// databases must be databases of the run, and something must be left.
fn chosen(
    members: Vec<RunMember>,
    exclude: &[String],
    allow_partial: bool,
    slot: chrono::DateTime<chrono::Utc>,
) -> Result<(Vec<SetPoint>, Vec<String>)> {
    let databases: Vec<&str> = members.iter().map(|m| m.database.as_str()).collect();
    if let Some(unknown) = exclude.iter().find(|d| !databases.contains(&d.as_str())) {
        return Err(CoordinatorError::invalid(
            "exclude_databases",
            format!(
                "\"{unknown}\" is not a database of the point set; it has: {}",
                databases.join(", ")
            ),
        ));
    }
    let kept: Vec<RunMember> = members
        .into_iter()
        .filter(|m| !exclude.contains(&m.database))
        .collect();
    if kept.is_empty() {
        return Err(CoordinatorError::invalid(
            "exclude_databases",
            "every database of the point set is excluded; nothing would be restored",
        ));
    }
    let without: Vec<String> = kept
        .iter()
        .filter(|m| m.point_id.is_none())
        .map(|m| format!("{}: {}", m.database, m.why_none))
        .collect();
    if !without.is_empty() && !allow_partial {
        return Err(CoordinatorError::precondition(format!(
            "the scheduled run of {} has no recovery point of {} of its databases ({}); restore a run where every backup completed, leave them out (--exclude-database NAME), or restore the others without them (--allow-partial)",
            slot.to_rfc3339(),
            without.len(),
            without.join("; ")
        )));
    }
    let set: Vec<SetPoint> = kept.iter().filter_map(RunMember::set_point).collect();
    if set.is_empty() {
        return Err(CoordinatorError::precondition(format!(
            "no database of the scheduled run of {} has a recovery point in it ({}); restore another run",
            slot.to_rfc3339(),
            without.join("; ")
        )));
    }
    Ok((set, without))
}

/// Databases of the set the target already has, in the set's order.
fn taken(set: &[SetPoint], existing: &[String]) -> Vec<String> {
    set.iter()
        .filter(|p| existing.contains(&p.database))
        .map(|p| format!("\"{}\"", p.database))
        .collect()
}

/// Every database of the target (asked directly or through its agent).
async fn target_databases(
    ctx: &ApiContext,
    vault_id: &str,
    server: &Server,
    secret: &SecretRef,
) -> Result<Vec<String>> {
    let mut conn = ctx.store.pool().acquire().await?;
    let credentials = resolve::reference_credentials(
        &mut conn,
        &ctx.cipher,
        &ctx.external_secrets,
        Some(vault_id),
        secret,
    )
    .await?;
    drop(conn);
    let database = credentials
        .database
        .clone()
        .unwrap_or_else(|| "postgres".to_string());
    let target = ProbeTarget {
        server,
        database: &database,
        secret,
        credentials: &credentials,
        vault: Some(vault_id),
    };
    match ctx
        .probes
        .for_server(server)
        .list_databases(&target)
        .await?
    {
        Ok(names) => Ok(names),
        Err(Unanswered::Connect(error) | Unanswered::Agent(error)) => {
            Err(CoordinatorError::precondition(format!(
                "{}: cannot list the databases of target server \"{}\": {}",
                error.code, server.id, error.message
            )))
        }
        Err(Unanswered::Query(message)) => Err(CoordinatorError::Unavailable(format!(
            "target server \"{}\": {message}",
            server.id
        ))),
    }
}

/// The set's restore jobs in one transaction: the first restores the
/// globals and is queued, the others wait for it.
async fn queue(
    ctx: &ApiContext,
    vault_id: &str,
    set: &[SetPoint],
    target_id: &str,
    secret: &SecretRef,
    skip_tablespaces: bool,
) -> Result<Vec<Job>> {
    let (vault_id, set, target_id, secret) = (
        vault_id.to_string(),
        set.to_vec(),
        target_id.to_string(),
        secret.clone(),
    );
    let jobs = ctx
        .store
        .in_tx(move |conn| {
            async move {
                let mut created: Vec<Job> = Vec::with_capacity(set.len());
                for p in &set {
                    let name = names::recovery_point_name(&vault_id, p.instance_id, p.point_id);
                    if !lifecycle::lock_point(&mut *conn, p.point_id).await?
                        || lifecycle::active_removal(&mut *conn, p.point_id)
                            .await?
                            .is_some()
                    {
                        return Err(CoordinatorError::precondition(format!(
                            "recovery point {name} of the set is being moved or deleted; restore another run's point set"
                        )));
                    }
                    let point =
                        recovery_points::get(&mut *conn, &vault_id, p.instance_id, p.point_id)
                            .await?;
                    if point.tier == Tier::Archive {
                        return Err(CoordinatorError::precondition(format!(
                            "recovery point {name} of the set is on the archive tier; restore a newer run's point set, or that point on its own (pgvault restore database rehydrates it)"
                        )));
                    }
                    let first = created.first().map(|j| j.id);
                    let new = NewJob {
                        vault_id: vault_id.clone(),
                        spec: JobSpec::Restore(Box::new(RestoreSpec {
                            instance_id: p.instance_id,
                            point_id: p.point_id,
                            target: RestoreTarget::Database {
                                server_id: target_id.clone(),
                                database: p.database.clone(),
                                secret: secret.clone(),
                            },
                            copy_datastore: None,
                            schemas: Vec::new(),
                            tables: Vec::new(),
                            warnings: Vec::new(),
                        })),
                        waits_for_job_id: first,
                    };
                    let job = jobs::insert(&mut *conn, &new).await?;
                    if first.is_none() {
                        server_restores::mark_globals(&mut *conn, job.id, skip_tablespaces)
                            .await?;
                        outbox::insert(&mut *conn, job.id, job.attempt).await?;
                    }
                    created.push(job);
                }
                Ok(created)
            }
            .boxed()
        })
        .await?;
    ctx.dispatch_wake.notify_one();
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn every_database_of_the_set_the_target_has_is_named() {
        let point = |database: &str| SetPoint {
            instance_id: Uuid::nil(),
            point_id: Uuid::nil(),
            database: database.into(),
        };
        let set = [point("alpha"), point("beta"), point("gamma")];
        let existing = ["postgres".to_string(), "gamma".into(), "alpha".into()];
        assert_eq!(taken(&set, &existing), ["\"alpha\"", "\"gamma\""]);
        assert!(taken(&set, &["postgres".to_string()]).is_empty());
    }

    fn member(database: &str, point: bool) -> RunMember {
        RunMember {
            instance_id: Uuid::nil(),
            database: database.into(),
            point_id: point.then(Uuid::nil),
            why_none: if point {
                String::new()
            } else {
                "its backup failed (UserErrorDBNotFound)".into()
            },
        }
    }

    fn slot() -> chrono::DateTime<chrono::Utc> {
        "2026-12-05T02:00:00Z".parse().unwrap()
    }

    #[test]
    fn excluded_databases_must_be_in_the_run_and_leave_something() {
        let run = vec![member("app", true), member("postgres", true)];
        let (kept, left_out) =
            chosen(run.clone(), &["postgres".to_string()], false, slot()).unwrap();
        assert_eq!(kept, [member("app", true).set_point().unwrap()]);
        assert!(left_out.is_empty());
        let unknown = chosen(run.clone(), &["nope".to_string()], false, slot()).unwrap_err();
        assert!(
            unknown.to_string().contains("it has: app, postgres"),
            "{unknown}"
        );
        let all = ["app".to_string(), "postgres".to_string()];
        assert!(chosen(run, &all, false, slot()).is_err());
    }

    #[test]
    fn a_run_with_failed_backups_is_refused_naming_them_unless_partial_is_accepted() {
        let run = vec![
            member("app", true),
            member("billing", false),
            member("orders", true),
        ];
        let refused = chosen(run.clone(), &[], false, slot())
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains(
                "has no recovery point of 1 of its databases (billing: its backup failed (UserErrorDBNotFound))"
            ),
            "{refused}"
        );
        assert!(refused.contains("--allow-partial"), "{refused}");
        assert!(refused.contains("--exclude-database"), "{refused}");

        let (set, left_out) = chosen(run.clone(), &[], true, slot()).unwrap();
        let databases: Vec<&str> = set.iter().map(|p| p.database.as_str()).collect();
        assert_eq!(databases, ["app", "orders"]);
        assert_eq!(
            left_out,
            ["billing: its backup failed (UserErrorDBNotFound)"]
        );

        // Leaving it out by name accepts its absence too.
        let (set, left_out) = chosen(run, &["billing".to_string()], false, slot()).unwrap();
        assert_eq!(set.len(), 2);
        assert!(left_out.is_empty());

        // Nothing to restore at all is refused even when partial.
        let none = vec![member("billing", false)];
        assert!(chosen(none, &[], true, slot()).is_err());
    }
}
