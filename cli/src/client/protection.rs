//! `pgvault backup change-policy|stop|resume`: managing an instance's
//! protection. Changing the policy affects future points (and existing ones
//! with `--reapply`); stopping keeps every point forever (`--keep all`) or
//! keeps points per policy with the newest kept forever (`--keep per-policy`).

use clap::ValueEnum;
use pgvault_proto::v1::{
    BackupInstance, ChangePolicyRequest, ResumeProtectionRequest, StopMode, StopProtectionRequest,
};

use super::connect::{Api, Reply};
use super::names;

/// `--keep` values of `backup stop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeepArg {
    /// Keep every recovery point forever.
    All,
    /// Points expire per their rules; the newest is kept forever.
    PerPolicy,
}

impl From<KeepArg> for StopMode {
    fn from(keep: KeepArg) -> Self {
        match keep {
            KeepArg::All => StopMode::KeepAllForever,
            KeepArg::PerPolicy => StopMode::KeepPerPolicy,
        }
    }
}

pub async fn change_policy(
    api: &Api,
    instance: String,
    policy: String,
    reapply: bool,
) -> anyhow::Result<BackupInstance> {
    let policy = names::policy(Some(names::vault_of(&instance)), &policy)?;
    let request = ChangePolicyRequest {
        name: instance,
        policy,
        reapply_retention: reapply,
    };
    api.instances().change_policy(request).await.reply(api)
}

pub async fn stop(api: &Api, instance: String, keep: KeepArg) -> anyhow::Result<BackupInstance> {
    let request = StopProtectionRequest {
        name: instance,
        mode: StopMode::from(keep) as i32,
    };
    api.instances().stop_protection(request).await.reply(api)
}

pub async fn resume(api: &Api, instance: String) -> anyhow::Result<BackupInstance> {
    let request = ResumeProtectionRequest { name: instance };
    api.instances().resume_protection(request).await.reply(api)
}
