//! `pgvault server register|get|list|databases`.

use std::process::ExitCode;

use clap::Subcommand;
use pgvault_proto::v1::{
    GetServerRequest, ListDatabasesRequest, ListServersRequest, RegisterServerRequest, Server,
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
        pgvault server register billing-db --host 10.1.2.3 --region eu-west --agent dc1   # a private network")]
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
    },
    /// List registered servers.
    List,
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
                local_time(s.create_time.as_ref()),
            ]
        })
        .collect();
    print_list(
        &["NAME", "HOST", "PORT", "REGION", "AGENT", "CREATED"],
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
