//! The rayon pool every `msn` command runs on, the command itself included.
//!
//! A parallel loop called from a thread outside the pool (the process's
//! main thread) hands its work to the pool's threads and sleeps until they
//! finish: a wake-up and a sleep on each side for every parallel op, and a
//! training step runs hundreds of them, many of only a few microseconds
//! (the optimizer's per-tensor updates, the loss, the layer norms). Run on
//! one of the pool's threads, the command takes its share of each loop
//! itself and only the idle threads are woken, as OpenMP's master thread
//! does in PyTorch. `msn bench` on `fmnist-tiny`, eight alternated pairs:
//! +4.5 % images/s (median; −1 to +6 %), the optimizer phase 4.1 → 2.6–3.1
//! ms; the main command's small ViT (then 6,000 steps) trained in 161–176 s
//! instead of 213.

use anyhow::{Context, Result};

/// The stack of each of the pool's threads: the main thread's (8 MiB on
/// Linux), since the command's own code now runs on one of them rather
/// than on the main thread (rayon's threads get Rust's 2 MiB by default).
const STACK_BYTES: usize = 8 << 20;

/// The pool: rayon's default size (every core, or `RAYON_NUM_THREADS`), or
/// this rank's share of the cores when an MPI launcher started several
/// ranks on the machine.
pub fn pool() -> Result<rayon::ThreadPool> {
    let mut builder = rayon::ThreadPoolBuilder::new().stack_size(STACK_BYTES);
    if let Some(threads) = crate::world::threads_per_rank() {
        builder = builder.num_threads(threads);
    }
    builder.build().context("starting the CPU threads")
}
