//! `broadcast_to`, the broadcasting kernel of elementwise binary ops, and
//! `sum_to_shape`, its adjoint, which the engine uses to undo broadcasting.
//!
//! PyTorch: `x.expand(shape).contiguous()`; `sum_to_shape` is what autograd
//! does internally (`at::sum_to`).

use crate::error::shape_err;
use crate::shape::{broadcast_shapes, broadcast_strides, numel};
use crate::{with_dtype, Element, Error, Result, Tensor};

/// Calls `f(out_offset_of_row, a_offset, b_offset)` for every row (last
/// dimension) of `out_shape`, with the offsets of the inputs read broadcast.
fn for_each_broadcast_row(
    out_shape: &[usize],
    a_strides: &[usize],
    b_strides: &[usize],
    mut f: impl FnMut(usize, usize, usize),
) {
    let rank = out_shape.len();
    let rows = numel(&out_shape[..rank.saturating_sub(1)]);
    let row_len = out_shape.last().copied().unwrap_or(1);
    let mut index = vec![0usize; rank.saturating_sub(1)];
    for r in 0..rows {
        let (mut oa, mut ob) = (0, 0);
        for (d, &i) in index.iter().enumerate() {
            oa += i * a_strides[d];
            ob += i * b_strides[d];
        }
        f(r * row_len, oa, ob);
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < out_shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
}

/// `f(a, b)` elementwise with broadcasting: the kernel of add, sub, mul and div.
pub(crate) fn broadcast_binary<T: Element>(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(T, T) -> T + Sync + Send,
) -> Result<Tensor> {
    if a.dtype() != b.dtype() {
        return Err(Error::DType {
            op,
            lhs: a.dtype(),
            rhs: b.dtype(),
        });
    }
    let (x, y) = (a.data::<T>()?, b.data::<T>()?);
    if a.shape() == b.shape() {
        return Tensor::from_vec(crate::cpu::zip_map(x, y, f), a.shape());
    }
    let out_shape = broadcast_shapes(a.shape(), b.shape()).ok_or_else(|| Error::Broadcast {
        op,
        lhs: a.shape().to_vec(),
        rhs: b.shape().to_vec(),
    })?;
    if out_shape.is_empty() {
        return Tensor::from_vec(vec![f(x[0], y[0])], &[]);
    }
    let sa = broadcast_strides(a.shape(), &out_shape);
    let sb = broadcast_strides(b.shape(), &out_shape);
    let rank = out_shape.len();
    let (la, lb) = (sa[rank - 1], sb[rank - 1]);
    let row_len = out_shape[rank - 1];
    let mut out = crate::cpu::zeroed::<T>(numel(&out_shape));
    let mut starts = Vec::with_capacity(numel(&out_shape[..rank - 1]));
    for_each_broadcast_row(&out_shape, &sa, &sb, |_, oa, ob| starts.push((oa, ob)));
    crate::cpu::for_each_row(&mut out, row_len, |r, row| {
        let (oa, ob) = starts[r];
        for (j, o) in row.iter_mut().enumerate() {
            *o = f(x[oa + j * la], y[ob + j * lb]);
        }
    });
    Tensor::from_vec(out, &out_shape)
}

/// Sums `t` over the axes along which `shape` would have been broadcast to
/// `t.shape()`. `None` when `shape` does not broadcast to `t.shape()`.
pub fn sum_to_shape(t: &Tensor, shape: &[usize]) -> Result<Option<Tensor>> {
    if broadcast_shapes(shape, t.shape()).as_deref() != Some(t.shape()) {
        return Ok(None);
    }
    if t.is_on_gpu() {
        return sum_to_shape_by_axes(t, shape).map(Some);
    }
    let out = with_dtype!(t.dtype(), T => {
        let src = t.data::<T>()?;
        let target_strides = broadcast_strides(shape, t.shape());
        let mut out = crate::cpu::zeroed::<T>(numel(shape));
        let rank = t.rank();
        let row_len = t.shape().last().copied().unwrap_or(1);
        let inner = if rank == 0 { 0 } else { target_strides[rank - 1] };
        let zero_strides = vec![0; rank];
        for_each_broadcast_row(t.shape(), &target_strides, &zero_strides, |src_offset, target_offset, _| {
            let row = &src[src_offset..src_offset + row_len];
            if inner == 0 {
                out[target_offset] += row.iter().copied().sum::<T>();
            } else {
                for (j, &v) in row.iter().enumerate() {
                    out[target_offset + j] += v;
                }
            }
        });
        Tensor::from_vec(out, shape)?
    });
    Ok(Some(out))
}

/// `sum_to_shape` as a sequence of axis sums, which run on any device.
fn sum_to_shape_by_axes(t: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let strides = broadcast_strides(shape, t.shape());
    let mut acc = t.detach();
    for (axis, &stride) in strides.iter().enumerate() {
        if stride == 0 && t.shape()[axis] != 1 {
            acc = acc.sum_axis(axis as isize, true)?;
        }
    }
    acc.reshape(shape)
}

impl Tensor {
    /// Copies the tensor broadcast to `shape` (PyTorch `expand(...).contiguous()`).
    /// Backward: the engine sums the gradient back, so the rule passes it on.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        if broadcast_shapes(self.shape(), shape).as_deref() != Some(shape) {
            return Err(shape_err!(
                "broadcast_to",
                "shape {:?} cannot be broadcast to {:?}",
                self.shape(),
                shape
            ));
        }
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let out = if self.is_on_gpu() {
            crate::gpu::broadcast_to(self, shape)?
        } else {
            with_dtype!(self.dtype(), T => {
                let src = self.data::<T>()?;
                let strides = broadcast_strides(self.shape(), shape);
                let rank = shape.len();
                let (row_len, step) = (shape[rank - 1], strides[rank - 1]);
                let mut out = crate::cpu::zeroed::<T>(numel(shape));
                let mut starts = Vec::new();
                for_each_broadcast_row(shape, &strides, &strides, |_, o, _| starts.push(o));
                crate::cpu::for_each_row(&mut out, row_len, |r, row| {
                    for (j, o) in row.iter_mut().enumerate() {
                        *o = src[starts[r] + j * step];
                    }
                });
                Tensor::from_vec(out, shape)?
            })
        };
        crate::grad::record("broadcast_to", &[self], out, |g| Ok(vec![Some(g.clone())]))
    }
}
