//! CPU work of the engine (compression, hashing, decompression): thread CPU
//! time measurement and the mark of the threads meant to do it.

use std::cell::Cell;
use std::time::Duration;

use super::stages::{CpuStage, StageClock};

thread_local! {
    /// Set on threads of the CPU pool.
    static ON_CPU_POOL: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as a CPU pool thread.
#[allow(dead_code)]
pub(crate) fn mark_pool_thread() {
    ON_CPU_POOL.with(|f| f.set(true));
}

/// Whether the calling thread belongs to the CPU pool.
pub(crate) fn on_pool_thread() -> bool {
    ON_CPU_POOL.with(|f| f.get())
}

/// CPU time (user + system) the calling thread has used.
pub(crate) fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Runs `work` (over `bytes` input bytes) and books its thread CPU time to `stage`.
pub(crate) fn measured<T>(
    clock: &StageClock,
    stage: CpuStage,
    bytes: u64,
    work: impl FnOnce() -> T,
) -> T {
    let started = thread_cpu_time();
    let out = work();
    clock.cpu(
        stage,
        thread_cpu_time().saturating_sub(started),
        bytes,
        on_pool_thread(),
    );
    out
}
