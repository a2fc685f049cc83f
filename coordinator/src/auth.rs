//! API tokens: how their values are made and stored (SHA-256 hashes in
//! `api_tokens`), and the first token at start. Checking the token of a
//! call is the access gate's job ([`crate::access`]).

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use crate::error::{CoordinatorError, Result};
use crate::store::tokens;

/// Role of the tokens created at start.
pub const OWNER_ROLE: &str = "Owner";

/// SHA-256 of a token, as stored.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A fresh random token: `pgv_` + 256 random bits, base64url.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("pgv_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Start-up token set-up (runs under the migration lock): ensures the
/// bootstrap token exists, or creates an admin token and writes it to
/// `admin_token_file` when no token exists at all.
pub async fn bootstrap(
    conn: &mut PgConnection,
    bootstrap_token: Option<&str>,
    admin_token_file: Option<&Path>,
) -> Result<()> {
    if let Some(token) = bootstrap_token {
        if token.trim().is_empty() {
            return Err(CoordinatorError::invalid(
                "bootstrap_token",
                "must not be empty",
            ));
        }
        if tokens::insert_if_absent(
            &mut *conn,
            "bootstrap",
            &hash_token(token.trim()),
            OWNER_ROLE,
        )
        .await?
        {
            tracing::info!("bootstrap api token registered");
        }
        return Ok(());
    }
    if tokens::count(&mut *conn).await? > 0 {
        return Ok(());
    }
    let Some(path) = admin_token_file else {
        tracing::warn!(
            "no api token exists; configure a bootstrap token or an admin token file to call the api"
        );
        return Ok(());
    };
    let token = generate_token();
    write_private_file(path, &token).map_err(|e| {
        CoordinatorError::Internal(format!(
            "cannot write admin token file {}: {e}",
            path.display()
        ))
    })?;
    tokens::insert_if_absent(&mut *conn, "admin", &hash_token(&token), OWNER_ROLE).await?;
    tracing::info!(path = %path.display(), "generated an admin api token");
    Ok(())
}

/// Writes `content` to `path`, readable by the owner only (0600).
fn write_private_file(path: &Path, content: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(content.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_stably() {
        let (a, b) = (generate_token(), generate_token());
        assert_ne!(a, b);
        assert!(a.starts_with("pgv_") && a.len() > 40);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}
