//! Products computed as their transpose: `C = A·B` as `Cᵀ = Bᵀ·Aᵀ`, then
//! `Cᵀ` written back transposed into C.
//!
//! A weight gradient `gᵀ·x` whose output side is the narrow one (the MLP's
//! second layer: 192 rows of C, 768 columns, over every token) gives the
//! blocked multiply two row blocks that each stream all of a 15.7 MB packed
//! B; its transpose has 768 rows of C against a 3.9 MB B, the shape of the
//! first layer's weight gradient, which ran 10 % faster. Each element sums
//! the same terms in the same order either way, so the bits do not change
//! when C is written over; added to an existing C, the k blocks' sums are
//! added to each other before C instead of to C one by one.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{dispatch, GemmElement, MatRef, Output, KC};

/// Whether `A·B` goes faster as its transpose: C at least twice as wide as
/// it is tall, k long enough that packing the operands is most of the cost
/// of the short side, A stored k-major (a transposed gradient) and B
/// row-major (activations), so that the transpose's operands are the
/// layouts of a weight gradient with the rows on the long side.
pub(super) fn pays<T>(
    m: usize,
    n: usize,
    k: usize,
    a: &MatRef<T>,
    b: &MatRef<T>,
    parallel: bool,
) -> bool {
    parallel && n >= 2 * m && k >= 4 * KC && a.row_stride == 1 && b.col_stride == 1
}

/// `C (+)= A·B` through `Cᵀ = Bᵀ·Aᵀ` into a scratch buffer.
#[allow(clippy::too_many_arguments)]
pub(super) fn multiply<T: GemmElement>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<T>,
    b: MatRef<T>,
    c: Output<T>,
    ldc: usize,
    parallel: bool,
) {
    let mut transposed = Vec::with_capacity(n * m);
    let spare = &mut transposed.spare_capacity_mut()[..n * m];
    dispatch(
        n,
        m,
        k,
        b.transposed(),
        a.transposed(),
        Output::Overwrite(spare, None),
        m,
        parallel,
    );
    // SAFETY: with k > 0 (`pays` asks for more) the product wrote all n·m.
    unsafe { transposed.set_len(n * m) };
    let (c, bias) = c.into_parts();
    write_back(&transposed, m, n, c, ldc, bias);
}

/// Rows of C that one task writes back.
const ROWS_PER_TASK: usize = 32;

/// C's element (i, j) from `transposed[j·m + i]`: added to C, or written
/// over it plus the column's bias. Rows of C go in blocks, each walking
/// `transposed` a row at a time so that both sides stay in cache.
fn write_back<T: GemmElement>(
    transposed: &[T],
    m: usize,
    n: usize,
    c: &mut [MaybeUninit<T>],
    ldc: usize,
    bias: Option<Option<&[T]>>,
) {
    assert!(transposed.len() == n * m && c.len() == (m - 1) * ldc + n);
    c.par_chunks_mut(ROWS_PER_TASK * ldc)
        .enumerate()
        .for_each(|(block, rows)| {
            let i0 = block * ROWS_PER_TASK;
            let height = ROWS_PER_TASK.min(m - i0);
            for (j, column) in transposed.chunks_exact(m).enumerate() {
                let column = &column[i0..i0 + height];
                for (r, &value) in column.iter().enumerate() {
                    let slot = &mut rows[r * ldc + j];
                    let value = match bias {
                        // SAFETY: `Accumulate` lends an initialised C.
                        None => (unsafe { slot.assume_init_read() }) + value,
                        Some(Some(bias)) => value + bias[j],
                        Some(None) => value,
                    };
                    slot.write(value);
                }
            }
        });
}
