//! `pgvault errors [CODE]`: the error-code catalogue (`pgvault_errors`),
//! read offline — what each code on a failed job or configure row means,
//! whether it is retried by default, and what to do about it. Needs no
//! coordinator and no token.

use std::io::Write;

use pgvault_errors::{ErrorCode, UnknownCode};
use serde_json::{Value, json};

use crate::client::OutputFormat;

#[derive(Debug, clap::Args)]
pub struct ErrorsArgs {
    /// The code to explain, in any letter case (e.g. UserErrorDBUserAuthFailed);
    /// every code when absent.
    #[arg(value_name = "CODE")]
    pub code: Option<String>,
}

/// Prints one code, or all of them; an unknown code is an error.
pub fn run(args: &ErrorsArgs, output: OutputFormat) -> anyhow::Result<()> {
    let text = match &args.code {
        Some(name) => {
            let code =
                ErrorCode::lookup(name).ok_or_else(|| UnknownCode(name.trim().to_string()))?;
            match output {
                OutputFormat::Table => describe(code),
                OutputFormat::Json => serde_json::to_string_pretty(&to_json(code))?,
            }
        }
        None => match output {
            OutputFormat::Table => ErrorCode::ALL
                .iter()
                .map(|&code| describe(code))
                .collect::<Vec<_>>()
                .join("\n"),
            OutputFormat::Json => serde_json::to_string_pretty(&Value::Array(
                ErrorCode::ALL.iter().map(|&code| to_json(code)).collect(),
            ))?,
        },
    };
    // Often piped into a pager or `head`: a closed pipe ends the output.
    match writeln!(std::io::stdout().lock(), "{}", text.trim_end()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// `CODE (category[, retryable])`, then what it means and what to do.
fn describe(code: ErrorCode) -> String {
    let retryable = if code.retryable() { ", retryable" } else { "" };
    format!(
        "{code} ({}{retryable})\n  means:  {}\n  action: {}\n",
        code.category(),
        code.summary(),
        code.recommended_action()
    )
}

fn to_json(code: ErrorCode) -> Value {
    json!({
        "code": code.as_str(),
        "category": code.category().as_str(),
        "retryable": code.retryable(),
        "summary": code.summary(),
        "recommended_action": code.recommended_action(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_code_reads_as_its_meaning_and_action() {
        let text = describe(ErrorCode::DatastoreFull);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "DatastoreFull (system, retryable)");
        assert_eq!(
            lines[1],
            format!("  means:  {}", ErrorCode::DatastoreFull.summary())
        );
        assert_eq!(
            lines[2],
            format!(
                "  action: {}",
                ErrorCode::DatastoreFull.recommended_action()
            )
        );
        assert_eq!(
            describe(ErrorCode::ChecksumMismatch).lines().next(),
            Some("ChecksumMismatch (integrity)")
        );
    }

    #[test]
    fn json_uses_the_api_field_names() {
        let value = to_json(ErrorCode::UserErrorDBUserAuthFailed);
        assert_eq!(value["code"], "UserErrorDBUserAuthFailed");
        assert_eq!(value["category"], "user");
        assert_eq!(value["retryable"], false);
        assert_eq!(
            value["recommended_action"],
            ErrorCode::UserErrorDBUserAuthFailed.recommended_action()
        );
    }

    #[test]
    fn an_unknown_code_is_refused_with_where_to_look() {
        let args = ErrorsArgs {
            code: Some("UserErrorNoSuchThing".into()),
        };
        let error = run(&args, OutputFormat::Table).unwrap_err();
        assert!(
            error.to_string().contains("UserErrorNoSuchThing")
                && error.to_string().contains("pgvault errors"),
            "{error}"
        );
        let args = ErrorsArgs {
            code: Some("userErrorDBNotFound".into()),
        };
        assert!(run(&args, OutputFormat::Json).is_ok(), "any letter case");
    }
}
