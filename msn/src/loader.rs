//! A loader that prepares batches on a worker thread, ahead of the model.
//!
//! Sampling follows MSN's: a fresh shuffle each epoch (seeded by the run's seed
//! and the epoch), `drop_last`. Everything random about step `s` derives from
//! (seed, s), so a resumed run sees exactly the batches the original would have.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::data::ImageSet;
use crate::views::{make_batch, Batch, ViewConfig};
use crate::Result;

/// Batches waiting in the queue: enough to hide a slow batch, few enough to bound memory.
const PREFETCH: usize = 3;

/// The image indices of step `step`.
pub fn batch_indices(len: usize, batch: usize, seed: u64, step: u64) -> Vec<usize> {
    let per_epoch = (len / batch).max(1) as u64;
    let (epoch, position) = (step / per_epoch, (step % per_epoch) as usize);
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut StdRng::seed_from_u64(
        seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15),
    ));
    order[position * batch..((position + 1) * batch).min(len)].to_vec()
}

/// The seed of step `step`'s augmentations and mask.
pub fn step_seed(seed: u64, step: u64) -> u64 {
    seed.wrapping_mul(0xD1B5_4A32_D192_ED03)
        ^ step.wrapping_mul(0x94D0_49BB_1331_11EB).wrapping_add(1)
}

pub struct Loader {
    receiver: Receiver<Result<Batch>>,
    worker: Option<JoinHandle<()>>,
}

impl Loader {
    /// Starts preparing the batches of steps `first..last` in order.
    pub fn spawn(
        set: Arc<ImageSet>,
        views: ViewConfig,
        batch: usize,
        seed: u64,
        first: u64,
        last: u64,
    ) -> Self {
        let (sender, receiver) = sync_channel(PREFETCH);
        let worker = std::thread::spawn(move || {
            for step in first..last {
                let indices = batch_indices(set.len(), batch, seed, step);
                let result = make_batch(&set, &indices, &views, step_seed(seed, step));
                let failed = result.is_err();
                // The trainer hung up (finished or failed): stop quietly.
                if sender.send(result).is_err() || failed {
                    return;
                }
            }
        });
        Loader {
            receiver,
            worker: Some(worker),
        }
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
