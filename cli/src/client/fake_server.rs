//! Tests against an in-process coordinator stand-in on 127.0.0.1:0: the
//! bearer token reaches the server, server statuses reach the user as their
//! message, and following a job ends with the exit code of its final state
//! (also when the watch stream ends early).

use std::pin::Pin;
use std::process::ExitCode;

use pgvault_proto::v1::job_service_server::{JobService, JobServiceServer};
use pgvault_proto::v1::vault_service_server::{VaultService, VaultServiceServer};
use pgvault_proto::v1::{
    CancelJobRequest, CreateVaultRequest, DeadLetter, DeleteDeadLetterRequest,
    DeleteDeadLetterResponse, DeleteVaultRequest, DeleteVaultResponse, GetJobRequest,
    GetVaultRequest, Job, JobError, JobState, ListDeadLettersRequest, ListDeadLettersResponse,
    ListJobsRequest, ListJobsResponse, ListVaultsRequest, ListVaultsResponse, LockVaultRequest,
    Progress, RetryJobRequest, UnlockVaultRequest, UpdateVaultRequest, Vault, WatchJobRequest,
};
use tokio_stream::Stream;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use super::connect::Api;
use super::vault::VaultCommand;
use super::{ClientCommand, ClientOptions, OutputFormat, describe, dispatch, watch};

const TOKEN: &str = "good-token";

// tonic's handlers return `Status` by value, so the helper does too.
#[allow(clippy::result_large_err)]
fn authorize<T>(request: &Request<T>) -> Result<(), Status> {
    let header = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if header == Some(&format!("Bearer {TOKEN}")) {
        Ok(())
    } else {
        Err(Status::unauthenticated("invalid or missing API token"))
    }
}

struct FakeVaults;

#[tonic::async_trait]
impl VaultService for FakeVaults {
    async fn create_vault(
        &self,
        request: Request<CreateVaultRequest>,
    ) -> Result<Response<Vault>, Status> {
        authorize(&request)?;
        let request = request.into_inner();
        let vault = Vault {
            name: format!("vaults/{}", request.vault_id),
            ..request.vault.unwrap_or_default()
        };
        Ok(Response::new(vault))
    }

    async fn get_vault(
        &self,
        request: Request<GetVaultRequest>,
    ) -> Result<Response<Vault>, Status> {
        authorize(&request)?;
        let name = request.into_inner().name;
        if name != "vaults/prod" {
            return Err(Status::not_found(format!(
                "vault \"{}\" not found",
                super::names::short(&name)
            )));
        }
        Ok(Response::new(Vault {
            name,
            region: "eu".into(),
            ..Vault::default()
        }))
    }

    async fn list_vaults(
        &self,
        request: Request<ListVaultsRequest>,
    ) -> Result<Response<ListVaultsResponse>, Status> {
        authorize(&request)?;
        // Two pages, so the client's paging loop is exercised.
        let (name, next) = match request.into_inner().page_token.as_str() {
            "" => ("vaults/a", "page-2"),
            _ => ("vaults/b", ""),
        };
        let vaults = vec![Vault {
            name: name.into(),
            ..Vault::default()
        }];
        Ok(Response::new(ListVaultsResponse {
            vaults,
            next_page_token: next.into(),
        }))
    }

    async fn delete_vault(
        &self,
        request: Request<DeleteVaultRequest>,
    ) -> Result<Response<DeleteVaultResponse>, Status> {
        authorize(&request)?;
        Err(Status::failed_precondition(
            "vault \"prod\" still holds 2 backup instances",
        ))
    }

    async fn update_vault(
        &self,
        request: Request<UpdateVaultRequest>,
    ) -> Result<Response<Vault>, Status> {
        authorize(&request)?;
        let request = request.into_inner();
        Ok(Response::new(Vault {
            name: request.name,
            soft_delete_days: request.soft_delete_days,
            ..Vault::default()
        }))
    }

    async fn lock_vault(
        &self,
        request: Request<LockVaultRequest>,
    ) -> Result<Response<Vault>, Status> {
        authorize(&request)?;
        Ok(Response::new(Vault {
            name: request.into_inner().name,
            soft_delete_days: 14,
            lock_time: Some(prost_types::Timestamp {
                seconds: 1_750_000_000,
                nanos: 0,
            }),
            ..Vault::default()
        }))
    }

    async fn unlock_vault(
        &self,
        request: Request<UnlockVaultRequest>,
    ) -> Result<Response<Vault>, Status> {
        authorize(&request)?;
        Err(Status::failed_precondition(
            "UserErrorVaultLocked: vault \"prod\" is locked: a lock cannot be removed, not even by an Owner",
        ))
    }

    async fn export_vault_key(
        &self,
        request: Request<pgvault_proto::v1::ExportVaultKeyRequest>,
    ) -> Result<Response<pgvault_proto::v1::ExportVaultKeyResponse>, Status> {
        authorize(&request)?;
        Ok(Response::new(pgvault_proto::v1::ExportVaultKeyResponse {
            vault_id: "prod".into(),
            algorithm: "aes-256-gcm".into(),
            versions: vec![
                pgvault_proto::v1::VaultKeyVersion {
                    version: 1,
                    key: vec![1; 32],
                },
                pgvault_proto::v1::VaultKeyVersion {
                    version: 2,
                    key: vec![2; 32],
                },
            ],
        }))
    }

    async fn rotate_vault_key(
        &self,
        request: Request<pgvault_proto::v1::RotateVaultKeyRequest>,
    ) -> Result<Response<pgvault_proto::v1::RotateVaultKeyResponse>, Status> {
        authorize(&request)?;
        Ok(Response::new(pgvault_proto::v1::RotateVaultKeyResponse {
            vault: Some(Vault {
                name: request.into_inner().name,
                encryption: "aes-256-gcm".into(),
                key_version: 2,
                ..Vault::default()
            }),
            points_rewrapped: 3,
        }))
    }
}

struct FakeJobs;

fn job(name: &str, state: JobState) -> Job {
    Job {
        name: name.into(),
        state: state as i32,
        ..Job::default()
    }
}

/// The states each fake job streams.
fn script(name: &str) -> Vec<Job> {
    let running = Job {
        progress: Some(Progress {
            chunks_done: 1,
            chunks_total: 2,
            bytes_done: 10,
            rows_done: 5,
            phase: "dumping".into(),
        }),
        ..job(name, JobState::InProgress)
    };
    match name {
        "jobs/ok" => vec![
            job(name, JobState::Queued),
            running,
            job(name, JobState::Completed),
        ],
        "jobs/warn" => vec![running, job(name, JobState::CompletedWithWarnings)],
        "jobs/bad" => vec![
            running,
            Job {
                error: Some(JobError {
                    code: pgvault_errors::ErrorCode::UserErrorDBUserAuthFailed.to_string(),
                    message: "password authentication failed for user \"backup\"".into(),
                    recommended_action: "update the secret with: pgvault secret put".into(),
                }),
                ..job(name, JobState::Failed)
            },
        ],
        "jobs/cancelled" => vec![job(name, JobState::Cancelled)],
        // Ends before the job does; GetJob then reports it completed.
        "jobs/drop" => vec![running],
        _ => Vec::new(),
    }
}

#[tonic::async_trait]
impl JobService for FakeJobs {
    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        authorize(&request)?;
        Ok(Response::new(ListJobsResponse {
            jobs: script("jobs/ok"),
            next_page_token: String::new(),
        }))
    }

    async fn get_job(&self, request: Request<GetJobRequest>) -> Result<Response<Job>, Status> {
        authorize(&request)?;
        let name = request.into_inner().name;
        match name.as_str() {
            "jobs/drop" => Ok(Response::new(job(&name, JobState::Completed))),
            _ => script(&name)
                .pop()
                .map(Response::new)
                .ok_or_else(|| Status::not_found("job not found")),
        }
    }

    type WatchJobStream = Pin<Box<dyn Stream<Item = Result<Job, Status>> + Send + 'static>>;

    async fn watch_job(
        &self,
        request: Request<WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        authorize(&request)?;
        let jobs = script(&request.into_inner().name);
        if jobs.is_empty() {
            return Err(Status::not_found("job not found"));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(
            jobs.into_iter().map(Ok),
        ))))
    }

    async fn cancel_job(
        &self,
        request: Request<CancelJobRequest>,
    ) -> Result<Response<Job>, Status> {
        authorize(&request)?;
        Err(Status::failed_precondition("job has already ended"))
    }

    async fn retry_job(&self, request: Request<RetryJobRequest>) -> Result<Response<Job>, Status> {
        authorize(&request)?;
        Ok(Response::new(job(
            &request.into_inner().name,
            JobState::Queued,
        )))
    }

    async fn list_dead_letters(
        &self,
        request: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        authorize(&request)?;
        Ok(Response::new(ListDeadLettersResponse {
            dead_letters: vec![DeadLetter {
                name: "deadLetters/d1".into(),
                reason: "rejected".into(),
                preview: "\\xff junk".into(),
                ..Default::default()
            }],
            next_page_token: String::new(),
        }))
    }

    async fn delete_dead_letter(
        &self,
        request: Request<DeleteDeadLetterRequest>,
    ) -> Result<Response<DeleteDeadLetterResponse>, Status> {
        authorize(&request)?;
        match request.into_inner().name.as_str() {
            "deadLetters/d1" => Ok(Response::new(DeleteDeadLetterResponse {})),
            _ => Err(Status::not_found("dead letter not found")),
        }
    }
}

/// Starts the fake coordinator and returns its endpoint.
async fn start() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(VaultServiceServer::new(FakeVaults))
            .add_service(JobServiceServer::new(FakeJobs))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    format!("http://{address}")
}

fn options(endpoint: &str, token: &str) -> ClientOptions {
    ClientOptions {
        endpoint: endpoint.to_owned(),
        token: Some(token.to_owned()),
        output: OutputFormat::Json,
        ca_cert: None,
    }
}

async fn vault_command(
    endpoint: &str,
    token: &str,
    command: VaultCommand,
) -> anyhow::Result<ExitCode> {
    dispatch(&options(endpoint, token), ClientCommand::Vault(command)).await
}

#[tokio::test]
async fn token_reaches_the_server_and_statuses_read_as_messages() {
    let endpoint = start().await;
    let ok = vault_command(
        &endpoint,
        TOKEN,
        VaultCommand::Get {
            name: "prod".into(),
        },
    )
    .await;
    assert_eq!(ok.expect("authorized get"), ExitCode::SUCCESS);
    assert_eq!(
        vault_command(&endpoint, TOKEN, VaultCommand::List)
            .await
            .expect("list"),
        ExitCode::SUCCESS
    );

    let denied = vault_command(
        &endpoint,
        "wrong",
        VaultCommand::Get {
            name: "prod".into(),
        },
    )
    .await;
    let text = describe(&denied.expect_err("bad token"));
    assert!(
        text.starts_with("invalid or missing API token (check --token"),
        "{text}"
    );

    let missing = vault_command(
        &endpoint,
        TOKEN,
        VaultCommand::Get {
            name: "nope".into(),
        },
    )
    .await;
    assert_eq!(
        describe(&missing.expect_err("unknown vault")),
        "vault \"nope\" not found"
    );

    let refused = vault_command(
        &endpoint,
        TOKEN,
        VaultCommand::Delete {
            name: "prod".into(),
        },
    )
    .await;
    assert_eq!(
        describe(&refused.expect_err("refused")),
        "vault \"prod\" still holds 2 backup instances"
    );
}

#[tokio::test]
async fn following_a_job_exits_with_its_final_state() {
    let endpoint = start().await;
    for output in [OutputFormat::Table, OutputFormat::Json] {
        let api = Api::new(&endpoint, TOKEN, output).expect("client");
        for (name, expected) in [
            ("jobs/ok", ExitCode::SUCCESS),
            ("jobs/warn", ExitCode::SUCCESS),
            ("jobs/bad", ExitCode::FAILURE),
            ("jobs/cancelled", ExitCode::FAILURE),
            ("jobs/drop", ExitCode::SUCCESS),
        ] {
            let code = watch::follow(&api, name.to_owned())
                .await
                .expect("followed");
            assert_eq!(code, expected, "{name} with {output:?}");
        }
        let unknown = watch::follow(&api, "jobs/unknown".to_owned()).await;
        assert_eq!(
            describe(&unknown.expect_err("unknown job")),
            "job not found"
        );
    }
}

#[tokio::test]
async fn dead_letters_are_listed_and_deleted_by_id() {
    use super::dead_letters::DeadLetterAction;
    use super::job::JobCommand;

    let endpoint = start().await;
    let job_command = |command: JobCommand| {
        let options = options(&endpoint, TOKEN);
        async move { dispatch(&options, ClientCommand::Job(command)).await }
    };
    let list = || JobCommand::DeadLetters {
        action: None,
        page_size: None,
        page_token: None,
    };
    assert_eq!(job_command(list()).await.expect("list"), ExitCode::SUCCESS);
    let delete = |id: &str| JobCommand::DeadLetters {
        action: Some(DeadLetterAction::Delete {
            dead_letter: id.into(),
        }),
        page_size: None,
        page_token: None,
    };
    assert_eq!(
        job_command(delete("d1")).await.expect("delete by short id"),
        ExitCode::SUCCESS
    );
    assert_eq!(
        job_command(delete("deadLetters/d1"))
            .await
            .expect("delete by name"),
        ExitCode::SUCCESS
    );
    assert_eq!(
        describe(&job_command(delete("d2")).await.expect_err("gone")),
        "dead letter not found"
    );
}

#[tokio::test]
async fn export_key_writes_every_version_to_a_new_private_file_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let endpoint = start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("prod.key");
    let export = || VaultCommand::ExportKey {
        name: "prod".into(),
        out: out.clone(),
    };
    let done = vault_command(&endpoint, TOKEN, export()).await;
    assert_eq!(done.expect("exported"), ExitCode::SUCCESS);
    let file = pgvault_engine::seal::key_file::KeyFile::from_json(&std::fs::read(&out).unwrap())
        .expect("a key file");
    assert_eq!(file.vault_id, "prod");
    assert_eq!(file.version_list(), "1, 2");
    assert_eq!(file.version(2).unwrap().expose(), &[2u8; 32]);
    let mode = std::fs::metadata(&out).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = vault_command(&endpoint, TOKEN, export()).await;
    assert!(
        describe(&again.expect_err("refused")).contains("already exists"),
        "never overwrites"
    );
}
