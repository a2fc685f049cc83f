//! Lifecycle of recovery points: moving them between datastores and
//! deleting them. Like the rest of the engine it takes datastores, prefixes,
//! a progress sink and a cancellation token.
//! - [`copy_point`]: copy every object of a point (manifest last) to another
//!   datastore, verifying each copy's SHA-256 against the manifest — a tier
//!   move (then the source is deleted) or a rehydrate (the source stays);
//! - [`delete_prefix`]: remove every object under a prefix; objects already
//!   gone are not an error, so a retried delete finishes the job.

mod copy;
mod delete;

pub use copy::copy_point;
pub use delete::delete_prefix;

/// Objects and bytes a lifecycle task copied or removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    pub objects: u64,
    pub bytes: u64,
}

impl std::ops::AddAssign for Moved {
    fn add_assign(&mut self, other: Moved) {
        self.objects += other.objects;
        self.bytes += other.bytes;
    }
}

#[cfg(test)]
mod tests;
