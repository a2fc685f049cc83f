//! What keeps recovery points from being lost by mistake or on purpose:
//! - `keep_min`: the floor under retention — expiry never removes an
//!   instance's newest N live points (enforced where expiry decides,
//!   `lifecycle::decide`, and by `store::lifecycle::due`);
//! - `soft_delete`: deleting a point (or every point of an instance) only
//!   hides it for the vault's window; it can be undeleted until the
//!   sweeper purges it;
//! - `lock`: what a locked (immutable) vault refuses, with the stable code
//!   `UserErrorVaultLocked`.

pub mod keep_min;
pub mod lock;
pub mod soft_delete;
