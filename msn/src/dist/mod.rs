//! Data-parallel training across processes: the few collective operations
//! MSN shares between ranks (`msn-spec.md` §3, "Distributed gradients"), and
//! the backends that carry them.
//!
//! A [`Group`] is one rank's handle on a world of `size` ranks. What the
//! trainer shares through it, and why:
//! - the head's batch-norm statistics (SyncBN): the sum and the centred
//!   sum of squares of every column, so that each rank normalises with the
//!   global batch's statistics ([`crate::head`]);
//! - the me-max mean prediction, so that the regulariser sees the global
//!   batch ([`crate::loss`]);
//! - Sinkhorn's sums over samples, so that the targets are balanced over
//!   the global batch ([`crate::loss::sinkhorn_in`]);
//! - the gradients, in one flat bucket, averaged;
//! - at the start, rank 0's whole training state, broadcast.
//!
//! Every differentiable exchange ([`Group::all_reduce_tensor`]) has the
//! all-reduce of the incoming gradient as its backward: each rank's loss
//! depends on every rank's inputs through the shared sums, so the gradient
//! of the sum of the ranks' losses with respect to one rank's input is the
//! sum over ranks. With the gradients averaged, one step of W ranks with
//! B/W images each is the step of one process with B images, up to the
//! order of floating-point sums (tested in `cli/tests/distributed.rs`).
//! (MSN's reference code passes the me-max gradient through unchanged,
//! which scales it by 1/W against the single-process step, and sums the
//! prototypes' gradients, scaling them by W; here a run's result does not
//! depend on its world size.)
//!
//! Backends: [`local`] (ranks as threads of one process, for tests); with
//! the `mpi` feature, `mpi` (`mpirun -np N msn pretrain …`); with the
//! `cuda` feature, `nccl` (`--collectives nccl`, its first contact made
//! through MPI).

pub mod local;
#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(feature = "cuda")]
pub mod nccl;
mod watchdog;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ops::Tensor;

use crate::Result;

pub use watchdog::DEFAULT_TIMEOUT;

/// What a backend provides. Every call is collective: each rank of the
/// world makes it, in the same order, with the same lengths. Results are
/// bitwise the same on every rank.
pub trait Collective: Send + Sync {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Element-wise sums over ranks, in place.
    fn all_reduce_f64(&self, values: &mut [f64]);
    fn all_reduce_f32(&self, values: &mut [f32]);
    /// Every rank's `values` (all of one length), concatenated in rank order.
    fn all_gather_u64(&self, values: &[u64]) -> Vec<u64>;
    /// Overwrites `values` with rank `root`'s.
    fn broadcast_u64(&self, values: &mut [u64], root: usize);
    fn broadcast_f32(&self, values: &mut [f32], root: usize);
    fn barrier(&self);
    /// Ends every rank's process at once with exit status `code`.
    fn abort(&self, code: i32) -> !;
    /// The backend's name, for messages: `mpi`, `threads`, `single process`.
    fn name(&self) -> &'static str;
}

/// The world of one: every exchange is the identity.
struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_f64(&self, _: &mut [f64]) {}
    fn all_reduce_f32(&self, _: &mut [f32]) {}
    fn all_gather_u64(&self, values: &[u64]) -> Vec<u64> {
        values.to_vec()
    }
    fn broadcast_u64(&self, _: &mut [u64], _: usize) {}
    fn broadcast_f32(&self, _: &mut [f32], _: usize) {}
    fn barrier(&self) {}
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
    fn name(&self) -> &'static str {
        "single process"
    }
}

/// One rank's handle on its world; cheap to clone. Every exchange is timed
/// by a watchdog: one that waits longer than the timeout means another rank
/// died or hung, and this rank stops with an error naming the exchange
/// instead of waiting for ever.
#[derive(Clone)]
pub struct Group {
    backend: Arc<dyn Collective>,
    watchdog: Option<Arc<watchdog::Watchdog>>,
    traffic: Arc<Counters>,
}

/// What a group's exchanges have cost so far: calls, bytes this rank sent
/// in (its buffers' sizes) and seconds spent inside them, waiting included.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Traffic {
    pub calls: u64,
    pub bytes: u64,
    pub seconds: f64,
}

impl std::ops::Sub for Traffic {
    type Output = Traffic;
    fn sub(self, earlier: Traffic) -> Traffic {
        Traffic {
            calls: self.calls - earlier.calls,
            bytes: self.bytes - earlier.bytes,
            seconds: self.seconds - earlier.seconds,
        }
    }
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    bytes: AtomicU64,
    nanos: AtomicU64,
}

/// The environment variables by which launchers (Open MPI's mpirun,
/// MPICH's Hydra, SLURM's `srun --mpi=pmix` or `pmi2`) tell a process it
/// is a rank. (Not SLURM's own: a batch script's single process has them.)
const LAUNCHER_VARIABLES: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"];

/// `VARIABLE=value` when an MPI launcher started this process.
pub fn launched_by_mpi() -> Option<String> {
    LAUNCHER_VARIABLES
        .iter()
        .find_map(|v| std::env::var(v).ok().map(|value| format!("{v}={value}")))
}

/// How many ranks the launcher started on this machine, when it says.
pub fn ranks_on_this_machine() -> Option<usize> {
    [
        "OMPI_COMM_WORLD_LOCAL_SIZE",
        "MPI_LOCALNRANKS",
        "SLURM_NTASKS_PER_NODE",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Group({}, rank {} of {})",
            self.backend.name(),
            self.rank(),
            self.size()
        )
    }
}

impl Default for Group {
    fn default() -> Self {
        Group::single()
    }
}

impl Group {
    /// The world of one process.
    pub fn single() -> Self {
        Group {
            backend: Arc::new(Single),
            watchdog: None,
            traffic: Arc::default(),
        }
    }

    /// A group over `backend`, whose exchanges fail after `timeout`.
    pub fn new(backend: Arc<dyn Collective>, timeout: Duration) -> Self {
        let watchdog =
            (backend.size() > 1).then(|| watchdog::Watchdog::start(backend.clone(), timeout));
        Group {
            backend,
            watchdog,
            traffic: Arc::default(),
        }
    }

    pub fn rank(&self) -> usize {
        self.backend.rank()
    }

    pub fn size(&self) -> usize {
        self.backend.size()
    }

    /// Rank 0, the one that writes metrics, checkpoints and plots.
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// What this rank's exchanges have cost so far.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            calls: self.traffic.calls.load(Ordering::Relaxed),
            bytes: self.traffic.bytes.load(Ordering::Relaxed),
            seconds: self.traffic.nanos.load(Ordering::Relaxed) as f64 * 1e-9,
        }
    }

    /// Runs one exchange of `values` numbers of `width` bytes, counted and
    /// under the watchdog's eye; `what` names it in a timeout's message.
    fn watched<R>(
        &self,
        what: &'static str,
        values: usize,
        width: usize,
        f: impl FnOnce() -> R,
    ) -> R {
        let start = Instant::now();
        let result = match &self.watchdog {
            Some(w) => {
                let _in_flight = w.enter(what, values);
                f()
            }
            None => f(),
        };
        let counters = &self.traffic;
        counters.calls.fetch_add(1, Ordering::Relaxed);
        counters
            .bytes
            .fetch_add((values * width) as u64, Ordering::Relaxed);
        counters
            .nanos
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        result
    }

    pub fn all_reduce_f64(&self, values: &mut [f64], what: &'static str) {
        if self.size() > 1 {
            self.watched(what, values.len(), 8, || {
                self.backend.all_reduce_f64(values)
            });
        }
    }

    pub fn all_reduce_f32(&self, values: &mut [f32], what: &'static str) {
        if self.size() > 1 {
            self.watched(what, values.len(), 4, || {
                self.backend.all_reduce_f32(values)
            });
        }
    }

    pub fn all_gather_u64(&self, values: &[u64], what: &'static str) -> Vec<u64> {
        if self.size() == 1 {
            return values.to_vec();
        }
        self.watched(what, values.len(), 8, || {
            self.backend.all_gather_u64(values)
        })
    }

    pub fn broadcast_u64(&self, values: &mut [u64], what: &'static str) {
        if self.size() > 1 {
            self.watched(what, values.len(), 8, || {
                self.backend.broadcast_u64(values, 0)
            });
        }
    }

    pub fn broadcast_f32(&self, values: &mut [f32], what: &'static str) {
        if self.size() > 1 {
            self.watched(what, values.len(), 4, || {
                self.backend.broadcast_f32(values, 0)
            });
        }
    }

    pub fn barrier(&self, what: &'static str) {
        if self.size() > 1 {
            self.watched(what, 0, 0, || self.backend.barrier());
        }
    }

    /// Makes one call of every kind through the backend, even in a world of
    /// one (where the group's own methods skip them), and checks what comes
    /// back: the ranks found each other, agree on the world, and each
    /// exchange sums, gathers and broadcasts. Run once at the start.
    pub fn handshake(&self) -> Result<()> {
        let (rank, size) = (self.rank(), self.size());
        let backend = &self.backend;
        let wrong = |what: &str, got: String| {
            Err(crate::Error::Config(format!(
                "rank {rank} of {size}: the {} backend's {what} returned {got}; the ranks are not one world (check the launcher and the library)",
                backend.name()
            )))
        };
        let mut sums64 = [rank as f64 + 1.0, 1.0];
        let mut sums32 = [rank as f32 + 1.0];
        let mut gathered = Vec::new();
        let mut from_root64 = [rank as u64 + 7];
        let mut from_root32 = [rank as f32 + 0.5];
        self.watched("the handshake", 6, 8, || {
            backend.all_reduce_f64(&mut sums64);
            backend.all_reduce_f32(&mut sums32);
            gathered = backend.all_gather_u64(&[rank as u64]);
            backend.broadcast_u64(&mut from_root64, 0);
            backend.broadcast_f32(&mut from_root32, 0);
            backend.barrier();
        });
        let triangle = (size * (size + 1) / 2) as f64;
        if sums64 != [triangle, size as f64] || sums32[0] as f64 != triangle {
            return wrong("all-reduce", format!("{sums64:?} and {sums32:?}"));
        }
        if gathered != (0..size as u64).collect::<Vec<_>>() {
            return wrong("all-gather", format!("{gathered:?}"));
        }
        if from_root64 != [7] || from_root32 != [0.5] {
            return wrong("broadcast", format!("{from_root64:?} and {from_root32:?}"));
        }
        Ok(())
    }

    /// Ends every rank at once (after this rank has printed why).
    pub fn abort(&self, code: i32) -> ! {
        self.backend.abort(code)
    }

    /// Rank 0's text on every rank.
    pub fn broadcast_string(&self, text: &str, what: &'static str) -> String {
        if self.size() == 1 {
            return text.to_string();
        }
        let mut len = [text.len() as u64];
        self.broadcast_u64(&mut len, what);
        let mut words = vec![0u64; (len[0] as usize).div_ceil(8)];
        if self.is_root() {
            for (word, chunk) in words.iter_mut().zip(text.as_bytes().chunks(8)) {
                let mut bytes = [0u8; 8];
                bytes[..chunk.len()].copy_from_slice(chunk);
                *word = u64::from_le_bytes(bytes);
            }
        }
        self.broadcast_u64(&mut words, what);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        String::from_utf8_lossy(&bytes[..len[0] as usize]).into_owned()
    }

    /// True on every rank when `flag` is true on any.
    pub fn any(&self, flag: bool, what: &'static str) -> bool {
        let mut v = [flag as u8 as f64];
        self.all_reduce_f64(&mut v, what);
        v[0] > 0.0
    }

    /// The sum over ranks of `x`, recorded on the tape: its backward is the
    /// sum over ranks of the incoming gradient (see the module's header).
    /// The identity in a world of one.
    pub fn all_reduce_tensor(&self, x: &Tensor, what: &'static str) -> Result<Tensor> {
        if self.size() == 1 {
            return Ok(x.clone());
        }
        let reduce = move |t: &Tensor, group: &Group| -> ops::Result<Tensor> {
            let mut values = t.to_vec_f64();
            group.all_reduce_f64(&mut values, what);
            Tensor::from_f64s(&values, t.shape(), t.dtype())?.to_device(t.device())
        };
        let output = reduce(x, self)?;
        let group = self.clone();
        Ok(Tensor::custom_op(
            "all_reduce_sum",
            &[x],
            output,
            move |g| Ok(vec![Some(reduce(g, &group)?)]),
        )?)
    }

    /// Averages `grads` over ranks in one flat bucket (one exchange, not one per tensor).
    pub fn average_gradients(&self, grads: &mut [Tensor]) -> Result<()> {
        if self.size() == 1 {
            return Ok(());
        }
        let scale = 1.0 / self.size() as f32;
        through_one_buffer(grads, |bucket| {
            self.all_reduce_f32(bucket, "the gradient bucket");
            bucket.iter_mut().for_each(|v| *v *= scale);
        })
    }

    /// Overwrites `tensors` with rank 0's, in one exchange.
    pub fn broadcast_tensors(&self, tensors: &mut [Tensor], what: &'static str) -> Result<()> {
        if self.size() == 1 {
            return Ok(());
        }
        through_one_buffer(tensors, |flat| self.broadcast_f32(flat, what))
    }
}

/// Runs `exchange` on the values of `tensors` laid end to end in one f32
/// buffer (one call instead of one per tensor), then puts the results back
/// into tensors of the same shapes, dtypes and devices.
fn through_one_buffer(tensors: &mut [Tensor], exchange: impl FnOnce(&mut [f32])) -> Result<()> {
    let mut flat = Vec::with_capacity(tensors.iter().map(|t| t.numel()).sum());
    for t in tensors.iter() {
        flat.extend(t.to_vec_f32());
    }
    exchange(&mut flat);
    let mut offset = 0;
    for t in tensors.iter_mut() {
        let n = t.numel();
        *t = Tensor::from_vec(flat[offset..offset + n].to_vec(), t.shape())?
            .to_dtype(t.dtype())?
            .to_device(t.device())?;
        offset += n;
    }
    Ok(())
}

/// FNV-1a, for comparing configurations across ranks in one small exchange.
pub fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
