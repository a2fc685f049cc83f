//! `PolicyService`: create (schedule and retention rules validated, the
//! DEFAULT rule always present, the copy datastore checked and prepared,
//! the drill server, secret and schedule checked),
//! get and list a vault's policies, each with its next run on the
//! coordinator's clock.

use std::sync::Arc;

use pgvault_proto::v1 as pb;
use pgvault_proto::v1::policy_service_server::PolicyService;
use tonic::{Request, Response, Status};

use crate::access::{self, vault_scope};
use crate::api::convert::{rule_kind_from_pb, timestamp};
use crate::api::{ApiContext, next_token};
use crate::error::{CoordinatorError, Result};
use crate::model::Policy;
use crate::names;
use crate::slots::SlotSchedule;
use crate::store::{paging, policies, vaults};
use crate::validation::{self, RuleInput, ScheduleInput};

pub struct PolicyApi {
    ctx: Arc<ApiContext>,
}

impl PolicyApi {
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        PolicyApi { ctx }
    }

    async fn create(&self, req: pb::CreatePolicyRequest) -> Result<pb::Policy> {
        let vault_id = names::parse_vault("parent", &req.parent)?;
        names::validate_short_id("policy_id", &req.policy_id)?;
        let mut policy = validate_policy(vault_id, req.policy_id, req.policy.clone())?;
        // A clear NotFound for the vault rather than a foreign-key error.
        let vault = vaults::get(self.ctx.store.pool(), &policy.vault_id).await?;
        let input = req.policy.unwrap_or_default();
        policy.copy =
            crate::copies::validate_rule(&input.copy_datastore, &input.copy_retention).await?;
        if let Some(copy) = &policy.copy
            && [&vault.standard_datastore, &vault.archive_datastore].contains(&&copy.datastore_url)
        {
            return Err(CoordinatorError::invalid(
                "policy.copy_datastore",
                "is one of the vault's own datastores; name a second datastore (another region or provider)",
            ));
        }
        policy.drill = crate::drill::rule::validate(
            &self.ctx,
            &policy.vault_id,
            &input.drill_server,
            &input.drill_secret,
            input.drill_every,
            drill_schedule(input.drill_schedule.as_ref())?,
        )
        .await?;
        validation::archive_available(
            "policy.retention_rules",
            &policy.retention_rules,
            !vault.archive_datastore.is_empty(),
        )?;
        let created = policies::insert(self.ctx.store.pool(), &policy).await?;
        tracing::info!(vault = %created.vault_id, policy = %created.id, "policy created");
        Ok(self.to_pb(created))
    }

    /// The policy as the API shows it: with the next slot its schedule
    /// fires after the coordinator's now (the scheduler's slot rule).
    fn to_pb(&self, policy: Policy) -> pb::Policy {
        let next = SlotSchedule::new(&policy.schedule)
            .and_then(|slots| slots.next_after(self.ctx.clock.now()));
        let mut out = pb::Policy::from(policy);
        out.next_run_time = next.map(timestamp);
        out
    }
}

/// The request's drill schedule, validated like the verify schedule.
fn drill_schedule(input: Option<&pb::Schedule>) -> Result<Option<crate::model::Schedule>> {
    input
        .map(|s| {
            validation::schedule(
                "policy.drill_schedule",
                ScheduleInput {
                    weekdays: &s.weekdays,
                    time_of_day: &s.time_of_day,
                    time_zone: &s.time_zone,
                },
            )
        })
        .transpose()
}

/// Builds a validated policy from the request's `policy` field.
fn validate_policy(vault_id: String, id: String, input: Option<pb::Policy>) -> Result<Policy> {
    let input = input.ok_or_else(|| CoordinatorError::invalid("policy", "is required"))?;
    let schedule_in = input.schedule.ok_or_else(|| {
        CoordinatorError::invalid("policy.schedule", "a weekly schedule is required")
    })?;
    let schedule = validation::schedule(
        "policy.schedule",
        ScheduleInput {
            weekdays: &schedule_in.weekdays,
            time_of_day: &schedule_in.time_of_day,
            time_zone: &schedule_in.time_zone,
        },
    )?;
    let mut kinds = Vec::with_capacity(input.retention_rules.len());
    for (i, rule) in input.retention_rules.iter().enumerate() {
        kinds.push(rule_kind_from_pb(
            &format!("policy.retention_rules[{i}].kind"),
            rule.kind,
        )?);
    }
    let inputs: Vec<RuleInput<'_>> = input
        .retention_rules
        .iter()
        .zip(kinds)
        .map(|(rule, kind)| RuleInput {
            kind,
            standard_duration: &rule.standard_duration,
            archive_duration: &rule.archive_duration,
        })
        .collect();
    let retention_rules = validation::retention_rules("policy.retention_rules", &inputs)?;
    let keep_min = crate::data_protection::keep_min::keep_min("policy.keep_min", input.keep_min)?;
    let verify_schedule = input
        .verify_schedule
        .map(|s| {
            validation::schedule(
                "policy.verify_schedule",
                ScheduleInput {
                    weekdays: &s.weekdays,
                    time_of_day: &s.time_of_day,
                    time_zone: &s.time_zone,
                },
            )
        })
        .transpose()?;
    Ok(Policy {
        vault_id,
        id,
        schedule,
        retention_rules,
        keep_min,
        copy: None,
        verify_schedule,
        drill: None,
        create_time: chrono::Utc::now(),
    })
}

#[tonic::async_trait]
impl PolicyService for PolicyApi {
    async fn create_policy(
        &self,
        request: Request<pb::CreatePolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().parent).as_deref())?;
        Ok(Response::new(self.create(request.into_inner()).await?))
    }

    async fn get_policy(
        &self,
        request: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().name).as_deref())?;
        let (vault, policy) = names::parse_policy("name", &request.get_ref().name)?;
        let policy = policies::get(self.ctx.store.pool(), &vault, &policy).await?;
        Ok(Response::new(self.to_pb(policy)))
    }

    async fn list_policies(
        &self,
        request: Request<pb::ListPoliciesRequest>,
    ) -> Result<Response<pb::ListPoliciesResponse>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().parent).as_deref())?;
        let req = request.into_inner();
        let vault = names::parse_vault("parent", &req.parent)?;
        vaults::get(self.ctx.store.pool(), &vault).await?;
        let size = paging::page_size(req.page_size);
        let after = paging::after_id(&req.page_token)?;
        let rows =
            policies::list(self.ctx.store.pool(), &vault, after.as_deref(), size + 1).await?;
        let (page, more) = paging::split_page(rows, size);
        let next_page_token = next_token(&page, more, |p| paging::id_token(&p.id));
        Ok(Response::new(pb::ListPoliciesResponse {
            policies: page.into_iter().map(|p| self.to_pb(p)).collect(),
            next_page_token,
        }))
    }
}
