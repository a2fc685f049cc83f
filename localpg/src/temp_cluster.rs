//! A throwaway [`LocalCluster`] in a temporary directory, for tests: not
//! durable, optionally serving TLS, removed after the server stops.

use std::path::{Path, PathBuf};

use crate::LocalPgError;
use crate::cluster::{ClusterOptions, LocalCluster, chown, os_user_if_root, set_mode};

/// A cluster in a temporary directory, removed after the server stops.
pub struct TempCluster {
    // Field order matters: the cluster stops before its directory goes.
    cluster: LocalCluster,
    options: ClusterOptions,
    _dir: tempfile::TempDir,
}

impl TempCluster {
    /// A throwaway, non-durable cluster with the given superuser password.
    pub fn start(password: &str) -> Result<Self, LocalPgError> {
        Self::start_with(password, None, Vec::new())
    }

    /// Like [`TempCluster::start`], with the server commands run through
    /// `command_prefix` (see [`ClusterOptions::command_prefix`]), e.g.
    /// `ip netns exec NAME` to start the server inside a network namespace.
    pub fn start_through(
        password: &str,
        command_prefix: Vec<String>,
    ) -> Result<Self, LocalPgError> {
        Self::start_with(password, None, command_prefix)
    }

    /// Like [`TempCluster::start`], serving TLS with the given PEM
    /// certificate and key; the roles in `tls_only_roles` may connect only
    /// over TLS (the superuser may still connect without).
    pub fn start_with_tls(
        password: &str,
        certificate_pem: &str,
        key_pem: &str,
        tls_only_roles: &[&str],
    ) -> Result<Self, LocalPgError> {
        Self::start_with(
            password,
            Some(TlsSetup {
                certificate_pem,
                key_pem,
                tls_only_roles,
            }),
            Vec::new(),
        )
    }

    fn start_with(
        password: &str,
        tls: Option<TlsSetup<'_>>,
        command_prefix: Vec<String>,
    ) -> Result<Self, LocalPgError> {
        let dir = tempfile::Builder::new()
            .prefix("pgvault-pg-")
            .tempdir()
            .map_err(|source| LocalPgError::Io {
                context: "cannot create temporary directory",
                path: std::env::temp_dir(),
                source,
            })?;
        set_mode(dir.path(), 0o755)?;
        let mut options = ClusterOptions {
            data_dir: dir.path().join("data"),
            port: None,
            password: password.to_string(),
            durable: false,
            settings: vec![("max_connections".into(), "200".into())],
            hba: None,
            command_prefix,
        };
        if let Some(tls) = tls {
            tls.install(dir.path(), &mut options)?;
        }
        let cluster = LocalCluster::start(options.clone())?;
        Ok(TempCluster {
            cluster,
            options,
            _dir: dir,
        })
    }

    /// Stops and starts the server again on the same port.
    pub fn restart(&mut self) -> Result<(), LocalPgError> {
        self.cluster.restart(&self.options)
    }
}

/// TLS for a [`TempCluster`]: certificate files and who must use them.
struct TlsSetup<'a> {
    certificate_pem: &'a str,
    key_pem: &'a str,
    tls_only_roles: &'a [&'a str],
}

impl TlsSetup<'_> {
    /// Writes the certificate and key (readable by the server's OS user
    /// only) under `dir` and turns TLS on in `options`.
    fn install(&self, dir: &Path, options: &mut ClusterOptions) -> Result<(), LocalPgError> {
        let write = |name: &str, text: &str| -> Result<PathBuf, LocalPgError> {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| LocalPgError::Io {
                context: "cannot write",
                path: path.clone(),
                source,
            })?;
            set_mode(&path, 0o600)?;
            if let Some(user) = os_user_if_root()? {
                chown(&path, &user)?;
            }
            Ok(path)
        };
        let certificate = write("server.crt", self.certificate_pem)?;
        let key = write("server.key", self.key_pem)?;
        options.settings.push(("ssl".into(), "on".into()));
        options
            .settings
            .push(("ssl_cert_file".into(), certificate.display().to_string()));
        options
            .settings
            .push(("ssl_key_file".into(), key.display().to_string()));
        let mut hba = String::from("local all all scram-sha-256\n");
        for role in self.tls_only_roles {
            let role = format!("\"{}\"", role.replace('"', "\"\""));
            hba.push_str(&format!(
                "hostssl all {role} 127.0.0.1/32 scram-sha-256\nhostnossl all {role} 127.0.0.1/32 reject\n"
            ));
        }
        hba.push_str(
            "host all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n",
        );
        options.hba = Some(hba);
        Ok(())
    }
}

impl std::ops::Deref for TempCluster {
    type Target = LocalCluster;
    fn deref(&self) -> &LocalCluster {
        &self.cluster
    }
}

impl std::ops::DerefMut for TempCluster {
    fn deref_mut(&mut self) -> &mut LocalCluster {
        &mut self.cluster
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn temp_cluster_accepts_password_logins_and_rejects_wrong_ones() {
        let cluster = TempCluster::start("s3cret pw").expect("start private cluster");
        let client = cluster.connect("postgres").await.expect("connect");
        let row = client.query_one("select 1::int4", &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 1);
        let mut bad = cluster.config("postgres");
        bad.password("wrong");
        let err = bad
            .connect(tokio_postgres::NoTls)
            .await
            .err()
            .expect("wrong password must fail");
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
            "{err:?}"
        );
    }
}
