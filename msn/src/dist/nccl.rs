//! The NCCL backend (with the `cuda` feature): NVIDIA's collectives between
//! the GPUs of one machine (NVLink, PCIe) or of many (InfiniBand, RoCE,
//! sockets), through the bindings of `cudarc`, the CUDA crate CubeCL's
//! runtime is built on (its `nccl` module loads `libnccl.so` when first
//! used, so this builds on machines without CUDA).
//!
//! NCCL needs a first contact between ranks: rank 0 makes a unique id and
//! every rank must get it. That goes through another backend (MPI, under
//! `mpirun`); a world of one needs none. Buffers are staged: each exchange
//! copies the host values to the GPU, reduces there and copies back, because
//! [`super::Collective`] speaks host slices. (Gradients on a GPU already
//! pass through the host in [`super::Group::average_gradients`]; reducing
//! the device's buffers in place is the next step for speed, not for
//! correctness.)
//!
//! Off by default (`--collectives nccl`), as code no machine here can run.

use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaStream, DeviceRepr, ValidAsZeroBits};
use cudarc::nccl::{Comm, Id, NcclType, ReduceOp};

use super::Collective;
use crate::{Error, Result};

pub struct NcclWorld {
    rank: usize,
    size: usize,
    /// One exchange at a time: NCCL calls on one communicator must be
    /// issued in the same order on every rank.
    comm: Mutex<Comm>,
    stream: Arc<CudaStream>,
    /// The backend that carried the unique id (kept for `abort`, and
    /// alive until NCCL is done with).
    bootstrap: Option<Arc<dyn Collective>>,
}

// SAFETY: the communicator is only used under the mutex, one call at a
// time, and NCCL communicators may be used from any thread that way.
unsafe impl Send for NcclWorld {}
unsafe impl Sync for NcclWorld {}

fn nccl_error(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::Config(format!("NCCL {what} failed: {e:?}"))
}

/// Runs `f`, NCCL's first use: cudarc loads libnccl.so then and panics
/// when it is not there, which becomes an error saying so.
fn loading_nccl<R>(f: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R> {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let made = std::panic::catch_unwind(f);
    std::panic::set_hook(report);
    made.map_err(|_| {
        Error::Config(
            "--collectives nccl: libnccl.so was not found; install NCCL (the distribution's libnccl2, or the nvidia-nccl-cu12 wheel) and put its folder in LD_LIBRARY_PATH".into(),
        )
    })
}

impl NcclWorld {
    /// A communicator over GPU `ordinal` of this process: alone, or with
    /// the ranks of `bootstrap`, which carries rank 0's unique id to them.
    pub fn init(ordinal: usize, bootstrap: Option<Arc<dyn Collective>>) -> Result<Self> {
        let (rank, size) = bootstrap.as_ref().map_or((0, 1), |b| (b.rank(), b.size()));
        // The runtime's own check first: a clear error without a driver or
        // a GPU, and the device's context made by the runtime that trains.
        ops::Tensor::zeros(&[1], ops::DType::F32).to_device(ops::Device::Cuda)?;
        let context = CudaContext::new(ordinal)
            .map_err(|e| nccl_error(&format!("opening GPU {ordinal}"), e))?;
        let stream = context.default_stream();
        let id = if rank == 0 {
            loading_nccl(Id::new)?.map_err(|e| nccl_error("making the unique id", e))?
        } else {
            Id::uninit([0; 128])
        };
        let mut words: Vec<u64> = id
            .internal()
            .chunks(8)
            .map(|c| u64::from_le_bytes(std::array::from_fn(|i| c[i] as u8)))
            .collect();
        if let Some(b) = &bootstrap {
            b.broadcast_u64(&mut words, 0);
        }
        let mut internal = [0 as std::ffi::c_char; 128];
        for (i, byte) in words.iter().flat_map(|w| w.to_le_bytes()).enumerate() {
            internal[i] = byte as std::ffi::c_char;
        }
        let comm =
            loading_nccl(|| Comm::from_rank(stream.clone(), rank, size, Id::uninit(internal)))?
                .map_err(|e| nccl_error("joining the communicator", e))?;
        Ok(NcclWorld {
            rank,
            size,
            comm: Mutex::new(comm),
            stream,
            bootstrap,
        })
    }

    /// Ends the process on a failed call: a rank cannot go on alone.
    fn fail(&self, what: &str, e: impl std::fmt::Debug) -> ! {
        eprintln!(
            "error: rank {} of {}: NCCL {what} failed: {e:?}",
            self.rank, self.size
        );
        self.abort(3)
    }

    /// Copies `values` to the GPU, runs `op` on the copy, copies it back.
    fn staged<T, R>(
        &self,
        what: &str,
        values: &[T],
        out: &mut [T],
        op: impl FnOnce(
            &Comm,
            &cudarc::driver::CudaSlice<T>,
            &mut cudarc::driver::CudaSlice<T>,
        ) -> std::result::Result<R, cudarc::nccl::result::NcclError>,
    ) where
        T: DeviceRepr + ValidAsZeroBits + NcclType + Copy,
    {
        let comm = self.comm.lock().unwrap_or_else(|e| e.into_inner());
        let send = self
            .stream
            .clone_htod(values)
            .unwrap_or_else(|e| self.fail(what, e));
        let mut receive = self
            .stream
            .alloc_zeros::<T>(out.len())
            .unwrap_or_else(|e| self.fail(what, e));
        if let Err(e) = op(&comm, &send, &mut receive) {
            self.fail(what, e);
        }
        self.stream
            .memcpy_dtoh(&receive, out)
            .unwrap_or_else(|e| self.fail(what, e));
        self.stream
            .synchronize()
            .unwrap_or_else(|e| self.fail(what, e));
    }

    fn sum<T>(&self, values: &mut [T])
    where
        T: DeviceRepr + ValidAsZeroBits + NcclType + Copy,
    {
        let input = values.to_vec();
        self.staged("all-reduce", &input, values, |comm, send, receive| {
            comm.all_reduce(send, receive, &ReduceOp::Sum)
        });
    }
}

impl Collective for NcclWorld {
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
        self.staged("all-gather", values, &mut all, |comm, send, receive| {
            comm.all_gather(send, receive)
        });
        all
    }
    fn broadcast_u64(&self, values: &mut [u64], root: usize) {
        let input = values.to_vec();
        self.staged("broadcast", &input, values, |comm, send, receive| {
            comm.broadcast(Some(send), receive, root as i32)
        });
    }
    fn broadcast_f32(&self, values: &mut [f32], root: usize) {
        let input = values.to_vec();
        self.staged("broadcast", &input, values, |comm, send, receive| {
            comm.broadcast(Some(send), receive, root as i32)
        });
    }
    fn barrier(&self) {
        self.sum(&mut [0.0f32]);
    }
    fn abort(&self, code: i32) -> ! {
        match &self.bootstrap {
            Some(b) => b.abort(code),
            None => std::process::exit(code),
        }
    }
    fn name(&self) -> &'static str {
        "nccl"
    }
}
