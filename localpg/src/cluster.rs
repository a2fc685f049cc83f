//! One private PostgreSQL cluster: `initdb` on first use, `pg_ctl start` on a
//! loopback port, `pg_ctl stop` on [`LocalCluster::stop`] or drop.
//!
//! Authentication is always `scram-sha-256` for the superuser `postgres`, with
//! the password from [`ClusterOptions`], so wrong-password paths are real.

use std::ffi::{CString, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{LocalPgError, bin_dir, free_port};

/// How to create and start a cluster.
#[derive(Clone)]
pub struct ClusterOptions {
    /// The cluster's PGDATA directory; created by `initdb` when it holds no cluster yet.
    pub data_dir: PathBuf,
    /// Loopback port; `None` picks a free one.
    pub port: Option<u16>,
    /// Password of the superuser `postgres`.
    pub password: String,
    /// `false` turns off fsync and friends: for throwaway test clusters only.
    pub durable: bool,
    /// Extra `-c name=value` server settings.
    pub settings: Vec<(String, String)>,
    /// Contents written to `pg_hba.conf` before every start; `None` keeps
    /// initdb's (scram-sha-256 for everyone).
    pub hba: Option<String>,
    /// Program and arguments every server command (`initdb`, `pg_ctl`) runs
    /// through, e.g. `ip netns exec NAME` to start the server inside a
    /// network namespace; empty runs them directly. The server then listens
    /// on the 127.0.0.1 of that network, so [`LocalCluster::connect`] and
    /// [`LocalCluster::url`] only work from inside it.
    pub command_prefix: Vec<String>,
}

impl std::fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("data_dir", &self.data_dir)
            .field("port", &self.port)
            .field("password", &"<redacted>")
            .field("durable", &self.durable)
            .field("settings", &self.settings)
            .field("hba", &self.hba)
            .field("command_prefix", &self.command_prefix)
            .finish()
    }
}

/// A running private cluster. Stopped (fast shutdown) when dropped.
pub struct LocalCluster {
    data_dir: PathBuf,
    port: u16,
    password: String,
    bin_dir: PathBuf,
    /// OS user the server runs as when this process is root.
    os_user: Option<OsUser>,
    /// What the server commands run through ([`ClusterOptions::command_prefix`]).
    command_prefix: Vec<String>,
    running: bool,
}

#[derive(Clone)]
pub(crate) struct OsUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl LocalCluster {
    /// Creates the cluster if `data_dir` holds none, then starts it and waits
    /// until it accepts connections.
    pub fn start(options: ClusterOptions) -> Result<Self, LocalPgError> {
        Self::start_in(options, bin_dir()?)
    }

    /// Like [`LocalCluster::start`], with the server programs (`initdb`,
    /// `pg_ctl`, `postgres`) of `bin_dir`, e.g. another major's.
    pub fn start_in(options: ClusterOptions, bin_dir: PathBuf) -> Result<Self, LocalPgError> {
        let os_user = os_user_if_root()?;
        let data_dir = absolute(&options.data_dir)?;
        let port = match options.port {
            Some(p) => p,
            None => free_port()?,
        };
        let mut cluster = LocalCluster {
            data_dir,
            port,
            password: options.password.clone(),
            bin_dir,
            os_user,
            command_prefix: options.command_prefix.clone(),
            running: false,
        };
        if !cluster.data_dir.join("PG_VERSION").is_file() {
            cluster.initdb()?;
            // initdb takes seconds: a port picked before it may be gone.
            if options.port.is_none() {
                cluster.port = free_port()?;
            }
        }
        // A port the OS called free can still be taken before the server
        // binds it (another test, another process): pick again, a few times.
        let mut retries = 0;
        loop {
            match cluster.pg_ctl_start(&options) {
                Ok(()) => break,
                Err(e) if options.port.is_none() && retries < 3 && port_taken(&e) => {
                    retries += 1;
                    cluster.port = free_port()?;
                }
                Err(e) => return Err(e),
            }
        }
        cluster.running = true;
        Ok(cluster)
    }

    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn user(&self) -> &str {
        "postgres"
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Directory of the PostgreSQL binaries this cluster runs with.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Server log written by `pg_ctl -l`.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("server.log")
    }

    /// `postgresql://` URL for the superuser, password included: keep it out of logs.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgresql://postgres:{}@127.0.0.1:{}/{}",
            percent_encode(&self.password),
            self.port,
            percent_encode(database)
        )
    }

    /// `tokio_postgres` configuration for the superuser on `database`.
    pub fn config(&self, database: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .password(self.password.clone())
            .dbname(database);
        config
    }

    /// Connects as the superuser to `database`, driving the connection on the
    /// current tokio runtime.
    pub async fn connect(
        &self,
        database: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = self.config(database).connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Stops the server (fast shutdown) and waits for it to exit.
    pub fn stop(&mut self) -> Result<(), LocalPgError> {
        if !self.running {
            return Ok(());
        }
        self.running = false;
        let data_dir = self.data_dir.display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &data_dir, "-m", "fast", "-w", "-t", "60", "stop"],
        )
    }

    /// Starts the server again after [`LocalCluster::stop`], on the same port.
    pub fn restart(&mut self, options: &ClusterOptions) -> Result<(), LocalPgError> {
        self.stop()?;
        self.pg_ctl_start(options)?;
        self.running = true;
        Ok(())
    }

    fn initdb(&self) -> Result<(), LocalPgError> {
        std::fs::create_dir_all(&self.data_dir).map_err(|source| LocalPgError::Io {
            context: "cannot create data directory",
            path: self.data_dir.clone(),
            source,
        })?;
        set_mode(&self.data_dir, 0o700)?;
        let parent = self.data_dir.parent().unwrap_or(Path::new("/"));
        let pwfile = parent.join(format!(".pwfile-{}", std::process::id()));
        std::fs::write(&pwfile, format!("{}\n", self.password)).map_err(|source| {
            LocalPgError::Io {
                context: "cannot write password file",
                path: pwfile.clone(),
                source,
            }
        })?;
        set_mode(&pwfile, 0o600)?;
        if let Some(user) = &self.os_user {
            chown(&self.data_dir, user)?;
            chown(&pwfile, user)?;
        }
        let data_dir = self.data_dir.display().to_string();
        let pwfile_arg = format!("--pwfile={}", pwfile.display());
        let result = self.run(
            "initdb",
            &[
                "-D",
                &data_dir,
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                &pwfile_arg,
            ],
        );
        let _ = std::fs::remove_file(&pwfile);
        result
    }

    fn pg_ctl_start(&self, options: &ClusterOptions) -> Result<(), LocalPgError> {
        if let Some(hba) = &options.hba {
            let path = self.data_dir.join("pg_hba.conf");
            std::fs::write(&path, hba).map_err(|source| LocalPgError::Io {
                context: "cannot write",
                path: path.clone(),
                source,
            })?;
            if let Some(user) = &self.os_user {
                chown(&path, user)?;
            }
        }
        let mut server_options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''",
            self.port
        );
        if !options.durable {
            server_options
                .push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        for (name, value) in &options.settings {
            server_options.push_str(&format!(" -c {name}={value}"));
        }
        let data_dir = self.data_dir.display().to_string();
        let log = self.log_path().display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data_dir,
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "-o",
                &server_options,
                "start",
            ],
        )
        .map_err(|e| match e {
            LocalPgError::CommandFailed {
                command,
                status,
                output,
            } => {
                let tail = std::fs::read_to_string(self.log_path())
                    .map(|l| {
                        l.lines()
                            .rev()
                            .take(5)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default();
                LocalPgError::CommandFailed {
                    command,
                    status,
                    output: format!("{output}\nserver log:\n{tail}"),
                }
            }
            other => other,
        })
    }

    /// Runs a PostgreSQL binary, as the unprivileged OS user when we are
    /// root, through the command prefix when there is one.
    fn run(&self, binary: &str, args: &[&str]) -> Result<(), LocalPgError> {
        let program = self.bin_dir.join(binary);
        let user = self.os_user.as_ref().map(|u| u.name.as_str());
        let line = command_line(&self.command_prefix, user, &program);
        let mut command = Command::new(&line[0]);
        command.args(&line[1..]).args(args).current_dir("/");
        let output = command.output().map_err(|source| LocalPgError::Io {
            context: "cannot run",
            path: PathBuf::from(&line[0]),
            source,
        })?;
        if output.status.success() {
            return Ok(());
        }
        Err(LocalPgError::CommandFailed {
            command: format!(
                "{} {}",
                program.display(),
                args.first().copied().unwrap_or_default()
            ),
            status: output.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
            .trim()
            .to_string(),
        })
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "could not stop private PostgreSQL cluster");
        }
    }
}

fn absolute(path: &Path) -> Result<PathBuf, LocalPgError> {
    std::path::absolute(path).map_err(|source| LocalPgError::Io {
        context: "cannot resolve",
        path: path.to_path_buf(),
        source,
    })
}

/// The program and arguments that run `program`: the command prefix, then
/// `runuser -u USER --` when the server must run as another OS user.
fn command_line(prefix: &[String], os_user: Option<&str>, program: &Path) -> Vec<OsString> {
    let mut line: Vec<OsString> = prefix.iter().map(OsString::from).collect();
    if let Some(user) = os_user {
        line.extend(["runuser", "-u", user, "--"].map(OsString::from));
    }
    line.push(program.as_os_str().to_os_string());
    line
}

pub(crate) fn os_user_if_root() -> Result<Option<OsUser>, LocalPgError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = std::env::var("PGVAULT_PG_OS_USER").unwrap_or_else(|_| "postgres".to_string());
    let c_name = CString::new(name.clone()).map_err(|_| LocalPgError::NoOsUser(name.clone()))?;
    // SAFETY: getpwnam reads a NUL-terminated string; the result is copied at once.
    let pw = unsafe { libc::getpwnam(c_name.as_ptr()) };
    if pw.is_null() {
        return Err(LocalPgError::NoOsUser(name));
    }
    // SAFETY: pw is non-null and points to a valid passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some(OsUser { name, uid, gid }))
}

pub(crate) fn chown(path: &Path, user: &OsUser) -> Result<(), LocalPgError> {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).map_err(|source| {
        LocalPgError::Io {
            context: "cannot change owner of",
            path: path.to_path_buf(),
            source,
        }
    })
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<(), LocalPgError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        LocalPgError::Io {
            context: "cannot set permissions of",
            path: path.to_path_buf(),
            source,
        }
    })
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether `pg_ctl start` failed because the server could not bind its
/// port (the server log's words, quoted in the error).
fn port_taken(error: &LocalPgError) -> bool {
    match error {
        LocalPgError::CommandFailed { output, .. } => {
            output.contains("Address already in use") || output.contains("could not bind")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_refused_for_a_taken_port_is_told_from_other_failures() {
        let failed = |output: &str| LocalPgError::CommandFailed {
            command: "pg_ctl start".into(),
            status: "exit status: 1".into(),
            output: output.into(),
        };
        assert!(port_taken(&failed(
            "server log:\nLOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use"
        )));
        assert!(!port_taken(&failed(
            "server log:\nFATAL:  data directory has wrong ownership"
        )));
        assert!(!port_taken(&LocalPgError::BinariesNotFound));
    }

    #[test]
    fn server_commands_run_through_the_prefix_then_as_the_os_user() {
        let prefix = ["ip", "netns", "exec", "pgv-1-0"].map(String::from);
        let program = Path::new("/pg/bin/pg_ctl");
        assert_eq!(
            command_line(&prefix, Some("postgres"), program),
            [
                "ip",
                "netns",
                "exec",
                "pgv-1-0",
                "runuser",
                "-u",
                "postgres",
                "--",
                "/pg/bin/pg_ctl"
            ]
            .map(OsString::from)
        );
        assert_eq!(
            command_line(&[], None, program),
            [OsString::from("/pg/bin/pg_ctl")]
        );
    }

    #[test]
    fn url_percent_encodes_password() {
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
    }
}
