//! Fused scaled dot-product attention on the GPU, forward and backward, in
//! the manner of FlashAttention-2: the `n×m` matrix of probabilities is never
//! written to memory.
//!
//! Shapes as in [`crate::ops::attention`]: `q: [b, n, d]`, `k: [b, m, d]`,
//! `v: [b, m, e]`, each entry's rows found through an [`AttentionLayout`]:
//! three contiguous tensors, or the heads of one packed qkv projection read in
//! place (and the output written with its heads side by side) for
//! [`crate::ops::qkv_attention`]. Each cube owns [`ROWS`] rows (one unit
//! each) of one batch entry and streams the other side through shared memory
//! [`TILE`] rows at a time:
//! - forward, a cube per block of queries: scores for a tile of keys, the
//!   running maximum and sum of the online softmax, the output accumulated
//!   in registers and rescaled when the maximum grows. It writes the output
//!   and each row's log-sum-exp `L`, which is all the backward pass needs to
//!   recompute a probability, `p = exp(s − L)`;
//! - backward, two kernels so that no gradient needs atomic adds: a cube per
//!   block of queries computes `D = rowsum(dO∘O)` and `dQ = scale·Σ_j dS·k_j`,
//!   then a cube per block of keys computes `dV = Σ_i p·dO_i` and
//!   `dK = scale·Σ_i dS·q_i`, with `dS = p·(dO·v − D)`.
//!
//! The head dimensions `d` and `e` are compile-time parameters, so the
//! per-unit accumulators (and the forward pass's query) are register arrays;
//! each unit's own rows otherwise live in shared memory, padded by one element
//! so that the units of a warp read different banks. [`attention_fits`] says when the shared memory a launch needs is
//! within the device's limit; otherwise the op falls back to its composition.

use cubecl::prelude::*;

use super::runtime::{
    alloc, buffer, cube_index, first_buffer, grid, on_runtime, tensor, Client, GpuBuffer,
};
use super::{AttentionDims, AttentionLayout, AttentionSaved};
use crate::{Result, Tensor};

/// Rows owned by a cube, one unit each.
const ROWS: u32 = 32;
/// Rows of the other side staged in shared memory per step.
const TILE: u32 = 16;
/// The running maximum before any score: WGSL has no infinity literal.
const NO_SCORE: f32 = -3.0e38;

/// Loads `count` rows of `width` starting at row `first` of a block of `rows`
/// rows (row `i` at `from[base + i·row_stride]`) into shared memory with a row
/// stride of `stride`; rows past the end repeat the last one (their results
/// are never written).
#[cube]
#[allow(clippy::too_many_arguments)]
fn stage<F: Float>(
    from: &Array<F>,
    base: u32,
    row_stride: u32,
    first: u32,
    rows: u32,
    to: &mut SharedMemory<F>,
    #[comptime] count: u32,
    #[comptime] width: u32,
    #[comptime] stride: u32,
) {
    let mut at = UNIT_POS_X;
    while at < count * width {
        let r = at / width;
        let c = at % width;
        let row = min(first + r, rows - 1);
        to[(r * stride + c) as usize] = from[(base + row * row_stride + c) as usize];
        at += CUBE_DIM_X;
    }
}

/// The cube's own [`ROWS`] rows of `width` from row `first` on (see [`stage`]),
/// in shared memory with rows padded by one element, so that the units of a
/// warp, each reading its own row, read different banks.
#[cube]
fn own_rows<F: Float>(
    from: &Array<F>,
    base: u32,
    row_stride: u32,
    first: u32,
    rows: u32,
    #[comptime] width: u32,
) -> SharedMemory<F> {
    let mut own = SharedMemory::<F>::new(comptime!((ROWS * (width + 1)) as usize));
    stage::<F>(
        from,
        base,
        row_stride,
        first,
        rows,
        &mut own,
        ROWS,
        width,
        width + 1,
    );
    own
}

/// [`AttentionLayout`] as the kernels take it.
#[derive(CubeLaunch, CubeType)]
struct Layout {
    heads: u32,
    q_row: u32,
    k_row: u32,
    v_row: u32,
    out_row: u32,
    k_at: u32,
    v_at: u32,
}

impl Layout {
    fn launch<R: Runtime>(l: &AttentionLayout) -> LayoutLaunch<R> {
        LayoutLaunch::new(
            l.heads as u32,
            l.q_row as u32,
            l.k_row as u32,
            l.v_row as u32,
            l.out_row as u32,
            l.k_at as u32,
            l.v_at as u32,
        )
    }
}

/// Where row 0 of batch entry `entry`'s q, k, v and output start: the entry
/// is head `entry % heads` of image `entry / heads`.
#[derive(CubeType)]
struct Bases {
    q: u32,
    k: u32,
    v: u32,
    out: u32,
}

#[cube]
fn bases(
    layout: &Layout,
    entry: u32,
    n: u32,
    m: u32,
    #[comptime] d: u32,
    #[comptime] e: u32,
) -> Bases {
    let image = entry / layout.heads;
    let head = entry % layout.heads;
    Bases {
        q: image * n * layout.q_row + head * d,
        k: image * m * layout.k_row + layout.k_at + head * d,
        v: image * m * layout.v_row + layout.v_at + head * e,
        out: image * n * layout.out_row + head * e,
    }
}

/// `Σ_c a[a_at + c]·b[b_at + c]` over `len` columns of two staged rows.
#[cube]
fn dot<F: Float>(
    a: &SharedMemory<F>,
    a_at: u32,
    b: &SharedMemory<F>,
    b_at: u32,
    #[comptime] len: u32,
) -> F {
    let mut sum = F::new(0.0);
    #[unroll]
    for c in 0..len {
        sum += a[(a_at + c) as usize] * b[(b_at + c) as usize];
    }
    sum
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn attention_forward_kernel<F: Float>(
    q: &Array<F>,
    k: &Array<F>,
    v: &Array<F>,
    out: &mut Array<F>,
    lse: &mut Array<F>,
    n: u32,
    m: u32,
    blocks: u32,
    batches: u32,
    scale: f32,
    layout: &Layout,
    #[comptime] d: u32,
    #[comptime] e: u32,
) {
    let cube = cube_index();
    let entry = cube / blocks;
    if entry < batches {
        let first = (cube % blocks) * ROWS;
        let t = UNIT_POS_X;
        let row = first + t;
        let base = bases(layout, entry, n, m, d, e);
        let mut k_tile = SharedMemory::<F>::new(comptime!((TILE * d) as usize));
        let mut v_tile = SharedMemory::<F>::new(comptime!((TILE * e) as usize));
        let q_own = own_rows::<F>(q, base.q, layout.q_row, first, n, d);
        sync_cube();
        // In registers, the query costs no shared-memory read in the score
        // loop, whose key reads are broadcasts to the whole warp.
        let mut q_row_values = Array::<F>::new(comptime!(d as usize));
        #[unroll]
        for c in 0..d {
            q_row_values[c as usize] = q_own[(t * (d + 1) + c) as usize];
        }
        let scale = F::cast_from(scale);
        let mut acc = Array::<F>::new(comptime!(e as usize));
        #[unroll]
        for c in 0..e {
            acc[c as usize] = F::new(0.0);
        }
        let mut scores = Array::<F>::new(comptime!(TILE as usize));
        let mut running_max = F::cast_from(NO_SCORE);
        let mut running_sum = F::new(0.0);
        let mut j0 = 0u32;
        while j0 < m {
            sync_cube();
            stage::<F>(k, base.k, layout.k_row, j0, m, &mut k_tile, TILE, d, d);
            stage::<F>(v, base.v, layout.v_row, j0, m, &mut v_tile, TILE, e, e);
            sync_cube();
            let mut tile_max = F::cast_from(NO_SCORE);
            #[unroll]
            for jj in 0..TILE {
                let mut s = F::new(0.0);
                #[unroll]
                for c in 0..d {
                    s += q_row_values[c as usize] * k_tile[(jj * d + c) as usize];
                }
                s *= scale;
                if j0 + jj >= m {
                    s = F::cast_from(NO_SCORE);
                }
                scores[jj as usize] = s;
                tile_max = max(tile_max, s);
            }
            let new_max = max(running_max, tile_max);
            let rescale = F::exp(running_max - new_max);
            running_sum *= rescale;
            #[unroll]
            for c in 0..e {
                acc[c as usize] *= rescale;
            }
            #[unroll]
            for jj in 0..TILE {
                let mut p = F::exp(scores[jj as usize] - new_max);
                if j0 + jj >= m {
                    p = F::new(0.0);
                }
                running_sum += p;
                #[unroll]
                for c in 0..e {
                    acc[c as usize] += p * v_tile[(jj * e + c) as usize];
                }
            }
            running_max = new_max;
            j0 += TILE;
        }
        if row < n {
            let inv = F::recip(running_sum);
            let at = base.out + row * layout.out_row;
            #[unroll]
            for c in 0..e {
                out[(at + c) as usize] = acc[c as usize] * inv;
            }
            lse[(entry * n + row) as usize] = running_max + F::ln(running_sum);
        }
    }
}

/// `D = rowsum(dO∘O)` and `dQ`, a cube per block of query rows.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn attention_dq_kernel<F: Float>(
    q: &Array<F>,
    k: &Array<F>,
    v: &Array<F>,
    o: &Array<F>,
    go: &Array<F>,
    lse: &Array<F>,
    dq: &mut Array<F>,
    delta: &mut Array<F>,
    n: u32,
    m: u32,
    blocks: u32,
    batches: u32,
    scale: f32,
    layout: &Layout,
    #[comptime] d: u32,
    #[comptime] e: u32,
) {
    let cube = cube_index();
    let entry = cube / blocks;
    if entry < batches {
        let first = (cube % blocks) * ROWS;
        let t = UNIT_POS_X;
        let row = first + t;
        let own_row = min(row, n - 1);
        let base = bases(layout, entry, n, m, d, e);
        let mut k_tile = SharedMemory::<F>::new(comptime!((TILE * d) as usize));
        let mut v_tile = SharedMemory::<F>::new(comptime!((TILE * e) as usize));
        let q_own = own_rows::<F>(q, base.q, layout.q_row, first, n, d);
        let go_own = own_rows::<F>(go, base.out, layout.out_row, first, n, e);
        sync_cube();
        let mut delta_own = F::new(0.0);
        let o_at = base.out + own_row * layout.out_row;
        #[unroll]
        for c in 0..e {
            delta_own += go_own[(t * (e + 1) + c) as usize] * o[(o_at + c) as usize];
        }
        let log_sum = lse[(entry * n + own_row) as usize];
        let scale = F::cast_from(scale);
        let mut acc = Array::<F>::new(comptime!(d as usize));
        #[unroll]
        for c in 0..d {
            acc[c as usize] = F::new(0.0);
        }
        let mut j0 = 0u32;
        while j0 < m {
            sync_cube();
            stage::<F>(k, base.k, layout.k_row, j0, m, &mut k_tile, TILE, d, d);
            stage::<F>(v, base.v, layout.v_row, j0, m, &mut v_tile, TILE, e, e);
            sync_cube();
            let mut jj = 0u32;
            while jj < min(TILE, m - j0) {
                let s = dot::<F>(&q_own, t * (d + 1), &k_tile, jj * d, d);
                let p = F::exp(s * scale - log_sum);
                let dp = dot::<F>(&go_own, t * (e + 1), &v_tile, jj * e, e);
                let ds = p * (dp - delta_own);
                #[unroll]
                for c in 0..d {
                    acc[c as usize] += ds * k_tile[(jj * d + c) as usize];
                }
                jj += 1u32;
            }
            j0 += TILE;
        }
        if row < n {
            let at = base.q + row * layout.q_row;
            #[unroll]
            for c in 0..d {
                dq[(at + c) as usize] = acc[c as usize] * scale;
            }
            delta[(entry * n + row) as usize] = delta_own;
        }
    }
}

/// `dK` and `dV`, a cube per block of key rows, after [`attention_dq_kernel`].
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn attention_dkv_kernel<F: Float>(
    q: &Array<F>,
    k: &Array<F>,
    v: &Array<F>,
    go: &Array<F>,
    lse: &Array<F>,
    delta: &Array<F>,
    dk: &mut Array<F>,
    dv: &mut Array<F>,
    n: u32,
    m: u32,
    blocks: u32,
    batches: u32,
    scale: f32,
    layout: &Layout,
    #[comptime] d: u32,
    #[comptime] e: u32,
) {
    let cube = cube_index();
    let entry = cube / blocks;
    if entry < batches {
        let first = (cube % blocks) * ROWS;
        let t = UNIT_POS_X;
        let row = first + t;
        let base = bases(layout, entry, n, m, d, e);
        let mut q_tile = SharedMemory::<F>::new(comptime!((TILE * d) as usize));
        let mut go_tile = SharedMemory::<F>::new(comptime!((TILE * e) as usize));
        let mut lse_tile = SharedMemory::<F>::new(comptime!(TILE as usize));
        let mut delta_tile = SharedMemory::<F>::new(comptime!(TILE as usize));
        let k_own = own_rows::<F>(k, base.k, layout.k_row, first, m, d);
        let v_own = own_rows::<F>(v, base.v, layout.v_row, first, m, e);
        let scale = F::cast_from(scale);
        let mut acc_k = Array::<F>::new(comptime!(d as usize));
        let mut acc_v = Array::<F>::new(comptime!(e as usize));
        #[unroll]
        for c in 0..d {
            acc_k[c as usize] = F::new(0.0);
        }
        #[unroll]
        for c in 0..e {
            acc_v[c as usize] = F::new(0.0);
        }
        let mut i0 = 0u32;
        while i0 < n {
            sync_cube();
            stage::<F>(q, base.q, layout.q_row, i0, n, &mut q_tile, TILE, d, d);
            stage::<F>(
                go,
                base.out,
                layout.out_row,
                i0,
                n,
                &mut go_tile,
                TILE,
                e,
                e,
            );
            stage::<F>(lse, entry * n, 1u32, i0, n, &mut lse_tile, TILE, 1u32, 1u32);
            stage::<F>(
                delta,
                entry * n,
                1u32,
                i0,
                n,
                &mut delta_tile,
                TILE,
                1u32,
                1u32,
            );
            sync_cube();
            let mut ii = 0u32;
            while ii < min(TILE, n - i0) {
                let s = dot::<F>(&q_tile, ii * d, &k_own, t * (d + 1), d);
                let p = F::exp(s * scale - lse_tile[ii as usize]);
                let dp = dot::<F>(&go_tile, ii * e, &v_own, t * (e + 1), e);
                let ds = p * (dp - delta_tile[ii as usize]);
                #[unroll]
                for c in 0..e {
                    acc_v[c as usize] += p * go_tile[(ii * e + c) as usize];
                }
                #[unroll]
                for c in 0..d {
                    acc_k[c as usize] += ds * q_tile[(ii * d + c) as usize];
                }
                ii += 1u32;
            }
            i0 += TILE;
        }
        if row < m {
            let k_at_row = base.k + row * layout.k_row;
            #[unroll]
            for c in 0..d {
                dk[(k_at_row + c) as usize] = acc_k[c as usize] * scale;
            }
            let v_at_row = base.v + row * layout.v_row;
            #[unroll]
            for c in 0..e {
                dv[(v_at_row + c) as usize] = acc_v[c as usize];
            }
        }
    }
}

/// Whether the fused kernels' shared memory for head dimensions `d` and `e`
/// fits on the device of `q` (the key-side backward kernel needs the most).
pub(crate) fn attention_fits(q: &Tensor, d: usize, e: usize) -> bool {
    let Ok(qb) = first_buffer("attention", q) else {
        return false;
    };
    let (rows, tile) = (ROWS as usize, TILE as usize);
    let bytes = 4 * (rows * (d + 1) + rows * (e + 1) + tile * (d + e) + 2 * tile);
    bytes <= max_shared_bytes(&qb.client)
}

fn max_shared_bytes(client: &Client) -> usize {
    on_runtime!(client, |c, R| c
        .properties()
        .hardware
        .max_shared_memory_size)
}

/// The output, `batch·n` rows of `e` laid out as `layout` says (shaped
/// `[batch / heads · n, heads · e]`), and the log-sum-exp of each query's
/// scores `[batch, n]`. For a packed layout, `q`, `k` and `v` are the same tensor.
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    dims: AttentionDims,
    layout: AttentionLayout,
    scale: f64,
) -> Result<(Tensor, Tensor)> {
    let AttentionDims { batch, n, m, d, e } = dims;
    let qb = first_buffer("attention", q)?;
    let (kb, vb) = (
        buffer("attention", k, qb.device)?,
        buffer("attention", v, qb.device)?,
    );
    let out = alloc(qb, batch * n * e);
    let lse = alloc(qb, batch * n);
    let blocks = n.div_ceil(ROWS as usize);
    let l = layout;
    if batch * n * m > 0 {
        on_runtime!(&qb.client, |client, R| attention_forward_kernel::launch::<
            f32,
            R,
        >(
            client,
            grid(batch * blocks, 1),
            CubeDim::new_1d(ROWS),
            qb.arg::<R>(),
            kb.arg::<R>(),
            vb.arg::<R>(),
            out.arg::<R>(),
            lse.arg::<R>(),
            n as u32,
            m as u32,
            blocks as u32,
            batch as u32,
            scale as f32,
            Layout::launch::<R>(&l),
            d as u32,
            e as u32,
        ));
    }
    let rows = batch / l.heads * n;
    Ok((
        tensor(out, &[rows, l.heads * e])?,
        tensor(lse, &[batch, n])?,
    ))
}

/// dQ, dK and dV from the output gradient `g` for separate contiguous
/// inputs, shaped `[batch, rows, width]`.
pub(crate) fn attention_backward(
    saved: &AttentionSaved,
    g: &Tensor,
    dims: AttentionDims,
    scale: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let AttentionDims { batch, n, m, d, e } = dims;
    let gb = first_buffer("attention", g)?;
    let (dq, dk, dv) = (
        alloc(gb, batch * n * d),
        alloc(gb, batch * m * d),
        alloc(gb, batch * m * e),
    );
    let layout = AttentionLayout::contiguous(d, e);
    launch_backward(saved, g, dims, layout, scale, [&dq, &dk, &dv])?;
    Ok((
        tensor(dq, &[batch, n, d])?,
        tensor(dk, &[batch, m, d])?,
        tensor(dv, &[batch, m, e])?,
    ))
}

/// The gradient of a packed input from the output gradient `g`, laid out as
/// that input, shaped `[batch / heads · n, 3 · heads · d]`: one buffer, of
/// which each kernel writes its own columns of every row.
pub(crate) fn attention_backward_packed(
    saved: &AttentionSaved,
    g: &Tensor,
    dims: AttentionDims,
    layout: AttentionLayout,
    scale: f64,
) -> Result<Tensor> {
    let AttentionDims { batch, n, d, .. } = dims;
    let gb = first_buffer("attention", g)?;
    let all = alloc(gb, batch * n * 3 * d);
    launch_backward(saved, g, dims, layout, scale, [&all, &all, &all])?;
    tensor(all, &[batch / layout.heads * n, 3 * layout.heads * d])
}

/// Runs both backward kernels, writing dQ, dK and dV into `grads`.
fn launch_backward(
    saved: &AttentionSaved,
    g: &Tensor,
    dims: AttentionDims,
    layout: AttentionLayout,
    scale: f64,
    grads: [&GpuBuffer; 3],
) -> Result<()> {
    let AttentionDims { batch, n, m, d, e } = dims;
    let gb = first_buffer("attention", g)?;
    let on =
        |t: &'_ Tensor| -> Result<GpuBuffer> { Ok(buffer("attention", t, gb.device)?.clone()) };
    let (qb, kb, vb, ob, lb) = (
        on(saved.q)?,
        on(saved.k)?,
        on(saved.v)?,
        on(saved.out)?,
        on(saved.lse)?,
    );
    let [dq, dk, dv] = grads;
    let delta = alloc(gb, batch * n);
    let (q_blocks, k_blocks) = (n.div_ceil(ROWS as usize), m.div_ceil(ROWS as usize));
    let l = layout;
    if batch * n * m > 0 {
        on_runtime!(&gb.client, |client, R| {
            attention_dq_kernel::launch::<f32, R>(
                client,
                grid(batch * q_blocks, 1),
                CubeDim::new_1d(ROWS),
                qb.arg::<R>(),
                kb.arg::<R>(),
                vb.arg::<R>(),
                ob.arg::<R>(),
                gb.arg::<R>(),
                lb.arg::<R>(),
                dq.arg::<R>(),
                delta.arg::<R>(),
                n as u32,
                m as u32,
                q_blocks as u32,
                batch as u32,
                scale as f32,
                Layout::launch::<R>(&l),
                d as u32,
                e as u32,
            );
            attention_dkv_kernel::launch::<f32, R>(
                client,
                grid(batch * k_blocks, 1),
                CubeDim::new_1d(ROWS),
                qb.arg::<R>(),
                kb.arg::<R>(),
                vb.arg::<R>(),
                gb.arg::<R>(),
                lb.arg::<R>(),
                delta.arg::<R>(),
                dk.arg::<R>(),
                dv.arg::<R>(),
                n as u32,
                m as u32,
                k_blocks as u32,
                batch as u32,
                scale as f32,
                Layout::launch::<R>(&l),
                d as u32,
                e as u32,
            );
        });
    }
    Ok(())
}
