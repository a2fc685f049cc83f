//! `JobService.ListDeadLetters` and `DeleteDeadLetter`: the dead letters the
//! drain recorded (see [`crate::dead_letters`]), newest first, and forgetting
//! one after inspection. Dead letters belong to no vault: both calls need a
//! global role. The tonic trait methods live in `api::jobs` and call these.

use pgvault_proto::v1 as pb;

use crate::api::convert::{state_to_pb, timestamp};
use crate::api::{ApiContext, next_token};
use crate::dead_letters::DeadLetter;
use crate::error::{CoordinatorError, Result};
use crate::names;
use crate::store::{dead_letters, paging};

impl From<DeadLetter> for pb::DeadLetter {
    fn from(d: DeadLetter) -> Self {
        pb::DeadLetter {
            name: names::dead_letter_name(d.id),
            receive_time: Some(timestamp(d.receive_time)),
            queue: d.queue,
            reason: d.reason,
            delivery_count: d.delivery_count.unwrap_or(0),
            message_id: d.message_id.unwrap_or_default(),
            payload_size: d.payload_size,
            payload_sha256: d.payload_sha256,
            job: d
                .task
                .map(|t| names::job_name(t.job_id))
                .unwrap_or_default(),
            attempt: d.task.map_or(0, |t| t.attempt),
            preview: d.preview,
            job_state: d.job_state.map_or(pb::JobState::Unspecified, state_to_pb) as i32,
            job_failed: d.job_failed,
        }
    }
}

/// One page of dead letters, newest first.
pub async fn list(
    ctx: &ApiContext,
    req: pb::ListDeadLettersRequest,
) -> Result<pb::ListDeadLettersResponse> {
    let size = paging::page_size(req.page_size);
    let after = paging::after_time(&req.page_token)?;
    let rows = dead_letters::list(ctx.store.pool(), after, size + 1).await?;
    let (page, more) = paging::split_page(rows, size);
    let next_page_token = next_token(&page, more, |d| paging::time_token(d.receive_time, d.id));
    Ok(pb::ListDeadLettersResponse {
        dead_letters: page.into_iter().map(pb::DeadLetter::from).collect(),
        next_page_token,
    })
}

/// Forgets one dead letter.
pub async fn delete(
    ctx: &ApiContext,
    req: pb::DeleteDeadLetterRequest,
) -> Result<pb::DeleteDeadLetterResponse> {
    let id = names::parse_dead_letter("name", &req.name)?;
    if !dead_letters::delete(ctx.store.pool(), id).await? {
        return Err(CoordinatorError::not_found(
            "dead letter",
            names::dead_letter_name(id),
        ));
    }
    tracing::info!(dead_letter = %id, "dead letter deleted");
    Ok(pb::DeleteDeadLetterResponse {})
}
