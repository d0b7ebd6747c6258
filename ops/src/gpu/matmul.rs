//! Batched matrix product `C[b] = op(A[b])·op(B[b])`, either operand
//! transposed by its strides (no transposed copy is made).
//!
//! Classic shared-memory tiling: each cube computes a 64×64 tile of C with
//! 16×16 units, each unit a 4×4 block held in registers; per step the cube
//! stages a 64×16 slice of A and a 16×64 slice of B in shared memory.
//! Accumulation is in f32.

use cubecl::prelude::*;

use super::runtime::{alloc, arg, buffer, first_buffer, on_runtime, tensor};
use crate::{Result, Tensor};

const TILE: u32 = 64;

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn matmul_kernel<F: Float>(
    a: &Array<F>,
    b: &Array<F>,
    c: &mut Array<F>,
    m: u32,
    n: u32,
    k: u32,
    a_batch: u32,
    a_row: u32,
    a_col: u32,
    b_batch: u32,
    b_row: u32,
    b_col: u32,
) {
    let batch = CUBE_POS_Z;
    let row0 = CUBE_POS_Y * 64u32;
    let col0 = CUBE_POS_X * 64u32;
    let tx = UNIT_POS_X;
    let ty = UNIT_POS_Y;
    let unit = ty * 16u32 + tx;
    let a_base = batch * a_batch;
    let b_base = batch * b_batch;
    let mut a_tile = SharedMemory::<F>::new(1024usize);
    let mut b_tile = SharedMemory::<F>::new(1024usize);
    let mut acc = Array::<F>::new(16usize);
    #[unroll]
    for e in 0..16u32 {
        acc[e as usize] = F::new(0.0);
    }
    let mut k0 = 0u32;
    while k0 < k {
        // Each of the 256 units stages 4 elements of each slice.
        #[unroll]
        for r in 0..4u32 {
            let e = unit + r * 256u32;
            // A slice stored depth-major: a_tile[kk·64 + i].
            let i = e / 16u32;
            let kk = e % 16u32;
            let mut va = F::new(0.0);
            if row0 + i < m && k0 + kk < k {
                va = a[(a_base + (row0 + i) * a_row + (k0 + kk) * a_col) as usize];
            }
            a_tile[(kk * 64u32 + i) as usize] = va;
            let kb = e / 64u32;
            let j = e % 64u32;
            let mut vb = F::new(0.0);
            if k0 + kb < k && col0 + j < n {
                vb = b[(b_base + (k0 + kb) * b_row + (col0 + j) * b_col) as usize];
            }
            b_tile[(kb * 64u32 + j) as usize] = vb;
        }
        sync_cube();
        #[unroll]
        for kk in 0..16u32 {
            let mut a_frag = Array::<F>::new(4usize);
            let mut b_frag = Array::<F>::new(4usize);
            #[unroll]
            for r in 0..4u32 {
                a_frag[r as usize] = a_tile[(kk * 64u32 + ty * 4u32 + r) as usize];
                b_frag[r as usize] = b_tile[(kk * 64u32 + tx * 4u32 + r) as usize];
            }
            #[unroll]
            for r in 0..4u32 {
                #[unroll]
                for s in 0..4u32 {
                    acc[(r * 4u32 + s) as usize] += a_frag[r as usize] * b_frag[s as usize];
                }
            }
        }
        sync_cube();
        k0 += 16u32;
    }
    let c_base = batch * m * n;
    #[unroll]
    for r in 0..4u32 {
        let i = row0 + ty * 4u32 + r;
        #[unroll]
        for s in 0..4u32 {
            let j = col0 + tx * 4u32 + s;
            if i < m && j < n {
                c[(c_base + i * n + j) as usize] = acc[(r * 4u32 + s) as usize];
            }
        }
    }
}

/// `op(a)·op(b)` for `batch` pairs of `(m×k)·(k×n)`; `b_shared` reuses one `b`
/// for every batch entry.
pub(crate) fn matmul(
    a: &Tensor,
    b: &Tensor,
    batch: usize,
    (m, n, k): (usize, usize, usize),
    (ta, tb): (bool, bool),
    b_shared: bool,
) -> Result<Tensor> {
    let ab = first_buffer("matmul", a)?;
    let bb = buffer("matmul", b, ab.device)?;
    let a_strides = if ta { [m * k, 1, m] } else { [m * k, k, 1] };
    let mut b_strides = if tb { [k * n, 1, k] } else { [k * n, n, 1] };
    if b_shared {
        b_strides[0] = 0;
    }
    let out = alloc(ab, batch * m * n);
    if batch * m * n > 0 {
        let count = CubeCount::Static(
            (n as u32).div_ceil(TILE),
            (m as u32).div_ceil(TILE),
            batch as u32,
        );
        on_runtime!(&ab.client, |client, R| matmul_kernel::launch::<f32, R>(
            client,
            count,
            CubeDim::new_2d(16, 16),
            arg::<R>(&ab.handle, ab.len),
            arg::<R>(&bb.handle, bb.len),
            arg::<R>(&out.handle, batch * m * n),
            m as u32,
            n as u32,
            k as u32,
            a_strides[0] as u32,
            a_strides[1] as u32,
            a_strides[2] as u32,
            b_strides[0] as u32,
            b_strides[1] as u32,
            b_strides[2] as u32,
        ));
    }
    tensor(out, &[batch, m, n])
}
