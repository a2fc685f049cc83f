//! [`DirectProbe`]: the coordinator connects to the server itself (as the
//! secret's user, honouring its TLS mode) and asks with `pgvault-probe`.

use super::{ProbeTarget, Probed, Readiness, ServerProbe, Unanswered};
use crate::api::resolve;
use crate::error::Result;
use crate::readiness;
use async_trait::async_trait;

/// Asks servers the coordinator reaches.
#[derive(Debug, Default)]
pub struct DirectProbe;

impl DirectProbe {
    async fn connect(target: &ProbeTarget<'_>) -> Probed<pgvault_pgconn::Connection> {
        resolve::connect(target.server, target.credentials, target.database)
            .await
            .map_err(|e| Unanswered::Connect(readiness::connection_error(&e)))
    }
}

#[async_trait]
impl ServerProbe for DirectProbe {
    async fn list_databases(&self, target: &ProbeTarget<'_>) -> Result<Probed<Vec<String>>> {
        let connection = match Self::connect(target).await {
            Ok(c) => c,
            Err(unanswered) => return Ok(Err(unanswered)),
        };
        Ok(pgvault_probe::list_databases(&connection.client)
            .await
            .map_err(|e| Unanswered::Query(e.to_string())))
    }

    async fn server_version(&self, target: &ProbeTarget<'_>) -> Result<Probed<u32>> {
        let connection = match Self::connect(target).await {
            Ok(c) => c,
            Err(unanswered) => return Ok(Err(unanswered)),
        };
        Ok(pgvault_probe::server_version_num(&connection.client)
            .await
            .map_err(|e| Unanswered::Query(e.to_string())))
    }

    async fn readiness(&self, target: &ProbeTarget<'_>) -> Result<Probed<Readiness>> {
        let connection = match Self::connect(target).await {
            Ok(c) => c,
            Err(unanswered) => return Ok(Err(unanswered)),
        };
        let client = &connection.client;
        let answer = async {
            Ok::<_, pgvault_probe::ProbeError>(Readiness {
                missing: pgvault_probe::privileges::check(client).await?,
                server_version_num: pgvault_probe::server_version_num(client).await?,
            })
        };
        Ok(answer.await.map_err(|e| Unanswered::Query(e.to_string())))
    }
}
