//! One strided copy kernel, `dst[view] = src[view]` where each side reads the
//! view through its own strides and offset. It serves every op that moves
//! values without arithmetic: permute, broadcast_to, narrow, concat,
//! patchify, and their backward passes.

use cubecl::prelude::*;

use super::runtime::{
    alloc, arg, buffer, first_buffer, grid, linear_index, on_runtime, tensor, u32_buffer,
    GpuBuffer, BLOCK,
};
use crate::shape::{broadcast_strides, contiguous_strides, numel};
use crate::{Result, Tensor};

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn strided_copy_kernel<F: Float>(
    src: &Array<F>,
    dst: &mut Array<F>,
    shape: &Array<u32>,
    src_strides: &Array<u32>,
    dst_strides: &Array<u32>,
    src_offset: u32,
    dst_offset: u32,
    n: u32,
) {
    let i = linear_index();
    if i < n {
        let mut rem = i;
        let mut s = src_offset;
        let mut d = dst_offset;
        let rank = shape.len();
        for k in 0..rank {
            let axis = rank - 1 - k;
            let idx = rem % shape[axis];
            rem /= shape[axis];
            s += idx * src_strides[axis];
            d += idx * dst_strides[axis];
        }
        dst[d as usize] = src[s as usize];
    }
}

#[cube(launch)]
fn fill_kernel<F: Float>(dst: &mut Array<F>, value: f32, n: u32) {
    let i = linear_index();
    if i < n {
        dst[i as usize] = F::cast_from(value);
    }
}

/// A view of a buffer: shape, strides (in elements) and offset.
struct View<'a> {
    shape: &'a [usize],
    strides: &'a [usize],
    offset: usize,
}

/// Copies `src` read through `from` into `dst` written through `to` (same shape).
/// A rank-0 view is one element: the kernel sees one axis of size 1.
fn at_least_one_axis(v: &[usize]) -> &[usize] {
    if v.is_empty() {
        &[1]
    } else {
        v
    }
}

fn copy(src: &GpuBuffer, from: View, dst: &GpuBuffer, to: View) {
    let n = numel(from.shape);
    if n == 0 {
        return;
    }
    let rank = from.shape.len().max(1);
    let shape = u32_buffer(src, at_least_one_axis(from.shape));
    let ss = u32_buffer(src, at_least_one_axis(from.strides));
    let ds = u32_buffer(src, at_least_one_axis(to.strides));
    on_runtime!(
        &src.client,
        |client, R| strided_copy_kernel::launch::<f32, R>(
            client,
            grid(n, BLOCK),
            CubeDim::new_1d(BLOCK),
            src.arg::<R>(),
            dst.arg::<R>(),
            arg::<R>(&shape, rank),
            arg::<R>(&ss, rank),
            arg::<R>(&ds, rank),
            from.offset as u32,
            to.offset as u32,
            n as u32,
        )
    );
}

/// A buffer of `len` copies of `value`.
pub(crate) fn filled(like: &GpuBuffer, len: usize, value: f32) -> GpuBuffer {
    let out = alloc(like, len);
    if len > 0 {
        on_runtime!(&like.client, |client, R| fill_kernel::launch::<f32, R>(
            client,
            grid(len, BLOCK),
            CubeDim::new_1d(BLOCK),
            out.arg::<R>(),
            value,
            len as u32,
        ));
    }
    out
}

/// Copies `src` (contiguous, of `shape`) read through `strides` and `offset`
/// into a new contiguous buffer of `shape`.
fn gather_view(src: &GpuBuffer, shape: &[usize], strides: &[usize], offset: usize) -> GpuBuffer {
    let out = alloc(src, numel(shape));
    let dst_strides = contiguous_strides(shape);
    copy(
        src,
        View {
            shape,
            strides,
            offset,
        },
        &out,
        View {
            shape,
            strides: &dst_strides,
            offset: 0,
        },
    );
    out
}

pub(crate) fn broadcast_to(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let xb = first_buffer("broadcast_to", x)?;
    let strides = broadcast_strides(x.shape(), shape);
    tensor(gather_view(xb, shape, &strides, 0), shape)
}

pub(crate) fn permute(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let xb = first_buffer("permute", x)?;
    let in_strides = contiguous_strides(x.shape());
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    tensor(gather_view(xb, &shape, &strides, 0), &shape)
}

pub(crate) fn narrow(x: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor> {
    let xb = first_buffer("narrow", x)?;
    let strides = contiguous_strides(x.shape());
    let mut shape = x.shape().to_vec();
    shape[axis] = len;
    tensor(
        gather_view(xb, &shape, &strides, start * strides[axis]),
        &shape,
    )
}

/// The adjoint of `narrow`: `g` placed at `start` along `axis` in zeros of `in_shape`.
pub(crate) fn narrow_backward(
    g: &Tensor,
    in_shape: &[usize],
    axis: usize,
    start: usize,
) -> Result<Tensor> {
    let gb = first_buffer("narrow", g)?;
    let out = filled(gb, numel(in_shape), 0.0);
    let dst_strides = contiguous_strides(in_shape);
    let src_strides = contiguous_strides(g.shape());
    copy(
        gb,
        View {
            shape: g.shape(),
            strides: &src_strides,
            offset: 0,
        },
        &out,
        View {
            shape: g.shape(),
            strides: &dst_strides,
            offset: start * dst_strides[axis],
        },
    );
    tensor(out, in_shape)
}

pub(crate) fn concat(tensors: &[&Tensor], axis: usize) -> Result<Tensor> {
    let first = first_buffer("concat", tensors[0])?;
    let mut out_shape = tensors[0].shape().to_vec();
    out_shape[axis] = tensors.iter().map(|t| t.shape()[axis]).sum();
    let out = alloc(first, numel(&out_shape));
    let dst_strides = contiguous_strides(&out_shape);
    let mut start = 0;
    for t in tensors {
        let tb = buffer("concat", t, first.device)?;
        let src_strides = contiguous_strides(t.shape());
        copy(
            tb,
            View {
                shape: t.shape(),
                strides: &src_strides,
                offset: 0,
            },
            &out,
            View {
                shape: t.shape(),
                strides: &dst_strides,
                offset: start * dst_strides[axis],
            },
        );
        start += t.shape()[axis];
    }
    tensor(out, &out_shape)
}

/// The patch grid as a view of the image: axes `[b, gy, gx, c, i, j]`.
fn patch_view(dims: [usize; 4], p: usize) -> ([usize; 6], [usize; 6]) {
    let [b, c, h, w] = dims;
    (
        [b, h / p, w / p, c, p, p],
        [c * h * w, p * w, p, h * w, w, 1],
    )
}

pub(crate) fn patchify(x: &Tensor, p: usize) -> Result<Tensor> {
    let xb = first_buffer("patchify", x)?;
    let dims = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
    let (shape, strides) = patch_view(dims, p);
    let out_shape = [shape[0], shape[1] * shape[2], shape[3] * p * p];
    tensor(gather_view(xb, &shape, &strides, 0), &out_shape)
}

/// The adjoint of `patchify`: patches back in place, zeros where the grid
/// does not reach.
pub(crate) fn unpatchify(g: &Tensor, dims: [usize; 4], p: usize) -> Result<Tensor> {
    let gb = first_buffer("patchify", g)?;
    let (shape, image_strides) = patch_view(dims, p);
    let out = filled(gb, numel(&dims), 0.0);
    let patch_strides = contiguous_strides(&shape);
    copy(
        gb,
        View {
            shape: &shape,
            strides: &patch_strides,
            offset: 0,
        },
        &out,
        View {
            shape: &shape,
            strides: &image_strides,
            offset: 0,
        },
    );
    tensor(out, &dims)
}
