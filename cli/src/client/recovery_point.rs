//! `pgvault recovery-point list|get|delete|undelete|verify|drill|export`:
//! the completed backups of an instance. Verify queues a job that reads
//! every object of the point and checks it against its manifest; the result
//! shows on the point (`LAST VERIFY`). Drill queues a restore drill (the
//! point restored into a scratch database on a server, every table checked
//! against the manifest, the database dropped); the result shows as
//! `DRILL`. Export works offline, from the datastore and key file alone.
//! Delete is a soft delete: the point is kept for the
//! vault's soft-delete window (`list --deleted` shows it and when it is
//! purged) and `undelete` brings it back until then.

use std::process::ExitCode;

use clap::Subcommand;
use pgvault_proto::v1::{
    DatastoreTier, DeleteRecoveryPointRequest, DrillRecoveryPointRequest, GetRecoveryPointRequest,
    ListRecoveryPointsRequest, RecoveryPoint, RetentionRuleKind, UndeleteRecoveryPointRequest,
    VerifyRecoveryPointRequest,
};

use super::connect::{Api, Reply};
use super::enum_names::short_name;
use super::output::{bytes, local_time, print_details, print_json, print_list};
use super::{json, names, paging, watch};

#[derive(Debug, Subcommand)]
pub enum RecoveryPointCommand {
    /// List the recovery points of a backup instance, newest first as the server orders them.
    #[command(after_help = "Examples:\n  \
        pgvault recovery-point list prod/db1-orders\n  \
        pgvault recovery-point list vaults/prod/backupInstances/0197c1d2 --output json\n  \
        pgvault recovery-point list prod/db1-orders --deleted")]
    List {
        /// Instance: VAULT/NAME (its short name), its id with --vault, or "vaults/{vault}/backupInstances/{id}".
        instance: String,
        /// Vault of the instance.
        #[arg(long)]
        vault: Option<String>,
        /// List only the deleted points not yet purged (who deleted them, when they are purged).
        #[arg(long, conflicts_with = "copies_only")]
        deleted: bool,
        /// List only the points whose own objects expired while a copy in
        /// another datastore lives on by its own retention (restore them
        /// with --from-copy).
        #[arg(long)]
        copies_only: bool,
    },
    /// Delete a recovery point: it is kept for the vault's soft-delete window
    /// (default 14 days), can be undeleted until then, and is purged after.
    /// Refused in a locked vault.
    #[command(after_help = "Examples:\n  \
        pgvault recovery-point delete 0197c1d2-... --instance prod/db1-orders")]
    Delete {
        /// Recovery point id (or its full name).
        recovery_point: String,
        /// Vault of the instance.
        #[arg(long)]
        vault: Option<String>,
        /// Instance the recovery point belongs to.
        #[arg(long)]
        instance: Option<String>,
    },
    /// Bring back a deleted recovery point before it is purged.
    Undelete {
        /// Recovery point id (or its full name).
        recovery_point: String,
        /// Vault of the instance.
        #[arg(long)]
        vault: Option<String>,
        /// Instance the recovery point belongs to.
        #[arg(long)]
        instance: Option<String>,
    },
    /// Verify a recovery point without a database: a job reads every object
    /// (sizes, SHA-256, every zstd frame, row counts) and checks that the
    /// manifest names every object and nothing else. Points on the archive
    /// tier are refused. A point whose verify is queued or running gets that
    /// job back.
    #[command(after_help = "Examples:\n  \
        pgvault recovery-point verify 0197c1d2-... --instance prod/db1-orders --wait")]
    Verify {
        /// Recovery point id (or its full name).
        recovery_point: String,
        /// Vault of the instance.
        #[arg(long)]
        vault: Option<String>,
        /// Instance the recovery point belongs to.
        #[arg(long)]
        instance: Option<String>,
        /// Follow the job until it ends; exit non-zero unless it completes.
        #[arg(long)]
        wait: bool,
    },
    /// Export a recovery point to a plain SQL file from its datastore alone
    /// (and the vault's key file when encrypted): no coordinator, no state
    /// database, no token. `--list` shows the points a datastore holds.
    Export(Box<super::recovery_point_export::ExportArgs>),
    /// Restore drill: restore the point into a scratch database
    /// (pgvault_drill_<id>) on a server, compare every table's rows and row
    /// checksum with the manifest, then drop the scratch database. The
    /// result shows on the point (DRILL). Server and secret default to the
    /// instance's policy's drill.
    #[command(after_help = "Examples:\n  \
        pgvault recovery-point drill 0197c1d2-... --instance prod/db1-orders --server drill-db --secret drill --wait")]
    Drill {
        /// Recovery point id (or its full name).
        recovery_point: String,
        /// Vault of the instance.
        #[arg(long)]
        vault: Option<String>,
        /// Instance the recovery point belongs to.
        #[arg(long)]
        instance: Option<String>,
        /// The drill server (a registered server).
        #[arg(long, requires = "secret")]
        server: Option<String>,
        /// The secret to connect to the drill server with.
        #[arg(long, requires = "server")]
        secret: Option<String>,
        /// Follow the job until it ends; exit non-zero unless it completes.
        #[arg(long)]
        wait: bool,
    },
    /// Show one recovery point (with its last verify and drill).
    #[command(visible_alias = "show")]
    Get {
        /// Recovery point id (or its full name).
        recovery_point: String,
        /// Vault of the instance.
        #[arg(long)]
        vault: Option<String>,
        /// Instance the recovery point belongs to.
        #[arg(long)]
        instance: Option<String>,
    },
}

pub async fn run(api: &Api, command: RecoveryPointCommand) -> anyhow::Result<ExitCode> {
    match command {
        RecoveryPointCommand::Export(args) => {
            return super::recovery_point_export::run(*args, api.json()).await;
        }
        RecoveryPointCommand::List {
            instance,
            vault,
            deleted,
            copies_only,
        } => {
            let parent = names::instance(vault.as_deref(), &instance)?;
            let shown = if copies_only {
                Listed::CopiesOnly
            } else if deleted {
                Listed::Deleted
            } else {
                Listed::Live
            };
            list(api, parent, shown).await?
        }
        RecoveryPointCommand::Delete {
            recovery_point,
            vault,
            instance,
        } => {
            let name =
                names::recovery_point(vault.as_deref(), instance.as_deref(), &recovery_point)?;
            let point = api
                .recovery_points()
                .delete_recovery_point(DeleteRecoveryPointRequest { name })
                .await
                .reply(api)?;
            show(api, &point);
        }
        RecoveryPointCommand::Undelete {
            recovery_point,
            vault,
            instance,
        } => {
            let name =
                names::recovery_point(vault.as_deref(), instance.as_deref(), &recovery_point)?;
            let point = api
                .recovery_points()
                .undelete_recovery_point(UndeleteRecoveryPointRequest { name })
                .await
                .reply(api)?;
            show(api, &point);
        }
        RecoveryPointCommand::Verify {
            recovery_point,
            vault,
            instance,
            wait,
        } => {
            let name =
                names::recovery_point(vault.as_deref(), instance.as_deref(), &recovery_point)?;
            let job = api
                .recovery_points()
                .verify_recovery_point(VerifyRecoveryPointRequest { name })
                .await
                .reply(api)?;
            return watch::started(api, job, wait).await;
        }
        RecoveryPointCommand::Drill {
            recovery_point,
            vault,
            instance,
            server,
            secret,
            wait,
        } => {
            let name =
                names::recovery_point(vault.as_deref(), instance.as_deref(), &recovery_point)?;
            let job = api
                .recovery_points()
                .drill_recovery_point(DrillRecoveryPointRequest {
                    name,
                    server: server.unwrap_or_default(),
                    secret: secret.unwrap_or_default(),
                })
                .await
                .reply(api)?;
            return watch::started(api, job, wait).await;
        }
        RecoveryPointCommand::Get {
            recovery_point,
            vault,
            instance,
        } => {
            let name =
                names::recovery_point(vault.as_deref(), instance.as_deref(), &recovery_point)?;
            let point = api
                .recovery_points()
                .get_recovery_point(GetRecoveryPointRequest { name })
                .await
                .reply(api)?;
            show(api, &point);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Which points `recovery-point list` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listed {
    Live,
    Deleted,
    CopiesOnly,
}

async fn list(api: &Api, parent: String, shown: Listed) -> anyhow::Result<()> {
    let points = paging::all_pages(|page_token| {
        let request = ListRecoveryPointsRequest {
            parent: parent.clone(),
            page_size: 0,
            page_token,
            show_deleted: shown == Listed::Deleted,
            copies_only: shown == Listed::CopiesOnly,
        };
        async move {
            let page = api
                .recovery_points()
                .list_recovery_points(request)
                .await
                .reply(api)?;
            Ok((page.recovery_points, page.next_page_token))
        }
    })
    .await?;
    if api.json() {
        print_json(&json::page(
            "recovery_points",
            points.iter().map(json::recovery_point).collect(),
            "",
        ));
        return Ok(());
    }
    if shown == Listed::Deleted {
        print_list(
            &DELETED_HEADERS,
            points.iter().map(deleted_row).collect(),
            &format!("no deleted recovery points for {parent}"),
        );
        return Ok(());
    }
    if shown == Listed::CopiesOnly {
        print_list(
            &COPIES_ONLY_HEADERS,
            points.iter().map(copies_only_row).collect(),
            &format!("no recovery points of {parent} are kept only as copies"),
        );
        return Ok(());
    }
    print_list(
        &LIST_HEADERS,
        points.iter().map(list_row).collect(),
        &format!("no recovery points for {parent} yet; take one with: pgvault backup now"),
    );
    Ok(())
}

/// The columns of `recovery-point list`; POSTGRESQL is the source server's
/// version (a point restores into that major or a newer one).
const LIST_HEADERS: [&str; 10] = [
    "RECOVERY POINT",
    "DATABASE",
    "POSTGRESQL",
    "SNAPSHOT",
    "TIER",
    "RETENTION",
    "STORED",
    "RAW",
    "CHUNKS",
    "EXPIRES",
];

/// The columns of `recovery-point list --deleted`.
const DELETED_HEADERS: [&str; 6] = [
    "RECOVERY POINT",
    "DATABASE",
    "SNAPSHOT",
    "DELETED",
    "DELETED BY",
    "PURGED AFTER",
];

/// The columns of `recovery-point list --copies-only`.
const COPIES_ONLY_HEADERS: [&str; 5] = [
    "RECOVERY POINT",
    "DATABASE",
    "SNAPSHOT",
    "EXPIRED",
    "COPIES",
];

fn copies_only_row(p: &RecoveryPoint) -> Vec<String> {
    vec![
        names::short(&p.name).to_owned(),
        p.database.clone(),
        local_time(p.snapshot_time.as_ref()),
        local_time(p.expire_time.as_ref()),
        copies_text(p),
    ]
}

fn deleted_row(p: &RecoveryPoint) -> Vec<String> {
    vec![
        names::short(&p.name).to_owned(),
        p.database.clone(),
        local_time(p.snapshot_time.as_ref()),
        local_time(p.delete_time.as_ref()),
        p.deleted_by.clone(),
        local_time(p.purge_time.as_ref()),
    ]
}

fn list_row(p: &RecoveryPoint) -> Vec<String> {
    vec![
        names::short(&p.name).to_owned(),
        p.database.clone(),
        p.server_version.clone(),
        local_time(p.snapshot_time.as_ref()),
        tier_text(p.tier).to_owned(),
        tag_text(p.retention_tag),
        bytes(p.stored_bytes),
        bytes(p.raw_bytes),
        p.chunk_count.to_string(),
        local_time(p.expire_time.as_ref()),
    ]
}

fn show(api: &Api, point: &RecoveryPoint) {
    if api.json() {
        print_json(&json::recovery_point(point));
        return;
    }
    let mut rows = vec![
        ("RECOVERY POINT", names::short(&point.name).to_owned()),
        ("NAME", point.name.clone()),
        ("DATABASE", point.database.clone()),
        ("SNAPSHOT", local_time(point.snapshot_time.as_ref())),
        ("TIER", tier_text(point.tier).to_owned()),
        ("RETENTION", tag_text(point.retention_tag)),
        ("EXPIRES", local_time(point.expire_time.as_ref())),
        ("STORED", bytes(point.stored_bytes)),
        ("RAW", bytes(point.raw_bytes)),
        ("CHUNKS", point.chunk_count.to_string()),
        ("SERVER VERSION", point.server_version.clone()),
        (
            "LOCATION",
            if point.copies_only {
                "- (expired; restore from a copy with --from-copy)".to_owned()
            } else {
                point.location.clone()
            },
        ),
        ("MANIFEST SHA-256", point.manifest_sha256.clone()),
        ("JOB", point.job.clone()),
        ("CREATED", local_time(point.create_time.as_ref())),
        ("LAST VERIFY", last_verify_text(point)),
        ("DRILL", drill_text(point)),
    ];
    if point.delete_time.is_some() {
        rows.push(("DELETED", local_time(point.delete_time.as_ref())));
        rows.push(("DELETED BY", point.deleted_by.clone()));
        rows.push(("PURGED AFTER", local_time(point.purge_time.as_ref())));
    }
    rows.push(("COPIES", copies_text(point)));
    print_details(&rows);
}

/// One line per copy: "az://c/root COPIED, expires …" ("-": none).
fn copies_text(point: &RecoveryPoint) -> String {
    if point.copies.is_empty() {
        return "-".to_owned();
    }
    point
        .copies
        .iter()
        .map(|c| {
            format!(
                "{} {}, expires {}",
                c.datastore,
                c.state,
                local_time(c.expire_time.as_ref())
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// "ok at …", "failed (VerifyObjectCorrupt) at … by jobs/…", or "never".
fn last_verify_text(point: &RecoveryPoint) -> String {
    let at = local_time(point.last_verified_at.as_ref());
    match point.last_verify_result.as_str() {
        "" => "never".to_owned(),
        "ok" => format!("ok at {at} ({})", point.last_verify_job),
        result => format!(
            "{result} ({}) at {at}; see pgvault job show {}",
            point.last_verify_error_code, point.last_verify_job
        ),
    }
}

/// "verified by drill at … on SERVER (N tables, M rows)", "failed (CODE)
/// at … on SERVER; see pgvault job show …", or "never".
fn drill_text(point: &RecoveryPoint) -> String {
    let at = local_time(point.last_drilled_at.as_ref());
    let server = &point.last_drill_server;
    match point.last_drill_result.as_str() {
        "" => "never".to_owned(),
        "ok" => format!(
            "verified by drill at {at} on {server} ({} tables, {} rows{})",
            point.last_drill_tables,
            point.last_drill_rows,
            if point.last_drill_checksums {
                ""
            } else {
                "; row counts only: the point records no row checksums"
            }
        ),
        result => format!(
            "{result} ({}) at {at} on {server}; see pgvault job show {}",
            point.last_drill_error_code, point.last_drill_job
        ),
    }
}

fn tier_text(tier: i32) -> &'static str {
    match DatastoreTier::try_from(tier) {
        Ok(DatastoreTier::Standard) => "standard",
        Ok(DatastoreTier::Archive) => "archive",
        _ => "-",
    }
}

/// "monthly"; "-" when unset.
pub fn tag_text(kind: i32) -> String {
    match RetentionRuleKind::try_from(kind) {
        Ok(RetentionRuleKind::Unspecified) | Err(_) => "-".to_owned(),
        Ok(known) => short_name(known).to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_shows_each_points_postgresql_version() {
        let point = RecoveryPoint {
            name: "vaults/prod/backupInstances/i1/recoveryPoints/p1".into(),
            database: "billing".into(),
            server_version: "17.10".into(),
            ..RecoveryPoint::default()
        };
        let row = list_row(&point);
        assert_eq!(row.len(), LIST_HEADERS.len());
        let column = LIST_HEADERS
            .iter()
            .position(|h| *h == "POSTGRESQL")
            .unwrap();
        assert_eq!(row[column], "17.10");
        assert_eq!(row[1], "billing");
    }

    #[test]
    fn the_deleted_list_says_who_deleted_each_point() {
        let point = RecoveryPoint {
            name: "vaults/prod/backupInstances/i1/recoveryPoints/p1".into(),
            deleted_by: "ops-token".into(),
            ..RecoveryPoint::default()
        };
        let row = deleted_row(&point);
        assert_eq!(row.len(), DELETED_HEADERS.len());
        assert_eq!(row[4], "ops-token");
    }
}
