//! Reductions along one axis or over all elements: `sum`, `mean`, `max`.
//!
//! Shapes: `x: [.., n, ..]` reduced along the axis of size n → the axis removed
//! (or kept as 1 with `keepdim`); the `_all` forms → a 0-d tensor. PyTorch:
//! `x.sum(dim, keepdim)`, `x.mean(dim, keepdim)`, `x.amax(dim, keepdim)`.
//! Backward: `sum` broadcasts `g` back; `mean` broadcasts `g/n`; `max` sends
//! `g` to the first arg-max of each slice (as `torch.max(dim)` does), saving
//! only those indices.

use rayon::prelude::*;

use crate::shape::{normalize_axis, split_at_axis};
use crate::{with_dtype, Element, Result, Tensor};

#[derive(Clone, Copy)]
enum Reduction {
    Sum,
    Max,
}

/// Reduces `[outer, n, inner]` to `[outer, inner]`; for `Max` also returns the
/// arg-max position along n of each output element.
fn reduce_kernel<T: Element>(
    x: &[T],
    outer: usize,
    n: usize,
    inner: usize,
    how: Reduction,
) -> (Vec<T>, Vec<usize>) {
    if let (Reduction::Sum, 1) = (how, outer) {
        if n * inner >= crate::cpu::PARALLEL_MIN_ELEMENTS * 4 {
            return (sum_down_in_bands(x, n, inner), Vec::new());
        }
    }
    let mut out = crate::cpu::zeroed::<T>(outer * inner);
    let mut arg = match how {
        Reduction::Max => vec![0usize; outer * inner],
        Reduction::Sum => Vec::new(),
    };
    crate::cpu::for_each_row(&mut out, inner.max(1), |o, row| {
        let block = &x[o * n * inner..(o + 1) * n * inner];
        match how {
            Reduction::Sum => {
                for r in 0..n {
                    for (acc, &v) in row.iter_mut().zip(&block[r * inner..(r + 1) * inner]) {
                        *acc += v;
                    }
                }
            }
            Reduction::Max => {
                row.copy_from_slice(&block[..inner]);
                for r in 1..n {
                    for (acc, &v) in row.iter_mut().zip(&block[r * inner..(r + 1) * inner]) {
                        if v > *acc {
                            *acc = v;
                        }
                    }
                }
            }
        }
    });
    if let Reduction::Max = how {
        for o in 0..outer {
            for i in 0..inner {
                let best = out[o * inner + i];
                arg[o * inner + i] = (0..n)
                    .find(|&r| x[(o * n + r) * inner + i] == best)
                    .unwrap_or(0);
            }
        }
    }
    (out, arg)
}

/// The sum of the `n` rows of `inner` values in `x` (a bias's gradient:
/// every token's row), when the rows are many and one row is short. The
/// rows are cut into bands of a fixed height, the bands summed on rayon's
/// threads, and their sums added in order: the bits do not depend on the
/// number of threads. (Summed on one thread, a bias's gradient of 5,120
/// rows held 15 threads of 16 idle.)
fn sum_down_in_bands<T: Element>(x: &[T], n: usize, inner: usize) -> Vec<T> {
    let band = (crate::cpu::PARALLEL_MIN_ELEMENTS / inner).max(1) * inner;
    let bands: Vec<Vec<T>> = x[..n * inner]
        .par_chunks(band)
        .map(|rows| {
            let mut sums = vec![T::zero(); inner];
            crate::cpu::vectorised(|| {
                for row in rows.chunks_exact(inner) {
                    for (sum, &v) in sums.iter_mut().zip(row) {
                        *sum += v;
                    }
                }
            });
            sums
        })
        .collect();
    let mut bands = bands.into_iter();
    let mut total = bands.next().unwrap_or_else(|| vec![T::zero(); inner]);
    for sums in bands {
        for (t, s) in total.iter_mut().zip(sums) {
            *t += s;
        }
    }
    total
}

fn reduced_shape(shape: &[usize], axis: usize, keepdim: bool) -> Vec<usize> {
    let mut s = shape.to_vec();
    if keepdim {
        s[axis] = 1;
    } else {
        s.remove(axis);
    }
    s
}

impl Tensor {
    /// Sum along `axis` (negative counts from the end).
    pub fn sum_axis(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        let axis = normalize_axis("sum", axis, self.rank())?;
        let (outer, n, inner) = split_at_axis(self.shape(), axis);
        let out_shape = reduced_shape(self.shape(), axis, keepdim);
        let out = if self.is_on_gpu() {
            crate::gpu::reduce(self, axis, crate::gpu::Reduction::Sum, &out_shape)?
        } else {
            with_dtype!(self.dtype(), T => {
                let (v, _) = reduce_kernel(self.data::<T>()?, outer, n, inner, Reduction::Sum);
                Tensor::from_vec(v, &out_shape)?
            })
        };
        let (in_shape, kept) = (
            self.shape().to_vec(),
            reduced_shape(self.shape(), axis, true),
        );
        crate::grad::record("sum", &[self], out, move |g| {
            Ok(vec![Some(g.reshape(&kept)?.broadcast_to(&in_shape)?)])
        })
    }

    /// Mean along `axis`.
    pub fn mean_axis(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        let n = self.dim(axis)?;
        self.sum_axis(axis, keepdim)?.mul_scalar(1.0 / n as f64)
    }

    /// Maximum along `axis`; the gradient goes to the first arg-max.
    pub fn max_axis(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        let axis = normalize_axis("max", axis, self.rank())?;
        let (outer, n, inner) = split_at_axis(self.shape(), axis);
        if self.is_on_gpu() {
            let out_shape = reduced_shape(self.shape(), axis, keepdim);
            let out = crate::gpu::reduce(self, axis, crate::gpu::Reduction::Max, &out_shape)?;
            let (x, max) = (self.detach(), out.clone());
            return crate::grad::record("max", &[self], out, move |g| {
                Ok(vec![Some(crate::gpu::max_backward(&x, &max, g, axis)?)])
            });
        }
        let (out, arg) = with_dtype!(self.dtype(), T => {
            let (v, arg) = reduce_kernel(self.data::<T>()?, outer, n, inner, Reduction::Max);
            (Tensor::from_vec(v, &reduced_shape(self.shape(), axis, keepdim))?, arg)
        });
        let in_shape = self.shape().to_vec();
        crate::grad::record("max", &[self], out, move |g| {
            let dx = with_dtype!(g.dtype(), T => {
                let gv = g.data::<T>()?;
                let mut dx = crate::cpu::zeroed::<T>(outer * n * inner);
                for o in 0..outer {
                    for i in 0..inner {
                        dx[(o * n + arg[o * inner + i]) * inner + i] = gv[o * inner + i];
                    }
                }
                Tensor::from_vec(dx, &in_shape)?
            });
            Ok(vec![Some(dx)])
        })
    }

    /// Sum of all elements, as a 0-d tensor.
    pub fn sum_all(&self) -> Result<Tensor> {
        self.reshape(&[self.numel()])?.sum_axis(0, false)
    }

    /// Mean of all elements, as a 0-d tensor.
    pub fn mean_all(&self) -> Result<Tensor> {
        self.reshape(&[self.numel()])?.mean_axis(0, false)
    }

    /// Maximum of all elements, as a 0-d tensor.
    pub fn max_all(&self) -> Result<Tensor> {
        self.reshape(&[self.numel()])?.max_axis(0, false)
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Tensor};

    #[test]
    fn reduces_the_middle_axis() {
        let x = Tensor::from_fn(&[2, 3, 2], DType::F64, |i| i as f64);
        assert_eq!(
            x.sum_axis(1, false).unwrap().to_vec_f64(),
            vec![6.0, 9.0, 24.0, 27.0]
        );
        assert_eq!(x.max_axis(1, true).unwrap().shape(), &[2, 1, 2]);
        assert_eq!(
            x.max_axis(-2, false).unwrap().to_vec_f64(),
            vec![4.0, 5.0, 10.0, 11.0]
        );
        assert_eq!(x.mean_all().unwrap().item().unwrap(), 5.5);
    }

    /// A long axis summed in bands on threads gives each column's exact sum
    /// (integers, so any order is exact), for a short row and a single column.
    #[test]
    fn sums_down_many_rows_in_bands() {
        for (rows, cols) in [(5000, 37), (300_000, 1)] {
            let x = Tensor::from_fn(&[rows, cols], DType::F64, |i| (i % 7) as f64);
            let want: Vec<f64> = (0..cols)
                .map(|j| (0..rows).map(|r| ((r * cols + j) % 7) as f64).sum())
                .collect();
            assert_eq!(x.sum_axis(0, false).unwrap().to_vec_f64(), want);
        }
    }
}
