//! The databases of a server that accept connections, and its version.
//! Which of them pgvault offers for protection (no templates, no provider
//! maintenance databases) is the coordinator's rule, applied to this list.

use tokio_postgres::Client;

use crate::ProbeError;

/// Every database that allows connections, by name.
pub async fn list_databases(client: &Client) -> Result<Vec<String>, ProbeError> {
    let rows = client
        .query(
            "SELECT datname::text FROM pg_catalog.pg_database WHERE datallowconn ORDER BY datname",
            &[],
        )
        .await
        .map_err(|e| ProbeError::new("list databases", &e))?;
    rows.iter()
        .map(|row| {
            row.try_get(0).map_err(|e| ProbeError {
                what: "list databases",
                detail: format!("unexpected pg_database row: {e}"),
            })
        })
        .collect()
}

/// `server_version_num`, e.g. 150008.
pub async fn server_version_num(client: &Client) -> Result<u32, ProbeError> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .map_err(|e| ProbeError::new("read the server version", &e))?;
    let version: i32 = row.get(0);
    Ok(u32::try_from(version).unwrap_or_default())
}
