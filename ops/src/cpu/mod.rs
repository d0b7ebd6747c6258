//! CPU kernels shared by several ops: the blocked matrix multiply and the
//! parallel loops that spread elementwise and row-wise work over rayon's threads.

pub mod fast_math;
pub mod gemm;
mod peak;
mod scratch;
mod simd;

pub use peak::fma_peak_gflops;
pub use simd::{combine_lanes, isa_name, lane_dot, lane_sum, vectorised};
pub(crate) use simd::{detect_isa as simd_isa, widest_simd, Isa as SimdIsa};

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::Element;

/// Below this many elements a loop runs on one thread: spawning costs more than it saves.
pub const PARALLEL_MIN_ELEMENTS: usize = 1 << 15;

/// Elements per parallel task of the elementwise loops.
const ELEMENTWISE_CHUNK: usize = 8192;

/// A vector of `len` zeros, filled by rayon's threads when it is large. A
/// zeroed allocation is otherwise a memset on the calling thread while the
/// others wait: with 16 threads, ops that fill their output this way barely
/// ran faster than on 2 (the allocator reuses the step's freed memory, so
/// every fill is a real memset, not the kernel's fresh zero pages).
pub fn zeroed<T: Element>(len: usize) -> Vec<T> {
    if len < PARALLEL_MIN_ELEMENTS * 8 {
        return vec![T::zero(); len];
    }
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()
        .par_chunks_mut(ELEMENTWISE_CHUNK * 8)
        .for_each(|chunk| chunk.fill(MaybeUninit::new(T::zero())));
    // SAFETY: every one of the `len` elements was just written.
    unsafe { out.set_len(len) };
    out
}

/// A vector of `len` elements, each chunk of it written by `fill` (in
/// parallel when large): `fill(start, chunk)` must write every element of
/// its chunk, which begins at element `start`. No zeroing pass first.
fn filled<U: Element>(
    len: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<U>]) + Sync + Send,
) -> Vec<U> {
    let mut out = Vec::with_capacity(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    if len >= PARALLEL_MIN_ELEMENTS {
        spare
            .par_chunks_mut(ELEMENTWISE_CHUNK)
            .enumerate()
            .for_each(|(i, chunk)| fill(i * ELEMENTWISE_CHUNK, chunk));
    } else {
        fill(0, spare);
    }
    // SAFETY: `fill` wrote every element of every chunk.
    unsafe { out.set_len(len) };
    out
}

/// `f` applied to every element, in parallel for large inputs. The inner loop
/// runs over plain slices so that a branch-free `f` is vectorised.
pub fn map<T: Element, U: Element>(x: &[T], f: impl Fn(T) -> U + Sync + Send) -> Vec<U> {
    let body = |start: usize, out: &mut [MaybeUninit<U>]| {
        for (o, &v) in out.iter_mut().zip(&x[start..]) {
            o.write(f(v));
        }
    };
    filled(x.len(), |start, out| vectorised(|| body(start, out)))
}

/// `f` applied pairwise to two equally long slices, in parallel for large inputs.
pub fn zip_map<T: Element, U: Element>(
    a: &[T],
    b: &[T],
    f: impl Fn(T, T) -> U + Sync + Send,
) -> Vec<U> {
    assert_eq!(a.len(), b.len(), "zip_map takes two slices of one length");
    let body = |start: usize, out: &mut [MaybeUninit<U>]| {
        for ((o, &x), &y) in out.iter_mut().zip(&a[start..]).zip(&b[start..]) {
            o.write(f(x, y));
        }
    };
    filled(a.len(), |start, out| vectorised(|| body(start, out)))
}

/// Calls `f(row_index, row)` for every row of `out` (rows of `row_len`
/// elements), in parallel when the total is large.
pub fn for_each_row<T: Element>(
    out: &mut [T],
    row_len: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    rows_of(out, row_len, f)
}

/// [`for_each_row`] over slots of any kind: elements, or the fresh memory
/// of [`new_rows`].
fn rows_of<S: Send>(out: &mut [S], row_len: usize, f: impl Fn(usize, &mut [S]) + Sync + Send) {
    if row_len == 0 {
        return;
    }
    // One call of `f` in the source, so that it is inlined into the AVX2 copy
    // however large it is (a function called from two places may not be).
    let run = |(r, row): (usize, &mut [S])| vectorised(|| f(r, row));
    if out.len() >= PARALLEL_MIN_ELEMENTS {
        let rows_per_task = (PARALLEL_MIN_ELEMENTS / 8 / row_len).max(1);
        out.par_chunks_mut(row_len)
            .with_min_len(rows_per_task)
            .enumerate()
            .for_each(run);
    } else {
        out.chunks_mut(row_len).enumerate().for_each(run);
    }
}

/// `len` elements of fresh memory, for kernels that write each of them
/// (then [`assume_written`]): no zeroing pass first.
pub fn unwritten<T>(len: usize) -> Vec<MaybeUninit<T>> {
    let mut out = Vec::with_capacity(len);
    // SAFETY: `MaybeUninit` needs no initialisation.
    unsafe { out.set_len(len) };
    out
}

/// The elements of an [`unwritten`] vector, once each has been written.
///
/// # Safety
/// Every element of `v` must have been written.
pub unsafe fn assume_written<T>(v: Vec<MaybeUninit<T>>) -> Vec<T> {
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: `MaybeUninit<T>` has `T`'s layout, so the allocation is the
    // same; the elements are initialised (the caller's promise).
    Vec::from_raw_parts(v.as_mut_ptr() as *mut T, v.len(), v.capacity())
}

/// A vector of `len` elements written row by row: `fill(r, row)` writes row
/// `r` (`row_len` elements), in parallel when the total is large, as
/// [`for_each_row`] runs. Nothing is written first: the zeroing pass that
/// [`zeroed`] makes was a third of a row-wise op's memory traffic (a
/// step's activations are tens of megabytes each).
///
/// # Safety
/// `fill` must write every element of each row it is given.
pub unsafe fn new_rows<T: Element>(
    len: usize,
    row_len: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync + Send,
) -> Vec<T> {
    let mut out = Vec::with_capacity(len);
    rows_of(&mut out.spare_capacity_mut()[..len], row_len, fill);
    // SAFETY: `fill` wrote every element of every row (the caller's
    // promise); with rows of no elements, `len` is 0 or the rows are empty.
    out.set_len(if row_len > 0 { len } else { 0 });
    out
}

/// `Tensor` of `f(x)` for every element `x` of `$t`; inside `f`, `T` is the element type.
#[macro_export]
macro_rules! map_elements {
    ($t:expr, gpu: $op:expr, |$x:ident| $body:expr) => {{
        let t: &$crate::Tensor = $t;
        if t.is_on_gpu() {
            $crate::gpu::unary(t, $op)
        } else {
            $crate::map_elements!(t, |$x| $body)
        }
    }};
    ($t:expr, |$x:ident| $body:expr) => {{
        let t: &$crate::Tensor = $t;
        $crate::with_dtype!(t.dtype(), T => {
            $crate::Tensor::from_vec($crate::cpu::map(t.data::<T>()?, |$x: T| $body), t.shape())
        })
    }};
}

/// `Tensor` of `f(x, y)` over two tensors of the same shape and dtype.
#[macro_export]
macro_rules! zip_elements {
    ($a:expr, $b:expr, gpu: $op:expr, |$x:ident, $y:ident| $body:expr) => {{
        let (a, b): (&$crate::Tensor, &$crate::Tensor) = ($a, $b);
        if a.is_on_gpu() && a.shape() == b.shape() {
            $crate::gpu::binary(a, b, $op)
        } else {
            $crate::zip_elements!(a, b, |$x, $y| $body)
        }
    }};
    ($a:expr, $b:expr, |$x:ident, $y:ident| $body:expr) => {{
        let (a, b): (&$crate::Tensor, &$crate::Tensor) = ($a, $b);
        if a.shape() != b.shape() {
            Err($crate::Error::Shape {
                op: "zip_elements",
                message: format!("shapes {:?} and {:?} differ", a.shape(), b.shape()),
            })
        } else {
            $crate::with_dtype!(a.dtype(), T => {
                $crate::Tensor::from_vec($crate::cpu::zip_map(a.data::<T>()?, b.data::<T>()?, |$x: T, $y: T| $body), a.shape())
            })
        }
    }};
}
