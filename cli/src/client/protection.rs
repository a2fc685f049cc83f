//! `pgvault backup change-policy|stop|resume`: managing an instance's
//! protection. Changing the policy affects future points (and existing ones
//! with `--reapply`); stopping keeps every point forever (`--keep all`) or
//! keeps points per policy with the newest kept forever (`--keep per-policy`)
//! or soft-deletes every point, purged after the vault's window
//! (`--mode delete-all`).

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

/// `--mode` values of `backup stop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StopModeArg {
    /// Keep every recovery point forever (like `--keep all`).
    KeepAll,
    /// Points expire per their rules; the newest is kept forever.
    KeepPerPolicy,
    /// Soft-delete every recovery point (purged after the vault's window).
    DeleteAll,
}

impl From<StopModeArg> for StopMode {
    fn from(mode: StopModeArg) -> Self {
        match mode {
            StopModeArg::KeepAll => StopMode::KeepAllForever,
            StopModeArg::KeepPerPolicy => StopMode::KeepPerPolicy,
            StopModeArg::DeleteAll => StopMode::DeleteAllPoints,
        }
    }
}

/// The stop mode of `--keep` or `--mode` (clap requires exactly one).
pub fn stop_mode(keep: Option<KeepArg>, mode: Option<StopModeArg>) -> StopMode {
    match (keep, mode) {
        (_, Some(mode)) => mode.into(),
        (Some(keep), None) => keep.into(),
        (None, None) => StopMode::Unspecified,
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

pub async fn stop(api: &Api, instance: String, mode: StopMode) -> anyhow::Result<BackupInstance> {
    let request = StopProtectionRequest {
        name: instance,
        mode: mode as i32,
    };
    api.instances().stop_protection(request).await.reply(api)
}

pub async fn resume(api: &Api, instance: String) -> anyhow::Result<BackupInstance> {
    let request = ResumeProtectionRequest { name: instance };
    api.instances().resume_protection(request).await.reply(api)
}
