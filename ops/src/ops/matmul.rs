//! `matmul`: matrix products, 2-D and batched, with either operand transposed.
//!
//! Shapes: `op(a): [.., m, k]`, `op(b): [.., k, n]` → `[.., m, n]`, where `op`
//! transposes the last two axes when asked. Batch axes must be equal, or `b`
//! may be 2-D (shared by every batch entry). PyTorch: `a @ b`,
//! `a @ b.transpose(-2, -1)`, `a.transpose(-2, -1) @ b`. Saves both inputs.
//! Backward (for `C = A·B`): `dA = dC·Bᵀ`, `dB = Aᵀ·dC`, written with this
//! same op and its transpose flags so that no transposed copy is ever made.
//!
//! On a GPU under [`autocast`](crate::autocast)`(Precision::Bf16)` the
//! operands are rounded to bf16 and the accumulation stays f32; the rule then
//! saves the bf16 operands (half the memory of f32 copies) and computes both
//! gradients in bf16 too, as PyTorch's autocast does.

use rayon::prelude::*;

use std::mem::MaybeUninit;

use crate::cpu::gemm::{gemm_new, gemm_write, GemmElement, MatRef};
use crate::error::shape_err;
use crate::gpu::PackedBf16;
use crate::{matmul_precision, with_dtype, Error, Precision, Result, Tensor};

fn matmul_kernel<T: GemmElement>(
    a: &[T],
    b: &[T],
    batch: usize,
    (m, n, k): (usize, usize, usize),
    (ta, tb): (bool, bool),
) -> Vec<T> {
    let a_cols = if ta { m } else { k };
    let b_cols = if tb { k } else { n };
    if batch == 1 {
        let (a, b) = (MatRef::new(a, a_cols, ta), MatRef::new(b, b_cols, tb));
        return gemm_new(m, n, k, a, b, None, true);
    }
    // Each entry's product writes its whole block: no zero-fill first.
    let mut c = Vec::with_capacity(batch * m * n);
    let one = |(i, c_i): (usize, &mut [MaybeUninit<T>]), parallel: bool| {
        let a_i = MatRef::new(&a[i * m * k..(i + 1) * m * k], a_cols, ta);
        let b_i = MatRef::new(&b[i * k * n..(i + 1) * k * n], b_cols, tb);
        gemm_write(m, n, k, a_i, b_i, None, c_i, parallel);
    };
    let blocks = &mut c.spare_capacity_mut()[..batch * m * n];
    if m * n > 0 && batch >= rayon::current_num_threads() {
        blocks
            .par_chunks_mut(m * n)
            .enumerate()
            .for_each(|job| one(job, false));
    } else if m * n > 0 {
        blocks
            .chunks_mut(m * n)
            .enumerate()
            .for_each(|job| one(job, true));
    }
    // SAFETY: each of the batch's m·n blocks was written whole above.
    unsafe { c.set_len(batch * m * n) };
    c
}

impl Tensor {
    /// `self · other`.
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        self.matmul_with(other, false, false)
    }

    /// `self · otherᵀ` (transposing the last two axes of `other`).
    pub fn matmul_nt(&self, other: &Tensor) -> Result<Tensor> {
        self.matmul_with(other, false, true)
    }

    /// `selfᵀ · other`.
    pub fn matmul_tn(&self, other: &Tensor) -> Result<Tensor> {
        self.matmul_with(other, true, false)
    }

    /// `op(self) · op(other)`, where `op` transposes the last two axes when the flag is set.
    pub fn matmul_with(&self, other: &Tensor, ta: bool, tb: bool) -> Result<Tensor> {
        const OP: &str = "matmul";
        if self.dtype() != other.dtype() {
            return Err(Error::DType {
                op: OP,
                lhs: self.dtype(),
                rhs: other.dtype(),
            });
        }
        let (ra, rb) = (self.rank(), other.rank());
        if ra < 2 || rb < 2 {
            return Err(shape_err!(
                OP,
                "operands need at least 2 dimensions, got {:?} and {:?}",
                self.shape(),
                other.shape()
            ));
        }
        // A batch of rows times one shared matrix is a single 2-D product.
        if rb == 2 && ra > 2 && !ta {
            let k = self.shape()[ra - 1];
            let flat = self.reshape(&[self.numel() / k, k])?;
            let product = flat.matmul_with(other, false, tb)?;
            let mut shape = self.shape().to_vec();
            shape[ra - 1] = product.shape()[1];
            return product.reshape(&shape);
        }
        let (sa, sb) = (self.shape(), other.shape());
        let (m, ka) = if ta {
            (sa[ra - 1], sa[ra - 2])
        } else {
            (sa[ra - 2], sa[ra - 1])
        };
        let (kb, n) = if tb {
            (sb[rb - 1], sb[rb - 2])
        } else {
            (sb[rb - 2], sb[rb - 1])
        };
        let batch_shape = &sa[..ra - 2];
        if ka != kb || batch_shape != &sb[..rb - 2] {
            return Err(shape_err!(
                OP,
                "cannot multiply {:?}{} by {:?}{}: inner sizes {} and {} must match and batch axes be equal",
                sa,
                if ta { "ᵀ" } else { "" },
                sb,
                if tb { "ᵀ" } else { "" },
                ka,
                kb
            ));
        }
        let batch: usize = batch_shape.iter().product();
        let mut out_shape = batch_shape.to_vec();
        out_shape.extend([m, n]);
        let dims = (m, n, ka);
        let out = if self.is_on_gpu() {
            if matmul_precision() == Precision::Bf16 {
                return self.matmul_bf16(other, batch, dims, (ta, tb), &out_shape);
            }
            crate::gpu::matmul(self, other, batch, dims, (ta, tb))?.reshape(&out_shape)?
        } else {
            with_dtype!(self.dtype(), T => {
                let c = matmul_kernel(self.data::<T>()?, other.data::<T>()?, batch, dims, (ta, tb));
                Tensor::from_vec(c, &out_shape)?
            })
        };
        let (a, b) = (self.detach(), other.detach());
        crate::grad::record(OP, &[self, other], out, move |g| {
            let (da, db) = match (ta, tb) {
                (false, false) => (
                    g.matmul_with(&b, false, true)?,
                    a.matmul_with(g, true, false)?,
                ),
                (false, true) => (
                    g.matmul_with(&b, false, false)?,
                    g.matmul_with(&a, true, false)?,
                ),
                (true, false) => (
                    b.matmul_with(g, false, true)?,
                    a.matmul_with(g, false, false)?,
                ),
                (true, true) => (
                    b.matmul_with(g, true, true)?,
                    g.matmul_with(&a, true, true)?,
                ),
            };
            Ok(vec![Some(da), Some(db)])
        })
    }
}

impl Tensor {
    /// The GPU product under bf16 autocast, for `batch` pairs of shape
    /// `dims = (m, n, k)`: both operands rounded and packed once, the packed
    /// copies saved for the backward pass.
    fn matmul_bf16(
        &self,
        other: &Tensor,
        batch: usize,
        (m, n, k): (usize, usize, usize),
        (ta, tb): (bool, bool),
        out_shape: &[usize],
    ) -> Result<Tensor> {
        use crate::gpu::{matmul_bf16 as product, pack_bf16};
        let (a, b) = (pack_bf16(self)?, pack_bf16(other)?);
        let out = product(&a, &b, batch, (m, n, k), (ta, tb))?.reshape(out_shape)?;
        let (a_shape, b_shape) = (self.shape().to_vec(), other.shape().to_vec());
        crate::grad::record("matmul", &[self, other], out, move |g| {
            let g = pack_bf16(g)?;
            let grads = |(da, db): (Tensor, Tensor)| -> Result<Vec<Option<Tensor>>> {
                Ok(vec![
                    Some(da.reshape(&a_shape)?),
                    Some(db.reshape(&b_shape)?),
                ])
            };
            let p = |x: &PackedBf16, y: &PackedBf16, dims, flags| product(x, y, batch, dims, flags);
            // The rules of the f32 product above, with `(m, n, k)` spelled out.
            grads(match (ta, tb) {
                (false, false) => (
                    p(&g, &b, (m, k, n), (false, true))?,
                    p(&a, &g, (k, n, m), (true, false))?,
                ),
                (false, true) => (
                    p(&g, &b, (m, k, n), (false, false))?,
                    p(&g, &a, (n, k, m), (true, false))?,
                ),
                (true, false) => (
                    p(&b, &g, (k, m, n), (false, true))?,
                    p(&a, &g, (k, n, m), (false, false))?,
                ),
                (true, true) => (
                    p(&b, &g, (k, m, n), (true, true))?,
                    p(&g, &a, (n, k, m), (true, true))?,
                ),
            })
        })
    }
}
