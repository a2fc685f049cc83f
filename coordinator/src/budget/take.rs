//! Taking slots at claim time, in the claim's transaction, and telling why
//! a queued job waits for them.

use sqlx::PgConnection;
use uuid::Uuid;

use super::{Grant, ServerUse, grant, waiting_reason};
use crate::error::Result;
use crate::model::{Job, JobSpec, JobState, RestoreTarget};
use crate::store::{Store, connection_slots, instances};

/// What a claim got from its server's budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// The job touches no server: nothing to take.
    NotNeeded,
    /// This many slots are held for the lease.
    Slots(u32),
    /// Too few are free: the job waits (the reason says for what).
    Wait(String),
}

/// The server a job connects to, and how.
async fn server_of(conn: &mut PgConnection, job: &Job) -> Result<Option<(String, ServerUse)>> {
    Ok(match &job.spec {
        JobSpec::Backup { instance_id, .. } => {
            let instance = instances::get_by_id(&mut *conn, *instance_id).await?;
            Some((instance.server_id, ServerUse::Backup))
        }
        JobSpec::Restore(restore) => match &restore.target {
            RestoreTarget::Database { server_id, .. } => {
                Some((server_id.clone(), ServerUse::RestoreDatabase))
            }
            RestoreTarget::Files { .. } => None,
        },
        // The scratch database is a restore's database.
        JobSpec::Drill(drill) => Some((drill.server_id.clone(), ServerUse::RestoreDatabase)),
        JobSpec::Delete { .. }
        | JobSpec::TierMove { .. }
        | JobSpec::Rehydrate { .. }
        | JobSpec::Copy { .. }
        | JobSpec::Verify { .. } => None,
    })
}

/// Takes slots of the job's server for `lease_token` (the claim just taken
/// in this transaction), for a claimer with `data` data connections. Slots
/// an earlier lease of the job held are freed first (a take-over). Claims
/// of one server are serialised on its budget row.
pub async fn take(
    conn: &mut PgConnection,
    job: &Job,
    lease_token: Uuid,
    data: u32,
) -> Result<Taken> {
    connection_slots::release_job(&mut *conn, job.id).await?;
    let Some((server, use_)) = server_of(conn, job).await? else {
        return Ok(Taken::NotNeeded);
    };
    // A server gone since: the task cannot be built, and the claim says so.
    let Some(max) = connection_slots::lock_budget(&mut *conn, &server).await? else {
        return Ok(Taken::NotNeeded);
    };
    let in_use = connection_slots::in_use(&mut *conn, &server).await?;
    match grant(use_, data, in_use, max) {
        Grant::Slots(slots) => {
            connection_slots::take(&mut *conn, lease_token, job.id, &server, slots).await?;
            Ok(Taken::Slots(slots))
        }
        Grant::Wait { in_use, max } => Ok(Taken::Wait(waiting_reason(use_, &server, in_use, max))),
    }
}

/// Takes one slot of the job's server for a fan-out helper's chunk lease
/// (one connection: it imports the leader's snapshot and dumps the chunk).
pub async fn take_chunk(conn: &mut PgConnection, job: &Job, lease_token: Uuid) -> Result<Taken> {
    let Some((server, _)) = server_of(conn, job).await? else {
        return Ok(Taken::NotNeeded);
    };
    let Some(max) = connection_slots::lock_budget(&mut *conn, &server).await? else {
        return Ok(Taken::NotNeeded);
    };
    let in_use = connection_slots::in_use(&mut *conn, &server).await?;
    if in_use >= max {
        return Ok(Taken::Wait(format!(
            "waiting for a connection slot on server {server} ({in_use} of {max} in use)"
        )));
    }
    connection_slots::take(&mut *conn, lease_token, job.id, &server, 1).await?;
    Ok(Taken::Slots(1))
}

/// Why a queued job cannot start now for want of slots ("waiting for a
/// connection slot on server db1 (3 of 3 in use)"); empty when it could.
pub async fn queued_reason(store: &Store, job: &Job) -> Result<String> {
    if job.state != JobState::Queued {
        return Ok(String::new());
    }
    let mut conn = store.pool().acquire().await?;
    let Some((server, use_)) = server_of(&mut conn, job).await? else {
        return Ok(String::new());
    };
    let Some(max) = crate::store::servers::find(&mut *conn, &server)
        .await?
        .map(|s| s.max_connections)
    else {
        return Ok(String::new());
    };
    let in_use = connection_slots::in_use(&mut *conn, &server).await?;
    Ok(match grant(use_, 0, in_use, max) {
        Grant::Slots(_) => String::new(),
        Grant::Wait { in_use, max } => waiting_reason(use_, &server, in_use, max),
    })
}
