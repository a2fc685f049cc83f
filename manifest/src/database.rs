//! What the manifest records about the source database itself — settings,
//! comment, connection limit, privileges and owner — which `pg_dump` writes
//! only with `--create`. The engine captures them in the backup's snapshot
//! and turns them back into statements on restore.

use serde::{Deserialize, Serialize};

/// What the manifest records about the source database itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DatabaseProperties {
    /// Owner of the source database.
    #[serde(default)]
    pub owner: Option<String>,
    /// `ALTER DATABASE … SET` (role `None`) and `ALTER ROLE … IN DATABASE … SET`.
    #[serde(default)]
    pub settings: Vec<DatabaseSetting>,
    #[serde(default)]
    pub comment: Option<String>,
    /// `None`: no limit (-1).
    #[serde(default)]
    pub connection_limit: Option<i32>,
    /// Privileges granted on the database to others than its owner; `None`:
    /// PostgreSQL's defaults (CONNECT and TEMPORARY for PUBLIC).
    #[serde(default)]
    pub grants: Option<Vec<DatabaseGrant>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DatabaseSetting {
    /// `None`: for every role.
    pub role: Option<String>,
    pub name: String,
    /// As stored in `pg_db_role_setting` (list settings keep their quoting).
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DatabaseGrant {
    /// `None`: PUBLIC.
    pub grantee: Option<String>,
    /// CONNECT, CREATE or TEMPORARY.
    pub privilege: String,
    pub grantable: bool,
}

impl DatabaseProperties {
    /// Roles the properties name (owner, per-role settings, grantees).
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.owner
            .iter()
            .map(String::as_str)
            .chain(self.settings.iter().filter_map(|s| s.role.as_deref()))
            .chain(
                self.grants
                    .iter()
                    .flatten()
                    .filter_map(|g| g.grantee.as_deref()),
            )
    }
}
