//! The last step of a restore: `ANALYZE` of every restored table spread
//! over the restore's connections (one database-wide `ANALYZE` would run on
//! a single backend), then of partitioned parents, whose statistics sample
//! their partitions (inheritance parents gather theirs with their own).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::task::JoinSet;

use super::connect::{connect, exec};
use super::error::EngineError;
use super::ident::qualified;
use super::manifest::Manifest;
use super::types::PgTarget;

/// Analyzes the tables and materialized views of `manifest` in `target`.
pub(crate) async fn analyze(
    target: &PgTarget,
    manifest: &Manifest,
    connections: usize,
) -> Result<(), EngineError> {
    let mut sized: Vec<(u64, String)> = manifest
        .tables
        .iter()
        .map(|t| {
            let bytes = t.chunks.iter().map(|c| c.raw_bytes).sum::<u64>();
            (bytes, qualified(&t.schema, &t.name))
        })
        .chain(
            manifest
                .materialized_views
                .iter()
                .map(|v| (0, qualified(&v.schema, &v.name))),
        )
        .collect();
    // Big tables first, so the tail is short.
    sized.sort_by_key(|s| std::cmp::Reverse(s.0));
    let names: Vec<String> = sized.into_iter().map(|(_, name)| name).collect();
    let queue = Arc::new(Mutex::new(VecDeque::from(names)));
    let mut set = JoinSet::new();
    for _ in 0..connections.max(1) {
        let (target, queue) = (target.clone(), queue.clone());
        set.spawn(async move {
            let describe = target.describe();
            let client = connect(&target, &target.database).await?;
            exec(&client, "SET statement_timeout = 0", &describe).await?;
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                let Some(name) = next else {
                    return Ok::<_, EngineError>(());
                };
                exec(&client, &format!("ANALYZE {name}"), &describe)
                    .await
                    .map_err(|e| e.context(format!("analyzing {name}")))?;
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        joined.map_err(|e| EngineError::internal(format!("analyze worker crashed: {e}")))??;
    }
    let describe = target.describe();
    let client = connect(target, &target.database).await?;
    let parents = client
        .query(
            "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'p'",
            &[],
        )
        .await
        .map_err(|e| EngineError::from_pg(&e, &describe))?;
    for row in parents {
        let name: String = row.get(0);
        exec(&client, &format!("ANALYZE {name}"), &describe).await?;
    }
    Ok(())
}
