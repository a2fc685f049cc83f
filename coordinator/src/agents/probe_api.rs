//! `ClaimProbe` and `CompleteProbe`, called by an agent's instances with
//! the agent's token. A claim takes an unclaimed probe of *that* agent and
//! hands over the connection, resolved from the probe's secret reference
//! exactly as a task claim resolves it (latest version, external value,
//! the vault's grant); only the claimer ever sees it. An answer must be of
//! the probe's kind and come from the agent that claimed it.

use pgvault_errors::ErrorCode;
use pgvault_proto::v1 as pb;
use uuid::Uuid;

use crate::api::ApiContext;
use crate::api::resolve::{connection_spec, reference_credentials};
use crate::error::{CoordinatorError, Result};
use crate::model::{Agent, JobError, ProbeAnswer, ProbeKind};
use crate::store::{probes, servers};

/// Most database names one answer may carry.
const MAX_DATABASES: usize = 100_000;
/// Longest message kept from an agent's error.
const MAX_MESSAGE: usize = 2000;

fn probe_id(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw.trim())
        .map_err(|_| CoordinatorError::invalid("probe_id", "must be the id of a probe offer"))
}

fn not_claimed(reason: impl Into<String>) -> pb::ClaimProbeResponse {
    pb::ClaimProbeResponse {
        claimed: false,
        probe: None,
        reason: reason.into(),
    }
}

pub async fn claim(
    ctx: &ApiContext,
    agent: &Agent,
    req: pb::ClaimProbeRequest,
) -> Result<pb::ClaimProbeResponse> {
    let id = probe_id(&req.probe_id)?;
    let instance = Uuid::parse_str(req.instance_id.trim()).map_err(|_| {
        CoordinatorError::invalid("instance_id", "must be the instance id sent in hello")
    })?;
    let mut tx = ctx.store.begin().await?;
    let Some(probe) = probes::claim(&mut *tx, id, &agent.id, instance).await? else {
        tx.rollback().await?;
        return Ok(not_claimed(
            "the probe was taken by another instance, answered, or given up",
        ));
    };
    let server = servers::get(&mut *tx, &probe.server_id).await?;
    let credentials = match reference_credentials(
        &mut tx,
        &ctx.cipher,
        &ctx.external_secrets,
        probe.vault_id.as_deref(),
        &probe.secret,
    )
    .await
    {
        Ok(credentials) => credentials,
        Err(CoordinatorError::SecretUnusable(error)) => {
            // Changed since the handler checked it: answer for the agent.
            probes::answer(&mut *tx, id, &agent.id, &ProbeAnswer::Error(*error), None).await?;
            tx.commit().await?;
            return Ok(not_claimed(
                "the probe's secret cannot be used; answered with its error",
            ));
        }
        Err(error) => return Err(error),
    };
    tx.commit().await?;
    let kind = match probe.kind {
        ProbeKind::ListDatabases => pb::probe::Kind::ListDatabases(pb::ListDatabasesProbe {}),
        ProbeKind::Readiness => pb::probe::Kind::Readiness(pb::ReadinessProbe {}),
    };
    tracing::info!(probe = %id, agent = %agent.id, instance = %instance, kind = %probe.kind, server = %server.id, "probe claimed");
    Ok(pb::ClaimProbeResponse {
        claimed: true,
        probe: Some(pb::Probe {
            probe_id: id.to_string(),
            connection: Some(connection_spec(&server, &probe.database, &credentials)),
            kind: Some(kind),
        }),
        reason: String::new(),
    })
}

pub async fn complete(
    ctx: &ApiContext,
    agent: &Agent,
    req: pb::CompleteProbeRequest,
) -> Result<()> {
    let id = probe_id(&req.probe_id)?;
    let (answer, kind) = answer_from_pb(req.result)?;
    if !probes::answer(ctx.store.pool(), id, &agent.id, &answer, kind).await? {
        return Err(CoordinatorError::precondition(format!(
            "probe {id} is not a claimed, unanswered {} probe of agent \"{}\" (answered already, given up, or of another kind)",
            kind.map(|k| k.as_str()).unwrap_or("any"),
            agent.id
        )));
    }
    tracing::debug!(probe = %id, agent = %agent.id, "probe answered");
    Ok(())
}

/// The answer off the wire, and the kind of probe it answers (`None`: an
/// error answers any).
fn answer_from_pb(
    result: Option<pb::complete_probe_request::Result>,
) -> Result<(ProbeAnswer, Option<ProbeKind>)> {
    use pb::complete_probe_request::Result as R;
    Ok(match result {
        None => return Err(CoordinatorError::invalid("result", "is required")),
        Some(R::Databases(list)) => {
            if list.databases.len() > MAX_DATABASES
                || list
                    .databases
                    .iter()
                    .any(|d| d.is_empty() || d.len() > 200 || d.chars().any(char::is_control))
            {
                return Err(CoordinatorError::invalid(
                    "databases.databases",
                    "database names are 1-200 printable characters",
                ));
            }
            (
                ProbeAnswer::Databases(list.databases),
                Some(ProbeKind::ListDatabases),
            )
        }
        Some(R::Readiness(result)) => (
            ProbeAnswer::Readiness {
                missing: result.missing.map(Into::into).unwrap_or_default(),
                server_version_num: result.server_version_num,
            },
            Some(ProbeKind::Readiness),
        ),
        Some(R::Error(error)) => {
            let code = error.code.trim();
            let mut answer = if code.is_empty() {
                JobError::new(ErrorCode::SystemErrorUnknown, "")
            } else {
                JobError {
                    code: code.chars().take(100).collect(),
                    message: String::new(),
                    recommended_action: error
                        .recommended_action
                        .chars()
                        .take(MAX_MESSAGE)
                        .collect(),
                }
            };
            answer.message = error.message.chars().take(MAX_MESSAGE).collect();
            (ProbeAnswer::Error(answer), None)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_says_which_probe_kind_it_answers() {
        use pb::complete_probe_request::Result as R;
        let (answer, kind) = answer_from_pb(Some(R::Databases(pb::ListDatabasesResult {
            databases: vec!["app".into()],
        })))
        .unwrap();
        assert_eq!(answer, ProbeAnswer::Databases(vec!["app".into()]));
        assert_eq!(kind, Some(ProbeKind::ListDatabases));
        let (answer, kind) = answer_from_pb(Some(R::Readiness(pb::ReadinessResult {
            missing: None,
            server_version_num: 150_008,
        })))
        .unwrap();
        assert!(
            matches!(answer, ProbeAnswer::Readiness { missing, server_version_num: 150_008 } if missing.is_empty())
        );
        assert_eq!(kind, Some(ProbeKind::Readiness));
        let (answer, kind) = answer_from_pb(Some(R::Error(pb::JobError {
            code: String::new(),
            message: "boom".into(),
            recommended_action: String::new(),
        })))
        .unwrap();
        assert_eq!(kind, None);
        let ProbeAnswer::Error(error) = answer else {
            panic!("an error")
        };
        assert_eq!(error.code, "SystemErrorUnknown");
        assert_eq!(error.message, "boom");
        assert!(answer_from_pb(None).is_err());
        let garbage = answer_from_pb(Some(R::Databases(pb::ListDatabasesResult {
            databases: vec!["a\u{0}b".into()],
        })));
        assert!(garbage.is_err());
    }
}
