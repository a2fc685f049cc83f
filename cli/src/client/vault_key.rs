//! `pgvault vault export-key NAME --out FILE` (Owner only): every version
//! of an encrypted vault's key, unwrapped by the coordinator, written as
//! the vault's key file (`pgvault_seal::key_file`, mode 0600, never over an
//! existing file). With the datastore, that file is all
//! `pgvault recovery-point export` needs. Keys are never printed.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use pgvault_engine::seal::SecretKey;
use pgvault_engine::seal::key_file::KeyFile;
use pgvault_proto::v1::ExportVaultKeyRequest;

use super::connect::{Api, Reply};
use super::names;
use super::output::print_json;

/// Fetches the keys and writes the file; prints where and which versions.
pub async fn export(api: &Api, name: &str, out: &Path) -> anyhow::Result<()> {
    let name = names::vault(name)?;
    // Refuse before asking, so no key travels for nothing.
    if out.exists() {
        anyhow::bail!(
            "{} already exists: pgvault never overwrites a key file; choose another --out or move the old file away",
            out.display()
        );
    }
    let exported = api
        .vaults()
        .export_vault_key(ExportVaultKeyRequest { name })
        .await
        .reply(api)?;
    let mut versions = Vec::with_capacity(exported.versions.len());
    for v in &exported.versions {
        let key = SecretKey::from_slice(&v.key).map_err(|e| {
            anyhow::anyhow!("the coordinator sent version {} of the key: {e}", v.version)
        })?;
        versions.push((v.version, key));
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let file = KeyFile::new(&exported.vault_id, &now, &versions);
    write_new(out, &file.to_json())?;
    let listed = file.version_list();
    if api.json() {
        print_json(&serde_json::json!({
            "vault_id": exported.vault_id,
            "file": out.display().to_string(),
            "versions": versions.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        }));
    } else {
        println!(
            "wrote the key of vault {} (version(s) {listed}) to {}; keep it as safe as the data: with the datastore it opens every point of the vault",
            exported.vault_id,
            out.display()
        );
    }
    Ok(())
}

/// Creates `path` readable by its owner only; fails if it exists.
fn write_new(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
                "{} already exists: pgvault never overwrites a key file; choose another --out",
                path.display()
            ),
            _ => anyhow::anyhow!("cannot create {}: {e}", path.display()),
        })?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_file_is_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prod.key");
        write_new(&path, b"one").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let err = write_new(&path, b"two").unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
    }
}
