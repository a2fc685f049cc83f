//! Recovery points read with the datastore and a vault key file alone — no
//! coordinator, no state database (`pgvault recovery-point export`):
//! [`list_points`] finds every point under a datastore by its
//! `manifest.json`; [`find_point`] resolves what the user typed (a point id
//! or a point's path); [`point_key`] opens a point's key object
//! (`key.json`) with the vault's key file. The caller then streams the
//! point through [`crate::restore_as_sql`] with that key, so the offline
//! export writes the same script as `pgvault restore files`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use pgvault_datastore::Datastore;

use crate::error::store_error;
use crate::manifest::{MANIFEST_FILE, Manifest};
use crate::objects::{get_small, open_small, sha256_hex};
use crate::seal::key_file::KeyFile;
use crate::seal::key_object::{KEY_OBJECT_FILE, KeyObject};
use crate::seal::{PointKey, is_sealed};
use crate::stages::StageClock;
use crate::{EngineError, ErrorCode};

/// One recovery point found in a datastore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundPoint {
    /// Its directory under the datastore root: `<vault>/<instance>/<point>`.
    pub prefix: String,
    /// Bytes stored under it, manifest included.
    pub stored_bytes: u64,
    /// When its manifest was written (the backup's completion).
    pub written: DateTime<Utc>,
    /// Whether its manifest is sealed.
    pub encrypted: bool,
    /// Whether it holds a key object (encrypted points backed up before key
    /// objects existed do not, and cannot be exported offline).
    pub key_object: bool,
}

impl FoundPoint {
    /// The point's id: the last part of its directory.
    pub fn point_id(&self) -> &str {
        self.prefix.rsplit('/').next().unwrap_or(&self.prefix)
    }

    /// The backup instance's id: the directory above the point.
    pub fn instance(&self) -> &str {
        self.prefix.rsplit('/').nth(1).unwrap_or("")
    }
}

/// Every recovery point under `store` (a directory holding a manifest),
/// sorted by directory. Reads each manifest's first bytes to tell whether
/// it is sealed.
pub async fn list_points(store: &Datastore) -> Result<Vec<FoundPoint>, EngineError> {
    let root = store.path("");
    let base = if root.as_ref().is_empty() {
        String::new()
    } else {
        format!("{}/", root.as_ref())
    };
    let objects = store.object_store();
    let mut listing = objects.list(Some(&root));
    // Directory → bytes under it (every object adds its size to each of its
    // ancestor directories); point directory → its manifest's time; point
    // directories holding a key object.
    let mut dirs: BTreeMap<String, u64> = BTreeMap::new();
    let mut manifests: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    let mut keys: BTreeSet<String> = BTreeSet::new();
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| store_error(&e, "list", "the datastore", false))?;
        let Some(relative) = meta.location.as_ref().strip_prefix(&base) else {
            continue;
        };
        let mut dir = relative;
        while let Some((parent, _)) = dir.rsplit_once('/') {
            *dirs.entry(parent.to_string()).or_default() += meta.size as u64;
            dir = parent;
        }
        if let Some(prefix) = relative.strip_suffix(&format!("/{MANIFEST_FILE}")) {
            manifests.insert(prefix.to_string(), meta.last_modified);
        }
        if let Some(prefix) = relative.strip_suffix(&format!("/{KEY_OBJECT_FILE}")) {
            keys.insert(prefix.to_string());
        }
    }
    let clock = Arc::new(StageClock::default());
    let mut found = Vec::with_capacity(manifests.len());
    for (prefix, written) in manifests {
        let (bytes, _) = get_small(store, &prefix, MANIFEST_FILE, &clock).await?;
        found.push(FoundPoint {
            stored_bytes: dirs.get(&prefix).copied().unwrap_or_default(),
            written,
            encrypted: is_sealed(&bytes),
            key_object: keys.contains(&prefix),
            prefix,
        });
    }
    Ok(found)
}

/// The point `name` names: a directory as listed (`vault/instance/point`)
/// or a point id, which must match exactly one directory's last part.
pub async fn find_point(store: &Datastore, name: &str) -> Result<FoundPoint, EngineError> {
    let name = name.trim_matches('/');
    let points = list_points(store).await?;
    let mut matches: Vec<FoundPoint> = points
        .into_iter()
        .filter(|p| p.prefix == name || p.point_id() == name)
        .collect();
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => Err(EngineError::new(
            ErrorCode::ManifestInvalid,
            format!(
                "no recovery point \"{name}\" in datastore {}: name a point by its id or its path as `--list` shows them",
                store.redacted_url()
            ),
        )),
        _ => Err(EngineError::new(
            ErrorCode::ManifestInvalid,
            format!(
                "\"{name}\" names {} points in datastore {} ({}): name one by its path",
                matches.len(),
                store.redacted_url(),
                matches
                    .iter()
                    .map(|p| p.prefix.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

fn unavailable(message: String) -> EngineError {
    EngineError::new(ErrorCode::EncryptionKeyUnavailable, message)
}

/// The data key of `point` (`None`: it is not encrypted; a key file is then
/// not needed and ignored), opened from its key object with `keys`. Every
/// refusal says what is wrong and what to do; none prints a key.
pub async fn point_key(
    store: &Datastore,
    point: &FoundPoint,
    keys: Option<&KeyFile>,
) -> Result<Option<PointKey>, EngineError> {
    if !point.encrypted {
        return Ok(None);
    }
    let prefix = &point.prefix;
    let clock = Arc::new(StageClock::default());
    if !point.key_object {
        return Err(unavailable(format!(
            "recovery point {prefix} is encrypted but has no {KEY_OBJECT_FILE}: it was backed up before pgvault stored each point's key with it, so it cannot be exported without the coordinator; `pgvault restore files` through the coordinator that holds its key still works"
        )));
    }
    let Some(keys) = keys else {
        return Err(unavailable(format!(
            "recovery point {prefix} is encrypted: pass its vault's key file with --key-file (written by `pgvault vault export-key VAULT --out FILE`)"
        )));
    };
    let (bytes, _) = get_small(store, prefix, KEY_OBJECT_FILE, &clock).await?;
    let object = KeyObject::from_json(&bytes).map_err(|why| {
        EngineError::new(
            ErrorCode::ObjectAuthenticationFailed,
            format!("object {KEY_OBJECT_FILE} of recovery point {prefix} is damaged: {why}"),
        )
    })?;
    if !point.point_id().starts_with(&object.point_id) {
        return Err(EngineError::new(
            ErrorCode::ObjectAuthenticationFailed,
            format!(
                "object {KEY_OBJECT_FILE} under {prefix} belongs to point {}, not to this one: it was copied from another point",
                object.point_id
            ),
        ));
    }
    if keys.vault_id != object.vault_id {
        return Err(unavailable(format!(
            "the key file holds vault \"{}\"'s key, but recovery point {prefix} belongs to vault \"{}\": export that vault's key with `pgvault vault export-key {} --out FILE`",
            keys.vault_id, object.vault_id, object.vault_id
        )));
    }
    let version = object.vault_key_version;
    let Some(vault_key) = keys.version(version) else {
        return Err(unavailable(format!(
            "recovery point {prefix} needs version {version} of vault \"{}\"'s key, the key file holds version(s) {}: export the key file again (`pgvault vault export-key {} --out FILE` writes every version)",
            object.vault_id,
            keys.version_list(),
            object.vault_id
        )));
    };
    let key = object.open(&vault_key).ok_or_else(|| {
        unavailable(format!(
            "version {version} of vault \"{}\"'s key in the key file does not open the data key of recovery point {prefix}: the key file is not this vault's (another installation's vault of the same name?), or {KEY_OBJECT_FILE} was altered",
            object.vault_id
        ))
    })?;
    check_manifest_names(store, prefix, &key, &bytes, &clock).await?;
    Ok(Some(key))
}

/// The sealed manifest opens with `key` and records this very key object
/// (its SHA-256), so neither can be swapped without notice.
async fn check_manifest_names(
    store: &Datastore,
    prefix: &str,
    key: &PointKey,
    key_object: &[u8],
    clock: &Arc<StageClock>,
) -> Result<(), EngineError> {
    let (stored, _) = get_small(store, prefix, MANIFEST_FILE, clock).await?;
    let plain = open_small(Some(key), MANIFEST_FILE, stored, clock).await?;
    let manifest = Manifest::from_json(&plain, MANIFEST_FILE)?;
    let recorded = manifest.key_object.as_ref().map(|o| o.sha256.as_str());
    let actual = sha256_hex(bytes::Bytes::copy_from_slice(key_object), clock).await?;
    if recorded != Some(actual.as_str()) {
        return Err(EngineError::new(
            ErrorCode::ObjectAuthenticationFailed,
            format!(
                "object {KEY_OBJECT_FILE} of recovery point {prefix} is not the one its manifest recorded: it was altered"
            ),
        ));
    }
    Ok(())
}

/// The point's manifest, opened with `key` when sealed (for listings).
pub async fn manifest(
    store: &Datastore,
    point: &FoundPoint,
    key: Option<&PointKey>,
) -> Result<Manifest, EngineError> {
    let clock = Arc::new(StageClock::default());
    let (stored, _) = get_small(store, &point.prefix, MANIFEST_FILE, &clock).await?;
    let plain = open_small(key, MANIFEST_FILE, stored, &clock).await?;
    Ok(Manifest::from_json(&plain, MANIFEST_FILE)?)
}
