//! The engine's CPU pool: compression, hashing and decompression run here,
//! never on the async runtime's threads, so a connection's COPY stream or
//! upload is never kept waiting behind another connection's zstd.
//!
//! One pool per process, started on first use with one thread per core the
//! process may use (`available_parallelism`), shared by every job the
//! process runs: CPU parallelism is bounded by the machine, not by the
//! number of connections. Dedicated threads rather than `spawn_blocking`
//! behind a semaphore: the blocking pool is where object_store and tokio do
//! file I/O, which must not queue behind compression, its threads come and
//! go (cold caches, unbounded growth without the semaphore), and a fixed set
//! of marked threads lets the engine prove where CPU work ran. Each lane
//! keeps at most one job queued or running (its compressor or decompressor
//! state moves into the job and back), so the queue is bounded by the
//! number of lanes.
//!
//! [`measured`] books every CPU step's thread CPU time to the job's
//! [`StageClock`], with whether it ran on the pool and how many steps ran at
//! once (never more than the pool's threads when all CPU work is here).

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use super::error::EngineError;
use super::stages::{CpuStage, StageClock};

thread_local! {
    /// Set on threads of the CPU pool.
    static ON_CPU_POOL: Cell<bool> = const { Cell::new(false) };
}

/// CPU steps running right now, anywhere in the process.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads taking jobs from one FIFO queue.
pub(crate) struct CpuPool {
    queue: Mutex<VecDeque<Job>>,
    ready: Condvar,
    threads: usize,
}

static POOL: OnceLock<&'static CpuPool> = OnceLock::new();

/// The process's pool, started on first use.
pub(crate) fn pool() -> &'static CpuPool {
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let pool: &'static CpuPool = Box::leak(Box::new(CpuPool {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            threads,
        }));
        for i in 0..threads {
            std::thread::Builder::new()
                .name(format!("pgvault-cpu-{i}"))
                .spawn(move || pool.work())
                .expect("the engine's CPU pool threads start");
        }
        pool
    })
}

/// Threads of the pool if it started, else 0.
pub(crate) fn pool_threads() -> u32 {
    POOL.get().map(|p| p.threads as u32).unwrap_or(0)
}

impl CpuPool {
    fn work(&self) {
        ON_CPU_POOL.with(|f| f.set(true));
        loop {
            let job = {
                let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if let Some(job) = queue.pop_front() {
                        break job;
                    }
                    queue = self.ready.wait(queue).unwrap_or_else(|p| p.into_inner());
                }
            };
            // A panicking job loses its result (the caller gets an error),
            // not the thread.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        }
    }

    /// Runs `work` on the pool; the future resolves with its result. Dropping
    /// the future does not stop the work, it only discards the result.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, EngineError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(work());
        });
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(job);
        self.ready.notify_one();
        async move {
            rx.await
                .map_err(|_| EngineError::internal("a compression job of the CPU pool panicked"))
        }
    }
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
    let running = RUNNING.fetch_add(1, Ordering::Relaxed) + 1;
    let started = thread_cpu_time();
    let out = work();
    let busy = thread_cpu_time().saturating_sub(started);
    RUNNING.fetch_sub(1, Ordering::Relaxed);
    clock.cpu(stage, busy, bytes, on_pool_thread(), running as u32);
    out
}

/// Newlines in `data` (the text rows of COPY output), eight bytes at a time:
/// each byte equal to `\n` becomes a set high bit (the exact zero-byte test
/// on `word ^ 0x0a…`), and the set bits are counted. About 8 GB/s on plain
/// x86-64, 2.5× a 32-lane byte loop and 6× `filter().count()`.
pub(crate) fn count_newlines(data: &[u8]) -> u64 {
    const NEWLINES: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut words = data.chunks_exact(8);
    let mut total = 0u64;
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let x = u64::from_le_bytes(bytes) ^ NEWLINES;
        // High bit set where a byte of x is zero (no carries between bytes).
        let zero = !(((x & !HIGH) + !HIGH) | x) & HIGH;
        total += u64::from(zero.count_ones());
    }
    total + words.remainder().iter().filter(|b| **b == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_are_counted_in_every_word_and_remainder() {
        let mut data = Vec::new();
        for i in 0..20_000u32 {
            data.extend_from_slice(format!("{i}\trow {}\n", i % 7).as_bytes());
        }
        data.extend_from_slice(b"\n\n\nno newline at the end");
        let slow = data.iter().filter(|b| **b == b'\n').count() as u64;
        assert_eq!(count_newlines(&data), slow);
        assert_eq!(
            count_newlines(&data[..33]),
            data[..33].iter().filter(|b| **b == b'\n').count() as u64
        );
        assert_eq!(count_newlines(&[b'\n'; 255 * 32 + 5]), 255 * 32 + 5);
        // Bytes next to a newline that a carry could disturb.
        assert_eq!(count_newlines(b"\x0b\n\x09\n\xff\x8a\n\x00\x80"), 3);
        assert_eq!(count_newlines(&[]), 0);
    }

    #[tokio::test]
    async fn jobs_run_on_marked_pool_threads_and_panics_become_errors() {
        assert!(!on_pool_thread());
        let on_pool = pool().run(on_pool_thread).await.unwrap();
        assert!(on_pool);
        assert!(pool_threads() >= 1);
        let failed = pool().run(|| -> u32 { panic!("boom") }).await;
        assert!(failed.is_err());
        assert_eq!(pool().run(|| 7).await.unwrap(), 7);
    }
}
