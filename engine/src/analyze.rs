//! The last step of a restore: `ANALYZE` of materialized views (refreshed
//! after post-data) and of partitioned parents, whose statistics sample
//! their partitions. Tables were analyzed as they finished loading
//! ([`super::restore_schedule`]); inheritance parents gather theirs there.

use tokio_postgres::Client;

use super::connect::exec;
use super::error::EngineError;
use super::ident::qualified;
use super::manifest::Manifest;

/// Analyzes the materialized views of `manifest` and every partitioned
/// table of the database `client` is connected to (tables were analyzed as
/// they finished loading). Runs on the restore's own connection, so it
/// opens none of its own.
pub(crate) async fn analyze_views_and_parents(
    client: &Client,
    describe: &str,
    manifest: &Manifest,
) -> Result<(), EngineError> {
    let parents = client
        .query(
            "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'p'",
            &[],
        )
        .await
        .map_err(|e| EngineError::from_pg(&e, describe))?;
    let views = manifest
        .materialized_views
        .iter()
        .map(|v| qualified(&v.schema, &v.name));
    for name in views.chain(parents.iter().map(|row| row.get::<_, String>(0))) {
        exec(client, &format!("ANALYZE {name}"), describe)
            .await
            .map_err(|e| e.context(format!("analyzing {name}")))?;
    }
    Ok(())
}
