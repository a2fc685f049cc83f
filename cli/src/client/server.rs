//! `pgvault server register|get|list|update|databases`. A server's
//! connection budget (`--max-connections`) bounds the connections all
//! workers and agents open to it at once; `update --agent`/`--no-agent`
//! rebinds it.

use std::process::ExitCode;

use clap::Subcommand;
use pgvault_proto::v1::{
    GetServerRequest, ListDatabasesRequest, ListServersRequest, RegisterServerRequest, Server,
    UpdateServerRequest,
};

use super::connect::{Api, Reply};
use super::output::{local_time, or_dash, print_details, print_json, print_list};
use super::{json, names, paging};

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Register a PostgreSQL server.
    #[command(after_help = "Examples:\n  \
        pgvault server register db1 --host db1.internal --port 5432 --region eu-west\n  \
        pgvault server databases db1 --secret db1-backup\n  \
        pgvault server register billing-db --host 10.1.2.3 --region eu-west --agent dc1   # a private network\n  \
        pgvault server register prod-db --host 10.1.2.4 --region eu-west --max-connections 4")]
    Register {
        /// Short id of the server.
        name: String,
        /// Host name or IP address.
        #[arg(long)]
        host: String,
        /// TCP port.
        #[arg(long, default_value_t = 5432)]
        port: u16,
        /// Region label; only vaults of the same region protect it.
        #[arg(long)]
        region: String,
        /// Agent that reaches this server from inside a private network
        /// (see pgvault agent create): every connection to the server —
        /// listing databases, configure checks, backups, restores — then
        /// goes through that agent. Leave it out for servers workers reach.
        #[arg(long, value_name = "AGENT")]
        agent: Option<String>,
        /// Most connections all workers and agents open to this server at
        /// once (2-1000; default 8). Backups and restores wait for free
        /// connection slots rather than fail.
        #[arg(long, value_name = "N")]
        max_connections: Option<u32>,
    },
    /// List registered servers.
    List,
    /// Change a server's connection budget, or the agent that reaches it.
    #[command(after_help = "Examples:\n  \
        pgvault server update db1 --max-connections 3\n  \
        pgvault server update billing-db --agent dc2    # its agent's host is replaced\n  \
        pgvault server update billing-db --no-agent     # the workers now reach it\n\n\
        A server is rebound only while no backup, restore, verify or drill \
        through it is queued or running: each job keeps the agent it was \
        created with. The refusal names them; wait for them or cancel them \
        (pgvault job cancel JOB).")]
    #[command(group(clap::ArgGroup::new("change")
        .required(true)
        .multiple(true)
        .args(["max_connections", "agent", "no_agent"])))]
    Update {
        /// Server id (or "servers/{id}").
        name: String,
        /// New connection budget (2-1000); running jobs keep the slots they hold.
        #[arg(long, value_name = "N")]
        max_connections: Option<u32>,
        /// Bind the server to this agent (of the server's region): every
        /// connection to it then goes through that agent.
        #[arg(long, value_name = "AGENT", conflicts_with = "no_agent")]
        agent: Option<String>,
        /// Unbind the server from its agent: the workers reach it directly.
        #[arg(long)]
        no_agent: bool,
    },
    /// Show one server.
    Get {
        /// Server id (or "servers/{id}").
        name: String,
    },
    /// List the databases of a server that can be protected.
    Databases {
        /// Server id (or "servers/{id}").
        name: String,
        /// Secret whose connection string is used to connect.
        #[arg(long)]
        secret: String,
    },
}

pub async fn run(api: &Api, command: ServerCommand) -> anyhow::Result<ExitCode> {
    match command {
        ServerCommand::Register {
            name,
            host,
            port,
            region,
            agent,
            max_connections,
        } => {
            let server_id = names::short(&names::server(&name)?).to_owned();
            let server = Server {
                host,
                port: u32::from(port),
                region,
                // The contract takes the agent's short id ("dc1").
                agent: match agent {
                    Some(agent) => names::short(&names::agent(&agent)?).to_owned(),
                    None => String::new(),
                },
                // 0: the coordinator's default.
                max_connections: max_connections.unwrap_or(0),
                ..Server::default()
            };
            let request = RegisterServerRequest {
                server_id,
                server: Some(server),
            };
            let server = api.servers().register_server(request).await.reply(api)?;
            show(api, &server);
        }
        ServerCommand::List => list(api).await?,
        ServerCommand::Update {
            name,
            max_connections,
            agent,
            no_agent,
        } => {
            let agent = match (agent, no_agent) {
                (Some(agent), _) => Some(names::short(&names::agent(&agent)?).to_owned()),
                (None, true) => Some(String::new()),
                (None, false) => None,
            };
            let request = UpdateServerRequest {
                name: names::server(&name)?,
                // 0: unchanged.
                max_connections: max_connections.unwrap_or(0),
                agent,
            };
            let server = api.servers().update_server(request).await.reply(api)?;
            show(api, &server);
        }
        ServerCommand::Get { name } => {
            let request = GetServerRequest {
                name: names::server(&name)?,
            };
            let server = api.servers().get_server(request).await.reply(api)?;
            show(api, &server);
        }
        ServerCommand::Databases { name, secret } => {
            let request = ListDatabasesRequest {
                name: names::server(&name)?,
                secret: names::secret_ref(&secret)?,
            };
            let response = api.servers().list_databases(request).await.reply(api)?;
            if api.json() {
                print_json(&serde_json::json!({ "databases": response.databases }));
            } else {
                let rows = response.databases.iter().map(|d| vec![d.clone()]).collect();
                print_list(&["DATABASE"], rows, "no databases that can be protected");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(api: &Api) -> anyhow::Result<()> {
    let servers = paging::all_pages(|page_token| {
        let request = ListServersRequest {
            page_size: 0,
            page_token,
        };
        async move {
            let page = api.servers().list_servers(request).await.reply(api)?;
            Ok((page.servers, page.next_page_token))
        }
    })
    .await?;
    if api.json() {
        print_json(&json::page(
            "servers",
            servers.iter().map(json::server).collect(),
            "",
        ));
        return Ok(());
    }
    let rows = servers
        .iter()
        .map(|s| {
            vec![
                names::short(&s.name).to_owned(),
                s.host.clone(),
                s.port.to_string(),
                s.region.clone(),
                or_dash(&s.agent),
                connections(s),
                local_time(s.create_time.as_ref()),
            ]
        })
        .collect();
    print_list(
        &[
            "NAME",
            "HOST",
            "PORT",
            "REGION",
            "AGENT",
            "CONNECTIONS",
            "CREATED",
        ],
        rows,
        "no servers yet; register one with: pgvault server register NAME --host H --port P --region R",
    );
    Ok(())
}

fn show(api: &Api, server: &Server) {
    if api.json() {
        print_json(&json::server(server));
        return;
    }
    print_details(&[
        ("NAME", names::short(&server.name).to_owned()),
        ("HOST", server.host.clone()),
        ("PORT", server.port.to_string()),
        ("REGION", server.region.clone()),
        ("AGENT", server.agent.clone()),
        ("CONNECTIONS", connections(server)),
        ("CREATED", local_time(server.create_time.as_ref())),
    ]);
    if let Some(whole) = &server.whole_server_protection {
        let last = match &whole.last_slot {
            Some(slot) => local_time(Some(slot)),
            None => "no slot yet".to_owned(),
        };
        let list = |items: &[String]| {
            if items.is_empty() {
                "-".to_owned()
            } else {
                items.join(", ")
            }
        };
        let mut rows = vec![
            ("PROTECTED WHOLE BY", names::short(&whole.vault).to_owned()),
            ("POLICY", names::short(&whole.policy).to_owned()),
            (
                "ROLE PASSWORDS",
                if whole.role_passwords {
                    "captured (hashed, encrypted vault)"
                } else {
                    "never captured"
                }
                .to_owned(),
            ),
            ("LAST AUTO-INCLUDE", last),
            ("INCLUDED", list(&whole.included)),
            ("REFUSED", list(&whole.refused)),
            ("MISSING", list(&whole.missing)),
        ];
        if !whole.error.is_empty() {
            rows.push(("ERROR", whole.error.clone()));
        }
        println!();
        print_details(&rows);
    }
}

/// "2/8": connection slots in use of the server's budget.
fn connections(server: &Server) -> String {
    format!("{}/{}", server.connections_in_use, server.max_connections)
}

#[cfg(test)]
mod tests {
    use super::super::ClientCommand;
    use super::super::tests::parse;
    use super::*;

    #[test]
    fn the_connection_budget_is_set_at_register_and_changed_by_update() {
        let cli = parse(&[
            "server",
            "register",
            "db1",
            "--host",
            "h",
            "--region",
            "r",
            "--max-connections",
            "3",
        ])
        .expect("parses");
        assert!(matches!(
            cli.command,
            ClientCommand::Server(ServerCommand::Register {
                max_connections: Some(3),
                ..
            })
        ));
        let cli =
            parse(&["server", "register", "db1", "--host", "h", "--region", "r"]).expect("parses");
        assert!(matches!(
            cli.command,
            ClientCommand::Server(ServerCommand::Register {
                max_connections: None,
                ..
            })
        ));
        let cli = parse(&["server", "update", "db1", "--max-connections", "4"]).expect("parses");
        assert!(matches!(
            cli.command,
            ClientCommand::Server(ServerCommand::Update { max_connections: Some(4), agent: None, no_agent: false, ref name }) if name == "db1"
        ));
        let cli = parse(&["server", "update", "db1", "--agent", "dc2"]).expect("parses");
        assert!(matches!(
            cli.command,
            ClientCommand::Server(ServerCommand::Update { max_connections: None, agent: Some(ref agent), no_agent: false, .. }) if agent == "dc2"
        ));
        let cli = parse(&["server", "update", "db1", "--no-agent"]).expect("parses");
        assert!(matches!(
            cli.command,
            ClientCommand::Server(ServerCommand::Update {
                agent: None,
                no_agent: true,
                ..
            })
        ));
        assert!(
            parse(&["server", "update", "db1"]).is_err(),
            "update needs something to change"
        );
        assert!(
            parse(&["server", "update", "db1", "--agent", "dc2", "--no-agent"]).is_err(),
            "an agent and no agent at once"
        );
    }

    #[test]
    fn connections_show_in_use_of_the_budget() {
        let server = Server {
            max_connections: 8,
            connections_in_use: 3,
            ..Server::default()
        };
        assert_eq!(connections(&server), "3/8");
    }
}
