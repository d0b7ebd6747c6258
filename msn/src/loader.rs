//! A loader that prepares batches ahead of the model: a thread that walks
//! the steps in order and a pool of workers that decode and augment each
//! batch's images in parallel.
//!
//! Sampling follows MSN's: a fresh shuffle each epoch (seeded by the run's seed
//! and the epoch), `drop_last`. Everything random about step `s` derives from
//! (seed, s) and each image's position in the batch, so a resumed run sees
//! exactly the batches the original would have, with any number of workers.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::data::ImageSet;
use crate::views::{make_batch_part, Batch, BatchOptions, ViewConfig};
use crate::{Error, Result};

/// Batches waiting in the queue: enough to hide a slow batch, few enough to bound memory.
const PREFETCH: usize = 3;

/// Step → image indices. Keeps the current epoch's shuffle, so a million
/// images are shuffled once an epoch, not once a step.
pub struct Sampler {
    len: usize,
    batch: usize,
    seed: u64,
    epoch: Option<u64>,
    order: Vec<usize>,
}

impl Sampler {
    pub fn new(len: usize, batch: usize, seed: u64) -> Self {
        Sampler {
            len,
            batch,
            seed,
            epoch: None,
            order: Vec::new(),
        }
    }

    /// The image indices of step `step`.
    pub fn indices(&mut self, step: u64) -> Vec<usize> {
        let per_epoch = (self.len / self.batch).max(1) as u64;
        let (epoch, position) = (step / per_epoch, (step % per_epoch) as usize);
        if self.epoch != Some(epoch) {
            self.order = (0..self.len).collect();
            self.order.shuffle(&mut StdRng::seed_from_u64(
                self.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ));
            self.epoch = Some(epoch);
        }
        self.order[position * self.batch..((position + 1) * self.batch).min(self.len)].to_vec()
    }
}

/// The image indices of step `step`.
pub fn batch_indices(len: usize, batch: usize, seed: u64, step: u64) -> Vec<usize> {
    Sampler::new(len, batch, seed).indices(step)
}

/// The seed of step `step`'s augmentations and mask.
pub fn step_seed(seed: u64, step: u64) -> u64 {
    seed.wrapping_mul(0xD1B5_4A32_D192_ED03)
        ^ step.wrapping_mul(0x94D0_49BB_1331_11EB).wrapping_add(1)
}

/// Which part of every global batch one rank of a data-parallel run
/// prepares: the `rank`-th of `ranks` equal slices, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    pub rank: usize,
    pub ranks: usize,
}

impl Share {
    /// The whole batch: a run of one process.
    pub const WHOLE: Share = Share { rank: 0, ranks: 1 };

    /// This rank's slice of a global batch's `indices` and the position of
    /// its first image in the global batch.
    pub fn of<'a>(&self, indices: &'a [usize]) -> (usize, &'a [usize]) {
        let per_rank = indices.len() / self.ranks;
        let first = self.rank * per_rank;
        (first, &indices[first..first + per_rank])
    }
}

/// How the loader works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoaderOptions {
    /// Threads that decode and augment, each on its own images of a batch.
    pub workers: usize,
    pub batch: BatchOptions,
    /// The part of each global batch this process prepares.
    pub share: Share,
}

/// The default number of loader workers: on the CPU the training step
/// itself uses every core, so one worker (it keeps ahead on small images);
/// on a GPU the step needs one core to drive the device, so every other.
pub fn default_workers(step_on_gpu: bool) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if step_on_gpu {
        cores.saturating_sub(1).max(1)
    } else {
        1
    }
}

pub struct Loader {
    receiver: Receiver<Result<Batch>>,
    worker: Option<JoinHandle<()>>,
}

impl Loader {
    /// Starts preparing the batches (global batches of `batch` images, of
    /// which this process makes `options.share`) of steps `first..last` in order, each
    /// on a pool of `options.workers` threads; at most [`PREFETCH`] wait.
    pub fn spawn(
        set: Arc<ImageSet>,
        views: ViewConfig,
        batch: usize,
        seed: u64,
        (first, last): (u64, u64),
        options: LoaderOptions,
    ) -> Result<Self> {
        if options.workers == 0 {
            return Err(Error::Config("--workers must be at least 1".into()));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.workers)
            .thread_name(|i| format!("msn-loader-{i}"))
            .build()
            .map_err(|e| {
                Error::Config(format!(
                    "cannot start {} loader workers ({e})",
                    options.workers
                ))
            })?;
        let (sender, receiver) = sync_channel(PREFETCH);
        let worker = std::thread::Builder::new()
            .name("msn-loader".into())
            .spawn(move || {
                let mut sampler = Sampler::new(set.len(), batch, seed);
                for step in first..last {
                    let indices = sampler.indices(step);
                    let (first_position, part) = options.share.of(&indices);
                    let seed = step_seed(seed, step);
                    let result = pool.install(|| {
                        make_batch_part(&set, part, first_position, &views, seed, options.batch)
                    });
                    let failed = result.is_err();
                    // The trainer hung up (finished or failed): stop quietly.
                    if sender.send(result).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| Error::Config(format!("cannot start the loader thread ({e})")))?;
        Ok(Loader {
            receiver,
            worker: Some(worker),
        })
    }

    /// The next batch, waiting for it if the worker is behind; `None` when done.
    pub fn next_batch(&self) -> Option<Result<Batch>> {
        self.receiver.recv().ok()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Dropping the receiver unblocks the worker's send; then it exits.
        let (_, dead) = sync_channel(0);
        drop(std::mem::replace(&mut self.receiver, dead));
        if let Some(worker) = self.worker.take() {
            worker.join().ok();
        }
    }
}
