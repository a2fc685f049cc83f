//! [`DirectProbe`]: the coordinator connects to the server itself (as the
//! secret's user, honouring its TLS mode) and asks with `pgvault-probe`.

use async_trait::async_trait;
use pgvault_probe::Missing;

use super::{ProbeTarget, Probed, ServerProbe, Unanswered};
use crate::api::resolve;
use crate::error::Result;
use crate::readiness;

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

    async fn readiness(&self, target: &ProbeTarget<'_>) -> Result<Probed<Missing>> {
        let connection = match Self::connect(target).await {
            Ok(c) => c,
            Err(unanswered) => return Ok(Err(unanswered)),
        };
        Ok(pgvault_probe::privileges::check(&connection.client)
            .await
            .map_err(|e| Unanswered::Query(e.to_string())))
    }
}
