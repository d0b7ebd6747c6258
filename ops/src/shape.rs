//! Shape arithmetic shared by the ops: element counts, strides, broadcasting, axes.

use crate::{Error, Result};

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides of a contiguous tensor.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// NumPy/PyTorch broadcasting: shapes aligned on the right, a dimension of 1
/// stretches to match. `None` when they are incompatible.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Strides for reading a tensor of `shape` as if broadcast to `target`: 0 along
/// stretched or missing axes. Assumes `shape` broadcasts to `target`.
pub fn broadcast_strides(shape: &[usize], target: &[usize]) -> Vec<usize> {
    let strides = contiguous_strides(shape);
    let offset = target.len() - shape.len();
    (0..target.len())
        .map(|i| {
            if i < offset || shape[i - offset] == 1 {
                0
            } else {
                strides[i - offset]
            }
        })
        .collect()
}

/// Turns a possibly negative axis into an index in `0..rank`.
pub fn normalize_axis(op: &'static str, axis: isize, rank: usize) -> Result<usize> {
    let resolved = if axis < 0 { axis + rank as isize } else { axis };
    if resolved < 0 || resolved as usize >= rank {
        return Err(Error::Axis { op, axis, rank });
    }
    Ok(resolved as usize)
}

/// Splits a shape around `axis` into (outer, size of axis, inner) element counts.
pub fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        numel(&shape[..axis]),
        shape[axis],
        numel(&shape[axis + 1..]),
    )
}
