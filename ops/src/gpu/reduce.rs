//! Reductions along an axis (sum, max) with the adjoint of max, and
//! `index_select` with its adjoint. A tensor is seen as `[outer, n, inner]`
//! around the axis.

use cubecl::prelude::*;

use super::runtime::{
    alloc, arg, cube_index, first_buffer, grid, linear_index, on_runtime, tensor, u32_buffer,
    GpuBuffer, BLOCK,
};
use super::Reduction;
use crate::shape::split_at_axis;
use crate::{Result, Tensor};

/// Units per cube of the reduction kernels.
const REDUCE_UNITS: u32 = 64;
/// Cubes that keep a large GPU busy: a reduction to fewer outputs than this
/// cuts its axis into chunks, one cube each, and reduces their partial
/// results in a second pass. With one cube per output, `sum_all` of 19
/// million values ran on 64 threads of one multiprocessor: 108 ms on an
/// H200, where the chunked reduction reads memory at speed.
const BUSY_CUBES: usize = 1024;
/// The fewest elements a chunk holds: 16 per unit, so that a chunk's loads
/// outweigh its cube's start and its shared-memory combine.
const MIN_CHUNK: usize = 16 * REDUCE_UNITS as usize;

/// One cube per output element and chunk of the reduced axis: its units
/// stride over the chunk, then combine in shared memory. Output `o` is
/// `(outer, chunk, inner)` in row-major order, so one chunk (`chunk_len ≥ n`)
/// is a plain reduction along the axis.
#[cube(launch)]
fn reduce_kernel<F: Float>(
    x: &Array<F>,
    out: &mut Array<F>,
    n: u32,
    inner: u32,
    chunks: u32,
    chunk_len: u32,
    outputs: u32,
    #[comptime] max: bool,
) {
    let o = cube_index();
    if o < outputs {
        let t = UNIT_POS_X;
        let row = o / inner;
        let chunk = row % chunks;
        let base = (row / chunks) * n * inner + o % inner;
        let first = chunk * chunk_len;
        let mut end = first + chunk_len;
        if end > n {
            end = n;
        }
        let mut acc = F::new(0.0);
        if max {
            acc = x[(base + first * inner) as usize];
        }
        let mut r = first + t;
        while r < end {
            let v = x[(base + r * inner) as usize];
            if max {
                if v > acc {
                    acc = v;
                }
            } else {
                acc += v;
            }
            r += CUBE_DIM_X;
        }
        let mut shared = SharedMemory::<F>::new(64usize);
        shared[t as usize] = acc;
        sync_cube();
        let mut half = CUBE_DIM_X / 2;
        while half > 0 {
            if t < half {
                let other = shared[(t + half) as usize];
                if max {
                    if other > shared[t as usize] {
                        shared[t as usize] = other;
                    }
                } else {
                    shared[t as usize] += other;
                }
            }
            sync_cube();
            half /= 2;
        }
        if t == 0 {
            out[o as usize] = shared[0];
        }
    }
}

/// Sum or max of `x` along `axis`, shaped `out_shape`: in one pass when the
/// outputs are enough to fill the device, else in chunks, then over the
/// chunks' partial results.
pub(crate) fn reduce(
    x: &Tensor,
    axis: usize,
    how: Reduction,
    out_shape: &[usize],
) -> Result<Tensor> {
    let xb = first_buffer("reduce", x)?;
    let (outer, n, inner) = split_at_axis(x.shape(), axis);
    let outputs = outer * inner;
    if outputs == 0 {
        return tensor(alloc(xb, 0), out_shape);
    }
    let chunks = (BUSY_CUBES / outputs).min(n / MIN_CHUNK).max(1);
    if chunks == 1 {
        return tensor(reduce_chunks(xb, (outer, n, inner), 1, how), out_shape);
    }
    let partial = reduce_chunks(xb, (outer, n, inner), chunks, how);
    tensor(
        reduce_chunks(&partial, (outer, chunks, inner), 1, how),
        out_shape,
    )
}

/// `x`, seen as `[outer, n, inner]`, reduced along n in `chunks` near-equal
/// chunks: `[outer, chunks, inner]` partial results.
fn reduce_chunks(
    xb: &GpuBuffer,
    (outer, n, inner): (usize, usize, usize),
    chunks: usize,
    how: Reduction,
) -> GpuBuffer {
    let outputs = outer * chunks * inner;
    let out = alloc(xb, outputs);
    on_runtime!(&xb.client, |client, R| reduce_kernel::launch::<f32, R>(
        client,
        grid(outputs, 1),
        CubeDim::new_1d(REDUCE_UNITS),
        xb.arg::<R>(),
        out.arg::<R>(),
        n as u32,
        inner.max(1) as u32,
        chunks as u32,
        n.div_ceil(chunks) as u32,
        outputs as u32,
        how == Reduction::Max,
    ));
    out
}

/// The gradient of max: `g` goes to the first position holding the maximum.
#[cube(launch)]
fn max_backward_kernel<F: Float>(
    x: &Array<F>,
    max: &Array<F>,
    g: &Array<F>,
    dx: &mut Array<F>,
    n: u32,
    inner: u32,
    outputs: u32,
) {
    let o = linear_index();
    if o < outputs {
        let base = (o / inner) * n * inner + o % inner;
        let best = max[o as usize];
        let mut found = false;
        for r in 0..n {
            let at = (base + r * inner) as usize;
            let mut v = F::new(0.0);
            if !found && x[at] == best {
                v = g[o as usize];
                found = true;
            }
            dx[at] = v;
        }
    }
}

pub(crate) fn max_backward(x: &Tensor, max: &Tensor, g: &Tensor, axis: usize) -> Result<Tensor> {
    let xb = first_buffer("max", x)?;
    let (mb, gb) = (first_buffer("max", max)?, first_buffer("max", g)?);
    let (outer, n, inner) = split_at_axis(x.shape(), axis);
    let outputs = outer * inner;
    let dx = alloc(xb, xb.len);
    if outputs > 0 {
        on_runtime!(
            &xb.client,
            |client, R| max_backward_kernel::launch::<f32, R>(
                client,
                grid(outputs, BLOCK),
                CubeDim::new_1d(BLOCK),
                xb.arg::<R>(),
                mb.arg::<R>(),
                gb.arg::<R>(),
                dx.arg::<R>(),
                n as u32,
                inner.max(1) as u32,
                outputs as u32,
            )
        );
    }
    tensor(dx, x.shape())
}

#[cube(launch)]
fn gather_kernel<F: Float>(
    x: &Array<F>,
    indices: &Array<u32>,
    out: &mut Array<F>,
    n: u32,
    m: u32,
    inner: u32,
    total: u32,
) {
    let i = linear_index();
    if i < total {
        let t = i % inner;
        let j = (i / inner) % m;
        let o = i / (inner * m);
        out[i as usize] = x[((o * n + indices[j as usize]) * inner + t) as usize];
    }
}

/// Each unit owns one input element and sums the output gradients of every
/// index that selected it (no atomics needed, so it is deterministic).
#[cube(launch)]
fn scatter_add_kernel<F: Float>(
    g: &Array<F>,
    indices: &Array<u32>,
    dx: &mut Array<F>,
    n: u32,
    m: u32,
    inner: u32,
    total: u32,
) {
    let i = linear_index();
    if i < total {
        let t = i % inner;
        let row = (i / inner) % n;
        let o = i / (inner * n);
        let mut acc = F::new(0.0);
        for j in 0..m {
            if indices[j as usize] == row {
                acc += g[((o * m + j) * inner + t) as usize];
            }
        }
        dx[i as usize] = acc;
    }
}

pub(crate) fn index_select(x: &Tensor, axis: usize, indices: &[usize]) -> Result<Tensor> {
    let xb = first_buffer("index_select", x)?;
    let (outer, n, inner) = split_at_axis(x.shape(), axis);
    let m = indices.len();
    let mut out_shape = x.shape().to_vec();
    out_shape[axis] = m;
    let total = outer * m * inner;
    let ib = u32_buffer(xb, indices);
    let out = alloc(xb, total);
    if total > 0 {
        on_runtime!(&xb.client, |client, R| gather_kernel::launch::<f32, R>(
            client,
            grid(total, BLOCK),
            CubeDim::new_1d(BLOCK),
            xb.arg::<R>(),
            arg::<R>(&ib, m),
            out.arg::<R>(),
            n as u32,
            m as u32,
            inner as u32,
            total as u32,
        ));
    }
    tensor(out, &out_shape)
}

pub(crate) fn index_select_backward(
    g: &Tensor,
    axis: usize,
    indices: &[usize],
    in_shape: &[usize],
) -> Result<Tensor> {
    let gb = first_buffer("index_select", g)?;
    let (outer, n, inner) = split_at_axis(in_shape, axis);
    let m = indices.len();
    let total = outer * n * inner;
    let ib = u32_buffer(gb, indices);
    let dx = alloc(gb, total);
    if total > 0 {
        on_runtime!(
            &gb.client,
            |client, R| scatter_add_kernel::launch::<f32, R>(
                client,
                grid(total, BLOCK),
                CubeDim::new_1d(BLOCK),
                gb.arg::<R>(),
                arg::<R>(&ib, m),
                dx.arg::<R>(),
                n as u32,
                m as u32,
                inner as u32,
                total as u32,
            )
        );
    }
    tensor(dx, in_shape)
}
