//! The MPI backend (cargo feature `mpi`): the `mpi` crate over the system's
//! Open MPI or MPICH. Launched by `mpirun -np N msn pretrain …` (or `srun`
//! under SLURM), each process is one rank of `MPI_COMM_WORLD`.
//!
//! Sums are a reduce to rank 0 followed by a broadcast rather than one
//! `MPI_Allreduce`: MPI lets an all-reduce associate the sums differently on
//! different ranks, and ranks whose parameters drift apart by rounding are
//! no longer one model. The price is about twice the latency of a ring
//! all-reduce, negligible at these message sizes (see the README's
//! "Scaling out").

use std::sync::Mutex;

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::Collective;
use crate::{Error, Result};

pub struct MpiWorld {
    rank: usize,
    size: usize,
    /// MPI is initialised with `MPI_THREAD_SERIALIZED`: one call at a time,
    /// from any thread; the lock keeps to that.
    world: Mutex<SimpleCommunicator>,
    /// Dropped last: finalises MPI.
    _universe: Universe,
}

// SAFETY: the communicator is a handle that MPI lets any thread use under
// MPI_THREAD_SERIALIZED, and every use goes through the mutex.
unsafe impl Send for MpiWorld {}
unsafe impl Sync for MpiWorld {}

impl MpiWorld {
    /// Joins the world the launcher started.
    pub fn init() -> Result<Self> {
        let (universe, threading) = mpi::initialize_with_threading(mpi::Threading::Serialized)
            .ok_or_else(|| Error::Config("MPI was initialised twice in this process".into()))?;
        if threading < mpi::Threading::Serialized {
            return Err(Error::Config(format!(
                "this MPI library offers thread level {threading:?}; msn needs at least Serialized"
            )));
        }
        let world = universe.world();
        Ok(MpiWorld {
            rank: world.rank() as usize,
            size: world.size() as usize,
            world: Mutex::new(world),
            _universe: universe,
        })
    }

    fn with<R>(&self, f: impl FnOnce(&SimpleCommunicator) -> R) -> R {
        f(&self.world.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn sum<T: Equivalence + Copy + Default>(&self, values: &mut [T]) {
        self.with(|world| {
            let root = world.process_at_rank(0);
            if self.rank == 0 {
                let mut sums = vec![T::default(); values.len()];
                root.reduce_into_root(&values[..], &mut sums[..], SystemOperation::sum());
                values.copy_from_slice(&sums);
            } else {
                root.reduce_into(&values[..], SystemOperation::sum());
            }
            root.broadcast_into(values);
        })
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_reduce_f64(&self, values: &mut [f64]) {
        self.sum(values)
    }
    fn all_reduce_f32(&self, values: &mut [f32]) {
        self.sum(values)
    }
    fn all_gather_u64(&self, values: &[u64]) -> Vec<u64> {
        let mut all = vec![0u64; values.len() * self.size];
        self.with(|world| world.all_gather_into(values, &mut all[..]));
        all
    }
    fn broadcast_u64(&self, values: &mut [u64], root: usize) {
        self.with(|world| world.process_at_rank(root as i32).broadcast_into(values))
    }
    fn broadcast_f32(&self, values: &mut [f32], root: usize) {
        self.with(|world| world.process_at_rank(root as i32).broadcast_into(values))
    }
    fn barrier(&self) {
        self.with(|world| world.barrier())
    }
    fn abort(&self, code: i32) -> ! {
        // Not through the lock: the rank aborting may hold it in a blocked call.
        let world = mpi::topology::SimpleCommunicator::world();
        world.abort(code)
    }
    fn name(&self) -> &'static str {
        "mpi"
    }
}
