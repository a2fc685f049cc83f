//! `pgvault job dead-letters [delete ID]`: the task messages the queue gave
//! up on, as the coordinator recorded them (when, why, which job and attempt,
//! or a short escaped preview of a payload that is no task), and deleting one
//! after inspection.

use std::process::ExitCode;

use clap::Subcommand;
use pgvault_proto::v1::{DeadLetter, DeleteDeadLetterRequest, ListDeadLettersRequest};

use super::connect::{Api, Reply};
use super::job::state_text;
use super::output::{local_time, or_dash, print_json, print_list};
use super::{json, names};

/// `pgvault job dead-letters <action>`.
#[derive(Debug, Subcommand)]
pub enum DeadLetterAction {
    /// Forget one dead letter (Owner or BackupContributor).
    #[command(after_help = "Example:\n  pgvault job dead-letters delete 0197c1f0-4b7e")]
    Delete {
        /// Dead letter id (or "deadLetters/{id}"), as listed.
        dead_letter: String,
    },
}

pub async fn run(
    api: &Api,
    action: Option<DeadLetterAction>,
    page_size: Option<u32>,
    page_token: Option<String>,
) -> anyhow::Result<ExitCode> {
    match action {
        None => list(api, page_size, page_token).await,
        Some(DeadLetterAction::Delete { dead_letter }) => {
            let name = names::dead_letter(&dead_letter)?;
            api.jobs()
                .delete_dead_letter(DeleteDeadLetterRequest { name: name.clone() })
                .await
                .reply(api)?;
            if api.json() {
                print_json(&serde_json::json!({ "name": name }));
            } else {
                println!("deleted {name}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn list(
    api: &Api,
    page_size: Option<u32>,
    page_token: Option<String>,
) -> anyhow::Result<ExitCode> {
    let page = api
        .jobs()
        .list_dead_letters(ListDeadLettersRequest {
            page_size: page_size.unwrap_or(0),
            page_token: page_token.unwrap_or_default(),
        })
        .await
        .reply(api)?;
    if api.json() {
        print_json(&json::page(
            "dead_letters",
            page.dead_letters.iter().map(json::dead_letter).collect(),
            &page.next_page_token,
        ));
        return Ok(ExitCode::SUCCESS);
    }
    print_list(
        &[
            "DEAD LETTER",
            "RECEIVED",
            "REASON",
            "JOB",
            "ATTEMPT",
            "JOB STATE",
            "PREVIEW",
        ],
        page.dead_letters.iter().map(row).collect(),
        "no dead letters",
    );
    if !page.next_page_token.is_empty() {
        eprintln!(
            "more dead letters: repeat with --page-token {}",
            page.next_page_token
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn row(d: &DeadLetter) -> Vec<String> {
    let reason = if d.delivery_count > 0 {
        format!("{} ({} deliveries)", d.reason, d.delivery_count)
    } else {
        d.reason.clone()
    };
    let job_state = match (d.job.is_empty(), d.job_failed) {
        (true, _) => String::new(),
        (false, true) => format!("{} → failed", state_text(d.job_state)),
        (false, false) if d.job_state == 0 => "no such job".to_owned(),
        (false, false) => state_text(d.job_state).to_owned(),
    };
    vec![
        names::short(&d.name).to_owned(),
        local_time(d.receive_time.as_ref()),
        reason,
        or_dash(names::short(&d.job)),
        if d.job.is_empty() {
            "-".to_owned()
        } else {
            d.attempt.to_string()
        },
        or_dash(&job_state),
        or_dash(&d.preview),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_the_job_or_the_preview() {
        let task = DeadLetter {
            name: "deadLetters/d1".into(),
            reason: "delivery_limit".into(),
            delivery_count: 21,
            job: "jobs/j1".into(),
            attempt: 2,
            job_state: pgvault_proto::v1::JobState::Queued as i32,
            job_failed: true,
            ..Default::default()
        };
        let cells = row(&task);
        assert_eq!(cells[0], "d1");
        assert_eq!(cells[2], "delivery_limit (21 deliveries)");
        assert_eq!(&cells[3..], ["j1", "2", "queued → failed", "-"]);
        let garbage = DeadLetter {
            name: "deadLetters/d2".into(),
            reason: "rejected".into(),
            preview: "\\xff\\x00 junk".into(),
            ..Default::default()
        };
        assert_eq!(
            &row(&garbage)[2..],
            ["rejected", "-", "-", "-", "\\xff\\x00 junk"]
        );
        let unknown = DeadLetter {
            job: "jobs/j9".into(),
            attempt: 1,
            ..garbage
        };
        assert_eq!(row(&unknown)[5], "no such job");
    }
}
