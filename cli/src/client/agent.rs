//! `pgvault agent create|get|list|delete`: the agents that reach servers in
//! private networks, as tables (is one connected, its instances and their
//! versions — flagging a version the coordinator no longer speaks — its
//! servers, running tasks, when it was last seen) and as `--output json`.
//! `pgvault agent run` is a server command: `crate::agent`.

use std::process::ExitCode;

use clap::Subcommand;
use pgvault_proto::v1::{
    Agent, AgentInstance, CreateAgentRequest, DeleteAgentRequest, GetAgentRequest,
    ListAgentsRequest,
};
use serde_json::{Value, json};

use super::connect::{Api, Reply};
use super::output::{
    list_table, local_time, or_dash, print_details, print_json, print_list, to_utc,
};
use super::{names, paging};

/// Managing agents (admin verbs; `run` is added by the caller).
#[derive(Debug, Subcommand)]
pub enum AgentAdminCommand {
    /// Register an agent; its token is printed once and never again.
    #[command(after_help = "Example:\n  \
        pgvault agent create dc1 --region eu-west\n  \
        then, on a host inside the private network:\n  \
        PGVAULT_AGENT_TOKEN=<token> pgvault-agent --coordinator https://vault.example:50051 --name dc1\n  \
        and bind servers to it: pgvault server register billing-db --host 10.1.2.3 --region eu-west --agent dc1")]
    Create {
        /// Short id of the agent: lowercase letters, digits and '-'.
        name: String,
        /// Region label; only servers of this region can be bound to it.
        #[arg(long)]
        region: String,
    },
    /// Show one agent and each of its instances (processes).
    Get {
        /// Agent id (or "agents/{id}").
        name: String,
    },
    /// List agents: connected or not, instances, versions, servers, running tasks, last seen.
    List,
    /// Delete an agent and revoke its token (refused while servers are bound to it).
    Delete {
        /// Agent id (or "agents/{id}").
        name: String,
    },
}

pub async fn run(api: &Api, command: AgentAdminCommand) -> anyhow::Result<ExitCode> {
    match command {
        AgentAdminCommand::Create { name, region } => {
            let agent_id = names::short(&names::agent(&name)?).to_owned();
            let request = CreateAgentRequest {
                agent_id,
                agent: Some(Agent {
                    region,
                    ..Agent::default()
                }),
            };
            let created = api.agents().create_agent(request).await.reply(api)?;
            let agent = created.agent.unwrap_or_default();
            if api.json() {
                print_json(&json!({ "agent": agent_json(&agent), "token": created.token }));
            } else {
                let id = names::short(&agent.name);
                println!("created {} (region {})", agent.name, agent.region);
                println!("token (shown only now; store it safely): {}", created.token);
                println!(
                    "run it next to the servers: PGVAULT_AGENT_TOKEN=<token> pgvault-agent --coordinator <url> --name {id}"
                );
            }
        }
        AgentAdminCommand::Get { name } => {
            let request = GetAgentRequest {
                name: names::agent(&name)?,
            };
            let agent = api.agents().get_agent(request).await.reply(api)?;
            show(api, &agent);
        }
        AgentAdminCommand::List => list(api).await?,
        AgentAdminCommand::Delete { name } => {
            let name = names::agent(&name)?;
            api.agents()
                .delete_agent(DeleteAgentRequest { name: name.clone() })
                .await
                .reply(api)?;
            if api.json() {
                print_json(&json!({}));
            } else {
                println!("deleted {name}; its token no longer works");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(api: &Api) -> anyhow::Result<()> {
    let agents = paging::all_pages(|page_token| {
        let request = ListAgentsRequest {
            page_size: 0,
            page_token,
        };
        async move {
            let page = api.agents().list_agents(request).await.reply(api)?;
            Ok((page.agents, page.next_page_token))
        }
    })
    .await?;
    if api.json() {
        let items: Vec<Value> = agents.iter().map(agent_json).collect();
        print_json(&json!({ "agents": items }));
        return Ok(());
    }
    print_list(
        &[
            "NAME",
            "REGION",
            "CONNECTED",
            "INSTANCES",
            "VERSION",
            "SERVERS",
            "RUNNING",
            "LAST SEEN",
        ],
        agents.iter().map(list_row).collect(),
        "no agents yet; create one for a private network with: pgvault agent create NAME --region R",
    );
    for line in agents.iter().flat_map(refusals) {
        println!("{line}");
    }
    Ok(())
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

fn list_row(agent: &Agent) -> Vec<String> {
    let connected = agent.instances.iter().filter(|i| i.connected).count();
    vec![
        names::short(&agent.name).to_owned(),
        agent.region.clone(),
        yes_no(agent.connected),
        format!("{connected}/{}", agent.instances.len()),
        or_dash(&versions(&agent.instances)),
        or_dash(&servers(agent)),
        agent.running_tasks.to_string(),
        local_time(agent.last_seen_time.as_ref()),
    ]
}

/// The instances' versions, each once, newest instance first; a version
/// the coordinator refused is marked.
pub fn versions(instances: &[AgentInstance]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for instance in instances {
        let text = if instance.supported {
            instance.version.clone()
        } else {
            format!("{} (UNSUPPORTED)", instance.version)
        };
        if !instance.version.is_empty() && !seen.contains(&text) {
            seen.push(text);
        }
    }
    seen.join(", ")
}

fn servers(agent: &Agent) -> String {
    let short: Vec<&str> = agent.servers.iter().map(|s| names::short(s)).collect();
    short.join(", ")
}

/// One line per refused instance, saying why and what to do.
fn refusals(agent: &Agent) -> Vec<String> {
    agent
        .instances
        .iter()
        .filter(|i| !i.supported)
        .map(|i| {
            format!(
                "agent {} on {} (version {}): {}",
                names::short(&agent.name),
                or_dash(&i.hostname),
                or_dash(&i.version),
                if i.refused_reason.is_empty() {
                    "refused by the coordinator; upgrade pgvault-agent"
                } else {
                    i.refused_reason.as_str()
                }
            )
        })
        .collect()
}

fn show(api: &Api, agent: &Agent) {
    if api.json() {
        print_json(&agent_json(agent));
        return;
    }
    print_details(&[
        ("NAME", names::short(&agent.name).to_owned()),
        ("REGION", agent.region.clone()),
        ("CONNECTED", yes_no(agent.connected)),
        ("LAST SEEN", local_time(agent.last_seen_time.as_ref())),
        ("SERVERS", servers(agent)),
        ("RUNNING TASKS", agent.running_tasks.to_string()),
        ("CREATED", local_time(agent.create_time.as_ref())),
    ]);
    if !agent.instances.is_empty() {
        println!("\nINSTANCES\n{}", instances_table(&agent.instances));
    }
    for line in refusals(agent) {
        println!("{line}");
    }
}

pub fn instances_table(instances: &[AgentInstance]) -> String {
    let rows = instances
        .iter()
        .map(|i| {
            let majors: Vec<String> = i.pg_tool_majors.iter().map(u32::to_string).collect();
            vec![
                i.instance_id.chars().take(8).collect(),
                or_dash(&i.hostname),
                or_dash(&i.version),
                i.protocol_version.to_string(),
                if i.supported { "yes" } else { "NO" }.to_owned(),
                or_dash(&majors.join(", ")),
                format!("{}/{}", i.running_tasks, i.concurrency),
                yes_no(i.connected),
                local_time(i.last_seen_time.as_ref()),
            ]
        })
        .collect();
    list_table(
        &[
            "INSTANCE",
            "HOST",
            "VERSION",
            "PROTOCOL",
            "SUPPORTED",
            "PG TOOLS",
            "RUNNING",
            "CONNECTED",
            "LAST SEEN",
        ],
        rows,
    )
}

fn timestamp(ts: Option<&prost_types::Timestamp>) -> Value {
    to_utc(ts).map_or(Value::Null, |t| {
        Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    })
}

pub fn agent_json(a: &Agent) -> Value {
    json!({
        "name": a.name,
        "region": a.region,
        "create_time": timestamp(a.create_time.as_ref()),
        "connected": a.connected,
        "last_seen_time": timestamp(a.last_seen_time.as_ref()),
        "servers": a.servers,
        "running_tasks": a.running_tasks,
        "instances": a.instances.iter().map(instance_json).collect::<Vec<_>>(),
    })
}

fn instance_json(i: &AgentInstance) -> Value {
    json!({
        "instance_id": i.instance_id,
        "hostname": i.hostname,
        "version": i.version,
        "protocol_version": i.protocol_version,
        "supported": i.supported,
        "refused_reason": i.refused_reason,
        "pg_tool_majors": i.pg_tool_majors,
        "concurrency": i.concurrency,
        "running_tasks": i.running_tasks,
        "connected": i.connected,
        "connect_time": timestamp(i.connect_time.as_ref()),
        "last_seen_time": timestamp(i.last_seen_time.as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(version: &str, supported: bool, connected: bool) -> AgentInstance {
        AgentInstance {
            instance_id: "6f1c2d3e-0000-4000-8000-000000000001".into(),
            hostname: "db-gw".into(),
            version: version.into(),
            protocol_version: if supported { 1 } else { 0 },
            supported,
            refused_reason: if supported {
                String::new()
            } else {
                "unsupported: protocol 0, coordinator speaks 1; upgrade pgvault-agent".into()
            },
            pg_tool_majors: vec![15, 17],
            concurrency: 2,
            running_tasks: 1,
            connected,
            ..AgentInstance::default()
        }
    }

    fn agent() -> Agent {
        Agent {
            name: "agents/dc1".into(),
            region: "eu-west".into(),
            connected: true,
            servers: vec!["servers/billing-db".into(), "servers/crm".into()],
            running_tasks: 1,
            instances: vec![
                instance("0.2.0", true, true),
                instance("0.2.0", true, false),
                instance("0.0.9", false, false),
            ],
            ..Agent::default()
        }
    }

    #[test]
    fn the_list_row_shows_connection_instances_versions_servers_and_tasks() {
        let row = list_row(&agent());
        assert_eq!(
            &row[..7],
            &[
                "dc1",
                "eu-west",
                "yes",
                "1/3",
                "0.2.0, 0.0.9 (UNSUPPORTED)",
                "billing-db, crm",
                "1"
            ]
        );
        assert_eq!(row[7], "-", "never seen: no time");
    }

    #[test]
    fn a_refused_instance_is_explained_with_what_to_do() {
        assert_eq!(
            refusals(&agent()),
            vec![
                "agent dc1 on db-gw (version 0.0.9): unsupported: protocol 0, coordinator speaks 1; upgrade pgvault-agent"
            ]
        );
    }

    #[test]
    fn json_keeps_the_api_field_names() {
        let value = agent_json(&agent());
        assert_eq!(value["name"], "agents/dc1");
        assert_eq!(value["connected"], true);
        assert_eq!(value["instances"][2]["supported"], false);
        assert_eq!(value["instances"][0]["pg_tool_majors"], json!([15, 17]));
        assert_eq!(value["last_seen_time"], Value::Null);
    }

    #[test]
    fn instances_show_host_version_protocol_and_tools() {
        let text = instances_table(&agent().instances);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("SUPPORTED") && lines[0].contains("PG TOOLS"));
        assert!(
            lines[1].contains("6f1c2d3e") && lines[1].contains("15, 17"),
            "{text}"
        );
        assert!(
            lines[1].contains("1/2"),
            "running of its concurrency: {text}"
        );
        assert!(lines[3].contains("NO"), "{text}");
    }
}
